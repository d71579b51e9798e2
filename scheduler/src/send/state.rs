//! The campaign's durable state in `<state_dir>/<campaign id>/`, and what a rerun resumes from.
//!
//! - `accounting.jsonl` is the journal of outcomes: every attempt's line is appended (and
//!   flushed to the OS whenever the report queue is empty) before anything depends on it. On
//!   start it is scanned: a recipient-file line whose last record is final (delivered, bounced,
//!   expired, rejected, suppressed) is finished; one whose last record is a deferral is pending,
//!   with its next attempt time. A partial last line (the process was killed mid-write) is cut.
//! - `dispatched.bin` gets a 12-byte record (line, attempt) *before* each delivery is handed to
//!   the engine. Records there without a matching remote attempt in the accounting log were on
//!   the wire when the process died: they are sent again, so they are the possible duplicates,
//!   and the summary counts them (`resent_after_restart`).
//! - `campaign.json` pins the recipient file (path, size, modification time): line numbers
//!   identify recipients, so a rerun against a changed file is refused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::lineset::LineSet;
use crate::outcome::Outcome;
use crate::summary::Summary;

/// Bytes per `dispatched.bin` record (line, attempt).
pub const DISPATCH_RECORD: u64 = 12;

/// A recipient that was deferred and is waiting for its next attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The attempt number the next try will have.
    pub attempt: u32,
    /// When the first attempt was made (the retry age counts from here).
    pub first_at: SystemTime,
    /// When the next attempt is due.
    pub due: SystemTime,
    /// Where its last attempt was queued (queue control finds it by these).
    pub place: PendingPlace,
}

/// The domain, site and source IP of a deferral's last attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingPlace {
    pub domain: std::sync::Arc<str>,
    pub site: Option<std::sync::Arc<str>>,
    pub source_ip: Option<std::net::IpAddr>,
}

/// What earlier runs of the campaign left.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    /// Lines with a final outcome.
    pub finished: LineSet,
    /// Lines waiting for a retry.
    pub pending: HashMap<u64, Pending>,
    /// Tallies of the final outcomes and counters recorded so far.
    pub summary: Summary,
    /// Deliveries handed to the engine by earlier runs whose outcome was never recorded.
    pub resent_after_restart: u64,
    /// Accounting lines read.
    pub records: u64,
    /// Domains and sites of pending recipients, shared (many recipients, few domains).
    names: HashMap<Box<str>, std::sync::Arc<str>>,
}

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line of the accounting log is not a record this version wrote.
    #[error("{}:{line}: unreadable accounting record: {reason}", .path.display())]
    Corrupt {
        /// The accounting log.
        path: PathBuf,
        /// 1-based line.
        line: u64,
        /// The parser's message.
        reason: String,
    },
    /// The recipient file differs from the one the campaign started with.
    #[error(
        "{}: the recipient file changed since this campaign started ({was} -> {now}); recipients \
         are identified by line, so resuming would skip or repeat people. Give the campaign a new \
         `id`, or remove {} to start it over",
        .recipients.display(), .dir.display()
    )]
    RecipientsChanged {
        /// The recipient file.
        recipients: PathBuf,
        /// The campaign's state directory.
        dir: PathBuf,
        /// What was recorded.
        was: String,
        /// What is there now.
        now: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The fields of an accounting line that resuming needs.
#[derive(serde::Deserialize)]
struct Seen<'a> {
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    domain: std::borrow::Cow<'a, str>,
    source_ip: Option<std::net::IpAddr>,
    #[serde(borrow, default)]
    site: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    provider: Option<std::borrow::Cow<'a, str>>,
    outcome: Outcome,
    attempt: u32,
    line: u64,
    #[serde(borrow, default)]
    next_attempt: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    maybe_duplicate: bool,
    #[serde(default)]
    latency_ms: u64,
}

/// Identity of the recipient file, as pinned in `campaign.json`.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Pin {
    recipients: PathBuf,
    size: u64,
    modified_ns: u128,
}

