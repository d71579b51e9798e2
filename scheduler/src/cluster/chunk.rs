//! A chunk on a node: its rows (as carried in the stream), the node-local directory that makes
//! it a small campaign (`rows.jsonl`, `lines.json`, `entry`), and merging its accounting log
//! into the node's.
//!
//! Local line `k` of `rows.jsonl` (1-based, one JSON object per line) is the recipient of
//! original line `lines[k-1]`; the merge writes the original line into the node's log.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;

use super::{io_err, ClusterError};

/// The rows of a chunk, as published: original line numbers and one value per column.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rows {
    /// The line of each row in the original recipient file.
    pub lines: Vec<u64>,
    /// The values of each row, in column order.
    pub values: Vec<Vec<String>>,
}

impl Rows {
    /// Parses a stream entry's `rows`; `key` names it in errors.
    pub fn parse(key: &str, json: &str) -> Result<Rows, ClusterError> {
        let rows: Rows = serde_json::from_str(json).map_err(|e| ClusterError::BadData {
            key: key.to_owned(),
            reason: format!("chunk rows: {e}"),
        })?;
        if rows.lines.len() != rows.values.len() {
            return Err(ClusterError::BadData {
                key: key.to_owned(),
                reason: format!(
                    "chunk rows: {} lines but {} value lists",
                    rows.lines.len(),
                    rows.values.len()
                ),
            });
        }
        Ok(rows)
    }

    /// Only the rows whose `keep` is true.
    pub fn keep(self, keep: &[bool]) -> Rows {
        let (lines, values) = self
            .lines
            .into_iter()
            .zip(self.values)
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(row, _)| row)
            .unzip();
        Rows { lines, values }
    }
}

/// Files of a chunk's directory.
pub struct ChunkDir {
    /// The directory.
    pub dir: PathBuf,
}

impl ChunkDir {
    /// The rows file, recipients of the chunk campaign.
    pub fn rows_file(&self) -> PathBuf {
        self.dir.join("rows.jsonl")
    }

    fn lines_file(&self) -> PathBuf {
        self.dir.join("lines.json")
    }

    /// Written before the merge appends: the node log's length then.
    fn merging_file(&self) -> PathBuf {
        self.dir.join("merging")
    }

