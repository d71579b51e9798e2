//! The `[warmup]` section of volley.toml. Per source IP, the warm-up settings sit next to the
//! IP (see [`crate::ipstate::IpWarmup`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::provider::ProviderGroup;
use crate::secret_url::SecretUrl;

/// Warm-up and traffic-shaping settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupConfig {
    /// Where curve files (`<name>.toml`) are, relative to the config file (the caller resolves
    /// it). Default `warmup` (next to volley.toml). A curve named by an IP is read from here;
    /// when the file does not exist, the curve shipped inside Volley of that name
    /// (conservative, standard, aggressive) is used.
    #[serde(default = "default_curves_dir")]
    pub curves_dir: PathBuf,
    /// Provider groups recognised from MX host names, in matching order; replaces the defaults
    /// (gmail, microsoft, yahoo; anything else is `other`).
    #[serde(default)]
    pub providers: Option<Vec<ProviderGroup>>,
    /// A backoff rules file replacing the shipped rules.
    #[serde(default)]
    pub backoff: Option<PathBuf>,
    /// Where daily and hourly counters live.
    #[serde(default)]
    pub counters: CounterBackend,
    /// How often the embedded store writes its file at most (it also writes at shutdown); with
    /// `counters = "redis"`, how often the counts of warm pairs are sent to Redis.
    #[serde(default = "default_flush_every", with = "humantime_serde")]
    pub flush_every: Duration,
    /// Rehearsal: the warm-up clock runs this many times faster than real time (1, the
    /// default, in production). A rehearsal against a sink with `speed = 3600` lives a warm-up
    /// hour per second: caps, pacing, day roll-over and backoff durations all follow it.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Rehearsal: the warm-up clock starts at this time (RFC 3339, e.g.
    /// `"2026-11-01T00:00:00Z"`) instead of now.
    #[serde(default, with = "humantime_serde")]
    pub clock_start: Option<SystemTime>,
    /// Rehearsal: the wall-clock time (RFC 3339) at which the warm-up clock shows
    /// `clock_start` (default: when the process starts). Processes rehearsing together with
    /// one anchor share one warm-up clock.
    #[serde(default, with = "humantime_serde")]
    pub clock_anchor: Option<SystemTime>,
    /// With `counters = "redis"`: the Redis URL (`"redis://:password@host:6379/0"`); when
    /// absent, `[suppression] redis` is used. Prints redacted.
    #[serde(default)]
    pub redis: Option<SecretUrl>,
    /// With `counters = "redis"`: the prefix of the keys, `{key_prefix}:warmup:{ip}:{group}:...`
    /// (default `"volley"`).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

/// Where counters live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterBackend {
    /// A file in the state directory (single node).
    #[default]
    Embedded,
    /// Redis, shared by every Volley process using it: processes that share a source IP share
    /// its budget (cluster-wide caps and smoothing).
    Redis,
}

fn default_curves_dir() -> PathBuf {
    PathBuf::from("warmup")
}

fn default_speed() -> f64 {
    1.0
}

fn default_flush_every() -> Duration {
    Duration::from_secs(5)
}

fn default_key_prefix() -> String {
    "volley".to_owned()
}

impl Default for WarmupConfig {
    fn default() -> WarmupConfig {
        WarmupConfig {
            curves_dir: default_curves_dir(),
            providers: None,
            backoff: None,
            counters: CounterBackend::default(),
            flush_every: default_flush_every(),
            speed: default_speed(),
            clock_start: None,
            clock_anchor: None,
            redis: None,
            key_prefix: default_key_prefix(),
        }
    }
}

impl WarmupConfig {
    /// The warm-up clock these settings describe, starting now.
    pub fn clock(&self) -> crate::clock::WarmupClock {
        crate::clock::WarmupClock::anchored(self.clock_start, self.speed, self.clock_anchor)
    }

    /// Checks values serde cannot: returns (field, value, reason) of the first problem.
    pub fn check(&self) -> Result<(), (String, String, String)> {
        if !(self.speed.is_finite() && self.speed > 0.0 && self.speed <= 1e7) {
            return Err((
                "warmup.speed".into(),
                self.speed.to_string(),
                "must be a number > 0 (1 = real time) and at most 10000000".into(),
            ));
        }
        if self.flush_every.is_zero() {
            return Err((
                "warmup.flush_every".into(),
                "0s".into(),
                "must be longer than zero".into(),
            ));
        }
        Ok(())
    }

    /// The provider groups in effect.
    pub fn provider_config(&self) -> crate::provider::ProviderConfig {
        self.providers
            .clone()
            .map(crate::provider::ProviderConfig)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides_parse() {
        assert_eq!(toml::from_str::<WarmupConfig>(""), Ok(WarmupConfig::default()));
        let c: WarmupConfig = toml::from_str(
            "curves_dir = \"curves\"\nbackoff = \"b.toml\"\ncounters = \"embedded\"\nflush_every = \"1s\"\n\
             [[providers]]\nname = \"corp\"\nmx_suffixes = [\"corp.example\"]",
        )
        .expect("config");
        assert_eq!(c.curves_dir, PathBuf::from("curves"));
        assert_eq!(c.provider_config().0[0].name, "corp");
        assert!(toml::from_str::<WarmupConfig>("curve_dir = \"x\"").is_err());
        assert!(toml::from_str::<WarmupConfig>("counters = \"memcached\"").is_err());
    }

    #[test]
    fn redis_counters_parse_and_print_without_the_password() {
        let c: WarmupConfig =
            toml::from_str("counters = \"redis\"\nredis = \"redis://:hunter2@127.0.0.1:6379/0\"\nkey_prefix = \"eu\"")
                .expect("config");
        assert_eq!(c.counters, CounterBackend::Redis);
        assert_eq!(
            c.redis.as_ref().map(SecretUrl::expose),
            Some("redis://:hunter2@127.0.0.1:6379/0")
        );
        assert_eq!(c.key_prefix, "eu");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("redis://:***@127.0.0.1:6379/0"),
            "{debug}"
        );
        assert_eq!(WarmupConfig::default().key_prefix, "volley");
    }
}