impl Pin {
    fn of(recipients: &Path) -> Result<Pin, StateError> {
        let meta = std::fs::metadata(recipients).map_err(io_at(recipients))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Pin {
            recipients: recipients.to_path_buf(),
            size: meta.len(),
            modified_ns,
        })
    }

    fn describe(&self) -> String {
        format!("{} bytes, modified {} ns after the epoch", self.size, self.modified_ns)
    }
}

/// Checks (or, on the first run, records) the recipient file the campaign runs over.
pub(crate) fn pin_recipients(dir: &Path, recipients: &Path) -> Result<(), StateError> {
    let now = Pin::of(recipients)?;
    if is_pinned(dir, recipients, &now)? {
        return Ok(());
    }
    let (path, tmp) = (dir.join("campaign.json"), dir.join("campaign.json.tmp"));
    let text = serde_json::to_vec_pretty(&now).map_err(|e| io_at(&tmp)(io::Error::other(e)))?;
    std::fs::write(&tmp, text).map_err(io_at(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_at(&path))
}

/// Whether `campaign.json` pins the recipient file as it is `now` (false: nothing pinned yet;
/// an error when it pins another file).
fn is_pinned(dir: &Path, recipients: &Path, now: &Pin) -> Result<bool, StateError> {
    let path = dir.join("campaign.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let was: Pin = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                line: 1,
                reason: e.to_string(),
            })?;
            if was.size != now.size || was.modified_ns != now.modified_ns {
                return Err(StateError::RecipientsChanged {
                    recipients: recipients.to_path_buf(),
                    dir: dir.to_path_buf(),
                    was: was.describe(),
                    now: now.describe(),
                });
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(&path)(e)),
    }
}

/// The fields of an accounting line that say whether it finished its recipient.
#[derive(serde::Deserialize)]
struct Finished {
    outcome: Outcome,
    line: u64,
}

/// The lines of `recipients` that earlier runs of the campaign whose state directory is `dir`
/// gave a final outcome, as a rerun would skip them (empty before its first run). Read-only,
/// for estimates while a run may be writing: a partial last line is left out, and the log is
/// never cut. An error when the recipient file changed since the campaign started (a run
/// refuses it too).
pub fn finished_lines(dir: &Path, recipients: &Path) -> Result<LineSet, StateError> {
    let mut finished = LineSet::new();
    if !is_pinned(dir, recipients, &Pin::of(recipients)?)? {
        return Ok(finished);
    }
    let log = dir.join("accounting.jsonl");
    let file = match File::open(&log) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(finished),
        Err(e) => return Err(io_at(&log)(e)),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut text = String::new();
    let mut line_no = 0u64;
    loop {
        text.clear();
        if reader.read_line(&mut text).map_err(io_at(&log))? == 0 || !text.ends_with('\n') {
            return Ok(finished);
        }
        line_no += 1;
        let seen: Finished = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: log.clone(),
            line: line_no,
            reason: e.to_string(),
        })?;
        // A deferral followed by a final outcome is finished; the reverse does not happen
        // (a finished recipient is never tried again).
        if seen.outcome != Outcome::Deferred && seen.line > 0 {
            finished.insert(seen.line);
        }
    }
}

/// Cuts a partial last line (a write interrupted by a kill) off a JSONL file of the state
/// directory (the accounting log, the rejects file).
pub(crate) fn cut_partial_line(path: &Path) -> Result<(), StateError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(path)(e)),
    };
    let len = file.metadata().map_err(io_at(path))?.len();
    if len == 0 {
        return Ok(());
    }
    // Walk back from the end in blocks to the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start)).map_err(io_at(path))?;
        io::Read::read_exact(&mut file, &mut buf[..n]).map_err(io_at(path))?;
        if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
            let keep = start + i as u64 + 1;
            if keep != len {
                file.set_len(keep).map_err(io_at(path))?;
            }
            return Ok(());
        }
        if start == 0 {
            return file.set_len(0).map_err(io_at(path));
        }
        end = start;
    }
}

