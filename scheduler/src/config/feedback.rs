//! `[feedback]` in volley.toml: return paths that identify the message (VERP) and the key that
//! signs feedback tokens.
//!
//! ```toml
//! [feedback]
//! bounce_domain = "bounce.sender.test"   # MAIL FROM bounces+<token>@bounce.sender.test
//! key_file = "feedback.key"              # or key_env = "VOLLEY_FEEDBACK_KEY"
//! verp = true                            # default; a campaign's `verp` overrides it
//! unsubscribe_url = "https://unsub.sender.test/u"  # Volley's one-click endpoint, as the public sees it
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use volley_feedback::Keyring;

use super::validate::Problem;

/// `[feedback]`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackConfig {
    /// The domain of the return paths: `bounces+<token>@<bounce_domain>`. Its MX must point
    /// at Volley's inbound listener.
    pub bounce_domain: String,
    /// File holding the token keys, one `<key id 0-15> <secret of 32+ characters>` per line;
    /// the first signs, all verify (relative to the config file). Exactly one of `key_file`
    /// and `key_env`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding the keys, in the same format as `key_file`.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Whether messages go out with a VERP return path (default true); a campaign's `verp`
    /// overrides it.
    #[serde(default = "yes")]
    pub verp: bool,
    /// How long an unsubscribe token stays valid after it is issued. Default 60 days.
    #[serde(default = "default_unsubscribe_max_age", with = "humantime_serde")]
    pub unsubscribe_max_age: Duration,
    /// The largest inbound message (bounce, report) parsed, in bytes; larger ones are
    /// quarantined unread. Default 10 MiB.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// The public `https://` address of Volley's unsubscribe endpoint (`[unsubscribe]`), e.g.
    /// `https://unsub.sender.test/u`: a campaign with `[list_unsubscribe] volley = true` links
    /// to `<unsubscribe_url>/<token>`. No query or fragment.
    #[serde(default)]
    pub unsubscribe_url: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_unsubscribe_max_age() -> Duration {
    volley_feedback::token::DEFAULT_UNSUBSCRIBE_MAX_AGE
}
fn default_max_message_size() -> usize {
    volley_feedback::DEFAULT_MAX_MESSAGE_BYTES
}

/// The smallest `max_message_size` accepted: a DSN with its headers needs a few KB.
const MIN_MESSAGE_SIZE: usize = 4096;

impl FeedbackConfig {
    /// Resolves `key_file` against the config file's folder `base`.
    pub(super) fn resolve(&mut self, base: &Path) {
        if let Some(file) = self.key_file.as_mut().filter(|f| f.is_relative()) {
            *file = base.join(&*file);
        }
    }

    /// The values that cannot work (the key itself is read by [`FeedbackConfig::keyring`]).
    pub(super) fn problems(&self, out: &mut Vec<Problem>) {
        if let Err(reason) = check_domain(&self.bounce_domain) {
            out.push(Problem::new(
                "feedback.bounce_domain",
                self.bounce_domain.clone(),
                reason,
            ));
        }
        match (&self.key_file, &self.key_env) {
            (None, None) => out.push(Problem::new(
                "feedback.key_file",
                "",
                "set key_file or key_env: tokens must be signed",
            )),
            (Some(file), Some(_)) => out.push(Problem::new(
                "feedback.key_env",
                file.display().to_string(),
                "set only one of key_file and key_env",
            )),
            (None, Some(name)) if name.is_empty() => out.push(Problem::new(
                "feedback.key_env",
                "",
                "must name an environment variable",
            )),
            _ => {}
        }
        if self.unsubscribe_max_age.is_zero() {
            out.push(Problem::new(
                "feedback.unsubscribe_max_age",
                "0s",
                "must be longer than zero",
            ));
        }
        if let Some(url) = &self.unsubscribe_url {
            if let Err(reason) = UnsubscribeUrl::parse(url) {
                out.push(Problem::new("feedback.unsubscribe_url", url.clone(), reason));
            }
        }
        if self.max_message_size < MIN_MESSAGE_SIZE {
            out.push(Problem::new(
                "feedback.max_message_size",
                self.max_message_size.to_string(),
                format!("must be at least {MIN_MESSAGE_SIZE} bytes"),
            ));
        }
    }

    /// Reads the keys. The error names the field and the file or variable (never a secret).
    pub fn keyring(&self) -> Result<Keyring, (&'static str, String, String)> {
        match (&self.key_file, &self.key_env) {
            (Some(file), _) => {
                Keyring::load_file(file).map_err(|e| ("feedback.key_file", file.display().to_string(), e.to_string()))
            }
            (None, Some(name)) => {
                Keyring::load_env(name).map_err(|e| ("feedback.key_env", name.clone(), e.to_string()))
            }
            (None, None) => Err(("feedback.key_file", String::new(), "set key_file or key_env".into())),
        }
    }
}

/// `[feedback] unsubscribe_url`, checked: where the links point, and the path the endpoint
/// serves them under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribeUrl {
    /// The URL without a trailing `/`: a link is `<base>/<token>`.
    pub base: String,
    /// Its path without a trailing `/` (empty for the root): the endpoint serves
    /// `<path>/<token>`.
    pub path: String,
}

impl UnsubscribeUrl {
    /// Checks `url`: `https://` (RFC 8058 §3.1), a host, no query, fragment, blanks or
    /// characters that would break a `List-Unsubscribe` header.
    pub fn parse(url: &str) -> Result<UnsubscribeUrl, &'static str> {
        let rest = url
            .strip_prefix("https://")
            .ok_or("must be an https:// URL (RFC 8058 §3.1: one-click needs HTTPS)")?;
        if url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'))
        {
            return Err("must not contain blanks, control characters, '<', '>', ',' or '\"'");
        }
        if url.contains(['?', '#']) {
            return Err("must not have a query or a fragment: the token is appended as a path segment");
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains('@') {
            return Err("expected https://<host>[:port][/path]");
        }
        // `/u/` and `/u` are the same endpoint; the root is the empty path.
        let path = match path.trim_end_matches('/') {
            "" => String::new(),
            p => format!("/{p}"),
        };
        Ok(UnsubscribeUrl {
            base: format!("https://{host}{path}"),
            path,
        })
    }
}

/// A domain name: dot-separated labels of letters, digits and inner dashes (RFC 1035 §2.3.1),
/// at most 253 characters.
fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() || domain.len() > 253 {
        return Err("expected a domain name of 1-253 characters");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !domain.split('.').all(label_ok) {
        return Err("expected a domain name: labels of letters, digits and inner dashes, separated by dots");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_urls() {
        let u = UnsubscribeUrl::parse("https://unsub.sender.test/u/").expect("valid");
        assert_eq!(
            (u.base.as_str(), u.path.as_str()),
            ("https://unsub.sender.test/u", "/u")
        );
        let root = UnsubscribeUrl::parse("https://unsub.sender.test:8443").expect("valid");
        assert_eq!(
            (root.base.as_str(), root.path.as_str()),
            ("https://unsub.sender.test:8443", "")
        );
        for bad in [
            "http://unsub.sender.test/u",
            "https:///u",
            "https://unsub.sender.test/u?x=1",
            "https://unsub.sender.test/u#f",
            "https://unsub.sender.test/a b",
            "https://a@unsub.sender.test/",
        ] {
            assert!(UnsubscribeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        assert!(check_domain("bounce.sender.test").is_ok());
        for bad in ["", "a..b", "-a.test", "a_b.test", "a.test.", "bounces+x@b.test"] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }
}
