//! [`SuppressionWriter`]: buffered, retrying writes on an OS thread.
//!
//! [`SuppressionWriter::push`] never blocks: updates go over an unbounded channel to the writer
//! thread, which applies them in order in batches (every 100 ms or `batch` updates). When the
//! store fails it keeps them in memory, in order, and retries with backoff (100 ms .. 5 s);
//! [`SuppressionWriter::over_bound`] tells the dispatcher to stop sending new mail while the
//! backlog exceeds `max_buffered_updates`. [`SuppressionWriter::close`] flushes until a
//! deadline and appends what is left to `<dir>/suppression-pending.jsonl`, which the next
//! [`SuppressionWriter::start`] replays. Nothing is dropped, except [`Update::ForgetSoft`]
//! while the store fails (see [`Update::is_expendable`]).
//!
//! An update pushed with an [`Origin`] (its accounting line) advances that campaign's
//! [`WrittenMark`] once it is written or spilled; a kill loses the updates held in memory,
//! and the next run replays them from the log (see [`super::mark`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::backoff::Backoff;
use super::mark::{Missing, WrittenMark};
use super::{SuppressionConfig, SuppressionError, SuppressionStore, Update};

/// The spill file's name inside the writer's directory.
pub const SPILL_FILE: &str = "suppression-pending.jsonl";
/// Pending updates are flushed at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// While updates are pending, the writer takes new ones this often (and flushes every
/// [`FLUSH_EVERY`], or sooner when a batch is full).
const SLICE: Duration = Duration::from_millis(10);
/// How long a writer dropped without [`SuppressionWriter::close`] keeps trying before spilling.
const DROP_DEADLINE: Duration = Duration::from_secs(5);

/// What [`SuppressionWriter::close`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseReport {
    /// Updates applied to the store over the writer's life (replayed ones included; not
    /// counting [`Update::ForgetSoft`]).
    pub written: u64,
    /// Updates left in the spill file for the next start.
    pub spilled: u64,
    /// Updates neither written nor spilled because the spill file could not be written
    /// (logged as an error with the file name). Zero unless the disk failed.
    pub unsaved: u64,
}

/// The accounting line an update comes from: where its campaign's log ends after it.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The campaign's mark.
    pub mark: Arc<WrittenMark>,
    /// The byte offset at which the update's accounting line ends.
    pub end: u64,
}

struct Queued {
    update: Update,
    origin: Option<Origin>,
}

enum Msg {
    Update(Queued),
    Close(Instant),
}

struct Counters {
    backlog: AtomicUsize,
    written: AtomicU64,
}

/// The buffered writer; see the module docs.
pub struct SuppressionWriter {
    /// One mark per campaign state directory, shared by every run of it in this process.
    marks: std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<WrittenMark>>>,
    tx: Sender<Msg>,
    counters: Arc<Counters>,
    max_buffered: usize,
    thread: Option<JoinHandle<CloseReport>>,
}