/// Reads what earlier runs recorded. `retry_due` computes when a deferral without a recorded
/// next attempt (an MX fallback cut short by the kill) is due: now.
pub(crate) fn resume(dir: &Path) -> Result<Resume, StateError> {
    let log = dir.join("accounting.jsonl");
    cut_partial_line(&log)?;
    let mut resume = Resume::default();
    let mut remote_attempts = 0u64;
    match File::open(&log) {
        Ok(file) => {
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            let mut text = String::new();
            let mut line_no = 0u64;
            loop {
                text.clear();
                if reader.read_line(&mut text).map_err(io_at(&log))? == 0 {
                    break;
                }
                line_no += 1;
                let seen: Seen<'_> = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
                    path: log.clone(),
                    line: line_no,
                    reason: e.to_string(),
                })?;
                if seen.source_ip.is_some() {
                    remote_attempts += 1;
                }
                apply(&mut resume, &seen);
            }
            resume.records = line_no;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(&log)(e)),
    }
    let journal = dir.join("dispatched.bin");
    let dispatched = match std::fs::metadata(&journal) {
        Ok(m) => m.len() / DISPATCH_RECORD,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_at(&journal)(e)),
    };
    resume.resent_after_restart = dispatched.saturating_sub(remote_attempts);
    Ok(resume)
}

fn parse_ts(ts: &str) -> SystemTime {
    humantime::parse_rfc3339(ts).unwrap_or_else(|_| SystemTime::now())
}

fn apply(resume: &mut Resume, seen: &Seen<'_>) {
    let s = &mut resume.summary;
    if seen.maybe_duplicate {
        s.maybe_duplicates += 1;
    }
    let hop = seen.outcome == Outcome::Deferred && seen.next_attempt.is_none();
    if seen.attempt > 1 && !hop {
        s.retried += 1;
    }
    if seen.outcome == Outcome::Deferred {
        s.deferrals += 1;
        let mut name = |n: &str| match resume.names.get(n) {
            Some(a) => a.clone(),
            None => {
                let a: std::sync::Arc<str> = std::sync::Arc::from(n);
                resume.names.insert(n.into(), a.clone());
                a
            }
        };
        let place = PendingPlace {
            domain: name(&seen.domain),
            site: seen.site.as_deref().map(&mut name),
            source_ip: seen.source_ip,
        };
        let at = parse_ts(&seen.ts);
        let first_at = match resume.pending.get(&seen.line) {
            Some(p) => p.first_at,
            // The first attempt began `latency_ms` before its line.
            None => at
                .checked_sub(std::time::Duration::from_millis(seen.latency_ms))
                .unwrap_or(at),
        };
        let pending = match &seen.next_attempt {
            Some(next) => Pending {
                attempt: seen.attempt + 1,
                first_at,
                due: parse_ts(next),
                place,
            },
            // Deferred on one MX host with others left to try: the attempt goes on at once.
            None => Pending {
                attempt: seen.attempt,
                first_at,
                due: at,
                place,
            },
        };
        resume.pending.insert(seen.line, pending);
        return;
    }
    resume.pending.remove(&seen.line);
    if seen.line > 0 && resume.finished.insert(seen.line) {
        let ip = seen.source_ip.map(|ip| ip.to_string());
        s.record(
            seen.outcome,
            ip.as_deref(),
            &seen.domain,
            seen.site.as_deref(),
            seen.provider.as_deref(),
        );
    }
}

/// `dispatched.bin`: written before each delivery goes to the engine.
pub(crate) struct DispatchJournal {
    out: BufWriter<File>,
    path: PathBuf,
}

