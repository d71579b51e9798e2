//! The HMAC keys that sign feedback tokens: read from a key file (through `volley-files`) or
//! an environment variable, never printed ([`Keyring`]'s `Debug` shows key ids only).
//!
//! Format (file or variable), one key per line, `#` comments and blank lines ignored:
//!
//! ```text
//! # <key id 0-15> <secret, at least 32 characters>
//! 1 3f1c0a9e5b7d2c4e8f6a1b3c5d7e9f0a2b4c6d8e
//! 0 an-older-secret-still-accepted-for-tokens-in-flight
//! ```
//!
//! The first key signs; every listed key verifies, so a key can be rotated by listing the new
//! one first and keeping the old one until its tokens no longer matter (bounces arrive within
//! days; unsubscribe links for as long as they are valid).

use std::fmt;
use std::path::{Path, PathBuf};

use ring::hmac;

/// The largest key id: it takes the low four bits of a token's first byte.
pub const MAX_KEY_ID: u8 = 15;
/// The shortest secret accepted (RFC 2104 §3: at least the hash output length, 32 bytes).
pub const MIN_SECRET_LEN: usize = 32;

/// Why the feedback keys cannot be used. The messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why: the OS error, not a regular file, or over the size cap.
        source: volley_files::FileError,
    },
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable {name} is not set")]
    MissingEnv {
        /// The variable.
        name: String,
    },
    /// A line is not `<id> <secret>`.
    #[error("{origin} line {line}: {reason}")]
    Line {
        /// The file path or `$VARIABLE`.
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong (never the secret).
        reason: String,
    },
    /// No key at all.
    #[error("{origin}: no key (expected lines `<id 0-15> <secret of at least 32 characters>`)")]
    Empty {
        /// The file path or `$VARIABLE`.
        origin: String,
    },
}

/// One signing key.
struct Key {
    id: u8,
    key: hmac::Key,
}

/// The feedback keys: the first signs, all verify.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.id).collect();
        write!(f, "Keyring {{ key_ids: {ids:?}, secrets: <redacted> }}")
    }
}

impl Keyring {
    /// Reads the keys from a file (at most [`volley_files::CONFIG_MAX`] bytes).
    pub fn load_file(path: &Path) -> Result<Keyring, KeyError> {
        let text = volley_files::read_config_file(path, volley_files::CONFIG_MAX).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Keyring::parse(&text, &path.display().to_string())
    }

    /// Reads the keys from the environment variable `name`.
    pub fn load_env(name: &str) -> Result<Keyring, KeyError> {
        let text = std::env::var(name).map_err(|_| KeyError::MissingEnv { name: name.to_owned() })?;
        Keyring::parse(&text, &format!("${name}"))
    }

    /// Parses key lines; `source` names them in errors.
    pub fn parse(text: &str, source: &str) -> Result<Keyring, KeyError> {
        let mut keys: Vec<Key> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| KeyError::Line {
                origin: source.to_owned(),
                line: i + 1,
                reason,
            };
            let (id, secret) = line
                .split_once([' ', '\t'])
                .ok_or_else(|| bad("expected `<key id> <secret>`".into()))?;
            let id: u8 = id
                .parse()
                .ok()
                .filter(|id| *id <= MAX_KEY_ID)
                .ok_or_else(|| bad(format!("key id {id:?} is not a number from 0 to {MAX_KEY_ID}")))?;
            let secret = secret.trim();
            if secret.len() < MIN_SECRET_LEN {
                return Err(bad(format!(
                    "the secret of key {id} has {} characters; at least {MIN_SECRET_LEN} are needed",
                    secret.len()
                )));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(bad(format!("key id {id} is listed twice")));
            }
            keys.push(Key {
                id,
                key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                origin: source.to_owned(),
            });
        }
        Ok(Keyring { keys })
    }

    /// A keyring of one key (tests, fuzzing, programs that hold the secret already).
    pub fn single(id: u8, secret: &[u8]) -> Keyring {
        Keyring {
            keys: vec![Key {
                id: id & MAX_KEY_ID,
                key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            }],
        }
    }

    /// The id of the signing key.
    pub fn signing_id(&self) -> u8 {
        self.keys[0].id
    }

    /// The full HMAC-SHA256 of `data` under the signing key.
    pub(crate) fn sign(&self, data: &[u8]) -> hmac::Tag {
        hmac::sign(&self.keys[0].key, data)
    }

    /// The full HMAC-SHA256 of `data` under key `id`, if the keyring has it.
    pub(crate) fn sign_with(&self, id: u8, data: &[u8]) -> Option<hmac::Tag> {
        self.keys.iter().find(|k| k.id == id).map(|k| hmac::sign(&k.key, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn first_key_signs_and_debug_hides_secrets() {
        let ring = Keyring::parse(&format!("# rotated\n3 {SECRET}x\n\n1 {SECRET}\n"), "k").unwrap();
        assert_eq!(ring.signing_id(), 3);
        assert!(ring.sign_with(1, b"x").is_some());
        assert!(ring.sign_with(2, b"x").is_none());
        let shown = format!("{ring:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("[3, 1]"), "{shown}");
    }

    #[test]
    fn bad_lines_name_the_line_and_never_the_secret() {
        let short = "0 tooshort";
        let e = Keyring::parse(short, "keys.txt").unwrap_err().to_string();
        assert!(e.contains("keys.txt line 1") && e.contains("at least 32"), "{e}");
        assert!(!e.contains("tooshort"), "{e}");
        let e = Keyring::parse(&format!("\n16 {SECRET}"), "k").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("0 to 15"), "{e}");
        let e = Keyring::parse(&format!("1 {SECRET}\n1 {SECRET}"), "k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("twice"), "{e}");
        assert!(matches!(Keyring::parse("# none\n", "k"), Err(KeyError::Empty { .. })));
        assert!(matches!(Keyring::parse(SECRET, "k"), Err(KeyError::Line { .. })));
    }
}
