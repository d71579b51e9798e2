//! [`DkimKeyConfig`]: one `[[dkim]]` entry of `volley.toml`.
//!
//! ```toml
//! [[dkim]]
//! domain = "news.example.com"
//! selector = "s2025"
//! key = "/etc/volley/dkim/s2025.pem"
//! # algorithm = "rsa-sha256"        # or "ed25519-sha256"; detected from the PEM when absent
//! # canonicalization = "relaxed/relaxed"
//! # expire = "7d"
//!
//! [[dkim]]                           # same domain again: dual signing (RFC 8463 §5)
//! domain = "news.example.com"
//! selector = "s2025e"
//! key = "/etc/volley/dkim/s2025e.pem"
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mail_auth::dkim::Canonicalization;
use serde::Deserialize;

/// The header fields signed unless an entry names its own, in the order they are looked up.
///
/// RFC 6376 §5.4.1: From is required; Subject, Date, To, Cc, Reply-To, Message-ID, the MIME and
/// List-* fields are recommended. RFC 8058 §3.1 requires List-Unsubscribe and
/// List-Unsubscribe-Post to be signed. A name listed twice is oversigned (RFC 6376 §8.15): the
/// extra, empty instance stops a second From/Subject/Reply-To/List-Unsubscribe being added in
/// transit. Fields absent from a message are still named in `h=`, which signs their absence.
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Reply-To",
    "Subject",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Unsubscribe-Post",
    "Feedback-ID",
];

/// One DKIM signing key: the `[[dkim]]` array of `volley.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// The From domain this key signs for, and the `d=` tag. Matched exactly (case-insensitively)
    /// against the From domain of each message: a key for `example.com` does not sign mail from
    /// `news.example.com`; give that domain its own entry.
    pub domain: String,
    /// The selector (`s=` tag); the public key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PEM file holding the private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8
    /// (`BEGIN PRIVATE KEY`) RSA, or PKCS#8 Ed25519. Should be readable by its owner only.
    pub key: PathBuf,
    /// The signing algorithm; detected from the key when absent, checked against it when given.
    #[serde(default)]
    pub algorithm: Option<DkimAlgorithm>,
    /// Header fields to sign (`h=`), each looked up case-insensitively; must include `From`.
    /// Defaults to [`DEFAULT_SIGNED_HEADERS`].
    #[serde(default)]
    pub headers: Option<Vec<String>>,
    /// `header/body` canonicalization (`c=` tag, RFC 6376 §3.4): `relaxed/relaxed` (default),
    /// `simple/simple`, `relaxed/simple` or `simple/relaxed`.
    #[serde(default)]
    pub canonicalization: DkimCanonicalization,
    /// Signature lifetime: sets `x=` to signing time plus this (e.g. `"7d"`). No `x=` when absent.
    #[serde(default, with = "humantime_serde")]
    pub expire: Option<Duration>,
}

/// A DKIM signing algorithm (`a=` tag).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Hash)]
pub enum DkimAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376 §3.3.1).
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    /// Ed25519 over the SHA-256 hash (RFC 8463).
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

impl DkimAlgorithm {
    /// The `a=` value, e.g. `rsa-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa-sha256",
            DkimAlgorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    /// The `k=` value of the key's DNS record (RFC 6376 §3.6.1, RFC 8463 §4).
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa",
            DkimAlgorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

impl fmt::Display for DkimAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header and body canonicalization, written `header/body` (RFC 6376 §3.5 `c=` tag).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(try_from = "String")]
pub struct DkimCanonicalization {
    /// Header canonicalization.
    pub header: Canonicalization,
    /// Body canonicalization.
    pub body: Canonicalization,
}

impl DkimCanonicalization {
    /// Parses `relaxed/relaxed`, `simple/relaxed`, ...; a lone `simple` or `relaxed` sets the
    /// header algorithm and leaves the body `simple`, as RFC 6376 §3.5 reads a missing half.
    pub fn parse(text: &str) -> Result<DkimCanonicalization, String> {
        let one = |part: &str| match part.trim().to_ascii_lowercase().as_str() {
            "relaxed" => Ok(Canonicalization::Relaxed),
            "simple" => Ok(Canonicalization::Simple),
            other => Err(format!(
                "unknown canonicalization {other:?} in {text:?} (use relaxed or simple, as header/body)"
            )),
        };
        match text.split_once('/') {
            Some((header, body)) => Ok(DkimCanonicalization {
                header: one(header)?,
                body: one(body)?,
            }),
            None => Ok(DkimCanonicalization {
                header: one(text)?,
                body: Canonicalization::Simple,
            }),
        }
    }
}

impl TryFrom<String> for DkimCanonicalization {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        DkimCanonicalization::parse(&text)
    }
}

impl fmt::Display for DkimCanonicalization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |c: Canonicalization| match c {
            Canonicalization::Relaxed => "relaxed",
            Canonicalization::Simple => "simple",
        };
        write!(f, "{}/{}", name(self.header), name(self.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_entry() {
        let config: DkimKeyConfig = toml::from_str(
            r#"
            domain = "Example.COM"
            selector = "s1"
            key = "/k.pem"
            algorithm = "ed25519-sha256"
            headers = ["From", "Subject"]
            canonicalization = "simple/relaxed"
            expire = "7d"
            "#,
        )
        .unwrap();
        assert_eq!(config.algorithm, Some(DkimAlgorithm::Ed25519Sha256));
        assert_eq!(config.canonicalization.header, Canonicalization::Simple);
        assert_eq!(config.canonicalization.body, Canonicalization::Relaxed);
        assert_eq!(config.expire, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(config.canonicalization.to_string(), "simple/relaxed");
    }

    #[test]
    fn defaults_to_relaxed_relaxed_and_detection() {
        let config: DkimKeyConfig = toml::from_str("domain = \"a.test\"\nselector = \"s\"\nkey = \"k\"").unwrap();
        assert_eq!(config.canonicalization.to_string(), "relaxed/relaxed");
        assert_eq!(config.algorithm, None);
        assert_eq!(config.headers, None);
        assert_eq!(config.expire, None);
    }

    #[test]
    fn refuses_unknown_fields_algorithms_and_canonicalizations() {
        let base = "domain = \"a.test\"\nselector = \"s\"\nkey = \"k\"\n";
        for extra in [
            "colour = 1",
            "algorithm = \"rsa-sha1\"",
            "canonicalization = \"loose/simple\"",
        ] {
            let text = format!("{base}{extra}");
            assert!(toml::from_str::<DkimKeyConfig>(&text).is_err(), "{extra} accepted");
        }
    }

    #[test]
    fn a_lone_canonicalization_means_a_simple_body() {
        let c = DkimCanonicalization::parse("relaxed").unwrap();
        assert_eq!(c.to_string(), "relaxed/simple");
    }
}
