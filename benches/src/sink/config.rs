//! What the sink advertises and which faults it injects.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::canned::CannedReply;
use super::error::SinkError;
use super::fault_plan::{Fault, FaultKind, TlsFault};

/// Default banner and EHLO name.
pub const DEFAULT_HOSTNAME: &str = "sink.volley.test";

/// Default advertised `SIZE` limit: 50 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 50 * 1024 * 1024;

/// Default [`SinkConfig::feedback_attempts`].
pub const DEFAULT_FEEDBACK_ATTEMPTS: u32 = 10;

/// Configuration of one sink instance. [`SinkConfig::default`] listens on `127.0.0.1:0`, speaks
/// ESMTP with PIPELINING and STARTTLS, and injects no faults.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Address to listen on, e.g. `127.0.0.1:0` (port 0 picks a free port; see
    /// [`SinkHandle::local_addr`](crate::SinkHandle::local_addr)).
    pub listen: SocketAddr,
    /// Name used in the banner and the EHLO reply. Default `sink.volley.test`.
    pub hostname: String,
    /// Advertise and accept STARTTLS (RFC 3207). The certificate is self-signed, generated at
    /// start for `hostname`, `localhost` and the listen IP. Default true.
    pub starttls: bool,
    /// Advertise PIPELINING (RFC 2920). Default true. Replies are batched either way (see
    /// [`latency`](Self::latency)).
    pub pipelining: bool,
    /// Advertise CHUNKING (RFC 3030) and accept `BDAT <size> [LAST]`: exactly `size` octets
    /// follow the command line, and every chunk gets its reply (failed ones too, after their
    /// octets were read and discarded). Default false.
    pub chunking: bool,
    /// Answer EHLO with `502 5.5.1` so that clients must fall back to HELO. Default false.
    pub refuse_ehlo: bool,
    /// Advertised `SIZE` (RFC 1870); a larger `MAIL ... SIZE=` or message gets `552 5.3.4`.
    /// Default 50 MiB.
    pub max_message_size: usize,
    /// Percentage (0..=100) of RCPT commands answered `451 4.3.0`, drawn independently per RCPT.
    pub tempfail_pct: f64,
    /// Percentage (0..=100) of RCPT commands answered `550 5.1.1`, drawn independently per RCPT
    /// (after the tempfail draw).
    pub permfail_pct: f64,
    /// Delay added once per reply batch: the sink processes every complete command it has
    /// read, then sleeps this long, then writes all their replies in one write. Models the
    /// network round trip. Default zero.
    pub latency: Duration,
    /// Percentage (0..=100) of transactions whose connection is closed without a reply at a
    /// random point: MAIL, the first RCPT, DATA, or after the final dot (RFC 1047 window).
    pub drop_pct: f64,
    /// Percentage (0..=100) of recipients greylisted: `451 4.7.1` on their first RCPT from a
    /// client /24, accepted afterwards (see `sink/greylist.rs`). Default zero.
    pub greylist_pct: f64,
    /// Percentage (0..=100) of accepted recipients that complain: after the 250, an RFC 5965
    /// ARF report (`Feedback-Type: abuse`) goes to the message's envelope sender at
    /// `feedback_to`. Chosen by address (see `sink/feedback.rs` and
    /// [`SinkConfig::feedback_for`]). Default zero.
    pub complain_pct: f64,
    /// Percentage (0..=100) of accepted recipients that bounce later: after the 250, an RFC
    /// 3464 DSN (`Action: failed`, `Status: 5.1.1`) goes to the message's envelope sender at
    /// `feedback_to`. Disjoint from the complaining share; `complain_pct + bounce_later_pct`
    /// is at most 100. Default zero.
    pub bounce_later_pct: f64,
    /// Where complaints and late bounces are delivered over SMTP: a loopback address (the
    /// inbound listener). Required when either share is above zero.
    pub feedback_to: Option<SocketAddr>,
    /// Attempts per report before it counts as failed (pauses of 100 ms doubling up to 2 s
    /// between them: 10 attempts span about 11 s, enough for a listener that starts late).
    /// Default 10.
    pub feedback_attempts: u32,
    /// Concurrent connections served; beyond it a new connection gets `421 4.7.0` and is
    /// closed. `None` means unlimited.
    pub max_connections: Option<usize>,
    /// Concurrent connections served per client address (like Postfix's
    /// `smtpd_client_connection_count_limit`); beyond it a new connection from that address
    /// gets `421 4.7.0` and is closed. `None` means unlimited.
    pub max_connections_per_client: Option<usize>,
    /// How long a client's connection still counts against `max_connections_per_client` after
    /// it closed: a receiver that learns of a disconnect late (Postfix's `anvil` hears of it
    /// when the `smtpd` process reports it; a loaded server later still). Default zero.
    pub client_close_lag: Duration,
    /// Canned replies, tried in order; the first matching one whose percentage draw succeeds
    /// replaces the normal reply.
    pub canned: Vec<CannedReply>,
    /// Keep per-recipient accepted-message counts (see
    /// [`SinkHandle::accepted_for`](crate::SinkHandle::accepted_for)). Default true.
    pub count_addresses: bool,
    /// Reply faults (see [`Fault`]), tried in order at each stage; the first that strikes
    /// applies. Counted in [`SinkStats::faults_injected`](crate::SinkStats::faults_injected).
    pub faults: Vec<Fault>,
    /// STARTTLS handshake faults, tried in order per handshake. Counted in
    /// [`SinkStats::tls_faults_injected`](crate::SinkStats::tls_faults_injected).
    pub tls_faults: Vec<TlsFault>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            starttls: true,
            pipelining: true,
            chunking: false,
            refuse_ehlo: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            tempfail_pct: 0.0,
            permfail_pct: 0.0,
            latency: Duration::ZERO,
            drop_pct: 0.0,
            greylist_pct: 0.0,
            complain_pct: 0.0,
            bounce_later_pct: 0.0,
            feedback_to: None,
            feedback_attempts: DEFAULT_FEEDBACK_ATTEMPTS,
            max_connections: None,
            max_connections_per_client: None,
            client_close_lag: Duration::ZERO,
            canned: Vec::new(),
            count_addresses: true,
            faults: Vec::new(),
            tls_faults: Vec::new(),
        }
    }
}

