//! One spooled message as it lies in a segment: a single line of JSON (the envelope, the
//! recipients' line numbers and the message in base64), ended by LF. A line is the unit of
//! both the write (appended whole, synced before the message is acknowledged) and the read
//! (a torn last line after a crash was never acknowledged, and recovery cuts it).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A spooled message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// The message, base64.
    pub raw: String,
}

/// Why a segment line is not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not the JSON of a record.
    #[error("not a spool record: {0}")]
    Json(#[from] serde_json::Error),
    /// The message is not valid base64.
    #[error("the message is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// A record with no recipient.
    #[error("a record without recipients")]
    NoRecipients,
}

impl Record {
    /// The record as one line, LF included.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Decodes one line (with or without its LF).
    pub fn decode(line: &[u8]) -> Result<Record, RecordError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let record: Record = serde_json::from_slice(line)?;
        if record.rcpt.is_empty() {
            return Err(RecordError::NoRecipients);
        }
        Ok(record)
    }

    /// The message bytes.
    pub fn message(&self) -> Result<Vec<u8>, RecordError> {
        Ok(STANDARD.decode(&self.raw)?)
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

/// Encodes `raw` for [`Record::raw`].
pub fn encode_message(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_maps_lines_to_recipients() {
        let r = Record {
            first_line: 10,
            mail_from: "app@example.com".into(),
            rcpt: vec!["a@x.test".into(), "b@y.test".into()],
            user: "app".into(),
            peer: "127.0.0.1:5000".into(),
            at: 1,
            message_id: "m1@example.com".into(),
            from_domain: "example.com".into(),
            raw: encode_message(b"From: app@example.com\r\n\r\nhi\r\n"),
        };
        let line = r.encode();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        let back = Record::decode(&line).expect("decodes");
        assert_eq!(back, r);
        assert_eq!(back.message().expect("base64"), b"From: app@example.com\r\n\r\nhi\r\n");
        assert_eq!(
            (r.index_of(10), r.index_of(11), r.index_of(12), r.index_of(13)),
            (None, Some(0), Some(1), None)
        );
        assert_eq!(r.last_line(), 12);
    }

    #[test]
    fn torn_and_foreign_lines_are_not_records() {
        let line = Record {
            first_line: 0,
            mail_from: String::new(),
            rcpt: vec!["a@x.test".into()],
            user: "u".into(),
            peer: String::new(),
            at: 0,
            message_id: "m@x".into(),
            from_domain: "x.test".into(),
            raw: encode_message(b"x"),
        }
        .encode();
        assert!(Record::decode(&line[..line.len() / 2]).is_err(), "a torn line");
        assert!(Record::decode(b"{\"first_line\":0}").is_err());
        let mut none = line.clone();
        let s = String::from_utf8(none.clone())
            .expect("utf8")
            .replace("[\"a@x.test\"]", "[]");
        none = s.into_bytes();
        assert!(matches!(Record::decode(&none), Err(RecordError::NoRecipients)));
    }
}
