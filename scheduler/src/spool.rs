//! The durable spool of injected messages (SMTP submission, `POST /messages`).
//!
//! ```text
//! <state_dir>/spool/<campaign>/00000001.seg   one JSON line per message (envelope + base64)
//!                              00000002.seg   ... the next once a segment passes segment_size
//! ```
//! Each injection campaign is a *stream* of append-only segment files. One writer thread
//! appends whatever messages are waiting, syncs each touched segment once and only then
//! answers them (group commit; see `writer`), so an acknowledged message survives kill -9 and
//! power loss, and concurrent injections share the cost of a sync. The campaign's run reads
//! the stream like a recipient file that keeps growing (`recipients::spooled`), never past
//! what is synced; a recipient's line is dense over the stream, so the run's resume state
//! (accounting log, dispatch journal) works as for campaign files.
//!
//! Why segment files and not an embedded store: the spool is written once, read in order
//! once, and read again only for retries; an append-only file does exactly that with one
//! sequential write and one `fdatasync` per batch, where a B-tree store (redb, which the
//! embedded suppression list uses) rewrites pages and syncs twice per transaction. The
//! README has the measurement.
//!
//! On start ([`Spool::open`]) every stream's last segment is checked and a torn last line
//! (never acknowledged: the crash came before its sync finished) is cut off.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};

use crate::address::EmailAddress;
use crate::inject::{self, Accepted, InjectError, Injected, Injector};

mod gc;
pub mod record;
pub mod stream;
mod writer;

pub use gc::SegmentGc;

pub use record::Record;
pub use stream::{Follower, ReadError, Stream};

/// `[injection]` in volley.toml: how injected mail (SMTP submission, `POST /messages`) is
/// sent and spooled.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionConfig {
    /// The pool of source IPs injected mail leaves from.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// 0 (bulk) to 9: where injected mail meets campaigns at a site, the higher goes first.
    /// Transactional mail usually wants a high one.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// A suppression list honoured besides `global`.
    #[serde(default)]
    pub suppression_list: Option<String>,
    /// VERP return paths for injected mail (`None`: as `[feedback] verp` says). Without VERP
    /// each message keeps the envelope sender it was injected with.
    #[serde(default)]
    pub verp: Option<bool>,
    /// Recipients of one `POST /messages` request at most.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// The spool (`[injection.spool]`).
    #[serde(default)]
    pub spool: SpoolConfig,
}

fn default_pool() -> String {
    "default".into()
}
fn default_priority() -> u8 {
    7
}
fn default_max_batch() -> usize {
    10_000
}

impl Default for InjectionConfig {
    fn default() -> Self {
        InjectionConfig {
            pool: default_pool(),
            priority: default_priority(),
            suppression_list: None,
            verp: None,
            max_batch: default_max_batch(),
            spool: SpoolConfig::default(),
        }
    }
}

impl InjectionConfig {
    /// How the injection campaigns send.
    pub fn settings(&self) -> crate::campaign::InjectedSettings {
        crate::campaign::InjectedSettings {
            pool: self.pool.clone(),
            priority: self.priority,
            suppression_list: self.suppression_list.clone(),
            verp: self.verp,
        }
    }

    /// The first field with an unusable value: (field, value, why).
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        if self.priority > 9 {
            return Err(("priority", self.priority.to_string(), "must be 0 to 9"));
        }
        if self.max_batch == 0 {
            return Err(("max_batch", "0".into(), "must be at least 1"));
        }
        let s = &self.spool;
        if s.segment_size < 4096 || s.segment_size > (1 << 39) {
            return Err((
                "spool.segment_size",
                s.segment_size.to_string(),
                "must be 4096 bytes to 512 GiB",
            ));
        }
        if s.max_campaigns == 0 {
            return Err(("spool.max_campaigns", "0".into(), "must be at least 1"));
        }
        if s.max_recipients == 0 {
            return Err(("spool.max_recipients", "0".into(), "must be at least 1"));
        }
        Ok(())
    }
}

