//! One spooled message as it lies in a segment: a header line of JSON (the envelope, the
//! recipients' line numbers, the message's length), then the message's bytes as received, then
//! LF. A record is the unit of both the write (appended whole, synced before the message is
//! acknowledged) and the read (a record cut short by a crash was never acknowledged, and
//! recovery cuts it). The message is stored as it is — no encoding — so a sync writes the
//! message's bytes and a short header, nothing more.

use std::io::{self, BufRead};

/// A spooled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The line of the first recipient minus one: recipient `i` (from 0) is line
    /// `first_line + i + 1` of the stream (dense over the stream, so line sets stay small).
    pub first_line: u64,
    /// The envelope sender (empty: the null sender).
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt: Vec<String>,
    /// Who injected it.
    pub user: String,
    /// The client's address.
    pub peer: String,
    /// Unix seconds when it was accepted.
    pub at: u64,
    /// The message's Message-ID (without angle brackets).
    pub message_id: String,
    /// The From header's domain (the DKIM `d=` when a key covers it).
    pub from_domain: String,
    /// The message.
    pub raw: Vec<u8>,
}

/// The header line as written.
#[derive(serde::Serialize)]
struct HeaderOut<'a> {
    first_line: u64,
    mail_from: &'a str,
    rcpt: &'a [String],
    user: &'a str,
    peer: &'a str,
    at: u64,
    message_id: &'a str,
    from_domain: &'a str,
    len: usize,
}

/// The header line as read.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    first_line: u64,
    mail_from: String,
    rcpt: Vec<String>,
    user: String,
    peer: String,
    at: u64,
    message_id: String,
    from_domain: String,
    len: u64,
}

/// The largest message a record may claim (a damaged length must not allocate gigabytes).
const MAX_LEN: u64 = 1 << 31;

/// Why the bytes at a position are not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The header line is not a record's.
    #[error("not a spool record header: {0}")]
    Json(#[from] serde_json::Error),
    /// A record with no recipient.
    #[error("a record without recipients")]
    NoRecipients,
    /// A length no message has.
    #[error("a record claiming {0} bytes")]
    Length(u64),
    /// The file ends inside the record (a write cut short).
    #[error("the record is cut short")]
    Torn,
    /// The message is not followed by the record's LF.
    #[error("the message is not followed by the record's end")]
    Unterminated,
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl RecordError {
    /// The record was being written when the writer stopped (nothing after it is whole).
    pub fn is_torn(&self) -> bool {
        matches!(self, RecordError::Torn)
    }
}

impl Record {
    /// The record's bytes: header line, message, LF.
    pub fn encode(&self) -> Vec<u8> {
        let header = HeaderOut {
            first_line: self.first_line,
            mail_from: &self.mail_from,
            rcpt: &self.rcpt,
            user: &self.user,
            peer: &self.peer,
            at: self.at,
            message_id: &self.message_id,
            from_domain: &self.from_domain,
            len: self.raw.len(),
        };
        // Serialising plain strings and numbers cannot fail.
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.reserve(self.raw.len() + 2);
        out.push(b'\n');
        out.extend_from_slice(&self.raw);
        out.push(b'\n');
        out
    }

    /// Reads the next record; `None` at the end of the input (nothing left). `buf` is reused
    /// for the header line. The second value is the record's length in bytes.
    pub fn read_from<R: BufRead>(input: &mut R, buf: &mut Vec<u8>) -> Result<Option<(Record, u64)>, RecordError> {
        buf.clear();
        let n = input.read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') {
            return Err(RecordError::Torn);
        }
        let header: HeaderIn = serde_json::from_slice(&buf[..n - 1])?;
        if header.rcpt.is_empty() {
            return Err(RecordError::NoRecipients);
        }
        if header.len > MAX_LEN {
            return Err(RecordError::Length(header.len));
        }
        let mut raw = vec![0; header.len as usize + 1];
        if let Err(e) = input.read_exact(&mut raw) {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                RecordError::Torn
            } else {
                RecordError::Io(e)
            });
        }
        if raw.pop() != Some(b'\n') {
            return Err(RecordError::Unterminated);
        }
        let record = Record {
            first_line: header.first_line,
            mail_from: header.mail_from,
            rcpt: header.rcpt,
            user: header.user,
            peer: header.peer,
            at: header.at,
            message_id: header.message_id,
            from_domain: header.from_domain,
            raw,
        };
        Ok(Some((record, n as u64 + header.len + 1)))
    }

    /// Decodes one whole record.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let mut buf = Vec::new();
        Record::read_from(&mut io::Cursor::new(bytes), &mut buf)?
            .map(|(r, _)| r)
            .ok_or(RecordError::Torn)
    }

    /// The last recipient's line.
    pub fn last_line(&self) -> u64 {
        self.first_line + self.rcpt.len() as u64
    }

    /// The index in [`Record::rcpt`] of the recipient at `line`, if it is one of this record's.
    pub fn index_of(&self, line: u64) -> Option<usize> {
        (line > self.first_line && line <= self.last_line()).then(|| (line - self.first_line - 1) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(raw: &[u8]) -> Record {
        Record {
            first_line: 10,
            mail_from: "app@example.com".into(),
            rcpt: vec!["a@x.test".into(), "b@y.test".into()],
            user: "app".into(),
            peer: "127.0.0.1:5000".into(),
            at: 1,
            message_id: "m1@example.com".into(),
            from_domain: "example.com".into(),
            raw: raw.to_vec(),
        }
    }

    #[test]
    fn a_record_round_trips_with_any_bytes_and_maps_lines_to_recipients() {
        // 8-bit content and line ends inside the message are carried as they are.
        let r = record(b"From: app@example.com\r\n\r\n\xe9t\xe9\n\r\n{\"first_line\":1}\n");
        let bytes = r.encode();
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        let mut input = io::Cursor::new(&two);
        let mut buf = Vec::new();
        for _ in 0..2 {
            let (back, len) = Record::read_from(&mut input, &mut buf)
                .expect("reads")
                .expect("a record");
            assert_eq!(back, r);
            assert_eq!(len, bytes.len() as u64);
        }
        assert!(Record::read_from(&mut input, &mut buf).expect("end").is_none());
        assert_eq!(
            (r.index_of(10), r.index_of(11), r.index_of(12), r.index_of(13)),
            (None, Some(0), Some(1), None)
        );
        assert_eq!(r.last_line(), 12);
    }

    #[test]
    fn cut_and_foreign_bytes_are_not_records() {
        let bytes = record(b"From: a@x.test\r\n\r\nbody\r\n").encode();
        for cut in [10, bytes.len() - 5, bytes.len() - 1] {
            let e = Record::decode(&bytes[..cut]).expect_err("cut short");
            assert!(e.is_torn(), "cut at {cut}: {e}");
        }
        assert!(matches!(
            Record::decode(b"{\"first_line\":0}\n"),
            Err(RecordError::Json(_))
        ));
        let none = String::from_utf8_lossy(&bytes).replace("[\"a@x.test\",\"b@y.test\"]", "[]");
        assert!(matches!(
            Record::decode(none.as_bytes()),
            Err(RecordError::NoRecipients)
        ));
        let mut unterminated = bytes.clone();
        *unterminated.last_mut().expect("bytes") = b'x';
        assert!(matches!(Record::decode(&unterminated), Err(RecordError::Unterminated)));
    }
}
