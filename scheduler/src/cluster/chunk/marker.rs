//! The node's merge marker (see [`MergeMarker`]).

use std::path::{Path, PathBuf};

use super::super::{io_err, ClusterError};
#[cfg(doc)]
use super::ChunkDir;

/// The node's merge marker, next to its log: which chunk's merge appended to the log last,
/// the log's length before and how far into the chunk campaign's log it read. Written and
/// synced before the merge appends, so that [`ChunkDir::recover`] can undo a merge a kill cut
/// short (merges run one at a time, so only the last one can be). One record, rewritten in
/// place at the start of a file of fixed size ([`MARKER_LEN`] bytes, within one disk
/// sector): no file is created or removed per merge. A record that does not parse (torn by a
/// crash while it was written) names no merge: the merge it would have announced had not
/// appended yet, and the one before had been recorded in Redis.
pub struct MergeMarker {
    path: PathBuf,
}

/// What the [`MergeMarker`] holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Marked {
    /// The chunk's directory name.
    pub chunk: String,
    /// The node log's length before the merge.
    pub before: u64,
    /// The chunk campaign's log offset the merge read through.
    pub through: u64,
}

/// The marker file's size: a record is padded to it.
pub(super) const MARKER_LEN: usize = 512;

impl MergeMarker {
    /// The marker of node log `node_log`.
    pub fn of(node_log: &Path) -> MergeMarker {
        MergeMarker {
            path: node_log.with_file_name("merging"),
        }
    }

    pub(super) fn write(&self, m: &Marked) -> Result<(), ClusterError> {
        use std::os::unix::fs::FileExt;
        let mut record = format!("{} {} {}\n", m.before, m.through, m.chunk).into_bytes();
        if record.len() > MARKER_LEN {
            return Err(ClusterError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!("chunk name too long for the merge marker: {}", m.chunk)),
            });
        }
        record.resize(MARKER_LEN, b' ');
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        f.write_all_at(&record, 0).map_err(io_err(&self.path))?;
        f.sync_data().map_err(io_err(&self.path))
    }

    /// The last merge announced, if the record parses.
    pub fn read(&self) -> Result<Option<Marked>, ClusterError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let parsed = std::str::from_utf8(&bytes).ok().and_then(|text| {
            let (record, _) = text.split_once('\n')?;
            let mut parts = record.splitn(3, ' ');
            Some(Marked {
                before: parts.next()?.parse().ok()?,
                through: parts.next()?.parse().ok()?,
                chunk: parts.next().filter(|c| !c.is_empty())?.to_owned(),
            })
        });
        if parsed.is_none() {
            tracing::warn!(path = %self.path.display(), "merge marker does not parse (torn by a crash?); no merge to undo");
        }
        Ok(parsed)
    }
}
