//! `[api]` in `volley.toml`: where `volley serve` listens and the bearer token every request
//! must carry. The token is a secret: it is never printed (`Debug` shows `***`).

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
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl ApiConfig {
    /// Resolves `token_file` against the config file's folder.
    pub fn resolve(&mut self, base: &Path) {
        if let Some(file) = self.token_file.as_mut().filter(|f| f.is_relative()) {
            *file = base.join(&*file);
        }
    }

    /// The token, or why there is none usable: (field, problem). The problem never contains
    /// the token.
    pub fn token(&self) -> Result<String, (&'static str, String)> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => return Err(("api.token", "give token or token_file, not both".into())),
            (Some(t), None) => t.trim().to_string(),
            (None, Some(file)) => std::fs::read_to_string(file)
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
    }
}
