//! The rejects file: one JSON object per refused recipient row (JSONL), buffered. A run
//! writes a row's line together with its `rejected` accounting line, and appends to what
//! earlier runs of the campaign wrote, so the file holds every rejected row once.
//!
//! ```json
//! {"file":"recipients.csv","line":12,"field":"email","value":"bad@","reason":"empty domain"}
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::recipients::RejectedRow;

/// Writes [`RejectedRow`]s of one recipient file as JSONL.
#[derive(Debug)]
pub struct RejectsWriter {
    /// `None` until the first line when opened with [`RejectsWriter::append_on_first`].
    out: Option<BufWriter<File>>,
    path: PathBuf,
    /// The recipient file, as written in every line.
    source_file: String,
    count: u64,
}

#[derive(Serialize)]
struct Line<'a> {
    file: &'a str,
    line: u64,
    field: &'a str,
    value: &'a str,
    reason: &'a str,
}

impl RejectsWriter {
    /// Creates (truncates) `path`; every line will name `source_file`.
    pub fn create(path: &Path, source_file: &Path) -> io::Result<RejectsWriter> {
        let file = File::create(path).map_err(|e| with_path(e, path))?;
        Ok(RejectsWriter {
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            path: path.to_owned(),
            source_file: source_file.display().to_string(),
            count: 0,
        })
    }

    /// Opens `path` for appending (creating it); every line will name `source_file`.
    pub fn append(path: &Path, source_file: &Path) -> io::Result<RejectsWriter> {
        let mut w = RejectsWriter::append_on_first(path, source_file);
        w.open()?;
        Ok(w)
    }

    /// Like [`RejectsWriter::append`], but the file is opened (created) only for the first
    /// line: a run that rejects nothing leaves no file (a cluster node's chunk campaigns,
    /// whose rows the publisher checked, would otherwise create one per chunk).
    pub fn append_on_first(path: &Path, source_file: &Path) -> RejectsWriter {
        RejectsWriter {
            out: None,
            path: path.to_owned(),
            source_file: source_file.display().to_string(),
            count: 0,
        }
    }

    fn open(&mut self) -> io::Result<()> {
        if self.out.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| with_path(e, &self.path))?;
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        Ok(())
    }

    /// Appends one line.
    pub fn write(&mut self, row: &RejectedRow) -> io::Result<()> {
        self.open()?;
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let line = Line {
            file: &self.source_file,
            line: row.line,
            field: &row.field,
            value: &row.value,
            reason: &row.reason,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// Lines written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Pushes buffered lines to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    /// Flushes and closes the file; returns the number of lines written.
    pub fn finish(self) -> io::Result<u64> {
        if let Some(mut out) = self.out {
            out.flush()?;
            out.get_ref().sync_data()?;
        }
        Ok(self.count)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    let path: PathBuf = path.to_owned();
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_object_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let mut w = RejectsWriter::create(&path, Path::new("list.csv")).unwrap();
        w.write(&RejectedRow::new(12, "email", "bad@", "empty domain")).unwrap();
        w.write(&RejectedRow::new(
            13,
            "(row)",
            "a,\"b\"\n",
            "expected 2 fields, found 3",
        ))
        .unwrap();
        assert_eq!(w.count(), 2);
        assert_eq!(w.finish().unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"file": "list.csv", "line": 12, "field": "email", "value": "bad@", "reason": "empty domain"})
        );
        assert_eq!(lines[1]["value"], "a,\"b\"\n");
    }

    #[test]
    fn append_on_first_creates_the_file_only_for_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        let mut w = RejectsWriter::append_on_first(&path, Path::new("list.csv"));
        w.flush().unwrap();
        assert_eq!(w.finish().unwrap(), 0);
        assert!(!path.exists(), "nothing rejected, no file");
        std::fs::write(&path, "{\"line\":2}\n").unwrap();
        let mut w = RejectsWriter::append_on_first(&path, Path::new("list.csv"));
        w.write(&RejectedRow::new(7, "email", "x", "bad")).unwrap();
        assert_eq!(w.finish().unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "appended after the earlier line: {text}");
    }

    #[test]
    fn append_keeps_earlier_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rejects.jsonl");
        std::fs::write(&path, "{\"line\":2}\n").unwrap();
        let mut w = RejectsWriter::append(&path, Path::new("list.csv")).unwrap();
        w.write(&RejectedRow::new(7, "email", "x", "bad")).unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0]["line"].as_u64(), lines[1]["line"].as_u64()),
            (Some(2), Some(7))
        );
    }

    #[test]
    fn create_error_names_the_path() {
        let e = RejectsWriter::create(Path::new("/nonexistent-dir/r.jsonl"), Path::new("x.csv")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/r.jsonl"), "{e}");
    }
}
