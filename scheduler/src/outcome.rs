//! Final outcomes as recorded in the accounting log, and their bounce categories.

use volley_engine::{Disposition, Phase, RecipientStatus};

/// What happened to a recipient in one attempt (the accounting log's `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Accepted by the receiving server.
    Delivered,
    /// Temporarily failed; to be retried.
    Deferred,
    /// Permanently failed.
    Bounced,
    /// Not sent: the address is on the suppression list.
    Suppressed,
    /// Not sent: the recipient row (or the message built from it) is invalid.
    Rejected,
    /// Gave up after the retry period.
    Expired,
}

impl Outcome {
    /// Whether the recipient is done (everything but `deferred`).
    pub fn is_final(self) -> bool {
        self != Outcome::Deferred
    }
}

impl From<Disposition> for Outcome {
    fn from(d: Disposition) -> Outcome {
        match d {
            Disposition::Delivered => Outcome::Delivered,
            Disposition::Deferred => Outcome::Deferred,
            Disposition::Bounced => Outcome::Bounced,
        }
    }
}

/// The bounce category of a status, from its RFC 3463 enhanced code where the server gave one
/// (RFC 3463 §3.2-§3.8 subjects), else from the phase that failed.
pub fn category(status: &RecipientStatus) -> &'static str {
    if status.disposition == Disposition::Delivered {
        return "delivered";
    }
    if let Some(e) = status.enhanced {
        return match (e.subject, e.detail) {
            // RFC 7505 §4.2 has clients report a null MX as 5.1.10 (no reply code: decided
            // locally); servers such as Microsoft's use 5.1.10 for an unknown recipient.
            (1, 10) if status.code.is_none() => "bad-domain",
            (1, 1) | (1, 6) | (1, 10) => "bad-mailbox",
            (1, 2) => "bad-domain",
            (1, _) => "bad-mailbox",
            (2, 1) => "inactive-mailbox",
            (2, 2) | (2, 3) => "quota-issues",
            (2, _) => "inactive-mailbox",
            (3, 4) => "message-size",
            (3, _) => "other",
            (4, _) => "routing-errors",
            (5, _) => "protocol-errors",
            (6, _) => "content-related",
            (7, _) if status.text.to_ascii_lowercase().contains("spam") => "spam-related",
            (7, _) => "policy-related",
            _ => "other",
        };
    }
    match status.phase {
        Phase::Connect | Phase::Banner => "routing-errors",
        Phase::Ehlo | Phase::StartTls | Phase::Quit | Phase::Rset => "protocol-errors",
        _ if status.code.is_none() => "protocol-errors",
        _ => "other",
    }
}
