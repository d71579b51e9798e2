//! The recipients of a spool stream (injected messages): one row per envelope recipient, read
//! in order and following the writer (see [`crate::spool`]). A row's offset is its record's
//! stream position; its values are [`SPOOL_COLUMNS`], the message travelling in the row.

use std::collections::VecDeque;
use std::sync::Arc;

use super::fetch::FetchError;
use super::{OffsetProblem, RawRow, RecipientError, RejectedRow, WHOLE_ROW};
use crate::spool::{Follower, ReadError, Record, Stream};

/// The columns of a spooled row: the recipient, the envelope sender, the message's
/// Message-ID, its From domain and the message ([`raw_value`]).
pub const SPOOL_COLUMNS: [&str; 5] = ["email", "mail_from", "message_id", "from_domain", "raw"];

/// Index of each column in [`SPOOL_COLUMNS`].
pub mod column {
    pub const EMAIL: usize = 0;
    pub const MAIL_FROM: usize = 1;
    pub const MESSAGE_ID: usize = 2;
    pub const FROM_DOMAIN: usize = 3;
    pub const RAW: usize = 4;
}

/// The rows of one record.
fn rows(position: u64, record: &Record) -> impl Iterator<Item = RawRow> + '_ {
    record.rcpt.iter().enumerate().map(move |(i, rcpt)| RawRow {
        offset: position,
        line: record.first_line + i as u64 + 1,
        values: Ok(values(record, rcpt)),
    })
}

fn values(record: &Record, rcpt: &str) -> Vec<String> {
    vec![
        rcpt.to_owned(),
        record.mail_from.clone(),
        record.message_id.clone(),
        record.from_domain.clone(),
        raw_value(&record.raw),
    ]
}

/// The message as a row value: `r` and the text when it is UTF-8 (nearly always), else `b`
/// and its base64.
pub fn raw_value(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => {
            let mut v = String::with_capacity(text.len() + 1);
            v.push('r');
            v.push_str(text);
            v
        }
        Err(_) => format!(
            "b{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
        ),
    }
}

/// The message of a row value made by [`raw_value`].
pub fn raw_bytes(value: &str) -> Result<Vec<u8>, String> {
    match value.split_at_checked(1) {
        Some(("r", text)) => Ok(text.as_bytes().to_vec()),
        Some(("b", b64)) => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
            .map_err(|e| format!("the spooled message is not valid base64: {e}")),
        _ => Err("not a spooled message value".into()),
    }
}

/// A stream being read.
pub(super) struct SpoolSource {
    follower: Follower,
    ready: VecDeque<RawRow>,
}

impl SpoolSource {
    pub(super) fn new(follower: Follower) -> SpoolSource {
        SpoolSource {
            follower,
            ready: VecDeque::new(),
        }
    }

    pub(super) fn stream(&self) -> &Arc<Stream> {
        self.follower.stream()
    }

    pub(super) fn caught_up(&self) -> bool {
        self.ready.is_empty() && self.follower.caught_up()
    }

    pub(super) fn next(&mut self) -> Option<Result<RawRow, RecipientError>> {
        if let Some(row) = self.ready.pop_front() {
            return Some(Ok(row));
        }
        match self.follower.next_record()? {
            Ok((position, record)) => {
                self.ready.extend(rows(position, &record));
                self.ready.pop_front().map(Ok)
            }
            Err(e) => Some(Err(read_error(self.follower.stream(), e))),
        }
    }
}

fn read_error(stream: &Stream, e: ReadError) -> RecipientError {
    RecipientError::Io {
        path: stream.dir().to_path_buf(),
        line: stream.committed().last_line,
        source: std::io::Error::other(e.to_string()),
    }
}

/// Reads single rows of a stream again by (position, line).
pub(super) struct SpoolFetcher {
    pub stream: Arc<Stream>,
}

impl SpoolFetcher {
    pub(super) fn fetch(&self, position: u64, line: u64) -> Result<RawRow, FetchError> {
        let record = match self.stream.read_at(position) {
            Ok(record) => record,
            Err(ReadError::Io { source, .. }) => return Err(FetchError::Io(source)),
            Err(ReadError::Torn { .. } | ReadError::Record { .. }) => {
                return Err(FetchError::NoRow(OffsetProblem::MidLine))
            }
        };
        Ok(match record.index_of(line) {
            Some(i) => RawRow {
                offset: position,
                line,
                values: Ok(values(&record, &record.rcpt[i])),
            },
            None => RawRow {
                offset: position,
                line,
                values: Err(RejectedRow::new(
                    line,
                    WHOLE_ROW,
                    "",
                    format!(
                        "the spooled message at this position holds lines {}..={}",
                        record.first_line + 1,
                        record.last_line()
                    ),
                )),
            },
        })
    }
}
