//! A chunk on a node: its rows (as carried in the stream), the node-local directory that makes
//! it a small campaign (the chunk campaign's own state directory), and merging its accounting
//! log into the node's.
//!
//! The chunk campaign reads every row of the stream entry, in order, from memory, so local
//! line `k` is the recipient of original line `lines[k-1]` of the entry; rows already done
//! when the chunk starts are skipped by the chunk campaign, not left out. The merge writes the
//! original line into the node's log, announced by the node's [`MergeMarker`].
//!
//! A chunk of a recipient file in `[cluster] shared_dir` carries where its rows are instead of
//! their values ([`SharedRows`]); [`Rows::into_values`] reads them from this node's mount.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::shared_rows::SharedRows;
use super::{io_err, ClusterError};

mod marker;
mod record;
pub use marker::{Marked, MergeMarker};
use record::Parsed;

/// The rows of a chunk, as published: original line numbers and either one value per column
/// or, for a file in the shared directory, where the rows are in it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rows {
    /// The line of each row in the original recipient file.
    pub lines: Vec<u64>,
    /// The values of each row, in column order (empty when `shared` says where they are).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Vec<String>>,
    /// Where the rows are in the shared recipient file (`[cluster] shared_dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedRows>,
}

impl Rows {
    /// Parses a stream entry's `rows`; `key` names it in errors.
    pub fn parse(key: &str, json: &str) -> Result<Rows, ClusterError> {
        let rows: Rows = serde_json::from_str(json).map_err(|e| ClusterError::BadData {
            key: key.to_owned(),
            reason: format!("chunk rows: {e}"),
        })?;
        let (what, n) = match &rows.shared {
            Some(shared) if rows.values.is_empty() => ("offsets", shared.offsets.len()),
            Some(_) => ("value lists besides shared", rows.values.len()),
            None => ("value lists", rows.values.len()),
        };
        if rows.lines.len() != n {
            return Err(ClusterError::BadData {
                key: key.to_owned(),
                reason: format!("chunk rows: {} lines but {n} {what}", rows.lines.len()),
            });
        }
        Ok(rows)
    }

    /// The values of the rows: carried, or read from the shared file in this node's
    /// `shared_dir` under the published `columns`.
    pub fn into_values(
        self,
        shared_dir: Option<&Path>,
        columns: &[String],
    ) -> Result<(Vec<u64>, Vec<Vec<String>>), ClusterError> {
        let Some(shared) = self.shared else {
            return Ok((self.lines, self.values));
        };
        let Some(dir) = shared_dir else {
            let why = "the chunk names a file in the shared directory, and this node has no [cluster] shared_dir";
            return Err(shared.error(Path::new(&shared.file), &self.lines, why));
        };
        let values = shared.read(dir, &self.lines, columns)?;
        Ok((self.lines, values))
    }
}

/// Files of a chunk's directory.
pub struct ChunkDir {
    /// The directory: the chunk campaign's state directory.
    pub dir: PathBuf,
    /// The original line of each local line: the stream entry's `lines`.
    pub lines: Arc<Vec<u64>>,
}

impl ChunkDir {
    /// What the chunk campaign's recipients are called in its errors and rejects: the file
    /// earlier versions wrote its rows to. The rows are held in memory now; no file is written.
    pub fn rows_label(&self) -> PathBuf {
        self.dir.join("rows.jsonl")
    }

    /// Where an earlier version wrote its merge marker: in the chunk's directory (see
    /// [`MergeMarker`] for today's, one per node log).
    fn merging_file(&self) -> PathBuf {
        self.dir.join("merging")
    }