/// `[injection.spool]`: where injected messages wait.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// A new segment file is started once the current one is this large.
    #[serde(default = "default_segment_size")]
    pub segment_size: u64,
    /// Injection is refused (SMTP 452, HTTP 507) while the spool holds this many bytes.
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// Injection campaigns (streams) at most; a message for one more is refused (451).
    #[serde(default = "default_max_campaigns")]
    pub max_campaigns: usize,
    /// Envelope recipients of one injected message at most.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
}

fn default_segment_size() -> u64 {
    64 << 20
}
fn default_max_size() -> u64 {
    16 << 30
}
fn default_max_campaigns() -> usize {
    256
}
fn default_max_recipients() -> usize {
    1000
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            segment_size: default_segment_size(),
            max_size: default_max_size(),
            max_campaigns: default_max_campaigns(),
            max_recipients: default_max_recipients(),
        }
    }
}

/// Why the spool cannot be opened or a stream created.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or folder of the spool.
    #[error("{path}: cannot {action}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A segment holds something that is not a record before its last line.
    #[error(transparent)]
    Damaged(#[from] ReadError),
    /// The writer thread is gone.
    #[error("the spool writer has stopped")]
    Stopped,
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// What the writer thread and the injecting side share.
pub(crate) struct Shared {
    dir: PathBuf,
    config: SpoolConfig,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    /// Bytes in the spool's segments.
    bytes: Arc<AtomicU64>,
    /// Streams created since start, for the run that sends them.
    created: mpsc::UnboundedSender<Arc<Stream>>,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the folder and first segment of a new stream (the writer thread).
    fn create_stream(&self, name: &str) -> Result<writer::Tail, SpoolError> {
        let dir = writer::stream_dir(&self.dir, name);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create the stream folder"))?;
        let path = stream::segment_path(&dir, 1);
        let file = writer::open_segment(&path).map_err(io_err(&path, "create the segment"))?;
        volley_files::sync_dir(&dir).map_err(io_err(&dir, "sync the stream folder"))?;
        volley_files::sync_dir(&self.dir).map_err(io_err(&self.dir, "sync the spool folder"))?;
        let committed = stream::Committed {
            segment: 1,
            len: 0,
            last_line: 0,
        };
        let stream = Arc::new(Stream::new(name.to_owned(), dir, committed, self.bytes.clone()));
        self.streams().insert(name.to_owned(), stream.clone());
        let _ = self.created.send(stream.clone());
        Ok(writer::Tail {
            stream,
            file,
            segment: 1,
            len: 0,
            last_line: 0,
        })
    }
}

/// The spool: see the module docs.
pub struct Spool {
    shared: Arc<Shared>,
    requests: crossbeam_channel::Sender<writer::Request>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// Streams the spool creates after it was opened (to be launched as they come).
pub type NewStreams = mpsc::UnboundedReceiver<Arc<Stream>>;

impl Spool {
    /// Opens (creating) the spool folder `dir`, recovers every stream (cutting a torn last
    /// record) and starts the writer thread. The streams found come back with it; streams
    /// created later arrive on [`NewStreams`].
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<(Spool, Vec<Arc<Stream>>, NewStreams), SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir, "create the spool folder"))?;
        let mut tails = HashMap::new();
        let bytes = Arc::new(AtomicU64::new(0));
        let mut found = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io_err(dir, "list the spool folder"))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| crate::campaign::check_id(n).is_ok())
            .collect();
        names.sort();
        for name in names {
            let stream_dir = writer::stream_dir(dir, &name);
            let (tail, size) = recover(&name, &stream_dir, bytes.clone())?;
            bytes.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
            found.push(tail.stream.clone());
            tails.insert(name, tail);
        }
        let (created, new_streams) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            streams: Mutex::new(found.iter().map(|s| (s.name().to_owned(), s.clone())).collect()),
            bytes,
            created,
        });
        let (requests, rx) = crossbeam_channel::bounded(4096);
        {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("volley-spool".into())
                .spawn(move || writer::run(shared, tails, rx))
                .map_err(io_err(dir, "start the spool writer thread"))?;
        }
        Ok((Spool { shared, requests }, found, new_streams))
    }

    /// The spool folder.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Bytes in the spool's segments.
    pub fn size(&self) -> u64 {
        self.shared.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The stream of campaign `name`, if it exists.
    pub fn stream(&self, name: &str) -> Option<Arc<Stream>> {
        self.shared.streams().get(name).cloned()
    }

    /// Appends one message to stream `campaign`; the first recipient's line once durable.
    async fn append(&self, campaign: &str, record: Record) -> Result<u64, InjectError> {
        if self.size() >= self.shared.config.max_size {
            return Err(InjectError::Full(format!(
                "the spool holds {} bytes (max_size {})",
                self.size(),
                self.shared.config.max_size
            )));
        }
        {
            let streams = self.shared.streams();
            if !streams.contains_key(campaign) && streams.len() >= self.shared.config.max_campaigns {
                return Err(InjectError::Unavailable(format!(
                    "{} injection campaigns exist already (max_campaigns); campaign {campaign} is not created",
                    streams.len()
                )));
            }
        }
        let (reply, answer) = oneshot::channel();
        let request = writer::Request {
            stream: campaign.to_owned(),
            record,
            reply,
        };
        let stopped = || InjectError::Unavailable(SpoolError::Stopped.to_string());
        match self.requests.try_send(request) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(stopped()),
            Err(crossbeam_channel::TrySendError::Full(request)) => {
                // The queue is bounded: wait for room off the async threads.
                let requests = self.requests.clone();
                tokio::task::spawn_blocking(move || requests.send(request).is_ok())
                    .await
                    .ok()
                    .filter(|sent| *sent)
                    .ok_or_else(stopped)?;
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(InjectError::Unavailable(SpoolError::Stopped.to_string())))
    }
}

