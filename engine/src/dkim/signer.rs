//! [`DkimSigners`]: every configured key, loaded and self-checked once at start, looked up by the
//! message's From domain when signing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

use mail_auth::common::crypto::DkimKey;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};

use super::config::DEFAULT_SIGNED_HEADERS;
use super::key::{load_key, KeyOwner};
use super::record::DkimPublicKey;
use super::selfcheck;
use super::{DkimError, DkimKeyConfig};

/// Room reserved per signature header: `h=` with the default list, `bh=` and an RSA-4096 `b=`.
const SIGNATURE_CAPACITY: usize = 1024;

/// One loaded key and the signature template built from its config.
struct KeySigner {
    public: DkimPublicKey,
    path: PathBuf,
    signer: DkimSigner<DkimKey, Done>,
}

impl KeySigner {
    /// Appends this key's `DKIM-Signature:` header (folded, CRLF-terminated) to `out`.
    fn sign_into(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DkimError> {
        let signature = self.signer.sign(message).map_err(|e| DkimError::Sign {
            domain: self.public.domain.clone(),
            selector: self.public.selector.clone(),
            reason: e.to_string(),
        })?;
        signature.write_header(out);
        Ok(())
    }
}

/// The configured DKIM keys, grouped by signing domain. Cheap to share (`Arc`) across threads;
/// signing takes `&self`.
pub struct DkimSigners {
    by_domain: HashMap<Box<str>, Vec<KeySigner>>,
}

impl std::fmt::Debug for DkimSigners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigners")
            .field("keys", &self.public_keys().map(|k| k.dns_name()).collect::<Vec<_>>())
            .finish()
    }
}

impl DkimSigners {
    /// No keys: every message passes unsigned.
    pub fn empty() -> DkimSigners {
        DkimSigners {
            by_domain: HashMap::new(),
        }
    }

    /// Loads every key of `configs` (the `[[dkim]]` entries), in order; two entries for one domain
    /// sign each message twice (e.g. RSA and Ed25519, RFC 8463 §5). Each key signs a test message
    /// that is verified against its own public key before it is accepted. Returns the signers and
    /// warnings for the operator (key files open to group/other), or the first error.
    pub fn load(configs: &[DkimKeyConfig]) -> Result<(DkimSigners, Vec<String>), DkimError> {
        let mut signers = DkimSigners::empty();
        let mut warnings = Vec::new();
        let mut authenticator = None;
        for config in configs {
            let signer = load_one(config, &mut warnings)?;
            let verifier =
                match &mut authenticator {
                    Some(verifier) => verifier,
                    None => authenticator.insert(selfcheck::offline_authenticator().map_err(|reason| {
                        DkimError::SelfCheck {
                            domain: signer.public.domain.clone(),
                            selector: signer.public.selector.clone(),
                            path: signer.path.clone(),
                            reason,
                        }
                    })?),
                };
            self_check(&signer, verifier)?;
            signers
                .by_domain
                .entry(signer.public.domain.clone().into_boxed_str())
                .or_default()
                .push(signer);
        }
        Ok((signers, warnings))
    }

    /// The `DKIM-Signature:` header(s) to prepend to `message`, one per key of `from_domain`
    /// (folded, each ending in CRLF), or `None` when no key is configured for that domain.
    /// `from_domain` matches a configured `domain` exactly, ignoring case and a trailing dot;
    /// parent domains are not tried.
    pub fn sign(&self, from_domain: &str, message: &[u8]) -> Result<Option<Vec<u8>>, DkimError> {
        let Some(keys) = self.keys_for(from_domain) else {
            return Ok(None);
        };
        let mut headers = Vec::with_capacity(SIGNATURE_CAPACITY * keys.len());
        for key in keys {
            key.sign_into(message, &mut headers)?;
        }
        Ok(Some(headers))
    }

    /// `message` with its signature header(s) in front, in one buffer; `message` itself, untouched,
    /// when no key is configured for `from_domain`.
    pub fn sign_message(&self, from_domain: &str, message: Vec<u8>) -> Result<Vec<u8>, DkimError> {
        let Some(keys) = self.keys_for(from_domain) else {
            return Ok(message);
        };
        let mut signed = Vec::with_capacity(SIGNATURE_CAPACITY * keys.len() + message.len());
        for key in keys {
            key.sign_into(&message, &mut signed)?;
        }
        signed.extend_from_slice(&message);
        Ok(signed)
    }

