//! What a provider says after it accepted a message (`volley sink --complain PCT
//! --bounce-later PCT --feedback-to HOST:PORT`): for a fixed share of accepted recipients —
//! chosen by address from the top of the hash space (`sink/share.rs`), complaints first, then
//! late bounces, so no recipient gets both and a test can count them in advance — the sink
//! sends, after its 250 and without holding the session, a report to the message's envelope
//! sender (the VERP return path) at the feedback listener:
//!
//! - a **complaint**: an RFC 5965 ARF report, `Feedback-Type: abuse`, with the message's
//!   headers, as Yahoo's and Microsoft's feedback loops send them;
//! - a **late bounce**: an RFC 3464 DSN, `Action: failed`, `Status: 5.1.1`, a Postfix-style
//!   `Diagnostic-Code` ([`late_bounce_diagnostic`]) and the message's headers.
//!
//! - `feedback/report.rs` — the two reports;
//! - `feedback/sender.rs` — the queue, the workers, bounded retries.
//!
//! A message sent with the null sender (`MAIL FROM:<>`, itself a report) gets none (RFC 5321
//! §4.5.5). Reports still queued when the sink stops are not sent.

mod report;
mod sender;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

pub use report::late_bounce_diagnostic;
pub(crate) use sender::{channel, Mailer, Outbox};

use super::config::SinkConfig;
use super::share::in_top_band;

/// What the sink sends back about an accepted recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedbackKind {
    /// An ARF spam complaint (`--complain`).
    Complaint,
    /// A DSN for a mailbox that turned out not to exist (`--bounce-later`).
    LateBounce,
}

impl SinkConfig {
    /// Whether any report is configured.
    pub fn sends_feedback(&self) -> bool {
        self.complain_pct > 0.0 || self.bounce_later_pct > 0.0
    }

    /// The report this configuration sends about `recipient` once a message to it is
    /// accepted, if any (the domain's case does not matter). The same on every run: a test
    /// computes with it how many complaints and late bounces a run produces.
    pub fn feedback_for(&self, recipient: &str) -> Option<FeedbackKind> {
        if in_top_band(recipient, 0.0, self.complain_pct) {
            Some(FeedbackKind::Complaint)
        } else if in_top_band(recipient, self.complain_pct, self.bounce_later_pct) {
            Some(FeedbackKind::LateBounce)
        } else {
            None
        }
    }
}

/// One report to send.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) kind: FeedbackKind,
    /// The accepted message's envelope sender: where the report goes.
    pub(crate) return_path: String,
    /// The recipient it is about.
    pub(crate) recipient: String,
    /// The accepted message's header section (shared by its recipients' reports).
    pub(crate) headers: Arc<[u8]>,
    /// The client that sent the message (the report's `Source-IP`).
    pub(crate) client: IpAddr,
    /// When the message was accepted.
    pub(crate) arrival: SystemTime,
}

/// The most header octets kept per message.
const MAX_HEADERS: usize = 64 * 1024;

/// The header section of the message being received, gathered from its content as it
/// streams by (only when the sink sends reports).
#[derive(Debug, Default)]
pub(crate) struct HeaderCapture {
    bytes: Vec<u8>,
    done: bool,
}

impl HeaderCapture {
    /// Forgets the previous message.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.done = false;
    }

    /// Takes the next piece of content (un-stuffed); keeps the header lines up to the blank
    /// line that ends them (RFC 5322 §2.1), at most [`MAX_HEADERS`] octets of whole lines.
    pub(crate) fn push(&mut self, content: &[u8]) {
        if self.done {
            return;
        }
        if self.bytes.is_empty() && (content.starts_with(b"\r\n") || content.starts_with(b"\n")) {
            // No header section at all.
            self.done = true;
            return;
        }
        // A separator may straddle two pieces.
        let from = self.bytes.len().saturating_sub(2);
        let room = MAX_HEADERS.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&content[..content.len().min(room)]);
        if let Some(end) = header_end(&self.bytes[from..]) {
            self.bytes.truncate(from + end);
            self.done = true;
        } else if self.bytes.len() >= MAX_HEADERS {
            let whole = memchr::memrchr(b'\n', &self.bytes).map_or(0, |i| i + 1);
            self.bytes.truncate(whole);
            self.done = true;
        }
    }

    /// The header lines gathered.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Where the header section of `bytes` ends: just after the line end that precedes the
/// blank line (`\n\r\n` or `\n\n`).
fn header_end(bytes: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(bytes, b"\n\r\n");
    let lf = memchr::memmem::find(bytes, b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b) + 1),
        (Some(a), None) | (None, Some(a)) => Some(a + 1),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_kept_up_to_the_blank_line_across_pieces() {
        let mut capture = HeaderCapture::default();
        capture.push(b"From: a@b.test\r\nSubject: hi\r");
        capture.push(b"\n");
        capture.push(b"\r\nbody line\r\n\r\nmore\r\n");
        assert_eq!(capture.bytes(), b"From: a@b.test\r\nSubject: hi\r\n");
        capture.clear();
        capture.push(b"X: 1\n\nbody");
        assert_eq!(capture.bytes(), b"X: 1\n");
        capture.clear();
        let long = format!("X-Long: {}\r\n", "a".repeat(40)).repeat(MAX_HEADERS / 40);
        capture.push(long.as_bytes());
        capture.push(b"\r\nbody");
        assert!(capture.bytes().len() <= MAX_HEADERS);
        assert!(capture.bytes().ends_with(b"\r\n"), "whole lines only");
    }

    #[test]
    fn complaints_and_late_bounces_are_disjoint_shares_of_the_expected_size() {
        let config = SinkConfig {
            complain_pct: 2.0,
            bounce_later_pct: 3.0,
            ..SinkConfig::default()
        };
        let addresses: Vec<String> = (0..20_000).map(|i| format!("u{i}@d{}.test", i % 7)).collect();
        let count = |kind| {
            addresses
                .iter()
                .filter(|a| config.feedback_for(a) == Some(kind))
                .count()
        };
        let (complaints, bounces) = (count(FeedbackKind::Complaint), count(FeedbackKind::LateBounce));
        assert!(
            (320..480).contains(&complaints),
            "{complaints} complaints of 20,000 at 2 %"
        );
        assert!((500..700).contains(&bounces), "{bounces} late bounces of 20,000 at 3 %");
        assert_eq!(config.feedback_for("u1@D1.TEST"), config.feedback_for("u1@d1.test"));
        assert!(!SinkConfig::default().sends_feedback());
        assert!(addresses
            .iter()
            .all(|a| SinkConfig::default().feedback_for(a).is_none()));
    }
}