    /// The name the node's [`MergeMarker`] knows this chunk by: its directory's.
    fn marker_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// How far into the chunk campaign's log earlier merges (at parking) have read.
    fn merged_file(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// The offset in the chunk campaign's log up to which its records are in the node's log.
    pub fn merged_through(&self) -> Result<u64, ClusterError> {
        let path = self.merged_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| not_a_number(&path, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Ends a merge whose outcomes Redis has recorded: later merges read from `through`.
    pub fn commit(&self, through: u64) -> Result<(), ClusterError> {
        write_synced(&self.merged_file(), through.to_string().as_bytes())?;
        let marker = self.merging_file();
        match std::fs::remove_file(&marker) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&marker)(e)),
            _ => Ok(()),
        }
    }

    /// Settles a merge a kill cut short (the node died between appending to its log and
    /// Redis recording the outcomes, or between that and [`ChunkDir::commit`]). If Redis has
    /// the merge's outcomes (`done` says so for any of its final lines) it is committed;
    /// otherwise the node log is cut back to its length before it (merges run one at a time,
    /// so nothing was appended after) and the resumed chunk merges again. Only for chunks this
    /// node still owns, before any merge of a restarted node.
    pub fn recover(
        &self,
        log: &Path,
        node_log: &Path,
        done: impl FnOnce(&[u64]) -> Result<Vec<bool>, ClusterError>,
    ) -> Result<(), ClusterError> {
        let legacy = self.merging_file();
        let (len, through) = if legacy.is_file() {
            let text = std::fs::read_to_string(&legacy).map_err(io_err(&legacy))?;
            let mut parts = text.split_whitespace();
            let len: u64 = parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| not_a_number(&legacy, &text))?;
            let through = match parts.next() {
                Some(t) => Some(t.parse().map_err(|_| not_a_number(&legacy, &text))?),
                None => None,
            };
            (len, through)
        } else {
            // The node's last merge, if it was this chunk's and not committed since.
            match MergeMarker::of(node_log).read()? {
                Some(m) if m.chunk == self.marker_name() && m.through > self.merged_through()? => {
                    (m.before, Some(m.through))
                }
                _ => return Ok(()),
            }
        };
        if let Some(through) = through {
            let lines = self.finals_between(log, self.merged_through()?, through)?;
            if done(&lines)?.contains(&true) {
                return self.commit(through);
            }
        }
        match std::fs::OpenOptions::new().write(true).open(node_log) {
            Ok(f) => {
                if f.metadata().map_err(io_err(node_log))?.len() > len {
                    f.set_len(len).map_err(io_err(node_log))?;
                    f.sync_all().map_err(io_err(node_log))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(node_log)(e)),
        }
        match std::fs::remove_file(&legacy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&legacy)(e)),
            _ => Ok(()),
        }
    }

    /// The original lines whose final outcome this node has merged (and Redis recorded).
    pub fn merged_finals(&self, log: &Path) -> Result<Vec<u64>, ClusterError> {
        self.finals_between(log, 0, self.merged_through()?)
    }

    /// Whether the directory exists: the chunk was started here before.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Calls `each` with every complete record of the chunk campaign's log `log` from offset
    /// `from` (to `to`, or to its last complete line: the campaign may still be writing): its
    /// original line, its outcome and the record itself. Returns the offset read through.
    fn read_log(
        &self,
        log: &Path,
        from: u64,
        to: Option<u64>,
        mut each: impl FnMut(u64, &str, &Parsed<'_>) -> Result<(), ClusterError>,
    ) -> Result<u64, ClusterError> {
        use std::io::{Read, Seek};
        let lines = &self.lines;
        let mut bytes = Vec::new();
        match std::fs::File::open(log) {
            Ok(mut f) => {
                let len = f.metadata().map_err(io_err(log))?.len();
                let end = to.map_or(len, |to| to.min(len));
                bytes.reserve(end.saturating_sub(from) as usize);
                f.seek(std::io::SeekFrom::Start(from)).map_err(io_err(log))?;
                match to {
                    Some(to) => f.take(to.saturating_sub(from)).read_to_end(&mut bytes),
                    None => f.read_to_end(&mut bytes),
                }
                .map_err(io_err(log))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(log)(e)),
        }
        // Only whole lines: a last line without its newline is still being written (or torn).
        // Lines are found with `memchr` (a byte-by-byte split was a quarter of a merge).
        let whole = memchr::memrchr(b'\n', &bytes).map_or(0, |i| i + 1);
        let mut start = 0;
        for (n, end) in memchr::memchr_iter(b'\n', &bytes[..whole]).enumerate() {
            let text = &bytes[start..end];
            start = end + 1;
            if text.is_empty() {
                continue;
            }
            let bad = |reason: String| ClusterError::BadData {
                key: format!("{}: from offset {from}, line {}", log.display(), n + 1),
                reason,
            };
            // A torn line (the chunk campaign was killed mid-write) is not a record.
            let Some(parsed) = Parsed::of(text) else { continue };
            let local = parsed.local_line().ok_or_else(|| bad("no `line`".into()))?;
            let line = local
                .checked_sub(1)
                .and_then(|i| lines.get(i as usize))
                .copied()
                .ok_or_else(|| bad(format!("line {local} is not in the chunk")))?;
            each(line, &parsed.outcome(), &parsed)?;
        }
        Ok(from + whole as u64)
    }

    /// The original lines with a final outcome among the records from `from` to `to`.
    fn finals_between(&self, log: &Path, from: u64, to: u64) -> Result<Vec<u64>, ClusterError> {
        let mut out = Vec::new();
        self.read_log(log, from, Some(to), |line, outcome, _| {
            if is_final(outcome) {
                out.push(line);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Appends the records of the chunk campaign's accounting log (`log`) that earlier merges
    /// did not take to the node's log (`node_log`), each with the original line, the campaign
    /// id and this node; returns the final outcome of each original line among them and the
    /// offset to [`ChunkDir::commit`] once Redis has recorded them. The node log's length
    /// before is kept (see [`ChunkDir::recover`]).
    pub fn merge(&self, log: &Path, node_log: &Path, campaign: &str, node: &str) -> Result<Merged, ClusterError> {
        let from = self.merged_through()?;
        let mut finals = Vec::new();
        let mut out = Vec::new();
        let campaign = json_string(campaign);
        let node = json_string(node);
        let through = self.read_log(log, from, None, |line, outcome, record| {
            record.write_merged(&mut out, line, &campaign, &node);
            if is_final(outcome) {
                finals.push((line, outcome.to_owned()));
            }
            Ok(())
        })?;
        let finals = last_per_line(finals);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node_log)
            .map_err(io_err(node_log))?;
        let before = f.metadata().map_err(io_err(node_log))?.len();
        if !out.is_empty() {
            MergeMarker::of(node_log).write(&Marked {
                chunk: self.marker_name(),
                before,
                through,
            })?;
            f.write_all(&out).map_err(io_err(node_log))?;
            f.sync_data().map_err(io_err(node_log))?;
        }
        Ok(Merged { finals, through })
    }
}

/// `finals` (`(line, outcome)` in log order) by line, each line once with its last outcome.
fn last_per_line(mut finals: Vec<(u64, String)>) -> Vec<(u64, String)> {
    // Stable: a line's records keep their log order, so the last of each run is its last.
    finals.sort_by_key(|(line, _)| *line);
    let mut out: Vec<(u64, String)> = Vec::with_capacity(finals.len());
    for (line, outcome) in finals {
        match out.last_mut() {
            Some(last) if last.0 == line => last.1 = outcome,
            _ => out.push((line, outcome)),
        }
    }
    out
}

/// Whether an accounting line's outcome is final (not a deferral).
fn is_final(outcome: &str) -> bool {
    outcome != "deferred"
}

/// What a merge appended: the final outcomes `(original line, outcome)`, and the offset in the
/// chunk campaign's log it read through.
#[derive(Debug)]
pub struct Merged {
    /// The final outcome of each original line merged.
    pub finals: Vec<(u64, String)>,
    /// The chunk campaign's log offset read through.
    pub through: u64,
}

fn not_a_number(path: &Path, text: &str) -> ClusterError {
    ClusterError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("not a number: {text:?}")),
    }
}

fn json_string(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `s` as a JSON string.
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, s);
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ClusterError> {
    let mut f = std::fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_maps_local_lines_to_original_lines_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = Rows {
            lines: vec![7, 9],
            values: vec![
                vec!["a@x.test".into(), "A \"q\"\n".into()],
                vec!["b@x.test".into(), "B".into()],
            ],
            shared: None,
        };
        let chunk = ChunkDir {
            dir: dir.path().join("c1"),
            lines: Arc::new(rows.lines.clone()),
        };
        assert!(!chunk.exists());
        std::fs::create_dir_all(&chunk.dir).expect("chunk dir");
        assert!(chunk.exists());
        let log = dir.path().join("acc.jsonl");
        std::fs::write(
            &log,
            "{\"campaign\":\"c.c1\",\"line\":2,\"outcome\":\"deferred\"}\n\
             {\"campaign\":\"c.c1\",\"line\":1,\"outcome\":\"delivered\"}\n\
             {\"campaign\":\"c.c1\",\"line\":2,\"outcome\":\"bounced\"}\n{\"torn",
        )
        .expect("log");
        let node_log = dir.path().join("node.jsonl");
        let merged = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        assert_eq!(
            merged.finals,
            vec![(7, "delivered".to_owned()), (9, "bounced".to_owned())]
        );
        let merged = std::fs::read_to_string(&node_log).expect("node log");
        assert_eq!(merged.lines().count(), 3);
        assert!(
            merged.contains("\"line\":9")
                && merged.contains("\"campaign\":\"c\"")
                && merged.contains("\"node\":\"n1\"")
        );
    }

    /// A line with two final records (a rerun wrote one again) is reported once, with the
    /// later one, and the lines come in order whatever the log's order.
    #[test]
    fn finals_are_one_per_line_the_last_one_in_line_order() {
        let got = last_per_line(vec![
            (9, "bounced".to_owned()),
            (3, "expired".to_owned()),
            (9, "delivered".to_owned()),
            (5, "suppressed".to_owned()),
            (3, "delivered".to_owned()),
        ]);
        let want = [(3, "delivered"), (5, "suppressed"), (9, "delivered")];
        assert_eq!(got, want.map(|(l, o)| (l, o.to_owned())));
        assert!(last_per_line(Vec::new()).is_empty());
    }

    /// A chunk of two rows (original lines 3 and 4), its campaign's log and a node log with
    /// one earlier line.
    fn two_rows(dir: &Path) -> (ChunkDir, PathBuf, PathBuf) {
        let rows = Rows {
            lines: vec![3, 4],
            values: vec![vec!["a@x.test".into()], vec!["b@x.test".into()]],
            shared: None,
        };
        let chunk = ChunkDir {
            dir: dir.join("c1"),
            lines: Arc::new(rows.lines.clone()),
        };
        std::fs::create_dir_all(&chunk.dir).expect("chunk dir");
        let log = dir.join("acc.jsonl");
        std::fs::write(
            &log,
            "{\"line\":1,\"outcome\":\"delivered\"}\n{\"line\":2,\"outcome\":\"deferred\"}\n",
        )
        .expect("log");
        let node_log = dir.join("node.jsonl");
        std::fs::write(&node_log, "{\"earlier\":1}\n").expect("node log");
        (chunk, log, node_log)
    }

    /// Recovers `chunk` (of [`two_rows`]) with Redis knowing nothing of its merge: asked
    /// about the final line merged, and the node log cut back to its earlier line.
    fn assert_undone(chunk: &ChunkDir, log: &Path, node_log: &Path) {
        chunk
            .recover(log, node_log, |lines| {
                assert_eq!(lines, [3]);
                Ok(vec![false])
            })
            .expect("recover");
        assert_eq!(std::fs::read_to_string(node_log).expect("read"), "{\"earlier\":1}\n");
    }

    #[test]
    fn a_merge_cut_short_is_undone_before_it_is_redone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chunk, log, node_log) = two_rows(dir.path());
        // The state a kill leaves between the append and Redis recording the outcomes.
        chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        assert_undone(&chunk, &log, &node_log);
        let again = chunk.merge(&log, &node_log, "c", "n1").expect("merge again");
        assert_eq!(again.finals, vec![(3, "delivered".to_owned())]);
        assert_eq!(std::fs::read_to_string(&node_log).expect("read").lines().count(), 3);
    }

    #[test]
    fn a_merge_redis_recorded_is_kept_and_later_merges_take_only_what_is_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chunk, log, node_log) = two_rows(dir.path());
        // Parked: merged, recorded in Redis, then killed before the commit.
        let first = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        chunk.recover(&log, &node_log, |_| Ok(vec![true])).expect("recover");
        assert_eq!(chunk.merged_through().expect("merged"), first.through);
        assert_eq!(std::fs::read_to_string(&node_log).expect("read").lines().count(), 3);
        assert_eq!(chunk.merged_finals(&log).expect("finals"), vec![3]);
        // The retry's outcome arrives, with a torn line after it still being written.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).expect("log");
        f.write_all(b"{\"line\":2,\"outcome\":\"delivered\"}\n{\"line\":2,\"out")
            .expect("append");
        let second = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        assert_eq!(second.finals, vec![(4, "delivered".to_owned())]);
        chunk.commit(second.through).expect("commit");
        let merged = std::fs::read_to_string(&node_log).expect("read");
        assert_eq!(merged.lines().count(), 4, "{merged}");
        // The torn line is not taken: a later merge starts at it.
        let torn = std::fs::metadata(&log).expect("log").len() - second.through;
        assert_eq!(torn, "{\"line\":2,\"out".len() as u64);
        assert!(chunk
            .merge(&log, &node_log, "c", "n1")
            .expect("merge")
            .finals
            .is_empty());
    }

    /// The merge copies the fields it does not change as written: strings with escapes and
    /// non-ASCII text, numbers, booleans, null, nested values, an escaped key.
    #[test]
    fn merge_keeps_every_other_field_of_a_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = Rows {
            lines: vec![41],
            values: vec![vec!["a@x.test".into()]],
            shared: None,
        };
        let chunk = ChunkDir {
            dir: dir.path().join("c1"),
            lines: Arc::new(rows.lines.clone()),
        };
        std::fs::create_dir_all(&chunk.dir).expect("chunk dir");
        // As the accounting log writes it (`ts` first), with every kind of value.
        let record = concat!(
            r#"{"ts":"2026-12-04T16:00:21.896Z","campaign":"c.c1","recipient":"a@x.test","#,
            r#""outcome":"bounced","code":550,"enhanced":"5.1.1","latency_ms":12,"#,
            r#""text":"No \"such\" user\nhere \u00e9 é😀 \\ end","tls":false,"score":-1.5e-3,"#,
            r#""big":18446744073709551615,"mx":null,"extra":{"a":[1,"b",null]},"k\"\u00e9y":true,"line":1}"#
        );
        let log = dir.path().join("acc.jsonl");
        std::fs::write(&log, format!("{record}\n")).expect("log");
        let node_log = dir.path().join("node.jsonl");
        let merged = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        assert_eq!(merged.finals, vec![(41, "bounced".to_owned())]);
        let text = std::fs::read_to_string(&node_log).expect("node log");
        // In the chunk's order (`ts` first, as in a local log), `node` last.
        assert!(
            text.starts_with("{\"ts\":") && text.ends_with(",\"node\":\"n1\"}\n"),
            "{text}"
        );
        let got: serde_json::Value = serde_json::from_str(text.trim_end()).expect("one JSON line");
        let mut expected: serde_json::Value = serde_json::from_str(record).expect("record");
        expected["line"] = 41.into();
        expected["campaign"] = "c".into();
        expected["node"] = "n1".into();
        assert_eq!(got, expected);
    }

    /// Two chunks merging into one node log: the marker names only the last merge, so a
    /// restart undoes that one (Redis did not record it) and leaves the earlier one alone.
    #[test]
    fn the_marker_names_only_the_last_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, log, node_log) = two_rows(dir.path());
        first.merge(&log, &node_log, "c", "n1").expect("merge");
        let after_first = std::fs::read_to_string(&node_log).expect("read");
        let second = ChunkDir {
            dir: dir.path().join("c2"),
            lines: Arc::new(vec![5, 6]),
        };
        std::fs::create_dir_all(&second.dir).expect("chunk dir");
        let log2 = dir.path().join("acc2.jsonl");
        std::fs::write(&log2, "{\"line\":2,\"outcome\":\"bounced\"}\n").expect("log");
        second.merge(&log2, &node_log, "c", "n1").expect("merge");
        let marked = MergeMarker::of(&node_log).read().expect("read").expect("a merge");
        assert_eq!(marked.chunk, "c2");
        assert_eq!(marked.before, after_first.len() as u64);
        // The first chunk's merge is not the marker's: nothing to undo, Redis is not asked.
        first
            .recover(&log, &node_log, |_| panic!("only the last merge is looked at"))
            .expect("recover");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read").lines().count(), 4);
        second
            .recover(&log2, &node_log, |lines| {
                assert_eq!(lines, [6]);
                Ok(vec![false])
            })
            .expect("recover");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read"), after_first);
        // Undoing again (a second restart) finds nothing more to cut.
        second.recover(&log2, &node_log, |_| Ok(vec![false])).expect("recover");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read"), after_first);
    }

    /// A merge committed (parked) is not undone by a later restart, though the marker still
    /// names it.
    #[test]
    fn a_committed_merge_is_not_undone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chunk, log, node_log) = two_rows(dir.path());
        let merged = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        chunk.commit(merged.through).expect("commit");
        chunk
            .recover(&log, &node_log, |_| panic!("a committed merge needs no answer"))
            .expect("recover");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read").lines().count(), 3);
    }

    /// A marker torn by a crash while it was written announced a merge that had not appended
    /// yet: nothing is undone.
    #[test]
    fn a_torn_marker_undoes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chunk, log, node_log) = two_rows(dir.path());
        chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        let marker = dir.path().join("merging");
        assert_eq!(
            std::fs::metadata(&marker).expect("marker").len(),
            marker::MARKER_LEN as u64
        );
        std::fs::write(&marker, b"12 3\0\0\0").expect("torn");
        assert_eq!(MergeMarker::of(&node_log).read().expect("read"), None);
        chunk.recover(&log, &node_log, |_| Ok(vec![false])).expect("recover");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read").lines().count(), 3);
    }

    /// A chunk directory an earlier version left with its own `merging` file (the node log's
    /// length before, the offset read through): still undone or kept as Redis says.
    #[test]
    fn an_earlier_versions_marker_in_the_chunk_directory_is_honoured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chunk, log, node_log) = two_rows(dir.path());
        let before = std::fs::metadata(&node_log).expect("node log").len();
        let through = std::fs::metadata(&log).expect("log").len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&node_log)
            .expect("node log");
        f.write_all(b"{\"line\":3,\"outcome\":\"delivered\"}\n")
            .expect("append");
        std::fs::write(chunk.dir.join("merging"), format!("{before} {through}")).expect("marker");
        assert_undone(&chunk, &log, &node_log);
        assert!(!chunk.dir.join("merging").exists(), "the earlier marker is removed");
    }

    #[test]
    fn rows_with_mismatched_lengths_are_refused() {
        let e = Rows::parse("k", "{\"lines\":[1,2],\"values\":[[\"a@x.test\"]]}").expect_err("refused");
        assert!(e.to_string().contains("2 lines but 1 value lists"), "{e}");
    }
}
