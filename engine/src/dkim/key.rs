//! Reading one private key file: PEM -> algorithm detection -> size check -> a mail-auth key plus
//! the public key to publish. Every error names the domain, selector and file.

use std::path::Path;

use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use rsa::pkcs1::der::Decode;
use rsa::pkcs8::EncodePublicKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::{DkimAlgorithm, DkimError};

/// RSA modulus sizes we sign with. RFC 8301 §3.2 asks for at least 1024 bits and recommends
/// 2048; ring, which does the signing, refuses anything below 2048 and above 4096.
pub const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// `rsaEncryption` (RFC 8017 appendix C).
const OID_RSA: &str = "1.2.840.113549.1.1.1";
/// `id-Ed25519` (RFC 8410 §3).
const OID_ED25519: &str = "1.3.101.112";

/// A private key ready to sign, with what goes in its DNS record.
pub(crate) struct LoadedKey {
    /// The algorithm found in the file.
    pub algorithm: DkimAlgorithm,
    /// The signing key.
    pub key: DkimKey,
    /// The `p=` bytes: SubjectPublicKeyInfo DER for RSA, the raw 32-byte key for Ed25519.
    pub public_key: Vec<u8>,
    /// A warning for the operator (a key file readable by group or other), if any.
    pub warning: Option<String>,
}

/// Who a key belongs to, for error messages.
pub(crate) struct KeyOwner<'a> {
    /// The signing domain, lowercased.
    pub domain: &'a str,
    /// The selector.
    pub selector: &'a str,
    /// The key file.
    pub path: &'a Path,
}

impl KeyOwner<'_> {
    fn bad_key(&self, reason: impl ToString) -> DkimError {
        DkimError::BadKey {
            domain: self.domain.to_owned(),
            selector: self.selector.to_owned(),
            path: self.path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Reads and parses `owner.path`; with `declared`, refuses a key of another algorithm.
pub(crate) fn load_key(owner: &KeyOwner<'_>, declared: Option<DkimAlgorithm>) -> Result<LoadedKey, DkimError> {
    let pem =
        volley_files::read_config_bytes(owner.path, volley_files::PEM_MAX).map_err(|error| DkimError::ReadKey {
            domain: owner.domain.to_owned(),
            selector: owner.selector.to_owned(),
            path: owner.path.to_owned(),
            error,
        })?;
    let warning = loose_permissions(owner);
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| DkimError::NotPem {
        domain: owner.domain.to_owned(),
        selector: owner.selector.to_owned(),
        path: owner.path.to_owned(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no unencrypted `PRIVATE KEY` or `RSA PRIVATE KEY` section".to_owned()
            }
            other => other.to_string(),
        },
    })?;
    let found = match &der {
        PrivateKeyDer::Pkcs1(_) => DkimAlgorithm::RsaSha256,
        PrivateKeyDer::Pkcs8(pkcs8) => pkcs8_algorithm(owner, pkcs8.secret_pkcs8_der())?,
        PrivateKeyDer::Sec1(_) => return Err(owner.bad_key("EC (SEC1) keys cannot sign DKIM; use RSA or Ed25519")),
        _ => return Err(owner.bad_key("unsupported private key format")),
    };
    if let Some(declared) = declared.filter(|d| *d != found) {
        return Err(DkimError::WrongAlgorithm {
            domain: owner.domain.to_owned(),
            selector: owner.selector.to_owned(),
            path: owner.path.to_owned(),
            declared: declared.as_str(),
            found: found.as_str(),
        });
    }
    let (key, public_key) = match found {
        DkimAlgorithm::RsaSha256 => rsa_key(owner, der)?,
        DkimAlgorithm::Ed25519Sha256 => {
            // ring's strict parser wants PKCS#8 v2 (with the public key); OpenSSL writes v1.
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_der()).map_err(|e| owner.bad_key(e))?;
            let public_key = key.public_key();
            (DkimKey::Ed25519(key), public_key)
        }
    };
    Ok(LoadedKey {
        algorithm: found,
        key,
        public_key,
        warning,
    })
}

/// The algorithm named by a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_algorithm(owner: &KeyOwner<'_>, der: &[u8]) -> Result<DkimAlgorithm, DkimError> {
    let info = rsa::pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| owner.bad_key(e))?;
    match info.algorithm.oid.to_string().as_str() {
        OID_RSA => Ok(DkimAlgorithm::RsaSha256),
        OID_ED25519 => Ok(DkimAlgorithm::Ed25519Sha256),
        other => Err(owner.bad_key(format!(
            "PKCS#8 key of algorithm {other}; DKIM signs with RSA ({OID_RSA}) or Ed25519 ({OID_ED25519})"
        ))),
    }
}

/// An RSA key of an accepted size, and its SubjectPublicKeyInfo DER.
fn rsa_key(owner: &KeyOwner<'_>, der: PrivateKeyDer<'_>) -> Result<(DkimKey, Vec<u8>), DkimError> {
    let pkcs1 = match &der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            rsa::pkcs8::PrivateKeyInfo::from_der(pkcs8.secret_pkcs8_der())
                .map_err(|e| owner.bad_key(e))?
                .private_key
        }
        other => other.secret_der(),
    };
    let fields = rsa::pkcs1::RsaPrivateKey::from_der(pkcs1).map_err(|e| owner.bad_key(e))?;
    let n = rsa::BigUint::from_bytes_be(fields.modulus.as_bytes());
    let e = rsa::BigUint::from_bytes_be(fields.public_exponent.as_bytes());
    let bits = n.bits();
    if !RSA_BITS.contains(&bits) {
        return Err(DkimError::RsaKeySize {
            domain: owner.domain.to_owned(),
            selector: owner.selector.to_owned(),
            path: owner.path.to_owned(),
            bits,
        });
    }
    let public = rsa::RsaPublicKey::new(n, e).map_err(|e| owner.bad_key(e))?;
    let spki = public.to_public_key_der().map_err(|e| owner.bad_key(e))?;
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| owner.bad_key(e))?;
    Ok((DkimKey::Rsa(key), spki.into_vec()))
}

/// A warning when the key file is readable or writable by group or other (unix).
#[cfg(unix)]
fn loose_permissions(owner: &KeyOwner<'_>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(owner.path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "dkim key {}._domainkey.{}: {} has mode {:04o}, open to group/other; chmod 600 it",
            owner.selector,
            owner.domain,
            owner.path.display(),
            mode & 0o7777
        )
    })
}

/// Permissions are not checked off unix.
#[cfg(not(unix))]
fn loose_permissions(_owner: &KeyOwner<'_>) -> Option<String> {
    None
}