impl DispatchJournal {
    pub(crate) fn open(dir: &Path) -> Result<DispatchJournal, StateError> {
        let path = dir.join("dispatched.bin");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_at(&path))?;
        // A partial record from a kill is ignored by the count (length / record size); pad it
        // so later records stay aligned.
        let len = file.metadata().map_err(io_at(&path))?.len();
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let rest = len % DISPATCH_RECORD;
        if rest != 0 {
            out.write_all(&vec![0u8; (DISPATCH_RECORD - rest) as usize])
                .map_err(io_at(&path))?;
        }
        Ok(DispatchJournal { out, path })
    }

    /// Notes a delivery about to be handed to the engine (call [`DispatchJournal::flush`]
    /// before handing it over).
    pub(crate) fn record(&mut self, line: u64, attempt: u32) -> Result<(), StateError> {
        let mut rec = [0u8; DISPATCH_RECORD as usize];
        rec[..8].copy_from_slice(&line.to_le_bytes());
        rec[8..].copy_from_slice(&attempt.to_le_bytes());
        self.out.write_all(&rec).map_err(io_at(&self.path))
    }

    /// Pushes the records to the OS (they survive a kill of the process from here on).
    pub(crate) fn flush(&mut self) -> Result<(), StateError> {
        self.out.flush().map_err(io_at(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("accounting.jsonl");
        std::fs::write(&p, b"{\"a\":1}\n{\"b\":").unwrap();
        cut_partial_line(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        std::fs::write(&p, b"no newline at all").unwrap();
        cut_partial_line(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        cut_partial_line(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn last_record_per_line_decides() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |line: u64, outcome: &str, attempt: u32, ip: bool, next: Option<&str>| {
            serde_json::json!({
                "ts": "2026-11-23T10:00:00.000Z", "campaign": "c", "recipient": "a@x.test",
                "domain": "x.test", "source_ip": if ip { Some("127.0.0.2") } else { None },
                "mx": null, "outcome": outcome, "code": null, "enhanced": null, "category": "other",
                "attempt": attempt, "latency_ms": 0, "message_id": null, "phase": null, "text": "",
                "tls": false, "maybe_duplicate": false, "line": line, "next_attempt": next,
            })
            .to_string()
        };
        let log = [
            rec(2, "deferred", 1, true, Some("2026-11-23T10:30:00.000Z")),
            rec(3, "delivered", 1, true, None),
            rec(2, "delivered", 2, true, None),
            rec(4, "deferred", 1, true, Some("2026-11-23T10:30:00.000Z")),
            rec(5, "rejected", 1, false, None),
            rec(6, "deferred", 1, true, None),
        ]
        .join("\n");
        std::fs::write(dir.path().join("accounting.jsonl"), log + "\n{\"partial").unwrap();
        std::fs::write(dir.path().join("dispatched.bin"), vec![0u8; 12 * 7 + 5]).unwrap();
        let r = resume(dir.path()).unwrap();
        assert!(r.finished.contains(2) && r.finished.contains(3) && r.finished.contains(5));
        assert_eq!(r.finished.len(), 3);
        let p4 = r.pending.get(&4).cloned().unwrap();
        assert_eq!(&*p4.place.domain, "x.test");
        assert_eq!(p4.place.source_ip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!(p4.attempt, 2);
        assert_eq!(p4.due, humantime::parse_rfc3339("2026-11-23T10:30:00Z").unwrap());
        assert_eq!(r.pending.get(&6).map(|p| p.attempt), Some(1));
        assert_eq!((r.summary.delivered, r.summary.rejected, r.summary.retried), (2, 1, 1));
        assert_eq!(r.summary.deferrals, 3);
        // 7 dispatched, 5 remote attempts recorded: 2 were on the wire at the kill.
        assert_eq!(r.resent_after_restart, 2);
        assert_eq!(r.records, 6);
    }

    #[test]
    fn changed_recipient_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path().join("r.csv");
        std::fs::write(&r, "email\na@x.test\n").unwrap();
        pin_recipients(dir.path(), &r).unwrap();
        pin_recipients(dir.path(), &r).unwrap();
        std::fs::write(&r, "email\na@x.test\nb@x.test\n").unwrap();
        let e = pin_recipients(dir.path(), &r)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("r.csv") && e.contains("changed"), "{e}");
    }

    #[test]
    fn journal_pads_a_partial_record() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dispatched.bin"), [1u8; 5]).unwrap();
        let mut j = DispatchJournal::open(dir.path()).unwrap();
        j.record(7, 1).unwrap();
        j.flush().unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("dispatched.bin")).unwrap().len(), 24);
    }
}