impl SinkConfig {
    /// Checks every field; the error names the field and its value. Canned replies are checked
    /// when the sink compiles them at start.
    pub fn validate(&self) -> Result<(), SinkError> {
        for (field, pct) in [
            ("tempfail_pct", self.tempfail_pct),
            ("permfail_pct", self.permfail_pct),
            ("drop_pct", self.drop_pct),
            ("greylist_pct", self.greylist_pct),
            ("complain_pct", self.complain_pct),
            ("bounce_later_pct", self.bounce_later_pct),
        ] {
            if !is_percentage(pct) {
                return Err(SinkError::InvalidConfig {
                    field,
                    value: pct.to_string(),
                    reason: "must be a percentage between 0 and 100",
                });
            }
        }
        self.validate_feedback()?;
        if self.hostname.is_empty()
            || self
                .hostname
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(SinkError::InvalidConfig {
                field: "hostname",
                value: format!("{:?}", self.hostname),
                reason: "must be a non-empty name without spaces or control characters",
            });
        }
        if self.max_message_size == 0 {
            return Err(SinkError::InvalidConfig {
                field: "max_message_size",
                value: "0".to_owned(),
                reason: "must be at least 1 byte",
            });
        }
        for (field, pct) in self
            .faults
            .iter()
            .map(|f| ("faults[].percent", f.percent))
            .chain(self.tls_faults.iter().map(|f| ("tls_faults[].percent", f.percent)))
        {
            if !is_percentage(pct) {
                return Err(SinkError::InvalidConfig {
                    field,
                    value: pct.to_string(),
                    reason: "must be a percentage between 0 and 100",
                });
            }
        }
        for (field, value) in [
            ("max_connections", self.max_connections),
            ("max_connections_per_client", self.max_connections_per_client),
        ] {
            if value == Some(0) {
                return Err(SinkError::InvalidConfig {
                    field,
                    value: "0".to_owned(),
                    reason: "must be at least 1 (or unset for no limit)",
                });
            }
        }
        Ok(())
    }
}

