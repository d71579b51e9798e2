//! Chunks of a recipient file every node can read (`[cluster] shared_dir`): a chunk carries
//! where its rows are — the file (relative to the shared directory), each row's byte offset
//! and the SHA-256 of the bytes its rows span — instead of their values, and each node reads
//! them from its own mount of the directory.
//!
//! A node checks the digest before it reads a row, so a file changed (or a copy that differs)
//! after publishing stops the node with an error naming the file, the bytes and the lines,
//! instead of sending other recipients under the published lines. Rows are read with
//! [`RowFetcher`], the re-read path of parked rows, so a row decodes exactly as the publisher
//! read it. A chunk names its file only relative to the shared directory, and a node opens
//! nothing outside its own: Redis cannot point a node at an arbitrary file.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::ClusterError;
use crate::recipients::{Row, RowFetcher};

/// Where a chunk's rows are in the shared recipient file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRows {
    /// The recipient file, relative to `[cluster] shared_dir` (`/`-separated).
    pub file: String,
    /// The column holding the address (the campaign's `email_column`).
    pub email: String,
    /// The byte offset of each row, in the order of the chunk's `lines`.
    pub offsets: Vec<u64>,
    /// Where the bytes of the chunk's rows end: the next row's offset, or the file's length.
    pub end: u64,
    /// SHA-256 (hex) of the bytes from the first offset to `end`.
    pub sha256: String,
}

