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
    /// When the first attempt was made (retry age counts from here).
    pub first_at: SystemTime,
    /// MX host indexes (of the site's host list) already tried in this attempt.
    pub tried: u64,
}

impl Job {
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

/// Builds the message for `row`; the Message-ID carries the line, so every attempt of a
/// recipient in one run has the same Message-ID.
pub(crate) fn render(factory: &MessageFactory, row: RecipientRow, r: RowRef) -> Result<Job, Box<Refused>> {
    let refused = |rejected: RejectedRow| {
        Box::new(Refused {
            row: rejected,
            recipient: row.email.as_str().to_string(),
            domain: row.email.domain().to_string(),
        })
    };
    let built = match factory.build(row.line, &row) {
        Ok(b) => b,
        Err(e) => return Err(refused(e.to_rejected(row.line, row.email.as_str()))),
    };
    match volley_engine::smtp::dot::prepare(&built.bytes) {
        Err(e) => Err(refused(RejectedRow::new(
            row.line,
            "(message)",
            row.email.as_str(),
            e.to_string(),
        ))),
        Ok(payload) => Ok(Job {
            line: r.line,
            offset: r.offset,
            recipient: row.email,
            message_id: Arc::from(built.message_id),
            payload,
            attempt: r.attempt,
            first_at: r.first_at,
            tried: 0,
        }),
    }
}
