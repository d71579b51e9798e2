//! Complaints and asynchronous hard bounces received by an inbound listener in another
//! process (`volley inbound` beside `volley send`, or beside a `volley serve` without
//! `[inbound]`): that listener logs them in each campaign's `feedback.jsonl` but has no guards
//! — the deliveries are counted here. About once a second the send service reads the lines
//! its running campaigns' logs gained since they started and counts them in its reputation
//! guards, as the in-process listener of `volley serve` does directly (which turns this off:
//! [`super::SendService::guards_fed_in_process`]).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::inbound::{FeedbackRecord, FEEDBACK_LOG};
use crate::reputation::{Guards, Signal};

/// The feedback logs of the running campaigns, and how far each was read.
#[derive(Debug)]
pub(crate) struct FeedbackFeed {
    state_dir: PathBuf,
    /// Campaign id -> bytes of its log already read.
    read: Mutex<HashMap<String, u64>>,
}

impl FeedbackFeed {
    pub(crate) fn new(state_dir: PathBuf) -> FeedbackFeed {
        FeedbackFeed {
            state_dir,
            read: Mutex::default(),
        }
    }

    fn log(&self, campaign: &str) -> PathBuf {
        self.state_dir.join(campaign).join(FEEDBACK_LOG)
    }

    fn read(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.read.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows `campaign`'s log from its current end (what earlier runs received is not
    /// counted again: the windows of this process start with this run's deliveries).
    pub(crate) fn follow(&self, campaign: &str) {
        let end = std::fs::metadata(self.log(campaign)).map_or(0, |m| m.len());
        self.read().insert(campaign.to_string(), end);
    }

    /// Stops following `campaign`.
    pub(crate) fn forget(&self, campaign: &str) {
        self.read().remove(campaign);
    }

    /// Counts the complaints and hard bounces logged since the last call in `guards`; how many.
    /// Blocking file reads: call off the runtime.
    pub(crate) fn poll(&self, guards: &Guards) -> usize {
        let followed: Vec<(String, u64)> = self.read().iter().map(|(c, o)| (c.clone(), *o)).collect();
        let mut counted = 0;
        for (campaign, from) in followed {
            let (records, to) = match new_lines(&self.log(&campaign), from) {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!("reputation guard: cannot read {}: {e}", self.log(&campaign).display());
                    continue;
                }
            };
            for record in records {
                let signal = match record.outcome.as_str() {
                    "complained" => Signal::Complaint,
                    "bounced" => Signal::HardBounce,
                    _ => continue,
                };
                let provider = record.provider.as_deref().unwrap_or(volley_warmup::provider::OTHER);
                let route = record.source_ip.map(|ip| (ip, provider));
                guards.record(&campaign, route, signal, SystemTime::now());
                counted += 1;
            }
            // Unless the campaign ended meanwhile.
            if let Some(offset) = self.read().get_mut(&campaign) {
                *offset = to;
            }
        }
        counted
    }
}

/// The complete lines of `path` after byte `from` (a line still being written waits for the
/// next call), and the offset after the last of them. A line that is not a feedback record is
/// skipped with a warning.
fn new_lines(path: &std::path::Path, from: u64) -> std::io::Result<(Vec<FeedbackRecord>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), from)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(file);
    let (mut records, mut offset, mut line) = (Vec::new(), from, String::new());
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        offset += n as u64;
        match serde_json::from_str::<FeedbackRecord>(&line) {
            Ok(record) => records.push(record),
            Err(e) => tracing::warn!(
                "reputation guard: {} at byte {}: not a feedback line: {e}",
                path.display(),
                offset - n as u64
            ),
        }
    }
    Ok((records, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reputation::ReputationConfig;

    fn line(outcome: &str) -> String {
        format!(
            "{{\"ts\":\"2026-12-04T10:00:00Z\",\"event_id\":\"e-{outcome}\",\"campaign\":\"news\",\
             \"recipient\":\"a@b.test\",\"domain\":\"b.test\",\"source_ip\":\"127.0.0.3\",\
             \"provider\":\"yahoo\",\"outcome\":\"{outcome}\",\"async\":true,\"code\":null,\
             \"enhanced\":null,\"category\":null,\"text\":\"\",\"line\":2,\"message_id\":null,\
             \"suppression\":null,\"list\":null}}\n"
        )
    }

    #[test]
    fn lines_after_the_start_are_counted_once_and_a_partial_line_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("news").join(FEEDBACK_LOG);
        std::fs::create_dir_all(log.parent().expect("folder")).expect("folder");
        std::fs::write(&log, line("complained")).expect("earlier run");
        let guards = Guards::open(
            &ReputationConfig {
                min_sample: 1,
                ..ReputationConfig::default()
            },
            dir.path(),
        );
        let feed = FeedbackFeed::new(dir.path().to_path_buf());
        feed.follow("news");
        assert_eq!(feed.poll(&guards), 0, "an earlier run's complaint is not counted");
        let (complaint, delayed) = (line("complained"), line("delayed"));
        let partial = line("bounced");
        let (head, tail) = partial.split_at(40);
        let appended = format!("{complaint}{delayed}{head}");
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).expect("open");
        std::io::Write::write_all(&mut file, appended.as_bytes()).expect("append");
        assert_eq!(feed.poll(&guards), 1, "the complaint; the delay is not a signal");
        assert_eq!(feed.poll(&guards), 0, "counted once");
        std::io::Write::write_all(&mut file, tail.as_bytes()).expect("append");
        assert_eq!(feed.poll(&guards), 1, "the bounce, once complete");
        let rates = guards.rates(SystemTime::now());
        let campaign = rates
            .iter()
            .find(|r| matches!(&r.scope, crate::reputation::Scope::Campaign { campaign } if campaign == "news"))
            .expect("the campaign's window");
        assert_eq!((campaign.complained, campaign.hard_bounced), (1, 1));
        feed.forget("news");
        std::io::Write::write_all(&mut file, complaint.as_bytes()).expect("append");
        assert_eq!(feed.poll(&guards), 0, "not followed any more");
    }
}
