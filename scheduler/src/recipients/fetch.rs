//! Re-reading one row by its byte offset, so a waiting row costs two numbers, not its values.
//!
//! [`RowFetcher`] opens the file as [`RecipientReader`] does (same format, header and column
//! checks), keeps it open, and for each fetch seeks to the offset and decodes one record with
//! the streaming code, so it yields the very [`Row`] the stream did.
//!
//! An offset is checked as far as one can without reading from the start: it must lie inside
//! the file and after the header, follow a line end (CR or LF for CSV, LF for JSONL) and not
//! start a blank line. A CSV line inside a multi-line quoted field passes these checks; an
//! offset taken from [`RecipientRow::offset`] never points there.

use std::io;
use std::path::Path;

use super::csv_file::CsvFetcher;
use super::jsonl_file::JsonlFetcher;
use super::{Layout, RecipientError, RecipientReader, Row, Source};

#[cfg(doc)]
use super::RecipientRow;

/// Why no row starts at a fetched offset (see [`RecipientError::NoRowAt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffsetProblem {
    /// The offset is at or past the end of the file.
    #[error("past the end of the file ({len} bytes)")]
    PastEnd {
        /// The file's length.
        len: u64,
    },
    /// The offset is inside the CSV header row.
    #[error("inside the header row")]
    InHeader,
    /// The byte before the offset does not end a line.
    #[error("not at the start of a line")]
    MidLine,
    /// The line at the offset is blank.
    #[error("the line there is blank")]
    BlankLine,
}

/// Re-reads single rows of a recipient file by (byte offset, line); see the module docs.
pub struct RowFetcher {
    layout: Layout,
    /// The file's length when opened.
    len: u64,
    source: FetchSource,
}

enum FetchSource {
    Csv(CsvFetcher),
    Jsonl(JsonlFetcher),
    Spool(super::spooled::SpoolFetcher),
    Memory(super::memory::MemoryFetcher),
}

/// Why a format's fetch failed, before the path, line and offset are attached.
pub(super) enum FetchError {
    /// No row starts at the offset.
    NoRow(OffsetProblem),
    /// Reading failed.
    Io(io::Error),
}

impl FetchError {
    /// The file ended before the row did (it shrank after it was opened).
    pub(super) fn ended() -> FetchError {
        FetchError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file ended before the row (was it changed after it was opened?)",
        ))
    }
}

impl From<io::Error> for FetchError {
    fn from(e: io::Error) -> Self {
        FetchError::Io(e)
    }
}

impl RowFetcher {
    /// Opens `path` as [`RecipientReader::open`] does, with the same errors.
    pub fn open(path: &Path, email_column: &str) -> Result<RowFetcher, RecipientError> {
        let RecipientReader { layout, source, .. } = RecipientReader::open(path, email_column)?;
        let open_err = |source| RecipientError::Open {
            path: path.to_owned(),
            source,
        };
        let (source, file) = match source {
            Source::Csv(src) => {
                let src = src.into_fetcher().map_err(open_err)?;
                let len = src.file().metadata().map_err(open_err)?.len();
                (FetchSource::Csv(src), len)
            }
            Source::Jsonl(src) => {
                let src = src.into_fetcher();
                let len = src.file().metadata().map_err(open_err)?.len();
                (FetchSource::Jsonl(src), len)
            }
            Source::Spool(src) => return Ok(RowFetcher::spooled(src.stream().clone())),
            Source::Memory(src) => return RowFetcher::memory(src.rows().clone(), email_column),
        };
        let len = file;
        Ok(RowFetcher { layout, len, source })
    }

    /// Re-reads rows held in memory, as [`RecipientReader::memory`] reads them.
    pub fn memory(rows: std::sync::Arc<super::MemoryRows>, email_column: &str) -> Result<RowFetcher, RecipientError> {
        let RecipientReader { layout, .. } = RecipientReader::memory(rows.clone(), email_column)?;
        Ok(RowFetcher {
            layout,
            len: rows.len() as u64,
            source: FetchSource::Memory(super::memory::MemoryFetcher { rows }),
        })
    }

    /// Re-reads rows of a spool stream (see [`RecipientReader::spooled`]).
    pub fn spooled(stream: std::sync::Arc<crate::spool::Stream>) -> RowFetcher {
        RowFetcher {
            layout: super::spooled_layout(&stream),
            // A stream grows: its records are checked where they are read.
            len: u64::MAX,
            source: FetchSource::Spool(super::spooled::SpoolFetcher { stream }),
        }
    }

    /// The recipient file.
    pub fn path(&self) -> &Path {
        &self.layout.path
    }

    /// Column names, in file order (as [`RecipientReader::columns`]).
    pub fn columns(&self) -> &[String] {
        &self.layout.columns
    }

    /// The row whose record starts at byte `offset`, with `line` as its line: equal to the
    /// [`Row`] the stream yielded for it, rejections included.
    ///
    /// An offset where no row starts gives [`RecipientError::NoRowAt`]; a read failure,
    /// [`RecipientError::Io`]. The fetcher stays usable after either.
    pub fn fetch(&mut self, offset: u64, line: u64) -> Result<Row, RecipientError> {
        let layout = &self.layout;
        let fetched = if offset >= self.len {
            Err(FetchError::NoRow(OffsetProblem::PastEnd { len: self.len }))
        } else {
            match &mut self.source {
                FetchSource::Csv(src) => src.fetch(&layout.columns, offset, line),
                FetchSource::Jsonl(src) => src.fetch(layout.columns.len(), offset, line),
                FetchSource::Spool(src) => src.fetch(offset, line),
                FetchSource::Memory(src) => src.fetch(offset, line),
            }
        };
        match fetched {
            Ok(raw) => Ok(layout.row(raw)),
            Err(FetchError::NoRow(problem)) => Err(RecipientError::NoRowAt {
                path: layout.path.clone(),
                line,
                offset,
                problem,
            }),
            Err(FetchError::Io(source)) => Err(RecipientError::Io {
                path: layout.path.clone(),
                line,
                source,
            }),
        }
    }
}
