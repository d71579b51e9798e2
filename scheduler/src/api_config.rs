//! `[api]` in `volley.toml`: where `volley serve` listens (plain HTTP, or HTTPS with a
//! certificate and key), the bearer token every request must carry, and the only folder
//! campaigns may be launched from by path. The token is a secret: it is never printed
//! (`Debug` shows `***`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// `volley serve`'s HTTP control API.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API listens; loopback by default.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The bearer token, inline.
    #[serde(default)]
    pub token: Option<String>,
    /// Or a file holding it (relative to the config file); surrounding whitespace is ignored.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The folder `POST /campaigns {"path": …}` may launch campaign files from (relative to
    /// the config file; default `campaigns`). Paths leading out of it, by `..` or a symbolic
    /// link, are refused; inline campaigns resolve their relative paths against it.
    #[serde(default = "default_campaigns_dir")]
    pub campaigns_dir: PathBuf,
    /// PEM certificate chain for HTTPS (relative to the config file); with `tls_key`, the API
    /// speaks TLS only. Without both it is plain HTTP, fit for loopback only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (relative to the config file).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn default_campaigns_dir() -> PathBuf {
    PathBuf::from("campaigns")
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8025))
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            listen: default_listen(),
            token: None,
            token_file: None,
            campaigns_dir: default_campaigns_dir(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_file", &self.token_file)
            .field("campaigns_dir", &self.campaigns_dir)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

impl ApiConfig {
    /// Resolves the paths (`token_file`, `campaigns_dir`, `tls_cert`, `tls_key`) against the
    /// config file's folder.
    pub fn resolve(&mut self, base: &Path) {
        let files = [&mut self.token_file, &mut self.tls_cert, &mut self.tls_key];
        for file in files.into_iter().flatten().filter(|f| f.is_relative()) {
            *file = base.join(&*file);
        }
        if self.campaigns_dir.is_relative() {
            self.campaigns_dir = base.join(&self.campaigns_dir);
        }
    }

    /// The certificate and key files for HTTPS, `None` for plain HTTP, or why the pair is
    /// incomplete: (field, problem).
    pub fn tls_files(&self) -> Result<Option<(&Path, &Path)>, (&'static str, String)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(("api.tls_key", "tls_cert is set: give its key too".into())),
            (None, Some(_)) => Err(("api.tls_cert", "tls_key is set: give its certificate too".into())),
        }
    }

    /// Whether requests would cross the network in clear: a non-loopback `listen` without TLS.
    pub fn exposed_in_clear(&self, listen: SocketAddr) -> bool {
        !listen.ip().is_loopback() && self.tls_cert.is_none()
    }

    /// The token, or why there is none usable: (field, problem). The problem never contains
    /// the token.
    pub fn token(&self) -> Result<String, (&'static str, String)> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => return Err(("api.token", "give token or token_file, not both".into())),
            (Some(t), None) => t.trim().to_string(),
            (None, Some(file)) => volley_files::read_config_file(file, volley_files::CONFIG_MAX)
                .map_err(|e| ("api.token_file", format!("{}: {e}", file.display())))?
                .trim()
                .to_string(),
            (None, None) => {
                return Err((
                    "api.token",
                    "volley serve needs a bearer token: set [api] token or token_file".into(),
                ))
            }
        };
        if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err((
                "api.token",
                format!("must be at least {MIN_TOKEN_LEN} characters without spaces (value not shown)"),
            ));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules_and_no_leak_in_debug() {
        let mut api = ApiConfig {
            token: Some("s3cret-s3cret-s3cret".into()),
            ..ApiConfig::default()
        };
        assert_eq!(api.token().as_deref(), Ok("s3cret-s3cret-s3cret"));
        assert!(!format!("{api:?}").contains("s3cret"));
        api.token = Some("short".into());
        let (field, why) = api.token().expect_err("too short");
        assert_eq!(field, "api.token");
        assert!(!why.contains("short"), "{why}");
        api.token = None;
        assert!(api.token().is_err(), "a token is required");
        assert_eq!(api.listen, "127.0.0.1:8025".parse().expect("addr"));
        api.token_file = Some("/dev/zero".into());
        let (field, why) = api.token().expect_err("a device");
        assert_eq!(field, "api.token_file");
        assert!(why.contains("/dev/zero: not a regular file"), "{why}");
    }

    #[test]
    fn plain_http_beyond_loopback_is_flagged() {
        let mut api = ApiConfig::default();
        let any: SocketAddr = "0.0.0.0:8025".parse().expect("addr");
        assert!(!api.exposed_in_clear(api.listen));
        assert!(!api.exposed_in_clear("[::1]:8025".parse().expect("addr")));
        assert!(api.exposed_in_clear(any));
        api.tls_cert = Some("api.crt".into());
        api.tls_key = Some("api.key".into());
        assert!(!api.exposed_in_clear(any), "HTTPS may be exposed");
        assert!(api.tls_files().is_ok_and(|f| f.is_some()));
        api.tls_key = None;
        assert_eq!(api.tls_files().map_err(|(field, _)| field), Err("api.tls_key"));
    }
}
