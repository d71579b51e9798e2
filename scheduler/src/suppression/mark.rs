//! [`WrittenMark`]: how far a campaign's accounting log is known to be in the suppression
//! store.
//!
//! Every final outcome that changes the suppression list is an accounting line with a
//! `suppression` field, written before its update is queued. The mark, kept in
//! `<state_dir>/<campaign id>/suppression-written`, is a byte offset into that log: every such
//! line ending at or before it has been applied to the store (or saved to the spill file). The
//! writer advances it after each successful batch; on start, the lines after it are replayed
//! ([`replay`]). Updates held only in memory when the process was killed are therefore
//! written by the next run, and none is applied twice (a soft bounce counted twice would
//! suppress early).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{SuppressionError, Update};

/// The mark file's name inside the campaign's state directory.
pub const MARK_FILE: &str = "suppression-written";

/// The durable high-water mark of one campaign's accounting log; see the module docs.
#[derive(Debug)]
pub struct WrittenMark {
    path: PathBuf,
    at: Mutex<u64>,
    /// The highest line end queued to the writer (written or not).
    queued: std::sync::atomic::AtomicU64,
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> SuppressionError + 'a {
    move |source| SuppressionError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// What a missing mark file means (see [`WrittenMark::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A log that already has lines was written by a version without marks (which kept
    /// unwritten updates in the spill file only): the mark starts at its end, and is written
    /// now so that later lines are told apart.
    Legacy,
    /// Nothing of the log is in the store yet: the mark is 0 and its file is written by the
    /// first advance. For state directories every version marked (a cluster node's chunk
    /// campaigns, one per chunk, which spares each a synced file).
    Nothing,
}

impl WrittenMark {
    /// Opens the mark in `dir` for an accounting log now `log_len` bytes long; `missing` says
    /// what the absence of a mark file means. A mark past the end (lines the OS never got
    /// before a kill) is brought back to it.
    pub fn open(dir: &Path, log_len: u64, missing: Missing) -> Result<WrittenMark, SuppressionError> {
        let path = dir.join(MARK_FILE);
        let (at, store) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let at = text.trim().parse::<u64>().map_err(|e| SuppressionError::BadFile {
                    path: path.clone(),
                    line: 1,
                    message: format!("not a byte offset: {e}"),
                })?;
                (at, at > log_len)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match missing {
                Missing::Legacy => (log_len, true),
                Missing::Nothing => (0, false),
            },
            Err(e) => return Err(io(&path, "read the suppression mark")(e)),
        };
        let mark = WrittenMark {
            path,
            at: Mutex::new(at.min(log_len)),
            queued: std::sync::atomic::AtomicU64::new(0),
        };
        if store {
            mark.store(at.min(log_len))?;
        }
        Ok(mark)
    }

    /// The offset: every suppressing line ending at or before it is in the store.
    pub fn get(&self) -> u64 {
        *self.at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a replay starts: past the mark and past every line whose update is queued
    /// already (a campaign launched again in the same process).
    pub fn replay_from(&self) -> u64 {
        self.get().max(self.queued.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Notes that the update of the line ending at `end` is queued.
    pub(crate) fn queued(&self, end: u64) {
        self.queued.fetch_max(end, std::sync::atomic::Ordering::Relaxed);
    }

    /// The mark file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the mark to `end` (never back): replaced atomically and durably.
    pub fn advance(&self, end: u64) -> Result<(), SuppressionError> {
        if end > self.get() {
            self.store(end)?;
        }
        Ok(())
    }

    fn store(&self, at: u64) -> Result<(), SuppressionError> {
        let mut guard = self.at.lock().unwrap_or_else(|p| p.into_inner());
        volley_files::write_atomic(&self.path, &[format!("{at}\n").as_bytes()])
            .map_err(io(&self.path, "replace the suppression mark"))?;
        *guard = at;
        Ok(())
    }
}

/// A final outcome's suppression update as the accounting log records it.
#[derive(serde::Deserialize)]
struct Logged {
    ts: String,
    recipient: String,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    enhanced: Option<String>,
    category: String,
    text: String,
    #[serde(default)]
    suppression: Option<crate::bounces::Action>,
}

/// The suppression updates of the accounting log `log` after `from`, each with the offset at
/// which its line ends, in log order. `campaign` names their source (`bounce:<campaign>`).
pub fn replay(log: &Path, from: u64, campaign: &str) -> Result<Vec<(Update, u64)>, SuppressionError> {
    let mut file = match File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(log, "open the accounting log")(e)),
    };
    file.seek(SeekFrom::Start(from))
        .map_err(io(log, "read the accounting log"))?;
    let mut reader = BufReader::new(file);
    let mut updates = Vec::new();
    let (mut end, mut text) = (from, String::new());
    loop {
        text.clear();
        let n = reader
            .read_line(&mut text)
            .map_err(io(log, "read the accounting log"))?;
        if n == 0 || !text.ends_with('\n') {
            break;
        }
        end += n as u64;
        if !text.contains("\"suppression\"") {
            continue;
        }
        let line: Logged = serde_json::from_str(&text).map_err(|e| SuppressionError::BadFile {
            path: log.to_path_buf(),
            line: 0,
            message: format!("accounting line ending at byte {end}: {e}"),
        })?;
        let Some(action) = line.suppression else { continue };
        let at = humantime::parse_rfc3339(&line.ts)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(super::unix_now, |d| d.as_secs());
        let outcome = LoggedOutcome {
            campaign,
            recipient: &line.recipient,
            code: line.code,
            enhanced: line.enhanced,
            category: &line.category,
            text: &line.text,
            at,
        };
        if let Some(update) = outcome.update(action) {
            updates.push((update, end));
        }
    }
    Ok(updates)
}