impl Injector for Spool {
    async fn inject(&self, message: Injected) -> Result<Accepted, InjectError> {
        let (campaign, record) = prepare(message, self.shared.config.max_recipients)?;
        let first = self.append(&campaign, record.0).await?;
        let ids = (0..record.1)
            .map(|i| format!("{campaign}:{}", first + i as u64))
            .collect();
        Ok(Accepted { campaign, ids })
    }
}

/// Checks an injected message and turns it into its record (and its recipient count):
/// the campaign header is removed, a missing `Date` or `Message-ID` added (RFC 6409 §8).
fn prepare(message: Injected, max_recipients: usize) -> Result<(String, (Record, usize)), InjectError> {
    let inspected = inject::inspect(&message.raw)?;
    if message.recipients.is_empty() {
        return Err(InjectError::Malformed("no recipients".into()));
    }
    if message.recipients.len() > max_recipients {
        return Err(InjectError::Malformed(format!(
            "{} recipients; at most {max_recipients} per message",
            message.recipients.len()
        )));
    }
    for r in &message.recipients {
        EmailAddress::parse(r).map_err(|e| InjectError::Malformed(format!("recipient {r:?}: {e}")))?;
    }
    let campaign = inspected.campaign.clone().unwrap_or_else(|| message.user.clone());
    crate::campaign::check_id(&campaign)
        .map_err(|why| InjectError::Malformed(format!("campaign {campaign:?} (the user name): {why}")))?;
    let body = if inspected.campaign.is_some() {
        inject::strip_campaign_header(&message.raw)?
    } else {
        message.raw
    };
    let now = SystemTime::now();
    let at = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut added = String::new();
    let message_id = match inspected.message_id.clone() {
        Some(id) => id,
        None => {
            let id = format!("{campaign}.{at}.{:016x}@{}", fastrand::u64(..), inspected.from_domain);
            added.push_str(&format!("Message-ID: <{id}>\r\n"));
            id
        }
    };
    if !inspected.has_date {
        added.push_str(&format!("Date: {}\r\n", httpdate_rfc5322(now)));
    }
    let raw = if added.is_empty() {
        body
    } else {
        let mut raw = Vec::with_capacity(added.len() + body.len());
        raw.extend_from_slice(added.as_bytes());
        raw.extend_from_slice(&body);
        raw
    };
    let n = message.recipients.len();
    let record = Record {
        first_line: 0,
        mail_from: message.mail_from,
        rcpt: message.recipients,
        user: message.user,
        peer: message.peer,
        at,
        message_id,
        from_domain: inspected.from_domain,
        raw,
    };
    Ok((campaign, (record, n)))
}

