//! CSV recipients: header row, one record per row, physical line numbers and byte offsets.
//!
//! The csv crate's record positions miscount lines when lines end in CRLF and skip blank
//! lines, and point before the terminator that precedes a record, so [`LineTracker`] watches
//! the file stream through the reader and maps each record's position to the byte where its
//! first character is and that byte's line.
//!
//! [`CsvFetcher`] re-reads one record from its offset with the same decoding.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::block_file::BlockFile;
use super::fetch::FetchError;
use super::{check_unique, column_label, OffsetProblem, RawRow, RecipientError, RejectedRow, WHOLE_ROW};

/// A CSV file being streamed.
pub(super) struct CsvSource {
    reader: csv::Reader<LineTracker<File>>,
    /// Reused for every record.
    record: csv::ByteRecord,
}

impl CsvSource {
    /// Reads the header row; returns the (trimmed) column names.
    pub(super) fn open(path: &Path, file: File) -> Result<(Vec<String>, CsvSource), RecipientError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(LineTracker::new(file));
        let header_err = |reason: String| RecipientError::Header {
            path: path.to_owned(),
            line: 1,
            reason,
        };
        let headers = reader.byte_headers().map_err(|e| csv_error(path, 1, e))?;
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(header_err(
                "empty file: a header row naming the columns is required".into(),
            ));
        }
        let mut columns = Vec::with_capacity(headers.len());
        for (i, field) in headers.iter().enumerate() {
            let field = field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field);
            let name =
                std::str::from_utf8(field).map_err(|_| header_err(format!("column {} is not valid UTF-8", i + 1)))?;
            columns.push(name.trim().to_owned());
        }
        check_unique(&columns).map_err(header_err)?;
        let record = csv::ByteRecord::with_capacity(256, columns.len());
        Ok((columns, CsvSource { reader, record }))
    }

    /// The next record, decoded, or its rejection; `None` at the end.
    pub(super) fn next(&mut self, path: &Path, columns: &[String]) -> Option<Result<RawRow, RecipientError>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => {
                let line = self.reader.get_ref().lines_seen();
                return Some(Err(csv_error(path, line, e)));
            }
        }
        let byte = self.record.position().map_or(0, |p| p.byte());
        let (offset, line) = self.reader.get_mut().start_at(byte);
        Some(Ok(RawRow {
            offset,
            line,
            values: decode(&self.record, line, columns),
        }))
    }

    /// Turns this source, fresh from [`CsvSource::open`], into a fetcher over the same file.
    pub(super) fn into_fetcher(self) -> io::Result<CsvFetcher> {
        let data_start = self.reader.position().byte();
        let mut file = self.reader.into_inner().inner;
        file.rewind()?;
        // Small reads: a fetch wants one record, not the file's next pages.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1024)
            .from_reader(BlockFile::new(file));
        // The csv reader reads a header row before its first seek; let it be the real one.
        reader.byte_headers().map_err(csv_io_error)?;
        Ok(CsvFetcher {
            reader,
            record: csv::ByteRecord::new(),
            data_start,
        })
    }
}

/// Re-reads single records by byte offset; the file stays open between fetches.
pub(super) struct CsvFetcher {
    reader: csv::Reader<BlockFile>,
    /// Reused for every record.
    record: csv::ByteRecord,
    /// The end of the header row: no data record starts before.
    data_start: u64,
}

impl CsvFetcher {
    /// The open file.
    pub(super) fn file(&self) -> &File {
        self.reader.get_ref().get_ref()
    }

    /// The record starting at `offset` (reported at `line`), decoded as when streamed;
    /// `offset` is inside the file.
    pub(super) fn fetch(&mut self, columns: &[String], offset: u64, line: u64) -> Result<RawRow, FetchError> {
        // A record follows the terminator of the one before (data_start > 0: the header is not empty).
        let before = match offset.checked_sub(1) {
            Some(before) if offset >= self.data_start => before,
            _ => return Err(FetchError::NoRow(OffsetProblem::InHeader)),
        };
        let file = self.reader.get_mut();
        file.seek(SeekFrom::Start(before))?;
        let mut pair = [0; 2];
        file.read_exact(&mut pair)?;
        match pair {
            [b'\r' | b'\n', b'\r' | b'\n'] => return Err(FetchError::NoRow(OffsetProblem::BlankLine)),
            [b'\r' | b'\n', _] => {}
            _ => return Err(FetchError::NoRow(OffsetProblem::MidLine)),
        }
        // Start the parser on that terminator, which it skips: a fresh parser strips a UTF-8
        // BOM from its first bytes, and the streaming one only did so at the file start.
        let mut position = csv::Position::new();
        position.set_byte(before).set_line(line);
        self.reader
            .seek_raw(SeekFrom::Start(before), position)
            .map_err(csv_io_error)?;
        if !self.reader.read_byte_record(&mut self.record).map_err(csv_io_error)? {
            return Err(FetchError::ended());
        }
        Ok(RawRow {
            offset,
            line,
            values: decode(&self.record, line, columns),
        })
    }
}