/// `file` relative to `shared_dir` when it is inside it (both as given and canonical), as
/// the chunks name it; `None` when it is elsewhere.
pub fn relative_name(shared_dir: &Path, file: &Path) -> Result<Option<String>, ClusterError> {
    let canonical = |p: &Path| std::fs::canonicalize(p).map_err(super::io_err(p));
    let (dir, file) = (canonical(shared_dir)?, canonical(file)?);
    let Ok(rel) = file.strip_prefix(&dir) else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(p) => parts.push(p),
                None => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// The SHA-256 (hex) of bytes `start..end` of `path`.
pub fn digest(path: &Path, start: u64, end: u64) -> Result<String, ClusterError> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(super::io_err(path))?;
    f.seek(SeekFrom::Start(start)).map_err(super::io_err(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = end.saturating_sub(start);
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want]).map_err(super::io_err(path))?;
        if n == 0 {
            return Err(super::io_err(path)(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends before byte {end}"),
            )));
        }
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(hex(ctx.finish().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl SharedRows {
    /// The file in this node's `shared_dir`; refused when the name is absolute or leaves it.
    pub fn path_in(&self, shared_dir: &Path) -> Result<PathBuf, ClusterError> {
        let rel = Path::new(&self.file);
        let inside = !self.file.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(self.error(
                shared_dir,
                &[],
                "the file name is not a path inside the shared directory",
            ));
        }
        Ok(shared_dir.join(rel))
    }

    /// The values of the rows at `lines` (the chunk's original lines, one per offset), read
    /// from the file in `shared_dir` under the published `columns`.
    pub fn read(&self, shared_dir: &Path, lines: &[u64], columns: &[String]) -> Result<Vec<Vec<String>>, ClusterError> {
        let path = self.path_in(shared_dir)?;
        let Some(&start) = self.offsets.first() else {
            return Ok(Vec::new());
        };
        if self.offsets.len() != lines.len() {
            let why = format!("{} offsets for {} lines", self.offsets.len(), lines.len());
            return Err(self.error(&path, lines, &why));
        }
        let now = digest(&path, start, self.end).map_err(|e| self.error(&path, lines, &e.to_string()))?;
        if now != self.sha256 {
            let why =
                "its bytes differ from those published (SHA-256): the file was changed, or this node's copy is another";
            return Err(self.error(&path, lines, why));
        }
        let mut fetcher = RowFetcher::open(&path, &self.email).map_err(|e| self.error(&path, lines, &e.to_string()))?;
        if fetcher.columns() != columns {
            let why = format!("its columns are {:?}, published as {columns:?}", fetcher.columns());
            return Err(self.error(&path, lines, &why));
        }
        let mut values = Vec::with_capacity(lines.len());
        for (&line, &offset) in lines.iter().zip(&self.offsets) {
            match fetcher.fetch(offset, line) {
                Ok(Row::Recipient(r)) => values.push(r.values),
                Ok(Row::Rejected(r)) => {
                    let why = format!("line {line} is refused here: {} ({})", r.reason, r.field);
                    return Err(self.error(&path, lines, &why));
                }
                Err(e) => return Err(self.error(&path, lines, &e.to_string())),
            }
        }
        Ok(values)
    }

    /// The error for this chunk's rows of file `path` (the chunk's `lines`).
    pub fn error(&self, path: &Path, lines: &[u64], reason: &str) -> ClusterError {
        ClusterError::SharedFile {
            path: path.to_path_buf(),
            bytes: format!("{}-{}", self.offsets.first().copied().unwrap_or(0), self.end),
            lines: match (lines.first(), lines.last()) {
                (Some(a), Some(b)) => format!("{a}-{b}"),
                _ => "none".into(),
            },
            reason: reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::RecipientReader;

    /// A CSV with CRLF and LF line ends, a blank line, a quoted field over two lines, a bad
    /// row and a row in an unnamed third column.
    const CSV: &str =
        "email,name\r\na@x.test,A\r\n\r\nb@x.test,\"B\r\nsecond line\"\nnot-an-address,X\nc@x.test,\"C, \"\"q\"\"\"\n";

    /// What the publisher puts in a chunk of every recipient of `path`: lines, offsets, end
    /// (the file's length) and digest, with each recipient's values as read.
    fn published(path: &Path) -> (Vec<u64>, SharedRows, Vec<Vec<String>>) {
        let (mut lines, mut offsets, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for row in RecipientReader::open(path, "email").expect("open") {
            if let Row::Recipient(r) = row.expect("row") {
                lines.push(r.line);
                offsets.push(r.offset);
                values.push(r.values);
            }
        }
        let end = std::fs::metadata(path).expect("meta").len();
        let sha256 = digest(path, offsets[0], end).expect("digest");
        let file = path
            .strip_prefix(path.parent().and_then(Path::parent).expect("dir"))
            .expect("in dir");
        let shared = SharedRows {
            file: file.to_str().expect("utf-8").into(),
            email: "email".into(),
            offsets,
            end,
            sha256,
        };
        (lines, shared, values)
    }

    fn columns() -> Vec<String> {
        vec!["email".into(), "name".into()]
    }

    /// `text` written to `<dir>/lists/<name>`; its path.
    fn list_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("lists")).expect("lists");
        let path = dir.join("lists").join(name);
        std::fs::write(&path, text).expect("list");
        path
    }

    #[test]
    fn rows_read_from_the_shared_file_are_the_rows_the_publisher_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = list_file(dir.path(), "r.csv", CSV);
        let (lines, shared, values) = published(&path);
        assert_eq!(lines, [2, 4, 7]);
        assert_eq!(values[1], ["b@x.test", "B\r\nsecond line"]);
        assert_eq!(shared.read(dir.path(), &lines, &columns()).expect("read"), values);
        // A node whose mount is at another path: the name is relative to its shared_dir.
        let mount = dir.path().join("mount");
        std::os::unix::fs::symlink(dir.path(), &mount).expect("symlink");
        assert_eq!(shared.read(&mount, &lines, &columns()).expect("read"), values);
        assert_eq!(
            relative_name(&mount, &path).expect("name").as_deref(),
            Some("lists/r.csv")
        );
        assert_eq!(
            relative_name(&dir.path().join("lists"), dir.path()).expect("name"),
            None
        );
    }

    #[test]
    fn rows_of_a_jsonl_file_are_read_as_the_publisher_read_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "{\"email\":\"a@x.test\",\"name\":\"A\"}\n\n{\"email\":\"bad\",\"name\":\"X\"}\n\
                    {\"name\":\"B \\\"q\\\"\",\"email\":\"b@x.test\"}\r\n";
        let path = list_file(dir.path(), "r.jsonl", text);
        let (lines, shared, values) = published(&path);
        assert_eq!(lines, [1, 4]);
        assert_eq!(values[1], ["b@x.test", "B \"q\""]);
        assert_eq!(shared.read(dir.path(), &lines, &columns()).expect("read"), values);
    }

    #[test]
    fn a_changed_file_a_name_outside_the_directory_or_other_columns_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = list_file(dir.path(), "r.csv", CSV);
        let (lines, shared, _) = published(&path);
        let refused = |shared: &SharedRows, columns: &[String]| match shared.read(dir.path(), &lines, columns) {
            Err(e @ ClusterError::SharedFile { .. }) => e.to_string(),
            other => panic!("not refused: {other:?}"),
        };
        // Same length, one letter changed: another recipient under a published line.
        std::fs::write(&path, CSV.replace("b@x.test", "d@x.test")).expect("csv");
        let e = refused(&shared, &columns());
        assert!(
            e.contains("lists/r.csv") && e.contains("lines 2-7") && e.contains("differ"),
            "{e}"
        );
        assert!(
            e.contains(&format!("bytes {}-{}", shared.offsets[0], shared.end)),
            "{e}"
        );
        // Shorter than published.
        std::fs::write(&path, &CSV[..40]).expect("csv");
        let e = refused(&shared, &columns());
        assert!(e.contains("ends before byte"), "{e}");
        std::fs::write(&path, CSV).expect("csv");
        let e = refused(&shared, &["email".into(), "first".into()]);
        assert!(e.contains("columns"), "{e}");
        for name in ["../r.csv", "/etc/passwd", "lists/../../r.csv", ""] {
            let outside = SharedRows {
                file: name.into(),
                ..shared.clone()
            };
            let e = refused(&outside, &columns());
            assert!(e.contains("not a path inside the shared directory"), "{name}: {e}");
        }
    }
}