impl SuppressionWriter {
    /// Starts the writer thread. An existing `<spill_dir>/suppression-pending.jsonl` is read
    /// first: its updates are applied before any pushed one, and the file is truncated once they
    /// are all written. A spill line that cannot be parsed is an error naming file and line.
    pub fn start(
        store: Arc<dyn SuppressionStore>,
        spill_dir: &Path,
        config: &SuppressionConfig,
    ) -> Result<SuppressionWriter, SuppressionError> {
        std::fs::create_dir_all(spill_dir).map_err(|source| SuppressionError::Io {
            path: spill_dir.to_path_buf(),
            op: "create the spill directory",
            source,
        })?;
        let spill_path = spill_dir.join(SPILL_FILE);
        let replay = read_spill(&spill_path)?;
        if !replay.is_empty() {
            tracing::info!(
                "replaying {} suppression updates from {}",
                replay.len(),
                spill_path.display()
            );
        }
        let counters = Arc::new(Counters {
            backlog: AtomicUsize::new(replay.len()),
            written: AtomicU64::new(0),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut worker = Worker {
            store,
            rx,
            counters: Arc::clone(&counters),
            batch: config.batch.max(1),
            replayed_left: replay.len(),
            pending: replay
                .into_iter()
                .map(|update| Queued { update, origin: None })
                .collect(),
            spill_path,
            backoff: Backoff::new(),
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("suppression-writer".into())
            .spawn(move || worker.run())
            .map_err(|source| SuppressionError::Io {
                path: spill_dir.to_path_buf(),
                op: "start the suppression writer thread",
                source,
            })?;
        Ok(SuppressionWriter {
            marks: std::sync::Mutex::default(),
            tx,
            counters,
            max_buffered: config.max_buffered_updates,
            thread: Some(thread),
        })
    }

    /// Queues one update. Never blocks.
    pub fn push(&self, update: Update) {
        self.enqueue(Queued { update, origin: None });
    }

    /// The mark of the campaign whose state directory is `dir` and whose accounting log is
    /// `log_len` bytes long (see [`WrittenMark::open`], `missing` too); the same one for every
    /// run of the campaign in this process.
    pub fn mark(&self, dir: &Path, log_len: u64, missing: Missing) -> Result<Arc<WrittenMark>, SuppressionError> {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mark) = marks.get(dir) {
            return Ok(mark.clone());
        }
        let mark = Arc::new(WrittenMark::open(dir, log_len, missing)?);
        marks.insert(dir.to_path_buf(), mark.clone());
        Ok(mark)
    }

    /// Queues one update from the accounting line ending at `origin.end`: once it is written
    /// (or spilled), `origin.mark` advances there. Never blocks.
    pub fn push_logged(&self, update: Update, origin: Origin) {
        origin.mark.queued(origin.end);
        self.enqueue(Queued {
            update,
            origin: Some(origin),
        });
    }

    fn enqueue(&self, queued: Queued) {
        self.counters.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Msg::Update(queued)).is_err() {
            // Only after the thread is gone, which `close`/`drop` alone cause.
            self.counters.backlog.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("suppression writer already closed; update not recorded");
        }
    }

    /// Updates pushed (or replayed) but not yet written.
    pub fn backlog(&self) -> usize {
        self.counters.backlog.load(Ordering::Relaxed)
    }

    /// True while the backlog exceeds `max_buffered_updates`: pause sending new mail.
    pub fn over_bound(&self) -> bool {
        self.backlog() > self.max_buffered
    }

    /// Updates written so far (not counting [`Update::ForgetSoft`]).
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }

    /// Flushes for at most `deadline`, then spills what is left to the spill file. A store call
    /// already under way when the deadline passes is finished first (for Redis at most the
    /// 2 s connect plus 10 s reply timeouts).
    pub fn close(mut self, deadline: Duration) -> CloseReport {
        self.shutdown(deadline)
    }

    fn shutdown(&mut self, deadline: Duration) -> CloseReport {
        let Some(thread) = self.thread.take() else {
            return CloseReport::default();
        };
        let _ = self.tx.send(Msg::Close(Instant::now() + deadline));
        thread.join().unwrap_or_else(|_| {
            tracing::error!("suppression writer thread panicked");
            CloseReport {
                written: self.written(),
                spilled: 0,
                unsaved: self.backlog() as u64,
            }
        })
    }
}

impl Drop for SuppressionWriter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown(DROP_DEADLINE);
        }
    }
}

/// The updates in a spill file (none if it does not exist).
fn read_spill(path: &Path) -> Result<Vec<Update>, SuppressionError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SuppressionError::Io {
                path: path.to_path_buf(),
                op: "open the spill file",
                source,
            })
        }
    };
    let mut updates = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| SuppressionError::Io {
            path: path.to_path_buf(),
            op: "read the spill file",
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let update = serde_json::from_str(&line).map_err(|e| SuppressionError::BadFile {
            path: path.to_path_buf(),
            line: n as u64 + 1,
            message: format!("not a suppression update: {e}"),
        })?;
        updates.push(update);
    }
    Ok(updates)
}

