//! Verified TLS for MTA-STS: the trust anchors (Mozilla roots plus an optional PEM file), the
//! connector for policy hosts, and the STARTTLS connectors of MX sessions under a policy:
//! `enforce` fails the handshake on a certificate that does not verify; `testing` completes it
//! and remembers what verification said (RFC 8461 §5: deliver, report).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::{FailureKind, StsFailure};
use crate::tls::{root_store, TlsSetupError};

/// TLS sessions remembered for resumption by `enforce` connections (each verified in full).
const SESSION_CACHE: usize = 1024;

/// The verified TLS contexts of MTA-STS, built once.
#[derive(Clone)]
pub struct StsTls {
    verifier: Arc<WebPkiServerVerifier>,
    enforce: TlsConnector,
    https: TlsConnector,
    /// `testing` connections clone this and put their own recording verifier in.
    testing: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for StsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsTls").finish_non_exhaustive()
    }
}

impl StsTls {
    /// Trusts the Mozilla roots and the certificates of `ca_file` (PEM), if given.
    pub fn new(ca_file: Option<&Path>) -> Result<StsTls, TlsSetupError> {
        let roots = Arc::new(root_store(ca_file)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
        let builder =
            || rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions();
        let mut enforce = builder()?.with_webpki_verifier(verifier.clone()).with_no_client_auth();
        enforce.resumption = rustls::client::Resumption::in_memory_sessions(SESSION_CACHE);
        let mut testing = builder()?.with_webpki_verifier(verifier.clone()).with_no_client_auth();
        // A resumed session skips verification: every `testing` handshake is a full one, so
        // that each is judged (and reported) on its own.
        testing.resumption = rustls::client::Resumption::disabled();
        Ok(StsTls {
            verifier,
            enforce: TlsConnector::from(Arc::new(enforce)),
            https: super::http::connector(roots)?,
            testing: Arc::new(testing),
        })
    }

    /// The connector for policy hosts (`mta-sts.<domain>`).
    pub fn https(&self) -> TlsConnector {
        self.https.clone()
    }

    /// The connector of an `enforce` session: a certificate that does not verify fails the
    /// handshake (see [`handshake_failure`]).
    pub(crate) fn enforce(&self) -> TlsConnector {
        self.enforce.clone()
    }

    /// A connector for one `testing` session, which accepts any certificate whose handshake
    /// signatures check out, and the verdict verification gave it.
    pub(crate) fn testing(&self) -> (TlsConnector, Arc<Verdict>) {
        let verdict = Arc::new(Verdict {
            verifier: self.verifier.clone(),
            failure: Mutex::new(None),
        });
        let mut config = rustls::ClientConfig::clone(&self.testing);
        config.dangerous().set_certificate_verifier(verdict.clone());
        (TlsConnector::from(Arc::new(config)), verdict)
    }
}

/// Verifies like `enforce` but accepts the certificate either way, keeping the failure.
#[derive(Debug)]
pub(crate) struct Verdict {
    verifier: Arc<WebPkiServerVerifier>,
    failure: Mutex<Option<rustls::Error>>,
}

impl Verdict {
    /// What verification said of the certificate (`None`: valid, or no handshake yet).
    pub(crate) fn failure(&self, mx: &str) -> Option<StsFailure> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.as_ref().map(|e| certificate_failure(mx, e))
    }
}

impl ServerCertVerifier for Verdict {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Err(e) = self
            .verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier.supported_verify_schemes()
    }
}

/// The MTA-STS failure behind a failed `enforce` handshake with `mx`.
pub(crate) fn handshake_failure(mx: &str, error: &std::io::Error) -> StsFailure {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(e) => certificate_failure(mx, e),
        None => StsFailure {
            kind: FailureKind::ValidationFailure,
            detail: format!("TLS handshake with {mx} failed: {error}"),
        },
    }
}

/// A rustls error as an RFC 8460 failure.
fn certificate_failure(mx: &str, error: &rustls::Error) -> StsFailure {
    let kind = match error {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                FailureKind::CertificateHostMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => FailureKind::CertificateExpired,
            CertificateError::UnknownIssuer | CertificateError::BadSignature => FailureKind::CertificateNotTrusted,
            _ => FailureKind::ValidationFailure,
        },
        _ => FailureKind::ValidationFailure,
    };
    StsFailure {
        kind,
        detail: format!("certificate of {mx} not valid: {error}"),
    }
}
