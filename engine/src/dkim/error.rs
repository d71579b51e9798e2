//! [`DkimError`]: key loading, signing and key generation failures. Key errors name the domain,
//! the selector and the key file, so an operator can fix the right `[[dkim]]` entry.

use std::io;
use std::path::PathBuf;

/// Why a DKIM key could not be loaded or generated, or a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// A `[[dkim]]` entry is invalid (empty domain or selector, headers without `From`, ...).
    #[error("dkim key {selector}._domainkey.{domain}: invalid `{field}`: {reason}")]
    Config {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The config field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file could not be read.
    #[error("dkim key {selector}._domainkey.{domain}: cannot read {}: {error}", path.display())]
    ReadKey {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// Why: the OS error, not a regular file, or over the size cap.
        #[source]
        error: volley_files::FileError,
    },
    /// The key file holds no PEM private key (or an encrypted one).
    #[error("dkim key {selector}._domainkey.{domain}: {} is not a PEM private key: {reason}", path.display())]
    NotPem {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The key is of another algorithm than the declared `algorithm`.
    #[error(
        "dkim key {selector}._domainkey.{domain}: {} holds an {found} key but `algorithm` is {declared}",
        path.display()
    )]
    WrongAlgorithm {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// The algorithm the config declared.
        declared: &'static str,
        /// The algorithm the key file holds.
        found: &'static str,
    },
    /// An RSA key outside the sizes we sign with.
    #[error(
        "dkim key {selector}._domainkey.{domain}: {} is a {bits}-bit RSA key; \
         use 2048 to 4096 bits (RFC 8301 §3.2; ring signs with no fewer than 2048)",
        path.display()
    )]
    RsaKeySize {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// The modulus size.
        bits: usize,
    },
    /// The PEM decoded but the key inside is unusable.
    #[error("dkim key {selector}._domainkey.{domain}: bad key in {}: {reason}", path.display())]
    BadKey {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// What the crypto library said.
        reason: String,
    },
    /// The key loaded, but a test message signed with it did not verify against its own public key.
    #[error("dkim key {selector}._domainkey.{domain}: self-check of {} failed: {reason}", path.display())]
    SelfCheck {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// The key file.
        path: PathBuf,
        /// Why the round trip failed.
        reason: String,
    },
    /// A message could not be signed (e.g. it has none of the headers to sign).
    #[error("dkim signing for {selector}._domainkey.{domain} failed: {reason}")]
    Sign {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// What mail-auth said.
        reason: String,
    },
    /// A key pair could not be generated.
    #[error("dkim key generation for {selector}._domainkey.{domain} failed: {reason}")]
    Generate {
        /// The signing domain.
        domain: String,
        /// The selector.
        selector: String,
        /// Why.
        reason: String,
    },
    /// A generated private key could not be written.
    #[error("cannot write dkim key {}: {error}", path.display())]
    WriteKey {
        /// The key file.
        path: PathBuf,
        /// The OS error.
        #[source]
        error: io::Error,
    },
}

impl DkimError {
    /// True when the failure belongs to one message (it cannot be signed as it is), not to the
    /// configuration: the caller may reject that message and carry on.
    pub fn was_due_to_message(&self) -> bool {
        matches!(self, DkimError::Sign { .. })
    }

    /// True for failures found while loading keys or config at start (fix the `[[dkim]]` entry).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            DkimError::Config { .. }
                | DkimError::ReadKey { .. }
                | DkimError::NotPem { .. }
                | DkimError::WrongAlgorithm { .. }
                | DkimError::RsaKeySize { .. }
                | DkimError::BadKey { .. }
                | DkimError::SelfCheck { .. }
        )
    }
}
