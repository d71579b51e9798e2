//! The typed result of one check: [`Check`] with its [`CheckKind`] and [`Status`].

use std::fmt;

use serde::Serialize;

/// Which check a result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The domain's SPF record: one, parses, authorises every source IP (RFC 7208).
    Spf,
    /// A DKIM selector's TXT record matches the private key Volley signs with (RFC 6376 §3.6.1).
    Dkim,
    /// The From domain's DMARC record exists and enforces a policy (RFC 7489 §6.3).
    Dmarc,
    /// DKIM `d=` and the envelope sender domain align with the From domain (RFC 7489 §3.1).
    Alignment,
    /// A source IP's PTR names a host that resolves back to it (FCrDNS) and is its `ehlo_name`.
    Ptr,
    /// The bounce domain has an MX, so DSNs reach Volley.
    BounceMx,
}

impl CheckKind {
    /// The name printed and serialized: `spf`, `dkim`, `dmarc`, `alignment`, `ptr`, `bounce_mx`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Spf => "spf",
            CheckKind::Dkim => "dkim",
            CheckKind::Dmarc => "dmarc",
            CheckKind::Alignment => "alignment",
            CheckKind::Ptr => "ptr",
            CheckKind::BounceMx => "bounce_mx",
        }
    }
}

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Published as it should be.
    Pass,
    /// Works, but weakly (monitoring-only DMARC, softfail, PTR not the EHLO name), or could not
    /// be checked (a DNS timeout or SERVFAIL is never a pass).
    Warn,
    /// Receivers will fail or distrust mail from this domain or IP.
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check.
    pub check: CheckKind,
    /// What was checked: a domain, `selector._domainkey.domain`, or a source IP.
    pub subject: String,
    /// The verdict.
    pub status: Status,
    /// The record(s) found, verbatim (several joined by ` | `); `None` when nothing was found.
    pub record: Option<String>,
    /// What was found and what it means; quotes the record.
    pub message: String,
    /// The record to publish (or the change to make) instead; `None` on a pass.
    pub advice: Option<String>,
}

impl Check {
    pub(crate) fn new(
        check: CheckKind,
        subject: impl Into<String>,
        status: Status,
        message: impl Into<String>,
    ) -> Check {
        Check {
            check,
            subject: subject.into(),
            status,
            record: None,
            message: message.into(),
            advice: None,
        }
    }

    pub(crate) fn record(mut self, record: impl Into<String>) -> Check {
        self.record = Some(record.into());
        self
    }

    pub(crate) fn advice(mut self, advice: impl Into<String>) -> Check {
        self.advice = Some(advice.into());
        self
    }

    /// A DNS failure (timeout, SERVFAIL): `warn`, "could not check", never a pass.
    pub(crate) fn unchecked(check: CheckKind, subject: impl Into<String>, name: &str, reason: &str) -> Check {
        Check::new(
            check,
            subject,
            Status::Warn,
            format!("could not check: {name}: {reason}"),
        )
    }
}

/// One line: `PASS spf example.com: message; publish: advice`.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.status.label(),
            self.check.as_str(),
            self.subject,
            self.message
        )?;
        if let Some(advice) = &self.advice {
            write!(f, "; publish: {advice}")?;
        }
        Ok(())
    }
}

/// The worst status of `checks`; `Pass` for none.
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Pass)
}

/// `"text"` with inner quotes escaped, for quoting records in messages.
pub(crate) fn quoted(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_json_shapes() {
        let check = Check::new(CheckKind::Spf, "example.test", Status::Fail, "no SPF record")
            .advice("example.test. TXT \"v=spf1 ip4:127.0.0.2 -all\"");
        assert_eq!(
            check.to_string(),
            "FAIL spf example.test: no SPF record; publish: example.test. TXT \"v=spf1 ip4:127.0.0.2 -all\""
        );
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["check"], "spf");
        assert_eq!(json["status"], "fail");
        assert_eq!(json["record"], serde_json::Value::Null);
        assert_eq!(worst(&[check]), Status::Fail);
        assert_eq!(worst(&[]), Status::Pass);
    }
}
