//! JSONL recipients: one JSON object per line; the first object's keys are the columns.
//!
//! [`JsonlFetcher`] re-reads one line from its offset with the same decoding.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::block_file::BlockFile;
use super::fetch::FetchError;
use super::{check_unique, column_label, OffsetProblem, RawRow, RecipientError, RejectedRow, WHOLE_ROW};

/// A JSONL file being streamed.
pub(super) struct JsonlSource {
    reader: BufReader<File>,
    /// The current line, without its line ending; reused.
    buf: Vec<u8>,
    /// Number of the line in `buf`.
    line: u64,
    /// Byte offset of the line in `buf`.
    line_offset: u64,
    /// Bytes read so far.
    read: u64,
    /// The first object was read by `open`; `buf` still holds it.
    pending: bool,
    /// Column name -> index.
    index: HashMap<String, usize>,
}

impl JsonlSource {
    /// Reads the first non-blank line, which must be an object; its keys are the columns.
    pub(super) fn open(path: &Path, file: File) -> Result<(Vec<String>, JsonlSource), RecipientError> {
        let mut src = JsonlSource {
            reader: BufReader::with_capacity(64 * 1024, file),
            buf: Vec::new(),
            line: 0,
            line_offset: 0,
            read: 0,
            pending: true,
            index: HashMap::new(),
        };
        let header_err = |line, reason| RecipientError::Header {
            path: path.to_owned(),
            line,
            reason,
        };
        if !src.read_line(path)? {
            return Err(header_err(1, "empty file: the first line must be a JSON object".into()));
        }
        let first = src.buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&src.buf);
        let fields = parse_object(first).map_err(|reason| {
            header_err(
                src.line,
                format!("the first line defines the columns and must be valid: {reason}"),
            )
        })?;
        let columns: Vec<String> = fields.into_iter().map(|(k, _)| k.trim().to_owned()).collect();
        check_unique(&columns).map_err(|reason| header_err(src.line, reason))?;
        src.index = columns.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        Ok((columns, src))
    }

    /// Reads the next non-blank line into `buf` (without its line ending); false at EOF.
    fn read_line(&mut self, path: &Path) -> Result<bool, RecipientError> {
        loop {
            self.line += 1;
            self.line_offset = self.read;
            let n = read_line(&mut self.reader, &mut self.buf).map_err(|source| RecipientError::Io {
                path: path.to_owned(),
                line: self.line,
                source,
            })?;
            self.read += n as u64;
            if n == 0 {
                return Ok(false);
            }
            if !is_blank(&self.buf) {
                return Ok(true);
            }
        }
    }

    /// The next line's values in column order, or its rejection; `None` at the end.
    pub(super) fn next(&mut self, path: &Path, width: usize) -> Option<Result<RawRow, RecipientError>> {
        if !std::mem::take(&mut self.pending) {
            match self.read_line(path) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(RawRow {
            offset: self.line_offset,
            line: self.line,
            values: decode(&self.buf, self.line, &self.index, width),
        }))
    }

    /// Turns this source into a fetcher over the same file.
    pub(super) fn into_fetcher(self) -> JsonlFetcher {
        JsonlFetcher {
            reader: BlockFile::new(self.reader.into_inner()),
            buf: self.buf,
            index: self.index,
        }
    }
}

/// Re-reads single lines by byte offset; the file stays open between fetches.
pub(super) struct JsonlFetcher {
    reader: BlockFile,
    /// The line being decoded; reused.
    buf: Vec<u8>,
    /// Column name -> index.
    index: HashMap<String, usize>,
}

impl JsonlFetcher {
    /// The open file.
    pub(super) fn file(&self) -> &File {
        self.reader.get_ref()
    }

    /// The line starting at `offset` (reported as `line`), decoded as when streamed;
    /// `offset` is inside the file.
    pub(super) fn fetch(&mut self, width: usize, offset: u64, line: u64) -> Result<RawRow, FetchError> {
        // From the byte before, which must end the previous line.
        self.reader.seek(SeekFrom::Start(offset.saturating_sub(1)))?;
        if offset > 0 {
            self.buf.clear();
            self.reader.read_until(b'\n', &mut self.buf)?;
            if self.buf != b"\n" {
                return Err(FetchError::NoRow(OffsetProblem::MidLine));
            }
        }
        if read_line(&mut self.reader, &mut self.buf)? == 0 {
            return Err(FetchError::ended());
        }
        if is_blank(&self.buf) {
            return Err(FetchError::NoRow(OffsetProblem::BlankLine));
        }
        Ok(RawRow {
            offset,
            line,
            values: decode(&self.buf, line, &self.index, width),
        })
    }
}

/// Reads one line into `buf` without its line ending; returns the bytes read (0 at EOF).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.clear();
    let n = reader.read_until(b'\n', buf)?;
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(n)
}

/// Blank lines (white space only) are skipped.
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// A line's values in column order, or why it is refused.
fn decode(
    line_bytes: &[u8],
    line: u64,
    index: &HashMap<String, usize>,
    width: usize,
) -> Result<Vec<String>, RejectedRow> {
    let text = line_bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line_bytes);
    let reject = |field: &str, value: &str, reason: String| Err(RejectedRow::new(line, field, value, reason));
    if let Err(e) = std::str::from_utf8(text) {
        let value = String::from_utf8_lossy(text);
        return reject(WHOLE_ROW, &value, format!("invalid UTF-8 at byte {}", e.valid_up_to()));
    }
    let fields = match parse_object(text) {
        Ok(fields) => fields,
        Err(reason) => return reject(WHOLE_ROW, &String::from_utf8_lossy(text), reason),
    };
    let mut values = vec![String::new(); width];
    for (key, value) in fields {
        let Some(&i) = index.get(key.trim()) else {
            continue;
        };
        values[i] = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            nested => {
                let reason = "nested arrays and objects are not supported".to_owned();
                return reject(&column_label(key.trim(), i), &nested.to_string(), reason);
            }
        };
    }
    Ok(values)
}

/// Parses one JSON object keeping its key order (whatever serde_json's map type is).
fn parse_object(text: &[u8]) -> Result<Vec<(String, Value)>, String> {
    struct Ordered;
    impl<'de> Visitor<'de> for Ordered {
        type Value = Vec<(String, Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(entry) = map.next_entry::<String, Value>()? {
                fields.push(entry);
            }
            Ok(fields)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(text);
    let fields = de.deserialize_map(Ordered).map_err(json_error)?;
    de.end().map_err(json_error)?;
    Ok(fields)
}

/// serde_json's message with its position as a column (its "line 1" is always this line).
fn json_error(e: serde_json::Error) -> String {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&suffix) {
        Some(bare) => format!("invalid JSON at column {}: {bare}", e.column()),
        None => format!("invalid JSON: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz find (jsonl_recipients' sibling): a key `""` is a column without a name; a nested
    /// value under it must not be rejected with an empty field name.
    #[test]
    fn rejection_in_an_unnamed_column_names_it_by_number() {
        let index = HashMap::from([("email".to_owned(), 0), (String::new(), 1)]);
        let rejected = decode(br#"{"email":"a@example.test","":[1]}"#, 3, &index, 2).unwrap_err();
        assert_eq!(rejected.field, "(column 2)");
        assert_eq!(rejected.line, 3);
    }
}
