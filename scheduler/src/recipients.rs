//! Streamed recipient reader (CSV or JSONL) and run-wide deduplication, in flat memory.
//!
//! [`RecipientReader`] yields one [`Row`] at a time: a [`RecipientRow`] with a validated
//! address, or a [`RejectedRow`] naming the line, field, value and reason (bad address, wrong
//! field count, invalid UTF-8, bad JSON). A bad row never ends the stream; only an I/O error
//! does ([`RecipientError::Io`]), after which the reader yields nothing more.
//!
//! - CSV: the header row names the columns (names are trimmed, a UTF-8 BOM is ignored); each
//!   record must have exactly as many fields. Line numbers are the physical line where the
//!   record starts (lines end in LF or CRLF; a file using bare CR counts as one line).
//! - JSONL: one JSON object per line, values strings, numbers, booleans or null (empty). The
//!   first non-blank line must be a valid object: its keys, in order, are the columns. Later
//!   lines missing a column render it as empty; extra keys are ignored. Blank lines are skipped.
//!
//! Every row carries the byte offset where its record starts (CSV: the record's first byte;
//! JSONL: the line's first byte). [`RowFetcher`] re-reads one row from its (offset, line) and
//! yields the very [`Row`] the stream did, so a row can wait (a retry hours later, a busy
//! site) as two numbers instead of its values.
//!
//! Limits: a single CSV record or JSONL line is held in memory whole, so memory is bounded by
//! the longest line, not the file size.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::address::EmailAddress;

mod block_file;
mod csv_file;
mod dedup;
mod duplicates;
mod fetch;
mod jsonl_file;
mod memory;
pub mod spooled;

use csv_file::CsvSource;
pub use dedup::Deduplicator;
pub use duplicates::{scan_duplicates, DuplicateScan, DuplicateScanError};
pub use fetch::{OffsetProblem, RowFetcher};
use jsonl_file::JsonlSource;
pub use memory::MemoryRows;
use memory::MemorySource;

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
    /// Reading failed, at open or part-way (the rows before `line` were delivered).
    #[error("{}:{line}: read error: {source}", .path.display())]
    Io {
        /// The recipient file.
        path: PathBuf,
        /// 1-based line being read when the error happened.
        line: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// [`RowFetcher::fetch`] was given a byte offset where no row starts.
    #[error("{}:{line}: no row starts at byte offset {offset}: {problem}", .path.display())]
    NoRowAt {
        /// The recipient file.
        path: PathBuf,
        /// The line given with the offset.
        line: u64,
        /// The offset given.
        offset: u64,
        /// What is there instead.
        problem: OffsetProblem,
    },
}

/// A recipient with a valid address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRow {
    /// 1-based physical line where the row starts.
    pub line: u64,
    /// Byte offset in the file where the row's record starts (for [`RowFetcher::fetch`]).
    pub offset: u64,
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
    layout: Layout,
    source: Source,
    /// Byte offset of the row last returned.
    last_offset: u64,
    done: bool,
}

/// What a recipient file's head tells: its columns and which one holds the address.
struct Layout {
    path: PathBuf,
    columns: Vec<String>,
    email_index: usize,
}

impl Layout {
    /// The row a source read: a recipient if it decoded and its address is valid.
    fn row(&self, raw: RawRow) -> Row {
        let RawRow { offset, line, values } = raw;
        let values = match values {
            Ok(values) => values,
            Err(rejected) => return Row::Rejected(rejected),
        };
        let raw = values.get(self.email_index).map_or("", String::as_str);
        match EmailAddress::parse(raw) {
            Ok(email) => Row::Recipient(RecipientRow {
                line,
                offset,
                email,
                values,
            }),
            Err(e) => Row::Rejected(RejectedRow::new(
                line,
                column_label(&self.columns[self.email_index], self.email_index),
                raw,
                e.problem.to_string(),
            )),
        }
    }
}

enum Source {
    Csv(CsvSource),
    Jsonl(JsonlSource),
    Spool(spooled::SpoolSource),
    Memory(MemorySource),
}

