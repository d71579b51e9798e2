//! Per-phase timeouts with the defaults of RFC 5321 §4.5.3.2.

use std::time::Duration;

use crate::phase::Phase;

/// How long each phase may take. Defaults follow RFC 5321 §4.5.3.2; `connect`, `starttls` and
/// `quit` have no RFC value and use operational defaults.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect (operational default 30 s).
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Initial 220 greeting: 5 minutes (§4.5.3.2.1).
    #[serde(with = "humantime_serde")]
    pub banner: Duration,
    /// EHLO/HELO reply (treated like MAIL: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub ehlo: Duration,
    /// STARTTLS reply and TLS handshake (operational default 60 s).
    #[serde(with = "humantime_serde")]
    pub starttls: Duration,
    /// MAIL FROM reply: 5 minutes (§4.5.3.2.2).
    #[serde(with = "humantime_serde")]
    pub mail_from: Duration,
    /// Each RCPT TO reply: 5 minutes (§4.5.3.2.3).
    #[serde(with = "humantime_serde")]
    pub rcpt_to: Duration,
    /// DATA initiation (354): 2 minutes (§4.5.3.2.4).
    #[serde(with = "humantime_serde")]
    pub data: Duration,
    /// Each write of the message content: 3 minutes (§4.5.3.2.5).
    #[serde(with = "humantime_serde")]
    pub data_block: Duration,
    /// Reply to the final dot: 10 minutes (§4.5.3.2.6).
    #[serde(with = "humantime_serde")]
    pub data_end: Duration,
    /// RSET reply (like MAIL: 5 minutes).
    #[serde(with = "humantime_serde")]
    pub rset: Duration,
    /// QUIT reply (operational default 10 s; we do not wait longer to hang up).
    #[serde(with = "humantime_serde")]
    pub quit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let min = |m: u64| Duration::from_secs(60 * m);
        Timeouts {
            connect: Duration::from_secs(30),
            banner: min(5),
            ehlo: min(5),
            starttls: Duration::from_secs(60),
            mail_from: min(5),
            rcpt_to: min(5),
            data: min(2),
            data_block: min(3),
            data_end: min(10),
            rset: min(5),
            quit: Duration::from_secs(10),
        }
    }
}

impl Timeouts {
    /// The timeout for a phase.
    pub fn for_phase(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Connect => self.connect,
            Phase::Banner => self.banner,
            Phase::Ehlo => self.ehlo,
            Phase::StartTls => self.starttls,
            Phase::MailFrom => self.mail_from,
            Phase::RcptTo => self.rcpt_to,
            Phase::Data => self.data,
            Phase::DataBlock => self.data_block,
            Phase::DataEnd => self.data_end,
            Phase::Rset => self.rset,
            Phase::Quit => self.quit,
        }
    }

    /// Every timeout with its field name in `[smtp.timeouts]`.
    pub fn fields(&self) -> [(&'static str, Duration); 11] {
        [
            ("connect", self.connect),
            ("banner", self.banner),
            ("ehlo", self.ehlo),
            ("starttls", self.starttls),
            ("mail_from", self.mail_from),
            ("rcpt_to", self.rcpt_to),
            ("data", self.data),
            ("data_block", self.data_block),
            ("data_end", self.data_end),
            ("rset", self.rset),
            ("quit", self.quit),
        ]
    }

    /// All timeouts set to `d` (tests and the fault matrix).
    pub fn uniform(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            banner: d,
            ehlo: d,
            starttls: d,
            mail_from: d,
            rcpt_to: d,
            data: d,
            data_block: d,
            data_end: d,
            rset: d,
            quit: d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_defaults() {
        let t = Timeouts::default();
        assert_eq!(t.for_phase(Phase::Banner), Duration::from_secs(300));
        assert_eq!(t.for_phase(Phase::Data), Duration::from_secs(120));
        assert_eq!(t.for_phase(Phase::DataBlock), Duration::from_secs(180));
        assert_eq!(t.for_phase(Phase::DataEnd), Duration::from_secs(600));
    }
}
