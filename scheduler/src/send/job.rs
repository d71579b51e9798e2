//! What travels through a run: a rendered [`Job`], or a [`RowRef`] (line and offset only) when
//! the message is not needed in memory — parked behind a busy site or waiting for a retry.

use std::sync::Arc;
use std::time::SystemTime;

use volley_engine::DataPayload;

use crate::address::EmailAddress;
use crate::message::MessageFactory;
use crate::recipients::{RecipientRow, RejectedRow};

/// A recipient with its message, ready to route and send.
#[derive(Debug)]
pub(crate) struct Job {
    /// The recipient's line in the recipient file (its identity across runs).
    pub line: u64,
    /// Byte offset of the row, to read it again later.
    pub offset: u64,
    pub recipient: EmailAddress,
    pub message_id: Arc<str>,
    pub payload: DataPayload,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When the first attempt was made (retry age counts from here); until its first report,
    /// when the row was read.
    pub first_at: SystemTime,
    /// MX host indexes (of the site's host list) already tried in this attempt.
    pub tried: u64,
    /// Since when the job waits for warm-up budget (its site is held), if it does.
    pub held_since: Option<std::time::Instant>,
    /// The envelope sender the message came with (injected mail without VERP).
    pub sender: Option<Arc<str>>,
}

impl Job {
    /// Notes the first report of an attempt that began at `began`: for the first attempt that
    /// is when the retry age starts (not when the row was read or handed to the engine, whose
    /// queue may hold it for long behind a slow connection).
    pub fn attempt_began(&mut self, began: SystemTime) {
        if self.attempt == 1 && self.tried == 0 {
            self.first_at = began;
        }
    }

    /// The compact form, without the message.
    pub fn to_ref(&self) -> RowRef {
        RowRef {
            line: self.line,
            offset: self.offset,
            attempt: self.attempt,
            first_at: self.first_at,
        }
    }
}

/// A recipient to read from the file again when it is its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowRef {
    pub line: u64,
    pub offset: u64,
    pub attempt: u32,
    pub first_at: SystemTime,
}

/// A row that cannot be sent, with the recipient as far as it is known.
#[derive(Debug)]
pub(crate) struct Refused {
    pub row: RejectedRow,
    pub recipient: String,
    pub domain: String,
}

/// A recipient not sent because the suppression list has the address.
#[derive(Debug)]
pub(crate) struct SuppressedRow {
    pub line: u64,
    pub recipient: String,
    pub domain: String,
    /// The suppression scope that matched (`global` or the campaign's list).
    pub scope: String,
    /// Why the address is suppressed (the stored reason).
    pub reason: String,
}

/// A recipient whose message is built but not yet signed and prepared for DATA.
#[derive(Debug)]
pub(crate) struct Built {
    pub line: u64,
    pub offset: u64,
    pub recipient: EmailAddress,
    pub message_id: Arc<str>,
    pub attempt: u32,
    pub first_at: SystemTime,
    /// See [`Job::sender`].
    pub sender: Option<Arc<str>>,
    /// The DKIM domain when it is not the campaign's.
    pub sign_domain: Option<Arc<str>>,
}

impl Built {
    /// The refusal of this recipient's message.
    pub fn refused(&self, field: &str, reason: String) -> Box<Refused> {
        Box::new(Refused {
            row: RejectedRow::new(self.line, field, self.recipient.as_str(), reason),
            recipient: self.recipient.as_str().to_string(),
            domain: self.recipient.domain().to_string(),
        })
    }

    /// The job for the final message bytes (signed or not): CRLF, dot-stuffing and line
    /// lengths are checked and prepared once here (a well-formed message is not copied).
    pub fn finish(self, bytes: Vec<u8>) -> Result<Job, Box<Refused>> {
        match volley_engine::smtp::dot::prepare_owned(bytes) {
            Err(e) => Err(self.refused("(message)", e.to_string())),
            Ok(payload) => Ok(Job {
                line: self.line,
                offset: self.offset,
                recipient: self.recipient,
                message_id: self.message_id,
                payload,
                attempt: self.attempt,
                first_at: self.first_at,
                tried: 0,
                held_since: None,
                sender: self.sender,
            }),
        }
    }

    /// A message the signer refused.
    pub fn unsigned(self, error: &volley_engine::dkim::DkimError) -> Box<Refused> {
        self.refused("(dkim)", format!("cannot sign: {error}"))
    }
}

/// Builds the message for `row`; the Message-ID carries the line, so every attempt of a
/// recipient in one run has the same Message-ID.
pub(crate) fn build(factory: &MessageFactory, row: RecipientRow, r: RowRef) -> Result<(Built, Vec<u8>), Box<Refused>> {
    match factory.build(row.line, &row) {
        Ok(b) => Ok((
            Built {
                line: r.line,
                offset: r.offset,
                recipient: row.email,
                message_id: Arc::from(b.message_id),
                attempt: r.attempt,
                first_at: r.first_at,
                sender: b.sender.map(Arc::from),
                sign_domain: b.sign_domain.map(Arc::from),
            },
            b.bytes,
        )),
        Err(e) => Err(Box::new(Refused {
            row: e.to_rejected(row.line, row.email.as_str()),
            recipient: row.email.as_str().to_string(),
            domain: row.email.domain().to_string(),
        })),
    }
}
