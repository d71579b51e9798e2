//! Deleting spent segments: a sealed segment (the writer has moved on) is deleted once every
//! recipient line in it has its final outcome in the accounting log. The run of the stream's
//! campaign tells [`SegmentGc::finished`] each line whose final line it has pushed to the OS;
//! at start it hands over what earlier runs finished.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::stream::{segment_path, segments, Stream};
use crate::lineset::LineSet;

/// One sealed segment being tracked.
#[derive(Debug)]
struct Sealed {
    number: u32,
    /// Its lines: `first..=last`.
    first: u64,
    last: u64,
    /// Lines without a final outcome yet.
    open: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct SegmentGc {
    stream: Arc<Stream>,
    finished: LineSet,
    sealed: Vec<Sealed>,
    /// The highest segment number looked at.
    seen: u32,
}

impl SegmentGc {
    /// Starts tracking `stream`, `finished` being the lines earlier runs finished; segments
    /// already spent are deleted now.
    pub fn new(stream: Arc<Stream>, finished: LineSet) -> SegmentGc {
        let mut gc = SegmentGc {
            stream,
            finished,
            sealed: Vec::new(),
            seen: 0,
        };
        gc.track_new();
        gc.collect();
        gc
    }

    /// Lines whose final outcome is now in the accounting log.
    pub fn finished(&mut self, lines: &[u64]) {
        if lines.is_empty() {
            return;
        }
        self.track_new();
        for &line in lines {
            if !self.finished.insert(line) {
                continue;
            }
            if let Some(s) = self.sealed.iter_mut().find(|s| s.first <= line && line <= s.last) {
                s.open = s.open.saturating_sub(1);
            }
        }
        self.collect();
    }

    /// Starts tracking segments sealed since the last look.
    fn track_new(&mut self) {
        let current = self.stream.committed().segment;
        if self.seen + 1 >= current {
            return;
        }
        let Ok(numbers) = segments(self.stream.dir()) else {
            return;
        };
        let firsts: Vec<(u32, Option<u64>)> = numbers
            .iter()
            .filter(|n| **n > self.seen)
            .map(|n| (*n, self.first_line(*n)))
            .collect();
        for (i, (number, first)) in firsts.iter().enumerate() {
            if *number >= current {
                break;
            }
            // A sealed segment ends where the next one that holds a record begins.
            let next_first = firsts[i + 1..].iter().find_map(|(_, f)| *f);
            let last = match next_first {
                Some(f) => f.saturating_sub(1),
                None => self.stream.committed().last_line,
            };
            let first = first.unwrap_or(last + 1);
            let open = (first..=last).filter(|l| !self.finished.contains(*l)).count() as u64;
            self.sealed.push(Sealed {
                number: *number,
                first,
                last,
                open,
            });
            self.seen = *number;
        }
    }

    /// The first recipient line of segment `n` (`None` when it holds no record).
    fn first_line(&self, n: u32) -> Option<u64> {
        let file = std::fs::File::open(segment_path(self.stream.dir(), n)).ok()?;
        let mut buf = Vec::new();
        super::Record::read_from(&mut std::io::BufReader::new(file), &mut buf)
            .ok()
            .flatten()
            .map(|(r, _)| r.first_line + 1)
    }

    /// Deletes the sealed segments with no open line.
    fn collect(&mut self) {
        let stream = &self.stream;
        self.sealed.retain(|s| {
            if s.open > 0 {
                return true;
            }
            let path = segment_path(stream.dir(), s.number);
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    stream
                        .bytes()
                        .fetch_sub(size.min(stream.bytes().load(Ordering::Relaxed)), Ordering::Relaxed);
                    tracing::debug!("spool: {} spent, deleted", path.display());
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    tracing::warn!("spool: cannot delete the spent segment {}: {e}", path.display());
                    true
                }
            }
        });
    }

    /// Segments still tracked (for tests).
    pub fn tracked(&self) -> Vec<u32> {
        self.sealed.iter().map(|s| s.number).collect()
    }
}
