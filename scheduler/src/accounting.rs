//! The accounting log: one JSON object per line per attempt (the contract in DESIGN.md).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use crate::outcome::Outcome;

/// One line of the accounting log.
#[derive(Debug, serde::Serialize)]
pub struct AccountingRecord<'a> {
    /// RFC 3339 time (UTC, milliseconds).
    pub ts: String,
    /// Campaign id.
    pub campaign: &'a str,
    /// Recipient address (as read, for rejected rows).
    pub recipient: &'a str,
    /// Recipient domain (empty for rejected rows without one).
    pub domain: &'a str,
    /// Source IP the attempt was made from.
    pub source_ip: Option<IpAddr>,
    /// MX host it was sent to.
    pub mx: Option<&'a str>,
    /// The MX site (the MX host set its domain shares with others) or `route:ip:port`.
    pub site: Option<&'a str>,
    /// The site's provider group (warm-up budgets), once the recipient was routed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'a str>,
    /// The outcome.
    pub outcome: Outcome,
    /// SMTP reply code, when a reply decided the outcome.
    pub code: Option<u16>,
    /// RFC 3463 enhanced status code.
    pub enhanced: Option<String>,
    /// Bounce category.
    pub category: &'a str,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Milliseconds from the start of the attempt to its last reply.
    pub latency_ms: u64,
    /// Message-ID of the message sent (without angle brackets).
    pub message_id: Option<&'a str>,
    /// Session phase that decided the outcome.
    pub phase: Option<&'a str>,
    /// Reply text or local reason.
    pub text: &'a str,
    /// Whether the attempt ran over TLS.
    pub tls: bool,
    /// The connection broke after the final dot: the message may have arrived, so a retry may
    /// duplicate it (RFC 1047).
    pub maybe_duplicate: bool,
    /// The recipient's line in the recipients file (identifies the recipient across runs).
    pub line: u64,
    /// For a deferral: when the next attempt is due (RFC 3339). A deferral without it moved on
    /// to the site's next MX host within the same attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// On a final outcome that changes the suppression list: `suppress` (a hard bounce) or
    /// `soft` (one soft bounce counted). A run killed before the store took it replays it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppression: Option<crate::bounces::Action>,
}

/// Current time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Appends records to the accounting log (never truncates: earlier runs are kept).
pub struct AccountingLog {
    out: BufWriter<File>,
    /// The log's length once everything written is flushed.
    end: u64,
    line: Vec<u8>,
}

impl AccountingLog {
    /// Opens (creating) the log for appending.
    pub fn open(path: &Path) -> io::Result<AccountingLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let end = file.metadata()?.len();
        Ok(AccountingLog {
            out: BufWriter::with_capacity(256 * 1024, file),
            end,
            line: Vec::with_capacity(512),
        })
    }

    /// Writes one record.
    pub fn write(&mut self, record: &AccountingRecord<'_>) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(io::Error::other)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.end += self.line.len() as u64;
        Ok(())
    }

    /// The byte offset at which the last record written ends.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Flushes to the OS (a record flushed survives a kill of the process).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
