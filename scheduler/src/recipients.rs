//! Streamed recipient reader (CSV or JSONL) and run-wide deduplication, in flat memory.
//!
//! [`RecipientReader`] yields one [`Row`] at a time: a [`RecipientRow`] with a validated
//! address, or a [`RejectedRow`] naming the line, field, value and reason (bad address, wrong
//! field count, invalid UTF-8, bad JSON). A bad row never ends the stream; only an I/O error
//! does ([`RecipientError::Io`]), after which the reader yields nothing more.
//!
//! - CSV: the header row names the columns (names are trimmed, a UTF-8 BOM is ignored); each
//!   record must have exactly as many fields. Line numbers are the physical line where the
//!   record starts.
//! - JSONL: one JSON object per line, values strings, numbers, booleans or null (empty). The
//!   first non-blank line must be a valid object: its keys, in order, are the columns. Later
//!   lines missing a column render it as empty; extra keys are ignored. Blank lines are skipped.
//!
//! Limits: a single CSV record or JSONL line is held in memory whole, so memory is bounded by
//! the longest line, not the file size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::address::EmailAddress;

mod dedup;
pub use dedup::Deduplicator;

/// Rejected values longer than this are cut (on a character boundary) and end with `…`.
pub const MAX_REJECTED_VALUE_LEN: usize = 512;

/// A recipient file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum RecipientError {
    /// The file could not be opened.
    #[error("{}: cannot open recipient file: {source}", .path.display())]
    Open {
        /// The recipient file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The extension is neither `.csv` nor `.jsonl`.
    #[error("{}: unsupported recipient file type (expected .csv or .jsonl)", .path.display())]
    UnsupportedFormat {
        /// The recipient file.
        path: PathBuf,
    },
    /// The header row (CSV) or first object (JSONL) is unusable.
    #[error("{}:{line}: bad header: {reason}", .path.display())]
    Header {
        /// The recipient file.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The email column is not among the columns.
    #[error("{}: no column `{column}` for the addresses; columns found: {}", .path.display(), .found.join(", "))]
    MissingEmailColumn {
        /// The recipient file.
        path: PathBuf,
        /// The configured email column.
        column: String,
        /// The columns the file has.
        found: Vec<String>,
    },
    /// Reading failed part-way; the rows before `line` were delivered.
    #[error("{}:{line}: read error: {source}", .path.display())]
    Io {
        /// The recipient file.
        path: PathBuf,
        /// 1-based line being read when the error happened.
        line: u64,
        /// The I/O error.
        source: io::Error,
    },
}

/// A recipient with a valid address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRow {
    /// 1-based physical line where the row starts.
    pub line: u64,
    /// The validated address (from the email column).
    pub email: EmailAddress,
    /// One value per column, in column order (the email column as written).
    pub values: Vec<String>,
}

/// A row that cannot be sent, with enough detail for the rejects file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// 1-based physical line where the row starts.
    pub line: u64,
    /// The column at fault, or `(row)` when the row as a whole is malformed.
    pub field: String,
    /// The offending value (lossily decoded, cut at [`MAX_REJECTED_VALUE_LEN`]).
    pub value: String,
    /// Why the row is refused.
    pub reason: String,
}

impl RejectedRow {
    /// Builds a rejection, cutting `value` at [`MAX_REJECTED_VALUE_LEN`].
    pub fn new(line: u64, field: impl Into<String>, value: &str, reason: impl Into<String>) -> Self {
        RejectedRow {
            line,
            field: field.into(),
            value: clip(value),
            reason: reason.into(),
        }
    }
}

/// The field name used when a whole row is malformed.
pub const WHOLE_ROW: &str = "(row)";

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A sendable recipient.
    Recipient(RecipientRow),
    /// A refused row; the stream continues.
    Rejected(RejectedRow),
}

/// Streams recipients from a `.csv` or `.jsonl` file; see the module docs.
pub struct RecipientReader {
    path: PathBuf,
    columns: Vec<String>,
    email_index: usize,
    source: Source,
    done: bool,
}

enum Source {
    Csv {
        reader: csv::Reader<File>,
        record: csv::ByteRecord,
    },
    Jsonl(JsonlSource),
}

struct JsonlSource {
    reader: BufReader<File>,
    buf: Vec<u8>,
    /// Line number of the line in `buf`.
    line: u64,
    /// The first object was read by `open`; `buf` still holds it.
    pending: bool,
    index: HashMap<String, usize>,
}

impl RecipientReader {
    /// Opens `path` (format by extension), reads the columns and finds `email_column`.
    pub fn open(path: &Path, email_column: &str) -> Result<RecipientReader, RecipientError> {
        let open_err = |source| RecipientError::Open {
            path: path.to_owned(),
            source,
        };
        let (columns, source) = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => {
                let file = File::open(path).map_err(open_err)?;
                open_csv(path, file)?
            }
            Some("jsonl") => {
                let file = File::open(path).map_err(open_err)?;
                open_jsonl(path, file)?
            }
            _ => return Err(RecipientError::UnsupportedFormat { path: path.to_owned() }),
        };
        let email_index =
            columns
                .iter()
                .position(|c| c == email_column)
                .ok_or_else(|| RecipientError::MissingEmailColumn {
                    path: path.to_owned(),
                    column: email_column.to_owned(),
                    found: columns.clone(),
                })?;
        Ok(RecipientReader {
            path: path.to_owned(),
            columns,
            email_index,
            source,
            done: false,
        })
    }

    /// The recipient file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Column names, in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Index of the email column in [`RecipientReader::columns`].
    pub fn email_index(&self) -> usize {
        self.email_index
    }

    /// The next row; `None` at the end (or after an I/O error was returned).
    pub fn next_row(&mut self) -> Option<Result<Row, RecipientError>> {
        if self.done {
            return None;
        }
        let next = match &mut self.source {
            Source::Csv { reader, record } => next_csv(&self.path, &self.columns, reader, record),
            Source::Jsonl(src) => src.next(&self.path, self.columns.len()),
        };
        let next = match next {
            Some(Ok(Ok((line, values)))) => Some(Ok(self.recipient(line, values))),
            Some(Ok(Err(rejected))) => Some(Ok(Row::Rejected(rejected))),
            Some(Err(e)) => Some(Err(e)),
            None => None,
        };
        self.done = matches!(next, None | Some(Err(_)));
        next
    }

    fn recipient(&self, line: u64, values: Vec<String>) -> Row {
        let raw = &values[self.email_index];
        match EmailAddress::parse(raw) {
            Ok(email) => Row::Recipient(RecipientRow { line, email, values }),
            Err(e) => Row::Rejected(RejectedRow::new(
                line,
                &self.columns[self.email_index],
                raw,
                e.problem.to_string(),
            )),
        }
    }
}

