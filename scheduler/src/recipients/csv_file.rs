//! CSV recipients: header row, one record per row, physical line numbers.
//!
//! The csv crate's record positions miscount lines when lines end in CRLF and skip blank
//! lines, so [`LineTracker`] counts LF bytes as the file streams through the reader and maps
//! each record's byte offset to the line where its first character is.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::{check_unique, RawRow, RecipientError, RejectedRow, WHOLE_ROW};

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
    pub(super) fn next(&mut self, path: &Path, columns: &[String]) -> Option<RawRow> {
        let record = &mut self.record;
        match self.reader.read_byte_record(record) {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => {
                let line = self.reader.get_ref().lines_seen();
                return Some(Err(csv_error(path, line, e)));
            }
        }
        let byte = record.position().map_or(0, |p| p.byte());
        let line = self.reader.get_mut().line_at(byte);
        if record.len() != columns.len() {
            let value = record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>().join(",");
            let reason = format!("expected {} fields, found {}", columns.len(), record.len());
            return Some(Ok(Err(RejectedRow::new(line, WHOLE_ROW, &value, reason))));
        }
        let mut values = Vec::with_capacity(columns.len());
        for (field, column) in record.iter().zip(columns) {
            match std::str::from_utf8(field) {
                Ok(s) => values.push(s.to_owned()),
                Err(e) => {
                    let reason = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                    let value = String::from_utf8_lossy(field);
                    return Some(Ok(Err(RejectedRow::new(line, column, &value, reason))));
                }
            }
        }
        Some(Ok(Ok((line, values))))
    }
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

/// Passes bytes through, remembering where each non-blank line starts and its number.
///
/// Only starts not yet asked about are kept, so memory is bounded by the csv reader's
/// read-ahead plus the current record.
struct LineTracker<R> {
    inner: R,
    /// Bytes passed through so far.
    offset: u64,
    /// Number of the line the next byte belongs to.
    line: u64,
    /// The last byte passed through was LF (or nothing was read yet).
    at_line_start: bool,
    /// (byte offset, line number) of line starts not yet consumed, in order.
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

    /// The line of the first non-blank line starting at or after `byte` (the csv crate
    /// reports a record's start before the line terminator that precedes it). Calls must
    /// come with increasing offsets.
    fn line_at(&mut self, byte: u64) -> u64 {
        while let Some(&(start, line)) = self.starts.front() {
            if start >= byte {
                return line;
            }
            self.starts.pop_front();
        }
        self.line
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
        for i in memchr::memchr_iter(b'\n', data) {
            self.line += 1;
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

    fn lines(data: &[u8], chunk: usize) -> Vec<u64> {
        let tracker = LineTracker::new(ChunkedReader { data, chunk });
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(tracker);
        let mut record = csv::ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            let byte = record.position().unwrap().byte();
            out.push(reader.get_mut().line_at(byte));
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
    fn physical_lines_with_crlf_blank_lines_and_multiline_fields() {
        let data = b"h1,h2\r\na,1\r\n\r\n\r\nb,\"x\r\ny\"\r\nc,3\n\nd,4";
        for chunk in [1, 2, 3, 7, 8192] {
            assert_eq!(lines(data, chunk), [2, 5, 7, 9], "chunk {chunk}");
        }
    }
}
