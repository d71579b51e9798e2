//! STARTTLS client side (RFC 3207) with tokio-rustls and the `ring` provider.
//!
//! Opportunistic TLS (RFC 7435) encrypts without authenticating the server, as MTAs do by
//! default: an MX certificate rarely matches its name. With `verify_certificates` the chain and
//! name are checked against the Mozilla roots (webpki-roots) plus an optional CA file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::mta_sts::{CheckSender, StsMode, StsRoute, StsTls};

/// TLS sessions remembered for resumption, one per MX host name (rustls's default is 256; a
/// sender talks to many more hosts).
const TLS_SESSION_CACHE: usize = 4096;

/// When to use STARTTLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never use STARTTLS.
    Disabled,
    /// Use STARTTLS when the server offers it; send in clear otherwise (and after a failed
    /// handshake, on a new connection).
    #[default]
    Opportunistic,
    /// Never send in clear: a server that does not offer STARTTLS, or whose handshake fails,
    /// gets the message deferred.
    Required,
}

/// A TLS setup problem found at start (so a bad config refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client's TLS context, built once and shared by every session (clones share it, and
/// with it the TLS session cache that lets reconnects resume).
#[derive(Clone)]
pub struct TlsClient {
    policy: TlsPolicy,
    connector: TlsConnector,
    /// The verified contexts of MTA-STS and where session verdicts go (none: MTA-STS off).
    mta_sts: Option<Arc<StsContext>>,
    /// The MTA-STS policy of this client's route, if any.
    route: Option<Arc<StsRoute>>,
}

/// What sessions under an MTA-STS policy use: the verified TLS contexts, and the channel
/// their [`crate::mta_sts::SessionCheck`]s go to.
#[derive(Debug)]
pub struct StsContext {
    /// The verified TLS contexts.
    pub tls: StsTls,
    /// Where session verdicts go (none: not reported).
    pub checks: Option<CheckSender>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("policy", &self.policy)
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Builds the TLS context. `ca_file` adds trust anchors (PEM) to the Mozilla roots when
    /// `verify_certificates` is on.
    pub fn new(
        policy: TlsPolicy,
        verify_certificates: bool,
        ca_file: Option<&Path>,
    ) -> Result<TlsClient, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder =
            rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let mut config = if verify_certificates {
            let roots = root_store(ca_file)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        };
        // One cache in the one config every connection shares: a reconnect to a host resumes
        // its TLS session (RFC 8446 §2.2 tickets, RFC 5077 / session IDs for TLS 1.2) and
        // skips the full handshake's certificate exchange and key agreement.
        config.resumption = rustls::client::Resumption::in_memory_sessions(TLS_SESSION_CACHE);
        Ok(TlsClient {
            policy,
            connector: TlsConnector::from(Arc::new(config)),
            mta_sts: None,
            route: None,
        })
    }

    /// The same client, able to carry MTA-STS routes: `tls` verifies their MX hosts, and
    /// each of their sessions' verdicts goes to `checks`.
    pub fn with_mta_sts(mut self, tls: StsTls, checks: Option<CheckSender>) -> TlsClient {
        self.mta_sts = Some(Arc::new(StsContext { tls, checks }));
        self
    }

    /// The same context for a route under MTA-STS policy `route`: `enforce` makes STARTTLS
    /// required (and verified, see [`crate::smtp::session`]).
    pub fn for_route(&self, route: Arc<StsRoute>) -> TlsClient {
        let policy = match route.mode {
            StsMode::Enforce => TlsPolicy::Required,
            _ => self.policy,
        };
        TlsClient {
            policy,
            route: Some(route),
            ..self.clone()
        }
    }

    /// The route's MTA-STS policy and the context to meet it with.
    pub fn mta_sts(&self) -> Option<(&Arc<StsRoute>, Option<&StsContext>)> {
        self.route.as_ref().map(|r| (r, self.mta_sts.as_deref()))
    }

    /// The policy.
    pub fn policy(&self) -> TlsPolicy {
        self.policy
    }

    /// The same context (trust anchors, session cache) under another policy: a destination
    /// with its own `tls` setting.
    pub fn with_policy(&self, policy: TlsPolicy) -> TlsClient {
        TlsClient { policy, ..self.clone() }
    }

    /// The connector used for the handshake.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name to present in SNI and to verify: the MX host name when it is a DNS name,
    /// otherwise its IP address.
    pub fn server_name(host: &str, ip: std::net::IpAddr) -> ServerName<'static> {
        ServerName::try_from(host.to_string()).unwrap_or(ServerName::IpAddress(ip.into()))
    }
}

/// The Mozilla roots (webpki-roots) plus the certificates of `ca_file` (PEM), if given.
pub(crate) fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::CaFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let err = |reason: String| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = volley_files::read_config_bytes(path, volley_files::PEM_MAX).map_err(|e| err(e.to_string()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Accepts any certificate but still checks the handshake signatures (opportunistic TLS).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
