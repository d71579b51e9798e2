//! The spool's one writer thread: group commit. It takes every request waiting, appends each
//! record to its stream's segment, syncs each touched segment once (`fdatasync`), publishes
//! the new durable ends, and only then answers the requests. Concurrent injections therefore
//! share one sync, and no message is acknowledged before it is on disk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::record::Record;
use super::stream::{segment_path, Committed, Stream};
use super::{Shared, SpoolError};
use crate::inject::InjectError;

/// Requests taken into one commit at most, and their bytes.
const BATCH: usize = 2048;
const BATCH_BYTES: usize = 32 << 20;

/// One message to append: its record (the writer sets `first_line`) and where the answer goes.
pub(super) struct Request {
    pub stream: String,
    pub record: Record,
    /// The first recipient's line, once durable.
    pub reply: oneshot::Sender<Result<u64, InjectError>>,
}

/// The writer's side of one stream.
pub(super) struct Tail {
    pub stream: Arc<Stream>,
    pub file: File,
    pub segment: u32,
    pub len: u64,
    pub last_line: u64,
}

impl Tail {
    fn committed(&self) -> Committed {
        Committed {
            segment: self.segment,
            len: self.len,
            last_line: self.last_line,
        }
    }

    /// Starts the next segment (the current one is synced: every batch ends with a sync).
    fn rotate(&mut self) -> io::Result<()> {
        let next = self.segment + 1;
        let file = open_segment(&segment_path(self.stream.dir(), next))?;
        volley_files::sync_dir(self.stream.dir())?;
        self.file = file;
        self.segment = next;
        self.len = 0;
        Ok(())
    }
}

/// Opens (creating) a segment for appending.
pub(super) fn open_segment(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// How an I/O error refuses the messages it hit.
pub(super) fn refusal(path: &std::path::Path, e: &io::Error) -> InjectError {
    // ENOSPC and EDQUOT: no room, come back later.
    if e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122)) {
        InjectError::Full(format!("{}: {e}", path.display()))
    } else {
        InjectError::Unavailable(format!("{}: {e}", path.display()))
    }
}

/// Runs until every sender of `requests` is gone.
pub(super) fn run(
    shared: Arc<Shared>,
    mut tails: HashMap<String, Tail>,
    requests: crossbeam_channel::Receiver<Request>,
) {
    let mut batch: Vec<Request> = Vec::with_capacity(BATCH);
    while let Ok(first) = requests.recv() {
        let mut bytes = first.record.raw.len();
        batch.push(first);
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            match requests.try_recv() {
                Ok(r) => {
                    bytes += r.record.raw.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        commit(&shared, &mut tails, &mut batch);
    }
}

/// Appends, syncs and answers one batch.
fn commit(shared: &Shared, tails: &mut HashMap<String, Tail>, batch: &mut Vec<Request>) {
    // Per stream: the requests written, with their first lines, and the end before the batch.
    let mut written: HashMap<String, (Committed, Vec<(Request, u64)>)> = HashMap::new();
    for mut request in batch.drain(..) {
        let tail = match tails.get_mut(&request.stream) {
            Some(tail) => tail,
            None => match shared.create_stream(&request.stream) {
                Ok(tail) => tails.entry(request.stream.clone()).or_insert(tail),
                Err(e) => {
                    let _ = request.reply.send(Err(e.into_refusal()));
                    continue;
                }
            },
        };
        let before = tail.committed();
        if tail.len >= shared.config.segment_size {
            if let Err(e) = tail.rotate() {
                let path = segment_path(tail.stream.dir(), tail.segment + 1);
                let _ = request.reply.send(Err(refusal(&path, &e)));
                continue;
            }
        }
        request.record.first_line = tail.last_line;
        let line = request.record.encode();
        if let Err(e) = tail.file.write_all(&line) {
            let path = segment_path(tail.stream.dir(), tail.segment);
            // Nothing half-written stays: cut back to the last whole record.
            let _ = tail.file.set_len(tail.len);
            let _ = request.reply.send(Err(refusal(&path, &e)));
            continue;
        }
        tail.len += line.len() as u64;
        tail.last_line = request.record.last_line();
        shared.bytes.fetch_add(line.len() as u64, Ordering::Relaxed);
        let first = request.record.first_line + 1;
        written
            .entry(request.stream.clone())
            .or_insert_with(|| (before, Vec::new()))
            .1
            .push((request, first));
    }
    for (name, (before, requests)) in written {
        let Some(tail) = tails.get_mut(&name) else { continue };
        match tail.file.sync_data() {
            Ok(()) => {
                tail.stream.commit(tail.committed());
                for (request, first) in requests {
                    let _ = request.reply.send(Ok(first));
                }
            }
            Err(e) => {
                let path = segment_path(tail.stream.dir(), tail.segment);
                tracing::error!(
                    "spool: cannot sync {}: {e}; {} messages refused",
                    path.display(),
                    requests.len()
                );
                // Refused messages must not be sent: cut them off (the segment may have been
                // rotated inside the batch; then its new start is cut).
                let cut_to = if tail.segment == before.segment { before.len } else { 0 };
                let _ = tail.file.set_len(cut_to);
                shared.bytes.fetch_sub(tail.len - cut_to, Ordering::Relaxed);
                tail.len = cut_to;
                tail.last_line = before.last_line;
                let refusal = refusal(&path, &e);
                for (request, _) in requests {
                    let _ = request.reply.send(Err(refusal.clone()));
                }
            }
        }
    }
}

impl SpoolError {
    fn into_refusal(self) -> InjectError {
        match self {
            SpoolError::Io { path, source, .. } => refusal(&path, &source),
            other => InjectError::Unavailable(other.to_string()),
        }
    }
}

/// The folder of stream `name` under the spool folder.
pub(super) fn stream_dir(spool: &std::path::Path, name: &str) -> PathBuf {
    spool.join(name)
}