impl Layout {
    /// The layout of `columns` read from `path`, with the address in `email_column`.
    fn new(path: &Path, columns: Vec<String>, email_column: &str) -> Result<Layout, RecipientError> {
        let email_index =
            columns
                .iter()
                .position(|c| c == email_column)
                .ok_or_else(|| RecipientError::MissingEmailColumn {
                    path: path.to_owned(),
                    column: email_column.to_owned(),
                    found: columns.clone(),
                })?;
        Ok(Layout {
            path: path.to_owned(),
            columns,
            email_index,
        })
    }
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
                let (columns, source) = CsvSource::open(path, File::open(path).map_err(open_err)?)?;
                (columns, Source::Csv(source))
            }
            Some("jsonl") => {
                let (columns, source) = JsonlSource::open(path, File::open(path).map_err(open_err)?)?;
                (columns, Source::Jsonl(source))
            }
            _ => return Err(RecipientError::UnsupportedFormat { path: path.to_owned() }),
        };
        Ok(RecipientReader {
            layout: Layout::new(path, columns, email_column)?,
            source,
            last_offset: 0,
            done: false,
        })
    }

    /// Reads `rows` held in memory (a cluster chunk's), the address in `email_column`.
    pub fn memory(rows: std::sync::Arc<MemoryRows>, email_column: &str) -> Result<RecipientReader, RecipientError> {
        check_unique(&rows.columns).map_err(|reason| RecipientError::Header {
            path: rows.label.clone(),
            line: 0,
            reason,
        })?;
        Ok(RecipientReader {
            layout: Layout::new(&rows.label, rows.columns.clone(), email_column)?,
            source: Source::Memory(MemorySource::new(rows)),
            last_offset: 0,
            done: false,
        })
    }

    /// The recipients of a spool stream, following its writer until `closed` says the
    /// reader is no longer wanted. The columns are [`spooled::SPOOL_COLUMNS`].
    pub fn spooled(follower: crate::spool::Follower) -> RecipientReader {
        RecipientReader {
            layout: spooled_layout(follower.stream()),
            source: Source::Spool(spooled::SpoolSource::new(follower)),
            last_offset: 0,
            done: false,
        }
    }

    /// Whether this reads a spool stream (rows arrive as they are injected; duplicates are
    /// separate messages).
    pub fn is_spooled(&self) -> bool {
        matches!(self.source, Source::Spool(_))
    }

    /// Whether the next row of a spool stream is not there yet (the reader would wait for
    /// the writer): the time to hand on what was gathered.
    pub fn would_wait(&self) -> bool {
        matches!(&self.source, Source::Spool(src) if src.caught_up())
    }

    /// The recipient file.
    pub fn path(&self) -> &Path {
        &self.layout.path
    }

    /// Column names, in file order.
    pub fn columns(&self) -> &[String] {
        &self.layout.columns
    }

    /// Index of the email column in [`RecipientReader::columns`].
    pub fn email_index(&self) -> usize {
        self.layout.email_index
    }

    /// Where [`RecipientReader::last_offset`] ends: the number of rows held in memory, else
    /// the length of the file (of the directory, for a spool stream; 0 if it cannot be read).
    pub fn size(&self) -> u64 {
        match &self.source {
            Source::Memory(src) => src.rows().len() as u64,
            _ => std::fs::metadata(&self.layout.path).map_or(0, |m| m.len()),
        }
    }

    /// Byte offset where the row last returned by [`RecipientReader::next_row`] starts,
    /// rejected or not (0 before the first). [`RecipientRow::offset`] holds it too.
    pub fn last_offset(&self) -> u64 {
        self.last_offset
    }

    /// The next row; `None` at the end (or after an I/O error was returned).
    pub fn next_row(&mut self) -> Option<Result<Row, RecipientError>> {
        if self.done {
            return None;
        }
        let layout = &self.layout;
        let next = match &mut self.source {
            Source::Csv(src) => src.next(&layout.path, &layout.columns),
            Source::Jsonl(src) => src.next(&layout.path, layout.columns.len()),
            Source::Spool(src) => src.next(),
            Source::Memory(src) => src.next().map(Ok),
        };
        let next = next.map(|read| {
            read.map(|raw| {
                self.last_offset = raw.offset;
                layout.row(raw)
            })
        });
        self.done = matches!(next, None | Some(Err(_)));
        next
    }
}

impl Iterator for RecipientReader {
    type Item = Result<Row, RecipientError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// The layout of a spool stream's rows.
fn spooled_layout(stream: &crate::spool::Stream) -> Layout {
    Layout {
        path: stream.dir().to_path_buf(),
        columns: spooled::SPOOL_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        email_index: spooled::column::EMAIL,
    }
}

/// A record as a source read it, before the address is checked.
struct RawRow {
    /// Byte offset of the record's first byte.
    offset: u64,
    /// 1-based physical line where it starts.
    line: u64,
    /// Its values in column order, or why it is refused.
    values: Result<Vec<String>, RejectedRow>,
}

/// Refuses duplicate column names (a placeholder would be ambiguous).
fn check_unique(columns: &[String]) -> Result<(), String> {
    for (i, name) in columns.iter().enumerate() {
        if columns[..i].contains(name) {
            return Err(format!("duplicate column `{name}`"));
        }
    }
    Ok(())
}

/// How a rejection names the column at 0-based `index`: its name, or `(column N)` when the
/// header left it unnamed (`email,` has an empty second column), so a rejects file never
/// names an empty field.
fn column_label(name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("(column {})", index + 1)
    } else {
        name.to_owned()
    }
}

/// Cuts `value` at [`MAX_REJECTED_VALUE_LEN`] on a character boundary.
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
