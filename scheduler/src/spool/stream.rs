//! One stream of the spool: the messages of one injection campaign, in numbered segment files
//! `<stream dir>/<n>.seg` (n from 1, eight digits). Only the writer thread appends, always to
//! the highest segment; it publishes how far that segment is synced ([`Committed`]), and
//! readers never read past it, so they never see a message before it is durable.
//!
//! A position in the stream is one `u64`: the segment number in the high 24 bits, the byte
//! offset in the low 40 (segments stay far below 1 TiB).

use std::fs::File;
use std::io::{self, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::record::{Record, RecordError};

const OFFSET_BITS: u32 = 40;

/// The stream position of byte `offset` of segment `segment`.
pub fn position(segment: u32, offset: u64) -> u64 {
    (u64::from(segment) << OFFSET_BITS) | offset
}

/// The (segment, byte offset) of a stream position.
pub fn split(position: u64) -> (u32, u64) {
    ((position >> OFFSET_BITS) as u32, position & ((1 << OFFSET_BITS) - 1))
}

/// The file of segment `n`.
pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.seg"))
}

/// The segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> io::Result<Vec<u32>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if let Ok(n) = n.parse::<u32>() {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// How far the stream is durable: everything before `len` in segment `segment`, and all of
/// every lower segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub segment: u32,
    pub len: u64,
    /// The last recipient line written.
    pub last_line: u64,
}

/// What readers of a stream share with its writer.
#[derive(Debug)]
pub struct Stream {
    name: String,
    dir: PathBuf,
    committed: Mutex<Committed>,
    grew: Condvar,
    /// The bytes of the whole spool (the writer adds, deleting spent segments subtracts).
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Stream {
    pub(super) fn new(
        name: String,
        dir: PathBuf,
        committed: Committed,
        bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Stream {
        Stream {
            name,
            dir,
            committed: Mutex::new(committed),
            grew: Condvar::new(),
            bytes,
        }
    }

    /// The byte count of the whole spool.
    pub(super) fn bytes(&self) -> &std::sync::atomic::AtomicU64 {
        &self.bytes
    }

    /// The stream's (campaign's) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Committed> {
        self.committed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How far the stream is durable now.
    pub fn committed(&self) -> Committed {
        *self.lock()
    }

    /// Publishes a new durable end (the writer, after a sync) and wakes the readers.
    pub(super) fn commit(&self, committed: Committed) {
        *self.lock() = committed;
        self.grew.notify_all();
    }

    /// Waits up to `wait` for the durable end to move past `seen`; the new end.
    pub fn wait_past(&self, seen: Committed, wait: Duration) -> Committed {
        let guard = self.lock();
        let (guard, _) = self
            .grew
            .wait_timeout_while(guard, wait, |c| *c == seen)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// Reads the record at stream position `at`.
    pub fn read_at(&self, at: u64) -> Result<Record, ReadError> {
        let (segment, offset) = split(at);
        let path = segment_path(&self.dir, segment);
        let mut file = File::open(&path).map_err(|e| ReadError::io(&path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| ReadError::io(&path, e))?;
        let mut buf = Vec::new();
        match Record::read_from(&mut BufReader::new(file), &mut buf) {
            Ok(Some((record, _))) => Ok(record),
            Ok(None) => Err(ReadError::Torn { path, offset }),
            Err(source) => Err(ReadError::Record { path, offset, source }),
        }
    }
}

/// Why a spooled record cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the segment failed.
    #[error("{path}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// No complete line at that offset.
    #[error("{path}: no complete record at byte {offset}")]
    Torn {
        /// The segment file.
        path: PathBuf,
        /// Where the record was expected.
        offset: u64,
    },
    /// The line there is not a record.
    #[error("{path}, byte {offset}: {source}")]
    Record {
        /// The segment file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// What is wrong with it.
        source: RecordError,
    },
}

impl ReadError {
    fn io(path: &Path, source: io::Error) -> ReadError {
        ReadError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads a stream's records in order from the start, following the writer: at the durable
/// end it waits for more, until `closed` says the reader is no longer wanted.
pub struct Follower {
    stream: std::sync::Arc<Stream>,
    segment: u32,
    offset: u64,
    file: Option<BufReader<File>>,
    line: Vec<u8>,
    closed: Box<dyn Fn() -> bool + Send>,
}

/// How long a caught-up reader sleeps before it checks whether it is still wanted.
const POLL: Duration = Duration::from_millis(250);

impl Follower {
    /// A reader from the stream's first segment.
    pub fn new(stream: std::sync::Arc<Stream>, closed: Box<dyn Fn() -> bool + Send>) -> io::Result<Follower> {
        let first = segments(stream.dir())?.first().copied().unwrap_or(1);
        Ok(Follower {
            stream,
            segment: first,
            offset: 0,
            file: None,
            line: Vec::new(),
            closed,
        })
    }

    /// The stream.
    pub fn stream(&self) -> &std::sync::Arc<Stream> {
        &self.stream
    }

    /// Whether the next [`Follower::next_record`] would wait for the writer.
    pub fn caught_up(&self) -> bool {
        let committed = self.stream.committed();
        self.segment >= committed.segment && self.offset >= committed.len
    }

    /// The next record and its position; `None` once the reader is closed.
    pub fn next_record(&mut self) -> Option<Result<(u64, Record), ReadError>> {
        loop {
            let committed = self.stream.committed();
            let sealed = self.segment < committed.segment;
            if sealed || self.offset < committed.len {
                match self.read_one() {
                    Ok(Some(found)) => return Some(Ok(found)),
                    // A sealed segment read to its end: on to the next one.
                    Ok(None) if sealed => {
                        self.segment += 1;
                        self.offset = 0;
                        self.file = None;
                        continue;
                    }
                    Ok(None) => {
                        return Some(Err(ReadError::Torn {
                            path: segment_path(self.stream.dir(), self.segment),
                            offset: self.offset,
                        }))
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            if (self.closed)() {
                return None;
            }
            self.stream.wait_past(committed, POLL);
        }
    }

    /// The record at the current offset; `None` at the end of the file.
    fn read_one(&mut self) -> Result<Option<(u64, Record)>, ReadError> {
        let path = segment_path(self.stream.dir(), self.segment);
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let mut file = match File::open(&path) {
                    Ok(file) => file,
                    // A spent segment deleted (only sealed ones are): nothing to read there.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && self.segment < self.stream.committed().segment => {
                        return Ok(None)
                    }
                    Err(e) => return Err(ReadError::io(&path, e)),
                };
                file.seek(SeekFrom::Start(self.offset))
                    .map_err(|e| ReadError::io(&path, e))?;
                self.file.insert(BufReader::with_capacity(256 * 1024, file))
            }
        };
        let at = self.offset;
        match Record::read_from(file, &mut self.line) {
            Ok(Some((record, len))) => {
                self.offset += len;
                Ok(Some((position(self.segment, at), record)))
            }
            Ok(None) => Ok(None),
            Err(source) => Err(ReadError::Record {
                path,
                offset: at,
                source,
            }),
        }
    }
}