    /// True when a key is configured for `from_domain` (same matching as [`DkimSigners::sign`]).
    pub fn has_key_for(&self, from_domain: &str) -> bool {
        self.keys_for(from_domain).is_some()
    }

    /// Number of loaded keys.
    pub fn len(&self) -> usize {
        self.by_domain.values().map(Vec::len).sum()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// The public side of every key, for `volley dkim` to print the records to publish.
    pub fn public_keys(&self) -> impl Iterator<Item = &DkimPublicKey> {
        self.by_domain.values().flatten().map(|k| &k.public)
    }

    fn keys_for(&self, from_domain: &str) -> Option<&[KeySigner]> {
        let domain = from_domain.strip_suffix('.').unwrap_or(from_domain);
        let domain = if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(domain.to_ascii_lowercase())
        } else {
            Cow::Borrowed(domain)
        };
        self.by_domain.get(domain.as_ref()).map(Vec::as_slice)
    }
}

/// Validates one entry and loads its key.
fn load_one(config: &DkimKeyConfig, warnings: &mut Vec<String>) -> Result<KeySigner, DkimError> {
    let domain = config.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let selector = config.selector.trim().to_owned();
    let invalid = |field: &'static str, reason: &str| DkimError::Config {
        domain: domain.clone(),
        selector: selector.clone(),
        field,
        reason: reason.to_owned(),
    };
    if domain.is_empty() || !domain.contains('.') || domain.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
        return Err(invalid("domain", "expected a domain name such as example.com"));
    }
    if selector.is_empty() || selector.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
        return Err(invalid(
            "selector",
            "expected a selector such as s2025 (no spaces or `;`)",
        ));
    }
    let headers: Vec<String> = match &config.headers {
        Some(headers) => {
            if !headers.iter().any(|h| h.trim().eq_ignore_ascii_case("from")) {
                return Err(invalid("headers", "must include From (RFC 6376 §5.4)"));
            }
            if let Some(bad) = headers.iter().find(|h| !is_field_name(h.trim())) {
                return Err(invalid("headers", &format!("{bad:?} is not a header field name")));
            }
            headers.iter().map(|h| h.trim().to_owned()).collect()
        }
        None => DEFAULT_SIGNED_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
    };
    let owner = KeyOwner {
        domain: &domain,
        selector: &selector,
        path: &config.key,
    };
    let loaded = load_key(&owner, config.algorithm)?;
    warnings.extend(loaded.warning);
    let mut signer = DkimSigner::from_key(loaded.key)
        .domain(domain.clone())
        .selector(selector.clone())
        .headers(headers)
        .header_canonicalization(config.canonicalization.header)
        .body_canonicalization(config.canonicalization.body);
    if let Some(expire) = config.expire {
        signer = signer.expiration(expire.as_secs().max(1));
    }
    Ok(KeySigner {
        public: DkimPublicKey {
            domain,
            selector,
            algorithm: loaded.algorithm,
            public_key: loaded.public_key,
        },
        path: config.key.clone(),
        signer,
    })
}

/// Signs [`selfcheck::test_message`] and verifies it against the key's own record.
fn self_check(signer: &KeySigner, verifier: &mail_auth::MessageAuthenticator) -> Result<(), DkimError> {
    let fail = |reason: String| DkimError::SelfCheck {
        domain: signer.public.domain.clone(),
        selector: signer.public.selector.clone(),
        path: signer.path.clone(),
        reason,
    };
    let message = selfcheck::test_message(&signer.public.domain);
    let mut signed = Vec::with_capacity(SIGNATURE_CAPACITY + message.len());
    signer
        .sign_into(&message, &mut signed)
        .map_err(|e| fail(e.to_string()))?;
    signed.extend_from_slice(&message);
    selfcheck::verify_offline(verifier, &signer.public, &signed).map_err(fail)
}

/// RFC 5322 §3.6.8: printable ASCII except `:`.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}