    /// Undoes the merge of a chunk that was never acknowledged (the node died between its
    /// merge and the acknowledgement): the node log is cut back to its length before it
    /// (merges run one at a time, so nothing was appended after), and the chunk, resumed,
    /// merges again. Only for chunks this node still owns, before any merge of a restarted
    /// node.
    pub fn recover(&self, node_log: &Path) -> Result<(), ClusterError> {
        let marker = self.merging_file();
        if !marker.is_file() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&marker).map_err(io_err(&marker))?;
        let len: u64 = text.trim().parse().map_err(|_| ClusterError::Io {
            path: marker.clone(),
            source: std::io::Error::other(format!("not a length: {text:?}")),
        })?;
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
        std::fs::remove_file(&marker).map_err(io_err(&marker))
    }

    /// Whether the directory holds a complete chunk (written by [`ChunkDir::write`]).
    pub fn exists(&self) -> bool {
        self.lines_file().is_file()
    }

    /// Writes the rows as JSONL under `columns`, then the line map (last: its presence says
    /// the directory is complete).
    pub fn write(&self, columns: &[String], rows: &Rows) -> Result<(), ClusterError> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let mut out = String::new();
        for values in &rows.values {
            out.push('{');
            for (i, (column, value)) in columns.iter().zip(values).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(column));
                out.push(':');
                out.push_str(&json_string(value));
            }
            out.push_str("}\n");
        }
        write_synced(&self.rows_file(), out.as_bytes())?;
        let lines = serde_json::to_vec(&rows.lines).map_err(|e| ClusterError::BadData {
            key: self.dir.display().to_string(),
            reason: e.to_string(),
        })?;
        write_synced(&self.lines_file(), &lines)
    }

    /// The original line of each local line.
    pub fn lines(&self) -> Result<Vec<u64>, ClusterError> {
        let path = self.lines_file();
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| ClusterError::Io {
            path,
            source: std::io::Error::other(e),
        })
    }

    /// Appends the chunk campaign's accounting log (`log`) to the node's (`node_log`), each
    /// record with the original line, the campaign id and this node; returns the final
    /// outcome of each original line. The node log's length before is kept (see
    /// [`ChunkDir::recover`]).
    pub fn merge(
        &self,
        log: &Path,
        node_log: &Path,
        campaign: &str,
        node: &str,
    ) -> Result<Vec<(u64, String)>, ClusterError> {
        let lines = self.lines()?;
        let mut finals = BTreeMap::new();
        let mut out = Vec::new();
        let campaign = json_string(campaign);
        let node = json_string(node);
        let file = match std::fs::File::open(log) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(log)(e)),
        };
        for (n, text) in file
            .into_iter()
            .flat_map(|f| std::io::BufReader::new(f).lines())
            .enumerate()
        {
            let text = text.map_err(io_err(log))?;
            let bad = |reason: String| ClusterError::BadData {
                key: format!("{}:{}", log.display(), n + 1),
                reason,
            };
            let Ok(Record(fields)) = serde_json::from_str::<Record>(&text) else {
                // A torn last line (the chunk campaign was killed mid-write) is not a record.
                continue;
            };
            let field = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.get());
            let local = field("line")
                .and_then(|v| serde_json::from_str::<u64>(v).ok())
                .ok_or_else(|| bad("no `line`".into()))?;
            let line = local
                .checked_sub(1)
                .and_then(|i| lines.get(i as usize))
                .copied()
                .ok_or_else(|| bad(format!("line {local} is not in the chunk")))?;
            let outcome = field("outcome")
                .and_then(|v| serde_json::from_str::<String>(v).ok())
                .unwrap_or_default();
            // The fields in their order, values as written; `line` and `campaign` replaced,
            // `node` added (a duplicate key is left as it came: readers take the last one).
            out.push(b'{');
            for (key, value) in &fields {
                if key == "node" {
                    continue;
                }
                serde_json::to_writer(&mut out, &**key).map_err(|e| bad(e.to_string()))?;
                out.push(b':');
                match &**key {
                    "line" => out.extend_from_slice(line.to_string().as_bytes()),
                    "campaign" => out.extend_from_slice(campaign.as_bytes()),
                    _ => out.extend_from_slice(value.get().as_bytes()),
                }
                out.push(b',');
            }
            out.extend_from_slice(b"\"node\":");
            out.extend_from_slice(node.as_bytes());
            out.extend_from_slice(b"}\n");
            if outcome != "deferred" {
                finals.insert(line, outcome);
            }
        }
        {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(node_log)
                .map_err(io_err(node_log))?;
            let before = f.metadata().map_err(io_err(node_log))?.len();
            write_synced(&self.merging_file(), before.to_string().as_bytes())?;
            f.write_all(&out).map_err(io_err(node_log))?;
            f.sync_data().map_err(io_err(node_log))?;
        }
        Ok(finals.into_iter().collect())
    }
}

