//! Recipients held in memory: a cluster chunk's rows, as its stream entry carried them, read
//! by the chunk campaign without a file in between. Row `i` (0-based) has offset `i` and line
//! `i + 1`, so the journal's offsets fetch it again ([`super::RowFetcher::memory`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::fetch::FetchError;
use super::{OffsetProblem, RawRow};

/// Rows with their columns; `label` names them in errors and rejects (no file is read).
#[derive(Debug)]
pub struct MemoryRows {
    /// What errors name as the recipient "file".
    pub label: PathBuf,
    /// Column names, in order.
    pub columns: Vec<String>,
    /// One value list per row, in column order (a short list renders missing columns empty;
    /// extra values are ignored, as for JSONL).
    pub values: Vec<Vec<String>>,
}

impl MemoryRows {
    /// Row `index` as a source yields it.
    fn raw(&self, index: usize) -> Option<RawRow> {
        let values = self.values.get(index)?;
        let mut out: Vec<String> = values.iter().take(self.columns.len()).cloned().collect();
        out.resize(self.columns.len(), String::new());
        Some(RawRow {
            offset: index as u64,
            line: index as u64 + 1,
            values: Ok(out),
        })
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Streams the rows in order.
pub(super) struct MemorySource {
    rows: Arc<MemoryRows>,
    next: usize,
}

impl MemorySource {
    pub(super) fn new(rows: Arc<MemoryRows>) -> MemorySource {
        MemorySource { rows, next: 0 }
    }

    pub(super) fn next(&mut self) -> Option<RawRow> {
        let raw = self.rows.raw(self.next)?;
        self.next += 1;
        Some(raw)
    }

    pub(super) fn rows(&self) -> &Arc<MemoryRows> {
        &self.rows
    }
}

/// Fetches row `offset` again.
pub(super) struct MemoryFetcher {
    pub(super) rows: Arc<MemoryRows>,
}

impl MemoryFetcher {
    pub(super) fn fetch(&self, offset: u64, line: u64) -> Result<RawRow, FetchError> {
        let len = self.rows.len() as u64;
        let mut raw = usize::try_from(offset)
            .ok()
            .and_then(|i| self.rows.raw(i))
            .ok_or(FetchError::NoRow(OffsetProblem::PastEnd { len }))?;
        raw.line = line;
        Ok(raw)
    }
}
