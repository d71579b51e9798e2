//! Final outcomes as recorded in the accounting log (bounce categories: [`crate::bounces`]).

use volley_engine::Disposition;

/// What happened to a recipient in one attempt (the accounting log's `outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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