/// A final outcome that may change the suppression list (all in the `global` scope).
pub struct LoggedOutcome<'a> {
    /// The campaign id (the entry's source is `bounce:<campaign>`).
    pub campaign: &'a str,
    /// The recipient address.
    pub recipient: &'a str,
    /// The reply code.
    pub code: Option<u16>,
    /// The enhanced status code.
    pub enhanced: Option<String>,
    /// The bounce category.
    pub category: &'a str,
    /// The reply text or local reason.
    pub text: &'a str,
    /// When it happened (unix seconds).
    pub at: u64,
}

impl LoggedOutcome<'_> {
    /// The update `action` makes of it: a hard bounce suppresses, a soft one is counted.
    pub fn update(self, action: crate::bounces::Action) -> Option<Update> {
        use crate::bounces::Action;
        let address = self.recipient.to_string();
        match action {
            Action::None => None,
            Action::Suppress => {
                let entry = super::Entry::new(self.text, format!("bounce:{}", self.campaign), self.at)
                    .with_codes(self.code, self.enhanced)
                    .with_category(self.category);
                Some(Update::suppress(super::GLOBAL, address, entry))
            }
            Action::Soft => Some(Update::SoftBounce {
                scope: super::GLOBAL.to_string(),
                address,
                code: self.code,
                enhanced: self.enhanced,
                reason: self.text.to_string(),
                at: self.at,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_survives_reopen_never_goes_back_and_is_clamped_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mark = WrittenMark::open(dir.path(), 0, Missing::Legacy).unwrap();
        assert_eq!(mark.get(), 0);
        mark.advance(120).unwrap();
        mark.advance(80).unwrap();
        assert_eq!(mark.get(), 120);
        assert_eq!(WrittenMark::open(dir.path(), 500, Missing::Legacy).unwrap().get(), 120);
        assert_eq!(
            WrittenMark::open(dir.path(), 100, Missing::Legacy).unwrap().get(),
            100,
            "clamped"
        );
        assert_eq!(
            WrittenMark::open(dir.path(), 500, Missing::Legacy).unwrap().get(),
            100,
            "kept"
        );
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(
            WrittenMark::open(fresh.path(), 777, Missing::Legacy).unwrap().get(),
            777,
            "a log without a mark"
        );
    }

    /// A chunk campaign's mark: no file until the first advance, and until then a reopened
    /// log (the node killed) is replayed from its start, not taken as written.
    #[test]
    fn a_mark_missing_as_nothing_is_written_by_its_first_advance_only() {
        let dir = tempfile::tempdir().unwrap();
        let mark = WrittenMark::open(dir.path(), 0, Missing::Nothing).unwrap();
        assert_eq!(mark.get(), 0);
        assert!(!dir.path().join(MARK_FILE).exists(), "no file at open");
        assert_eq!(WrittenMark::open(dir.path(), 300, Missing::Nothing).unwrap().get(), 0);
        mark.advance(120).unwrap();
        assert_eq!(WrittenMark::open(dir.path(), 300, Missing::Nothing).unwrap().get(), 120);
    }

    #[test]
    fn replay_reads_the_suppressing_lines_after_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("accounting.jsonl");
        let line = |r: &str, s: &str| {
            format!(
                "{{\"ts\":\"2026-12-01T00:00:00Z\",\"recipient\":\"{r}\",\"code\":550,\"enhanced\":\"5.1.1\",\
                 \"category\":\"bad-mailbox\",\"text\":\"no such user\"{s}}}\n"
            )
        };
        let first = line("a@x.test", ",\"suppression\":\"suppress\"");
        let text =
            first.clone() + &line("b@x.test", "") + &line("c@x.test", ",\"suppression\":\"soft\"") + "{\"partial";
        std::fs::write(&log, &text).unwrap();
        let all = replay(&log, 0, "c1").unwrap();
        assert_eq!(all.len(), 2);
        assert!(matches!(&all[0].0, Update::Suppress { address, entry, .. }
            if address == "a@x.test" && entry.source == "bounce:c1" && entry.first == 1_796_083_200));
        assert!(matches!(&all[1].0, Update::SoftBounce { address, .. } if address == "c@x.test"));
        let after_first = replay(&log, first.len() as u64, "c1").unwrap();
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].1, (text.len() - "{\"partial".len()) as u64);
    }
}