/// An RFC 5322 date-time in UTC.
fn httpdate_rfc5322(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    mail_parser::DateTime::from_timestamp(secs).to_rfc822()
}

/// Recovers one stream at open: its segments, the torn tail of the last one cut off.
fn recover(name: &str, dir: &Path, bytes: Arc<AtomicU64>) -> Result<(writer::Tail, u64), SpoolError> {
    let mut numbers = stream::segments(dir).map_err(io_err(dir, "list the stream folder"))?;
    if numbers.is_empty() {
        numbers.push(1);
    }
    let mut size = 0;
    for n in &numbers {
        size += std::fs::metadata(stream::segment_path(dir, *n)).map_or(0, |m| m.len());
    }
    let last = *numbers.last().unwrap_or(&1);
    let path = stream::segment_path(dir, last);
    let file = writer::open_segment(&path).map_err(io_err(&path, "open the segment"))?;
    let (good, mut last_line) = scan(&path)?;
    let len = file.metadata().map_err(io_err(&path, "read the segment's size"))?.len();
    if good < len {
        tracing::warn!(
            "spool: {}: cutting {} bytes after byte {good} (a message whose sync had not finished: never acknowledged)",
            path.display(),
            len - good
        );
        file.set_len(good).map_err(io_err(&path, "cut the torn record"))?;
        file.sync_all().map_err(io_err(&path, "sync the segment"))?;
        size -= len - good;
    }
    if good == 0 {
        // An empty last segment: the lines go on from the one before.
        if let Some(prev) = numbers.iter().rev().nth(1) {
            last_line = scan(&stream::segment_path(dir, *prev))?.1;
        }
    }
    let committed = stream::Committed {
        segment: last,
        len: good,
        last_line,
    };
    let stream = Arc::new(Stream::new(name.to_owned(), dir.to_path_buf(), committed, bytes));
    Ok((
        writer::Tail {
            stream,
            file,
            segment: last,
            len: good,
            last_line,
        },
        size,
    ))
}

/// The length of a segment's whole records and the last recipient line among them. A record
/// cut short at the end is a torn write; anything else that is not a record is damage, refused.
fn scan(path: &Path) -> Result<(u64, u64), SpoolError> {
    let file = std::fs::File::open(path).map_err(io_err(path, "open the segment"))?;
    let len = file.metadata().map_err(io_err(path, "read the segment's size"))?.len();
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let (mut good, mut last_line) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        match Record::read_from(&mut reader, &mut buf) {
            Ok(None) => return Ok((good, last_line)),
            Ok(Some((r, n))) => {
                good += n;
                last_line = r.last_line();
            }
            // The crash came while this record was written: it was never acknowledged.
            Err(e) if e.is_torn() => return Ok((good, last_line)),
            // A header line cut where a JSON value ends, with nothing after it.
            Err(record::RecordError::Json(_)) if good + buf.len() as u64 >= len => return Ok((good, last_line)),
            Err(source) => {
                return Err(SpoolError::Damaged(ReadError::Record {
                    path: path.to_path_buf(),
                    offset: good,
                    source,
                }))
            }
        }
    }
}
