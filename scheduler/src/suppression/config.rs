//! [`SuppressionConfig`]: the `[suppression]` table of `volley.toml`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::entry::SoftPolicy;
use super::error::{redact_url, SuppressionError};

/// What to do when the suppression store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Fail closed (the default): stop taking new recipients and retry until the store answers.
    #[default]
    Pause,
    /// Fail open: send without checking. Dangerous — suppressed addresses (hard bounces,
    /// unsubscribes, complaints) get mailed while the store is down.
    Send,
}

/// The `[suppression]` table. Every field has a default, so an empty table (or none) means
/// "embedded store in the state directory, fail closed".
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressionConfig {
    /// Redis URL (`"redis://127.0.0.1:6379/0"`, `"redis://:password@host/0"`). When absent the
    /// embedded store `<state_dir>/suppression.redb` is used (one process opens it; `volley
    /// suppress` reaches it through that process's `<state_dir>/suppression.sock`).
    pub redis: Option<String>,
    /// Key prefix in Redis: keys are `{prefix}:suppressed:{scope}` and `{prefix}:soft:{scope}`.
    pub prefix: String,
    /// `"pause"` (default, fail closed) or `"send"` (fail open, dangerous).
    pub on_unavailable: OnUnavailable,
    /// Soft bounces within `soft_bounce_window` that suppress an address (default 3).
    pub soft_bounce_limit: u32,
    /// The soft-bounce window (default `"7d"`).
    #[serde(with = "humantime_serde")]
    pub soft_bounce_window: Duration,
    /// Addresses per lookup round trip and updates per write (default 500).
    pub batch: usize,
    /// Unwritten updates beyond which the dispatcher pauses new mail (default 100000).
    pub max_buffered_updates: usize,
}

impl Default for SuppressionConfig {
    fn default() -> Self {
        SuppressionConfig {
            redis: None,
            prefix: "volley".to_owned(),
            on_unavailable: OnUnavailable::Pause,
            soft_bounce_limit: 3,
            soft_bounce_window: Duration::from_secs(7 * 86_400),
            batch: 500,
            max_buffered_updates: 100_000,
        }
    }
}

impl fmt::Debug for SuppressionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuppressionConfig")
            .field("redis", &self.redis.as_deref().map(redact_url))
            .field("prefix", &self.prefix)
            .field("on_unavailable", &self.on_unavailable)
            .field("soft_bounce_limit", &self.soft_bounce_limit)
            .field("soft_bounce_window", &self.soft_bounce_window)
            .field("batch", &self.batch)
            .field("max_buffered_updates", &self.max_buffered_updates)
            .finish()
    }
}

impl SuppressionConfig {
    /// Checks the values; errors name the field (`suppression.batch = 0: ...`).
    pub fn validate(&self) -> Result<(), SuppressionError> {
        let bad = |field, value: String, message: &str| {
            Err(SuppressionError::Config {
                field,
                value,
                message: message.to_owned(),
            })
        };
        if self.prefix.is_empty() || self.prefix.chars().any(|c| c.is_whitespace() || c == '*') {
            return bad(
                "prefix",
                format!("{:?}", self.prefix),
                "must be non-empty, without spaces or '*'",
            );
        }
        if self.soft_bounce_limit == 0 {
            return bad("soft_bounce_limit", "0".into(), "must be at least 1");
        }
        if self.soft_bounce_window.as_secs() == 0 {
            return bad(
                "soft_bounce_window",
                format!("{:?}", self.soft_bounce_window),
                "must be at least 1s",
            );
        }
        if self.batch == 0 {
            return bad("batch", "0".into(), "must be at least 1");
        }
        if self.max_buffered_updates == 0 {
            return bad("max_buffered_updates", "0".into(), "must be at least 1");
        }
        Ok(())
    }

    /// The soft-bounce rule these settings describe.
    pub fn soft_policy(&self) -> SoftPolicy {
        SoftPolicy {
            limit: self.soft_bounce_limit,
            window: self.soft_bounce_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let c: SuppressionConfig = toml::from_str("").unwrap();
        assert_eq!(c, SuppressionConfig::default());
        let c: SuppressionConfig = toml::from_str(
            "redis = \"redis://:pw@127.0.0.1:6379/0\"\non_unavailable = \"send\"\nsoft_bounce_window = \"3d\"",
        )
        .unwrap();
        assert_eq!(c.on_unavailable, OnUnavailable::Send);
        assert_eq!(c.soft_bounce_window, Duration::from_secs(3 * 86_400));
        assert!(!format!("{c:?}").contains("pw"));
        assert!(toml::from_str::<SuppressionConfig>("bogus = 1").is_err());
        let c = SuppressionConfig { batch: 0, ..c };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("suppression.batch = 0"));
    }
}
