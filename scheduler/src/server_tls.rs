//! Server certificates from PEM files, for Volley's listeners (the HTTP API's HTTPS, the
//! inbound listener's STARTTLS): the chain and key read through `volley-files` (size-capped,
//! regular files only), rustls with the ring provider and its safe protocol versions.

use std::path::Path;
use std::sync::Arc;

/// Why a certificate or key cannot be used; the message names the setting and the file.
#[derive(Debug, thiserror::Error)]
#[error("{setting} {}: {reason}", path.display())]
pub struct ServerTlsError {
    /// The setting that names the file, e.g. `[api] tls_cert`.
    pub setting: String,
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// A rustls server configuration from a PEM certificate chain and its private key. `table` names
/// the settings in errors (`api`, `inbound`).
pub fn server_config(table: &str, cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServerTlsError> {
    let err = |field: &str, path: &Path, reason: String| ServerTlsError {
        setting: format!("[{table}] {field}"),
        path: path.to_path_buf(),
        reason,
    };
    let pem = |field: &str, path: &Path| {
        volley_files::read_config_bytes(path, volley_files::PEM_MAX).map_err(|e| err(field, path, e.to_string()))
    };
    let chain = rustls_pemfile::certs(&mut pem("tls_cert", cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("tls_cert", cert, format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(err("tls_cert", cert, "no PEM certificate found".into()));
    }
    let private = rustls_pemfile::private_key(&mut pem("tls_key", key)?.as_slice())
        .map_err(|e| err("tls_key", key, format!("not PEM: {e}")))?
        .ok_or_else(|| err("tls_key", key, "no PEM private key found".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("tls_cert", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| err("tls_key", key, format!("does not go with tls_cert: {e}")))
}