struct Worker {
    store: Arc<dyn SuppressionStore>,
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    batch: usize,
    pending: VecDeque<Queued>,
    /// How many of the first `pending` updates came from the spill file.
    replayed_left: usize,
    spill_path: PathBuf,
    backoff: Backoff,
    failing: bool,
}

impl Worker {
    fn run(&mut self) -> CloseReport {
        let mut next_flush = Instant::now();
        loop {
            let deadline = if self.pending.is_empty() {
                // Idle: wait for the first update.
                match self.rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(Msg::Update(queued)) => {
                        self.queue(queued);
                        self.drain_channel()
                    }
                    Ok(Msg::Close(deadline)) => Some(deadline),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Instant::now() + DROP_DEADLINE),
                }
            } else {
                // Updates pending: sleep a slice and take what came meanwhile. Blocking on the
                // channel here woke the thread for every update (one per delivered message),
                // and each wake spun and yielded before parking: 6 % of a send's CPU.
                let wait = next_flush.saturating_duration_since(Instant::now()).min(SLICE);
                std::thread::sleep(wait);
                self.drain_channel()
            };
            if let Some(deadline) = deadline {
                return self.finish(deadline);
            }
            let now = Instant::now();
            if !self.pending.is_empty() && (now >= next_flush || (self.pending.len() >= self.batch && !self.failing)) {
                next_flush = match self.flush() {
                    Ok(()) => Instant::now() + FLUSH_EVERY,
                    Err(()) => Instant::now() + self.backoff.next_delay(),
                };
            }
        }
    }

    /// Takes one update into `pending`; an expendable one is dropped while the store fails.
    fn queue(&mut self, queued: Queued) {
        if self.failing && queued.update.is_expendable() {
            self.counters.backlog.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.pending.push_back(queued);
        }
    }

    /// Moves queued updates into `pending`; returns a close deadline if one was queued (or the
    /// drop deadline when every sender is gone).
    fn drain_channel(&mut self) -> Option<Instant> {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Update(queued)) => self.queue(queued),
                Ok(Msg::Close(deadline)) => return Some(deadline),
                Err(crossbeam_channel::TryRecvError::Empty) => return None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return Some(Instant::now() + DROP_DEADLINE),
            }
        }
    }

    /// Drops the expendable updates from `pending` (the store is failing).
    fn drop_expendable(&mut self) {
        let before = self.pending.len();
        self.pending.retain(|q| !q.update.is_expendable());
        self.counters
            .backlog
            .fetch_sub(before - self.pending.len(), Ordering::Relaxed);
    }

    /// Applies everything pending, batch by batch, stopping at the first failure.
    fn flush(&mut self) -> Result<(), ()> {
        let mut marks = Marks::default();
        let result = self.flush_into(&mut marks);
        marks.advance();
        result
    }

    fn flush_into(&mut self, marks: &mut Marks) -> Result<(), ()> {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.batch);
            let chunk: Vec<Update> = self.pending.iter().take(n).map(|q| q.update.clone()).collect();
            match self.store.apply(&chunk) {
                Ok(()) => {
                    let mut kept = 0;
                    for queued in self.pending.drain(..n) {
                        kept += u64::from(!queued.update.is_expendable());
                        marks.note(queued.origin);
                    }
                    self.counters.backlog.fetch_sub(n, Ordering::Relaxed);
                    self.counters.written.fetch_add(kept, Ordering::Relaxed);
                    self.backoff.reset();
                    if self.failing {
                        self.failing = false;
                        tracing::info!("suppression store {} writable again", self.store.describe());
                    }
                    if self.replayed_left > 0 {
                        self.replayed_left = self.replayed_left.saturating_sub(n);
                        if self.replayed_left == 0 {
                            self.truncate_spill();
                        }
                    }
                }
                Err(e) => {
                    self.drop_expendable();
                    if !self.failing {
                        self.failing = true;
                        tracing::warn!(
                            "suppression store write failed: {e}; {} updates kept in memory, retrying",
                            self.pending.len()
                        );
                    }
                    return Err(());
                }
            }
        }
        Ok(())
    }

    fn truncate_spill(&self) {
        if let Err(e) = File::create(&self.spill_path) {
            // The replayed updates are written; replaying them again only bumps counts.
            tracing::warn!("cannot truncate {}: {e}", self.spill_path.display());
        }
    }

    /// Flushes until `deadline`, then spills the rest.
    fn finish(&mut self, deadline: Instant) -> CloseReport {
        if let Some(later) = self.drain_channel() {
            tracing::debug!("second close request ignored (deadline {later:?})");
        }
        while !self.pending.is_empty() && Instant::now() < deadline {
            if self.flush().is_err() {
                let wait = self
                    .backoff
                    .next_delay()
                    .min(deadline.saturating_duration_since(Instant::now()));
                std::thread::sleep(wait);
            }
        }
        let written = self.counters.written.load(Ordering::Relaxed);
        if self.pending.is_empty() {
            return CloseReport {
                written,
                ..CloseReport::default()
            };
        }
        let left = self.pending.len() as u64;
        match self.spill() {
            Ok(()) => {
                tracing::warn!(
                    "{left} suppression updates could not be written to {}; saved to {} for the next run",
                    self.store.describe(),
                    self.spill_path.display()
                );
                CloseReport {
                    written,
                    spilled: left,
                    unsaved: 0,
                }
            }
            Err(e) => {
                tracing::error!("{left} suppression updates could not be written nor saved: {e}");
                CloseReport {
                    written,
                    spilled: 0,
                    unsaved: left,
                }
            }
        }
    }

    /// Writes the pending updates to the spill file. Replayed updates still pending are the
    /// file's current content, so those lines are kept and only the new ones appended.
    fn spill(&mut self) -> Result<(), SuppressionError> {
        self.drop_expendable();
        let path = &self.spill_path;
        let io = |op| {
            move |source| SuppressionError::Io {
                path: path.clone(),
                op,
                source,
            }
        };
        let mut file = if self.replayed_left > 0 {
            // Rewrite: the file still holds replayed lines some of which may be written now.
            OpenOptions::new().write(true).create(true).truncate(true).open(path)
        } else {
            OpenOptions::new().append(true).create(true).open(path)
        }
        .map(BufWriter::new)
        .map_err(io("open the spill file"))?;
        for queued in &self.pending {
            let line = serde_json::to_string(&queued.update).unwrap_or_default();
            writeln!(file, "{line}").map_err(io("write the spill file"))?;
        }
        let file = file
            .into_inner()
            .map_err(|e| io("write the spill file")(e.into_error()))?;
        file.sync_all().map_err(io("sync the spill file"))?;
        // Saved for the next start: their accounting lines need no replay.
        let mut marks = Marks::default();
        for queued in &self.pending {
            marks.note(queued.origin.clone());
        }
        marks.advance();
        Ok(())
    }
}

/// How far each campaign's mark may advance after a flush.
#[derive(Default)]
struct Marks(Vec<Origin>);

impl Marks {
    fn note(&mut self, origin: Option<Origin>) {
        let Some(origin) = origin else { return };
        match self.0.iter_mut().find(|o| Arc::ptr_eq(&o.mark, &origin.mark)) {
            Some(o) => o.end = o.end.max(origin.end),
            None => self.0.push(origin),
        }
    }

    fn advance(self) {
        for o in self.0 {
            if let Err(e) = o.mark.advance(o.end) {
                // The updates are written; the next start replays them again (counts bump).
                tracing::warn!("{e}");
            }
        }
    }
}
