//! Service URLs that may carry a password (`redis://:secret@host/0`): [`redact_url`] for logs
//! and errors, and [`SecretUrl`], a configured URL whose `Debug` and `Display` redact it.

use std::fmt;

use serde::Deserialize;

/// `url` with the password (and a bare user-info part) replaced by `***`, and any query string
/// dropped, so it can be logged: `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0`.
pub fn redact_url(url: &str) -> String {
    let url = match url.find('?') {
        Some(q) => &url[..q],
        None => url,
    };
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = (&url[..scheme_end + 3], &url[scheme_end + 3..]);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = (&rest[..authority_end], &rest[authority_end..]);
    match authority.rfind('@') {
        None => url.to_owned(),
        Some(at) => {
            let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
            let user = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{scheme}{user}@{host}{path}")
        }
    }
}

/// A URL as configured, password included; it prints (`{}` and `{:?}`) redacted, so a config
/// dump or an error never shows the secret. [`SecretUrl::expose`] gives the real URL to the
/// client that connects.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> SecretUrl {
        SecretUrl(url.to_owned())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> SecretUrl {
        SecretUrl(url)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://:hunter2@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact_url("redis://u:p@ss@h/2"), "redis://u:***@h/2");
        assert_eq!(redact_url("redis://secret@h"), "redis://***@h");
        assert_eq!(redact_url("redis://h/0?password=x"), "redis://h/0");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn a_secret_url_prints_redacted() {
        let url = SecretUrl::from("redis://:hunter2@127.0.0.1:6379/0");
        assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6379/0");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert_eq!(url.expose(), "redis://:hunter2@127.0.0.1:6379/0");
    }
}