/// A record's values in column order, or why it is refused.
fn decode(record: &csv::ByteRecord, line: u64, columns: &[String]) -> Result<Vec<String>, RejectedRow> {
    if record.len() != columns.len() {
        let value = record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(",");
        let reason = format!("expected {} fields, found {}", columns.len(), record.len());
        return Err(RejectedRow::new(line, WHOLE_ROW, &value, reason));
    }
    let mut values = Vec::with_capacity(columns.len());
    for (i, (field, column)) in record.iter().zip(columns).enumerate() {
        match std::str::from_utf8(field) {
            Ok(s) => values.push(s.to_owned()),
            Err(e) => {
                let reason = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                let column = column_label(column, i);
                return Err(RejectedRow::new(line, column, &String::from_utf8_lossy(field), reason));
            }
        }
    }
    Ok(values)
}

fn csv_error(path: &Path, line: u64, e: csv::Error) -> RecipientError {
    RecipientError::Io {
        path: path.to_owned(),
        line,
        source: csv_io_error(e),
    }
}

/// The I/O error inside (the csv reader is flexible, so it reports no other kind).
fn csv_io_error(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
    }
}

/// Passes bytes through, remembering where each record could start and its line.
///
/// A record can start at any byte that follows CR or LF and is neither (the csv crate ends
/// records at CR, LF or CRLF and skips empty ones); lines are counted by LF. Only starts not
/// yet asked about are kept, so memory is bounded by the csv reader's read-ahead plus the
/// current record.
struct LineTracker<R> {
    inner: R,
    /// Bytes passed through so far.
    offset: u64,
    /// Number of the line the next byte belongs to.
    line: u64,
    /// The last byte passed through was CR or LF (or nothing was read yet).
    at_line_start: bool,
    /// (byte offset, line number) of possible record starts not yet consumed, in order.
    starts: VecDeque<(u64, u64)>,
}

impl<R> LineTracker<R> {
    fn new(inner: R) -> Self {
        LineTracker {
            inner,
            offset: 0,
            line: 1,
            at_line_start: true,
            starts: VecDeque::new(),
        }
    }

    /// The (byte offset, line) of the first possible record start at or after `byte` (the
    /// csv crate reports a record's position before the terminators that precede it). Calls
    /// must come with increasing offsets.
    fn start_at(&mut self, byte: u64) -> (u64, u64) {
        while let Some(&(start, line)) = self.starts.front() {
            if start >= byte {
                return (start, line);
            }
            self.starts.pop_front();
        }
        // Not reached: the csv reader has read a record's first byte before it yields it.
        (byte, self.line)
    }

    /// Lines started so far (for errors).
    fn lines_seen(&self) -> u64 {
        self.line
    }

    fn scan(&mut self, data: &[u8]) {
        if self.at_line_start {
            if let Some(&first) = data.first() {
                if !matches!(first, b'\r' | b'\n') {
                    self.starts.push_back((self.offset, self.line));
                }
                self.at_line_start = false;
            }
        }
        for i in memchr::memchr2_iter(b'\r', b'\n', data) {
            if data[i] == b'\n' {
                self.line += 1;
            }
            match data.get(i + 1) {
                Some(b'\r' | b'\n') => {}
                Some(_) => self.starts.push_back((self.offset + i as u64 + 1, self.line)),
                None => self.at_line_start = true,
            }
        }
        self.offset += data.len() as u64;
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (offset, line) of every record after the header.
    fn starts(data: &[u8], chunk: usize) -> Vec<(u64, u64)> {
        let tracker = LineTracker::new(ChunkedReader { data, chunk });
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(tracker);
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            let byte = record.position().unwrap().byte();
            out.push(reader.get_mut().start_at(byte));
        }
        out
    }

    /// Hands out at most `chunk` bytes per read, to exercise line starts across reads.
    struct ChunkedReader<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for ChunkedReader<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn physical_lines_and_offsets_with_crlf_blank_lines_and_multiline_fields() {
        let data = b"h1,h2\r\na,1\r\n\r\n\r\nb,\"x\r\ny\"\r\nc,3\n\nd,4";
        for chunk in [1, 2, 3, 7, 8192] {
            assert_eq!(
                starts(data, chunk),
                [(7, 2), (16, 5), (26, 7), (31, 9)],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn bare_cr_ends_records_but_not_lines() {
        let data = b"\xEF\xBB\xBFh1,h2\ra,1\r\rb,2\nc,3";
        for chunk in [1, 2, 8192] {
            assert_eq!(starts(data, chunk), [(9, 1), (14, 1), (18, 2)], "chunk {chunk}");
        }
    }

    /// Fuzz find (csv_recipients): header `email,` has an unnamed second column, and a bad
    /// value in it was rejected with an empty field name.
    #[test]
    fn rejection_in_an_unnamed_column_names_it_by_number() {
        let columns = ["email".to_owned(), String::new()];
        let record = csv::ByteRecord::from(vec![&b"a@example.test"[..], &b"\xFFAda"[..]]);
        let rejected = decode(&record, 2, &columns).unwrap_err();
        assert_eq!(rejected.field, "(column 2)");
        assert_eq!(rejected.line, 2);
    }
}