/// An accounting record's fields in their order, values as raw JSON: parsing a tree of every
/// value cost more than the rest of the merge (benches/cluster.sh), and keys are borrowed
/// from the line unless escaped.
struct Record<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Record<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Record<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(Key(key)) = map.next_key()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(Record(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A key, borrowed from the input unless it had to be unescaped.
#[derive(serde::Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
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
        let chunk = ChunkDir {
            dir: dir.path().join("c1"),
        };
        let rows = Rows {
            lines: vec![7, 9],
            values: vec![
                vec!["a@x.test".into(), "A \"q\"\n".into()],
                vec!["b@x.test".into(), "B".into()],
            ],
        };
        chunk.write(&["email".into(), "name".into()], &rows).expect("write");
        let jsonl = std::fs::read_to_string(chunk.rows_file()).expect("rows");
        assert_eq!(jsonl.lines().count(), 2, "{jsonl}");
        assert!(
            jsonl.starts_with("{\"email\":\"a@x.test\",\"name\":\"A \\\"q\\\"\\n\"}"),
            "{jsonl}"
        );
        let log = dir.path().join("acc.jsonl");
        std::fs::write(
            &log,
            "{\"campaign\":\"c.c1\",\"line\":2,\"outcome\":\"deferred\"}\n\
             {\"campaign\":\"c.c1\",\"line\":1,\"outcome\":\"delivered\"}\n\
             {\"campaign\":\"c.c1\",\"line\":2,\"outcome\":\"bounced\"}\n{\"torn",
        )
        .expect("log");
        let node_log = dir.path().join("node.jsonl");
        let finals = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        assert_eq!(finals, vec![(7, "delivered".to_owned()), (9, "bounced".to_owned())]);
        let merged = std::fs::read_to_string(&node_log).expect("node log");
        assert_eq!(merged.lines().count(), 3);
        assert!(
            merged.contains("\"line\":9")
                && merged.contains("\"campaign\":\"c\"")
                && merged.contains("\"node\":\"n1\"")
        );
    }

    /// A chunk directory in a temporary directory with one row, original line `line`.
    fn one_row_chunk(line: u64) -> (tempfile::TempDir, ChunkDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let chunk = ChunkDir {
            dir: dir.path().join("c1"),
        };
        let rows = Rows {
            lines: vec![line],
            values: vec![vec!["a@x.test".into()]],
        };
        chunk.write(&["email".into()], &rows).expect("write");
        (dir, chunk)
    }

    /// The merge copies the fields it does not change as written: strings with escapes and
    /// non-ASCII text, numbers, booleans, null, nested values, an escaped key.
    #[test]
    fn merge_keeps_every_other_field_of_a_record() {
        let (dir, chunk) = one_row_chunk(41);
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
        let finals = chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        assert_eq!(finals, vec![(41, "bounced".to_owned())]);
        let merged = std::fs::read_to_string(&node_log).expect("node log");
        // In the chunk's order (`ts` first, as in a local log), `node` last.
        assert!(
            merged.starts_with("{\"ts\":") && merged.ends_with(",\"node\":\"n1\"}\n"),
            "{merged}"
        );
        let merged: serde_json::Value = serde_json::from_str(merged.trim_end()).expect("one JSON line");
        let mut expected: serde_json::Value = serde_json::from_str(record).expect("record");
        expected["line"] = 41.into();
        expected["campaign"] = "c".into();
        expected["node"] = "n1".into();
        assert_eq!(merged, expected);
    }

    #[test]
    fn a_merge_cut_short_is_undone_before_it_is_redone() {
        let (dir, chunk) = one_row_chunk(3);
        let log = dir.path().join("acc.jsonl");
        std::fs::write(&log, "{\"line\":1,\"outcome\":\"delivered\"}\n").expect("log");
        let node_log = dir.path().join("node.jsonl");
        std::fs::write(&node_log, "{\"earlier\":1}\n").expect("node log");
        // The state a kill leaves between the append and the acknowledgement.
        chunk.merge(&log, &node_log, "c", "n1").expect("merge");
        chunk.recover(&node_log).expect("recover");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read"), "{\"earlier\":1}\n");
        chunk.merge(&log, &node_log, "c", "n1").expect("merge again");
        assert_eq!(std::fs::read_to_string(&node_log).expect("read").lines().count(), 2);
    }

    #[test]
    fn rows_with_mismatched_lengths_are_refused() {
        let e = Rows::parse("k", "{\"lines\":[1,2],\"values\":[[\"a@x.test\"]]}").expect_err("refused");
        assert!(e.to_string().contains("2 lines but 1 value lists"), "{e}");
    }
}