impl Iterator for RecipientReader {
    type Item = Result<Row, RecipientError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// A decoded row (line, values) or a rejection; the outer `Result` is a fatal read error.
type RawRow = Result<Result<(u64, Vec<String>), RejectedRow>, RecipientError>;

fn open_csv(path: &Path, file: File) -> Result<(Vec<String>, Source), RecipientError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file);
    let header_err = |reason: String| RecipientError::Header {
        path: path.to_owned(),
        line: 1,
        reason,
    };
    let headers = reader.byte_headers().map_err(|e| csv_error(path, 1, e))?.clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(header_err(
            "empty file: a header row naming the columns is required".into(),
        ));
    }
    let mut columns = Vec::with_capacity(headers.len());
    for (i, field) in headers.iter().enumerate() {
        let field = if i == 0 {
            field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field)
        } else {
            field
        };
        let name =
            std::str::from_utf8(field).map_err(|_| header_err(format!("column {} is not valid UTF-8", i + 1)))?;
        columns.push(name.trim().to_owned());
    }
    check_unique(&columns).map_err(header_err)?;
    Ok((
        columns,
        Source::Csv {
            reader,
            record: csv::ByteRecord::new(),
        },
    ))
}

fn next_csv(
    path: &Path,
    columns: &[String],
    reader: &mut csv::Reader<File>,
    record: &mut csv::ByteRecord,
) -> Option<RawRow> {
    match reader.read_byte_record(record) {
        Ok(false) => return None,
        Ok(true) => {}
        Err(e) => return Some(Err(csv_error(path, reader.position().line(), e))),
    }
    let line = record.position().map_or_else(|| reader.position().line(), |p| p.line());
    let width = columns.len();
    if record.len() != width {
        let value = record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(",");
        let reason = format!("expected {width} fields, found {}", record.len());
        return Some(Ok(Err(RejectedRow::new(line, WHOLE_ROW, &value, reason))));
    }
    let mut values = Vec::with_capacity(width);
    for (i, field) in record.iter().enumerate() {
        match std::str::from_utf8(field) {
            Ok(s) => values.push(s.to_owned()),
            Err(e) => {
                let reason = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                let value = String::from_utf8_lossy(field);
                return Some(Ok(Err(RejectedRow::new(line, &columns[i], &value, reason))));
            }
        }
    }
    Some(Ok(Ok((line, values))))
}

fn csv_error(path: &Path, line: u64, e: csv::Error) -> RecipientError {
    let source = match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    };
    RecipientError::Io {
        path: path.to_owned(),
        line,
        source,
    }
}

fn check_unique(columns: &[String]) -> Result<(), String> {
    for (i, name) in columns.iter().enumerate() {
        if columns[..i].contains(name) {
            return Err(format!("duplicate column `{name}`"));
        }
    }
    Ok(())
}

fn open_jsonl(path: &Path, file: File) -> Result<(Vec<String>, Source), RecipientError> {
    let mut src = JsonlSource {
        reader: BufReader::with_capacity(64 * 1024, file),
        buf: Vec::new(),
        line: 0,
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
    Ok((columns, Source::Jsonl(src)))
}

impl JsonlSource {
    /// Reads the next non-blank line into `buf` (without its line ending); false at EOF.
    fn read_line(&mut self, path: &Path) -> Result<bool, RecipientError> {
        loop {
            self.buf.clear();
            self.line += 1;
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| RecipientError::Io {
                    path: path.to_owned(),
                    line: self.line,
                    source,
                })?;
            if n == 0 {
                return Ok(false);
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(true);
            }
        }
    }

    fn next(&mut self, path: &Path, width: usize) -> Option<RawRow> {
        if !std::mem::take(&mut self.pending) {
            match self.read_line(path) {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let line = self.line;
        let text = self.buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&self.buf);
        let reject =
            |field: &str, value: &str, reason: String| Some(Ok(Err(RejectedRow::new(line, field, value, reason))));
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
            let Some(&i) = self.index.get(key.trim()) else { continue };
            values[i] = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => String::new(),
                nested => {
                    let reason = "nested arrays and objects are not supported".to_owned();
                    return reject(&key, &nested.to_string(), reason);
                }
            };
        }
        Some(Ok(Ok((line, values))))
    }
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
    let fields = de.deserialize_map(Ordered).map_err(|e| format!("invalid JSON: {e}"))?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(fields)
}

fn clip(value: &str) -> String {
    if value.len() <= MAX_REJECTED_VALUE_LEN {
        return value.to_owned();
    }
    let mut end = MAX_REJECTED_VALUE_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}
