//! SASL decoding for AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN, base64 responses, the `*`
//! cancel. The session decodes; the driver checks the credentials.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::config::AuthMechanism;

/// Decoded credentials of one AUTH exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism used.
    pub mechanism: AuthMechanism,
    /// RFC 4616 authorization identity (empty: the same as `username`). Always empty with
    /// LOGIN.
    pub authzid: String,
    /// The authentication identity (user name).
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a SASL response was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*` (RFC 4954 §4): 501 5.0.0.
    #[error("authentication cancelled by the client")]
    Cancelled,
    /// Not base64, not UTF-8, or not the mechanism's format: 501 5.5.2.
    #[error("malformed SASL response")]
    Malformed,
}

/// Where an AUTH exchange stands between two client lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Exchange {
    /// PLAIN sent without an initial response: waiting for it after `334 `.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of `username`.
    LoginPassword { username: String },
}

/// What the exchange does with a response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this challenge (base64) in a 334 and wait for the next line.
    Challenge(Exchange, &'static str),
    /// The credentials are complete.
    Done(Credentials),
}

/// RFC 4954 §4: the 334 challenge of LOGIN's two prompts, `Username:` and `Password:`.
pub(crate) const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
pub(crate) const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// Decodes one response line: `*` cancels, `=` is an empty initial response (RFC 4954 §4).
fn decode(line: &str) -> Result<String, SaslError> {
    let line = line.trim_ascii();
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" {
        return Ok(String::new());
    }
    let bytes = STANDARD.decode(line).map_err(|_| SaslError::Malformed)?;
    String::from_utf8(bytes).map_err(|_| SaslError::Malformed)
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`, authcid and passwd not empty.
fn plain(response: &str) -> Result<Credentials, SaslError> {
    let mut parts = response.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if username.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(Credentials {
        mechanism: AuthMechanism::Plain,
        authzid: authzid.to_owned(),
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// The AUTH command itself, with its optional initial response.
pub(crate) fn begin(mechanism: AuthMechanism, initial: Option<&str>) -> Result<Step, SaslError> {
    match (mechanism, initial) {
        (AuthMechanism::Plain, None) => Ok(Step::Challenge(Exchange::Plain, "")),
        (AuthMechanism::Plain, Some(initial)) => plain(&decode(initial)?).map(Step::Done),
        (AuthMechanism::Login, None) => Ok(Step::Challenge(Exchange::LoginUser, LOGIN_USER_PROMPT)),
        (AuthMechanism::Login, Some(initial)) => continue_with(Exchange::LoginUser, initial),
    }
}

/// A client line during the exchange.
pub(crate) fn continue_with(exchange: Exchange, line: &str) -> Result<Step, SaslError> {
    let response = decode(line)?;
    match exchange {
        Exchange::Plain => plain(&response).map(Step::Done),
        Exchange::LoginUser if response.is_empty() => Err(SaslError::Malformed),
        Exchange::LoginUser => Ok(Step::Challenge(
            Exchange::LoginPassword { username: response },
            LOGIN_PASSWORD_PROMPT,
        )),
        Exchange::LoginPassword { username } => Ok(Step::Done(Credentials {
            mechanism: AuthMechanism::Login,
            authzid: String::new(),
            username,
            password: response,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn plain_initial_response() {
        let Ok(Step::Done(c)) = begin(AuthMechanism::Plain, Some(&b64("\0alice\0secret"))) else {
            panic!("complete credentials expected");
        };
        assert_eq!(
            (c.authzid.as_str(), c.username.as_str(), c.password.as_str()),
            ("", "alice", "secret")
        );
        assert!(!format!("{c:?}").contains("secret"), "Debug hides the password");
    }

    #[test]
    fn plain_after_empty_challenge() {
        assert_eq!(
            begin(AuthMechanism::Plain, None),
            Ok(Step::Challenge(Exchange::Plain, ""))
        );
        let Ok(Step::Done(c)) = continue_with(Exchange::Plain, &b64("admin\0bob\0pw")) else {
            panic!("complete credentials expected");
        };
        assert_eq!((c.authzid.as_str(), c.username.as_str()), ("admin", "bob"));
    }

    #[test]
    fn login_prompts_for_user_then_password() {
        let Ok(Step::Challenge(next, LOGIN_USER_PROMPT)) = begin(AuthMechanism::Login, None) else {
            panic!("user prompt expected");
        };
        let Ok(Step::Challenge(next, LOGIN_PASSWORD_PROMPT)) = continue_with(next, &b64("carol")) else {
            panic!("password prompt expected");
        };
        let Ok(Step::Done(c)) = continue_with(next, &b64("pw")) else {
            panic!("credentials expected");
        };
        assert_eq!(
            (c.mechanism, c.username.as_str(), c.password.as_str()),
            (AuthMechanism::Login, "carol", "pw")
        );
        // An initial response is the user name.
        assert!(matches!(
            begin(AuthMechanism::Login, Some(&b64("dave"))),
            Ok(Step::Challenge(Exchange::LoginPassword { .. }, LOGIN_PASSWORD_PROMPT))
        ));
    }

    #[test]
    fn cancel_and_malformed_responses() {
        assert_eq!(continue_with(Exchange::Plain, "*"), Err(SaslError::Cancelled));
        assert_eq!(continue_with(Exchange::Plain, "not base64!"), Err(SaslError::Malformed));
        assert_eq!(
            continue_with(Exchange::Plain, &b64("no-nul-here")),
            Err(SaslError::Malformed)
        );
        assert_eq!(
            continue_with(Exchange::Plain, &b64("\0\0pw")),
            Err(SaslError::Malformed),
            "empty user"
        );
        assert_eq!(
            continue_with(Exchange::Plain, &b64("a\0b\0c\0d")),
            Err(SaslError::Malformed)
        );
        assert_eq!(begin(AuthMechanism::Plain, Some("=")), Err(SaslError::Malformed));
        assert_eq!(continue_with(Exchange::LoginUser, "="), Err(SaslError::Malformed));
        assert_eq!(
            continue_with(Exchange::LoginPassword { username: "u".into() }, "\u{ff}"),
            Err(SaslError::Malformed)
        );
    }
}