impl SinkConfig {
    /// The late-feedback fields: shares that fit together, and a loopback destination when
    /// anything is sent.
    fn validate_feedback(&self) -> Result<(), SinkError> {
        if !is_percentage(self.complain_pct + self.bounce_later_pct) {
            return Err(SinkError::InvalidConfig {
                field: "bounce_later_pct",
                value: self.bounce_later_pct.to_string(),
                reason: "complain_pct + bounce_later_pct must be at most 100",
            });
        }
        if !self.sends_feedback() {
            return Ok(());
        }
        match self.feedback_to {
            None => Err(SinkError::InvalidConfig {
                field: "feedback_to",
                value: "none".to_owned(),
                reason: "complain_pct or bounce_later_pct needs an address to send the reports to",
            }),
            Some(to) if !to.ip().is_loopback() || to.port() == 0 => Err(SinkError::InvalidConfig {
                field: "feedback_to",
                value: to.to_string(),
                reason: "must be a loopback address with a port (reports never leave the machine)",
            }),
            Some(_) if self.feedback_attempts == 0 => Err(SinkError::InvalidConfig {
                field: "feedback_attempts",
                value: "0".to_owned(),
                reason: "must be at least 1",
            }),
            Some(_) => Ok(()),
        }
    }

    /// True when a `stop-reading` fault is configured (the listener then keeps small receive
    /// buffers so that a client's writes block soon).
    pub(crate) fn stops_reading(&self) -> bool {
        self.faults.iter().any(|f| f.kind == FaultKind::StopReading)
    }
}

/// True for a finite value in `0..=100`.
pub(crate) fn is_percentage(pct: f64) -> bool {
    (0.0..=100.0).contains(&pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_fault_free() {
        let config = SinkConfig::default();
        config.validate().expect("default config is valid");
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.tempfail_pct + config.permfail_pct + config.drop_pct, 0.0);
    }

    #[test]
    fn percentages_out_of_range_name_the_field() {
        let config = SinkConfig {
            permfail_pct: 101.0,
            ..SinkConfig::default()
        };
        let err = config.validate().expect_err("101% is rejected").to_string();
        assert!(err.contains("permfail_pct = 101"), "{err}");
        let nan = SinkConfig {
            drop_pct: f64::NAN,
            ..SinkConfig::default()
        };
        assert!(nan.validate().is_err());
    }

    #[test]
    fn feedback_needs_a_loopback_destination_and_shares_that_fit() {
        let base = SinkConfig {
            complain_pct: 2.0,
            ..SinkConfig::default()
        };
        let err = base.validate().expect_err("no destination").to_string();
        assert!(err.contains("feedback_to = none"), "{err}");
        let outside = SinkConfig {
            feedback_to: Some("192.0.2.1:25".parse().expect("addr")),
            ..base.clone()
        };
        let err = outside.validate().expect_err("not loopback").to_string();
        assert!(err.contains("feedback_to = 192.0.2.1:25: must be a loopback"), "{err}");
        let fine = SinkConfig {
            feedback_to: Some("127.0.0.1:2526".parse().expect("addr")),
            ..base.clone()
        };
        fine.validate().expect("loopback is fine");
        let too_much = SinkConfig {
            bounce_later_pct: 99.0,
            ..fine
        };
        let err = too_much.validate().expect_err("101 %").to_string();
        assert!(
            err.contains("bounce_later_pct = 99: complain_pct + bounce_later_pct"),
            "{err}"
        );
    }

    #[test]
    fn hostname_with_space_is_rejected() {
        let config = SinkConfig {
            hostname: "a b".into(),
            ..SinkConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
