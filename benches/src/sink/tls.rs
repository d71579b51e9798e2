//! The sink's STARTTLS identity: a self-signed certificate generated at start.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

use super::error::SinkError;

/// The only name on the certificate a `wrong-name` TLS fault serves.
pub(crate) const WRONG_NAME: &str = "wrong-name.invalid";

/// A freshly generated certificate and the acceptor that serves it.
pub(crate) struct TlsIdentity {
    /// PEM of the certificate, for clients that must trust it.
    pub(crate) certificate_pem: String,
    /// DER of the certificate.
    pub(crate) certificate_der: CertificateDer<'static>,
    /// The server side of the handshake.
    pub(crate) acceptor: TlsAcceptor,
}

impl TlsIdentity {
    /// Generates a self-signed certificate valid for `hostname`, `localhost` and `ip` (or
    /// 127.0.0.1 when `ip` is unspecified), and a rustls server configuration using the ring
    /// provider explicitly, so the process-wide default provider does not matter.
    pub(crate) fn generate(hostname: &str, ip: IpAddr) -> Result<Self, SinkError> {
        let ip = if ip.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        };
        let mut names = vec![hostname.to_owned()];
        for name in ["localhost".to_owned(), ip.to_string()] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Self::for_names(names)
    }

    /// A self-signed certificate for exactly `names`.
    pub(crate) fn for_names(names: Vec<String>) -> Result<Self, SinkError> {
        // rcgen turns names that parse as IP addresses into iPAddress SANs.
        let rcgen::CertifiedKey { cert, key_pair } = rcgen::generate_simple_self_signed(names)?;
        let certificate_der = cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![certificate_der.clone()], key)?;
        config.alpn_protocols.clear();
        Ok(TlsIdentity {
            certificate_pem: cert.pem(),
            certificate_der,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}
