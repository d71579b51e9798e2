//! [`generate`]: a new DKIM key pair and the DNS record that publishes it, for
//! `volley dkim keygen`. Ed25519 comes from ring (RFC 8463: `p=` is the raw 32-byte key); RSA from
//! the `rsa` crate, since ring cannot generate RSA keys (`p=` is the SubjectPublicKeyInfo DER).

use std::io::Write;
use std::path::Path;

use mail_auth::common::crypto::Ed25519Key;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

use super::key::RSA_BITS;
use super::record::{split_txt, DkimPublicKey};
use super::{DkimAlgorithm, DkimError};

/// RSA modulus size when none is asked for (RFC 8301 §3.2 recommends at least 2048).
pub const DEFAULT_RSA_BITS: usize = 2048;

/// Which kind of key to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of `bits` (2048 to 4096).
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// Ed25519 (RFC 8463).
    Ed25519,
}

/// A generated key pair: the private key to keep and the TXT record to publish.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`), loadable by [`super::DkimSigners::load`].
    pub private_pem: String,
    /// Where to publish the record: `<selector>._domainkey.<domain>`.
    pub dns_name: String,
    /// The record text: `v=DKIM1; k=rsa; p=...`.
    pub txt_record: String,
    /// The record text cut into strings of at most 255 bytes, for zone files and DNS APIs that
    /// take one TXT record as several character-strings.
    pub txt_strings: Vec<String>,
    /// The public side, as [`super::DkimSigners::public_keys`] reports it.
    pub public_key: DkimPublicKey,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("GeneratedKey")
            .field("dns_name", &self.dns_name)
            .field("txt_record", &self.txt_record)
            .finish_non_exhaustive()
    }
}

impl GeneratedKey {
    /// The record as a zone-file line, e.g. `s1._domainkey.example.com. IN TXT ( "v=DKIM1; ..." "..." )`.
    pub fn zone_file_line(&self) -> String {
        self.public_key.zone_file_line()
    }

    /// Writes the private key to a new file `path`, readable by its owner only (mode 0600 on
    /// unix). Refuses to overwrite an existing file.
    pub fn write_private_key(&self, path: &Path) -> Result<(), DkimError> {
        let fail = |error| DkimError::WriteKey {
            path: path.to_owned(),
            error,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(fail)?;
        file.write_all(self.private_pem.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)
    }
}

/// Generates a key for `selector._domainkey.domain` (`domain` is lowercased).
pub fn generate(algorithm: KeyAlgorithm, domain: &str, selector: &str) -> Result<GeneratedKey, DkimError> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let fail = |reason: String| DkimError::Generate {
        domain: domain.clone(),
        selector: selector.to_owned(),
        reason,
    };
    if domain.is_empty() || selector.is_empty() || selector.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
        return Err(fail("need a domain and a selector without spaces or `;`".into()));
    }
    let (private_pem, dkim_algorithm, public_key) = match algorithm {
        KeyAlgorithm::Rsa { bits } => {
            if !RSA_BITS.contains(&bits) {
                return Err(fail(format!(
                    "{bits}-bit RSA: choose {} to {} bits",
                    RSA_BITS.start(),
                    RSA_BITS.end()
                )));
            }
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| fail(e.to_string()))?;
            let pem = private.to_pkcs8_pem(LineEnding::LF).map_err(|e| fail(e.to_string()))?;
            let spki = private
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| fail(e.to_string()))?;
            (pem.to_string(), DkimAlgorithm::RsaSha256, spki.into_vec())
        }
        KeyAlgorithm::Ed25519 => {
            let pkcs8 = Ed25519Key::generate_pkcs8().map_err(|e| fail(e.to_string()))?;
            let key = Ed25519Key::from_pkcs8_der(&pkcs8).map_err(|e| fail(e.to_string()))?;
            (
                pem_encode("PRIVATE KEY", &pkcs8),
                DkimAlgorithm::Ed25519Sha256,
                key.public_key(),
            )
        }
    };
    let public_key = DkimPublicKey {
        domain,
        selector: selector.to_owned(),
        algorithm: dkim_algorithm,
        public_key,
    };
    let txt_record = public_key.txt_record();
    Ok(GeneratedKey {
        private_pem,
        dns_name: public_key.dns_name(),
        txt_strings: split_txt(&txt_record).into_iter().map(str::to_owned).collect(),
        txt_record,
        public_key,
    })
}

/// RFC 7468 PEM: base64 in 64-character lines between BEGIN/END `label` lines.
fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    pem.push_str("-----BEGIN ");
    pem.push_str(label);
    pem.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END ");
    pem.push_str(label);
    pem.push_str("-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_record_carries_the_raw_32_byte_key() {
        let key = generate(KeyAlgorithm::Ed25519, "Example.COM.", "s1").unwrap();
        assert_eq!(key.dns_name, "s1._domainkey.example.com");
        assert!(key.txt_record.starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(key.public_key.public_key.len(), 32);
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(key.txt_strings, std::slice::from_ref(&key.txt_record));
    }

    #[test]
    fn refuses_small_rsa_and_bad_selectors() {
        assert!(matches!(
            generate(KeyAlgorithm::Rsa { bits: 1024 }, "example.com", "s1"),
            Err(DkimError::Generate { .. })
        ));
        assert!(generate(KeyAlgorithm::Ed25519, "example.com", "a b").is_err());
    }
}
