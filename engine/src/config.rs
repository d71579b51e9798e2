//! The engine's settings: the `[smtp]` table of `volley.toml`.

use std::path::PathBuf;
use std::time::Duration;

use crate::smtp::reply::DEFAULT_MAX_REPLY_SIZE;
use crate::smtp::session::SessionParams;
use crate::timeouts::Timeouts;
use crate::tls::{TlsClient, TlsPolicy, TlsSetupError};

/// How the engine talks SMTP and pools connections. A route carrying a
/// [`crate::pool::policy::RoutePolicy`] (a destination's settings) uses that policy's values
/// instead of `tls`, the per-host connection counts, `max_messages_per_connection`,
/// `max_recipients_per_transaction` and `idle_timeout`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// STARTTLS policy: `disabled`, `opportunistic` (default) or `required`.
    pub tls: TlsPolicy,
    /// Verify server certificates (chain and name) against the Mozilla roots and `ca_file`.
    pub verify_certificates: bool,
    /// Extra trust anchors (PEM) for `verify_certificates`.
    pub ca_file: Option<PathBuf>,
    /// Most connections open at once per (source IP, MX host): the ceiling of the limit each
    /// route learns from its receiver.
    pub max_connections_per_host: usize,
    /// Connections a (source IP, MX host) route may open before any has delivered; the limit
    /// grows by one per that many successful deliveries while every connection is busy.
    pub initial_connections_per_host: usize,
    /// After a receiver refused a connection (its cap), how long the route's limit holds
    /// before one more connection is tried; then one step per interval.
    #[serde(with = "humantime_serde")]
    pub concurrency_probe_interval: Duration,
    /// Most connections open at once over the whole pool (every source IP and MX host). When
    /// the pool is at this cap, connections with nothing queued are closed at once for the
    /// deliveries waiting for one.
    pub max_connections: usize,
    /// Messages sent on one connection before it is closed and a fresh one opened.
    pub max_messages_per_connection: usize,
    /// Most recipients in one transaction (RFC 5321 §4.5.3.1.8 requires servers to take 100).
    pub max_recipients_per_transaction: usize,
    /// Deliveries queued per (source IP, MX host) before submitters wait (back-pressure).
    pub queue_per_host: usize,
    /// How long an unused connection stays open.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest reply accepted from a server, in octets (bounds memory per connection).
    pub max_reply_size: usize,
    /// Per-phase timeouts (RFC 5321 §4.5.3.2 defaults).
    pub timeouts: Timeouts,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            tls: TlsPolicy::Opportunistic,
            verify_certificates: false,
            ca_file: None,
            max_connections_per_host: 32,
            initial_connections_per_host: 2,
            concurrency_probe_interval: Duration::from_secs(60),
            max_connections: 1000,
            max_messages_per_connection: 1000,
            max_recipients_per_transaction: 100,
            queue_per_host: 256,
            idle_timeout: Duration::from_secs(30),
            max_reply_size: DEFAULT_MAX_REPLY_SIZE,
            timeouts: Timeouts::default(),
        }
    }
}

/// A setting that makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A count that must be at least one.
    #[error("smtp.{field} must be at least 1 (got {value})")]
    Zero {
        /// The field name.
        field: &'static str,
        /// The value given.
        value: usize,
    },
    /// A phase timeout of zero: every attempt would time out in that phase (a zero
    /// `data_end` defers every message after the server took it).
    #[error("smtp.timeouts.{field} must be longer than zero")]
    ZeroTimeout {
        /// The field name in `[smtp.timeouts]`.
        field: &'static str,
    },
    /// `max_reply_size` below what any server's EHLO reply needs.
    #[error("smtp.max_reply_size must be at least 1024 (got {0})")]
    ReplyCap(usize),
    /// The TLS settings could not be used.
    #[error("smtp TLS settings: {0}")]
    Tls(#[from] TlsSetupError),
}

impl ConfigError {
    /// The field path in `volley.toml` the error is about, e.g. `smtp.timeouts.data_end`.
    pub fn field(&self) -> String {
        match self {
            ConfigError::Zero { field, .. } => format!("smtp.{field}"),
            ConfigError::ZeroTimeout { field } => format!("smtp.timeouts.{field}"),
            ConfigError::ReplyCap(_) => "smtp.max_reply_size".into(),
            ConfigError::Tls(_) => "smtp.ca_file".into(),
        }
    }
}

impl SmtpConfig {
    /// Checks the values and builds the session parameters (TLS context included).
    pub fn session_params(&self) -> Result<SessionParams, ConfigError> {
        if let Some(first) = self.problems().into_iter().next() {
            return Err(first);
        }
        let tls = TlsClient::new(self.tls, self.verify_certificates, self.ca_file.as_deref())?;
        Ok(SessionParams {
            timeouts: self.timeouts.clone(),
            tls,
            max_reply_size: self.max_reply_size,
        })
    }

    /// Every value that cannot work (the TLS files are not read here).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("max_connections_per_host", self.max_connections_per_host),
            ("initial_connections_per_host", self.initial_connections_per_host),
            ("max_connections", self.max_connections),
            ("max_messages_per_connection", self.max_messages_per_connection),
            ("max_recipients_per_transaction", self.max_recipients_per_transaction),
            ("queue_per_host", self.queue_per_host),
        ] {
            if value == 0 {
                problems.push(ConfigError::Zero { field, value });
            }
        }
        for (field, value) in self.timeouts.fields() {
            if value.is_zero() {
                problems.push(ConfigError::ZeroTimeout { field });
            }
        }
        if self.max_reply_size < 1024 {
            problems.push(ConfigError::ReplyCap(self.max_reply_size));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_are_refused_by_field() {
        let mut config = SmtpConfig::default();
        assert!(config.problems().is_empty());
        config.timeouts.data_end = Duration::ZERO;
        config.timeouts.connect = Duration::ZERO;
        config.queue_per_host = 0;
        let fields: Vec<String> = config.problems().iter().map(ConfigError::field).collect();
        assert_eq!(
            fields,
            ["smtp.queue_per_host", "smtp.timeouts.connect", "smtp.timeouts.data_end"]
        );
        let e = config.session_params().err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("smtp.queue_per_host must be at least 1 (got 0)"));
    }
}
