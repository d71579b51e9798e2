//! The two blocking threads of a run: the producer streams the recipient file once (skipping
//! duplicates and what earlier runs finished), and the fetcher reads single rows again by
//! offset for retries and for rows parked behind a busy site.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::job::{render, Job, Refused, RowRef};
use crate::lineset::LineSet;
use crate::message::MessageFactory;
use crate::recipients::{scan_duplicates, RecipientReader, Row, RowFetcher};
use crate::rejects::RejectsWriter;

/// What the producer hands to the scheduler.
pub(crate) enum Work {
    /// A new recipient, rendered.
    Send(Job),
    /// A refused row not recorded by an earlier run.
    Rejected(Box<Refused>),
    /// A recipient an earlier run deferred: the scheduler has its retry time, this is where
    /// its row is.
    Pending { line: u64, offset: u64 },
    /// A new recipient whose domain's site has a full ready queue: not rendered now (it would
    /// only be parked), read again when the site has room.
    Park { line: u64, offset: u64, domain: String },
}

/// Domains whose site has rows parked: the producer parks their new rows without rendering.
#[derive(Default)]
pub(crate) struct Congestion(std::sync::Mutex<std::collections::HashSet<Box<str>>>);

impl Congestion {
    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Box<str>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn contains(&self, domain: &str) -> bool {
        self.set().contains(domain)
    }
    pub fn insert(&self, domain: &str) {
        self.set().insert(domain.into());
    }
    pub fn remove(&self, domain: &str) {
        self.set().remove(domain);
    }
}

/// Counts kept by the producer.
#[derive(Default, Debug)]
pub(crate) struct ProducerCounts {
    pub rows: u64,
    pub duplicates: u64,
    /// Rows an earlier run already finished.
    pub resumed_finished: u64,
}

pub(crate) type ProducerResult = Result<ProducerCounts, (PathBuf, std::io::Error)>;

/// What earlier runs settled, as the producer needs it.
pub(crate) struct Skip {
    pub finished: LineSet,
    pub pending: LineSet,
    pub congested: Arc<Congestion>,
}

/// First finds the duplicate rows with a disk-backed pass over the file (flat memory at any
/// size; the work files go under `work_dir`), then streams the rows.
pub(crate) fn produce(
    work_dir: PathBuf,
    mut reader: RecipientReader,
    factory: Arc<MessageFactory>,
    mut rejects: RejectsWriter,
    skip: Skip,
    work: mpsc::Sender<Work>,
) -> ProducerResult {
    let mut counts = ProducerCounts::default();
    let path = reader.path().to_path_buf();
    let email_column = reader.columns().get(reader.email_index()).cloned().unwrap_or_default();
    let duplicates = scan_duplicates(&path, &email_column, &work_dir)
        .map_err(|e| (path.clone(), std::io::Error::other(e.to_string())))?
        .duplicates;
    while let Some(row) = reader.next_row() {
        let row = row.map_err(|e| (path.clone(), std::io::Error::other(e.to_string())))?;
        counts.rows += 1;
        let item = match row {
            Row::Rejected(row) => {
                // The rejects file is rewritten whole by every run; the accounting log has
                // the rows earlier runs recorded.
                rejects.write(&row).map_err(|e| (PathBuf::from("rejects file"), e))?;
                if skip.finished.contains(row.line) {
                    continue;
                }
                // Only the email column's own value names the recipient; other fields' values
                // (a whole malformed row, an injected header) are not addresses.
                let recipient = if row.field == email_column {
                    row.value.clone()
                } else {
                    String::new()
                };
                Work::Rejected(Box::new(Refused {
                    row,
                    recipient,
                    domain: String::new(),
                }))
            }
            Row::Recipient(row) => {
                if duplicates.contains(row.line) {
                    counts.duplicates += 1;
                    continue;
                }
                if skip.finished.contains(row.line) {
                    counts.resumed_finished += 1;
                    continue;
                }
                if skip.pending.contains(row.line) {
                    Work::Pending {
                        line: row.line,
                        offset: row.offset,
                    }
                } else if skip.congested.contains(row.email.domain()) {
                    Work::Park {
                        line: row.line,
                        offset: row.offset,
                        domain: row.email.domain().to_string(),
                    }
                } else {
                    let r = RowRef {
                        line: row.line,
                        offset: row.offset,
                        attempt: 1,
                        first_at: SystemTime::now(),
                    };
                    match render(&factory, row, r) {
                        Ok(job) => Work::Send(job),
                        Err(refused) => {
                            rejects
                                .write(&refused.row)
                                .map_err(|e| (PathBuf::from("rejects file"), e))?;
                            Work::Rejected(refused)
                        }
                    }
                }
            }
        };
        if work.blocking_send(item).is_err() {
            break; // the run is shutting down
        }
    }
    rejects.finish().map_err(|e| (PathBuf::from("rejects file"), e))?;
    Ok(counts)
}

/// What the fetcher sends back for a [`RowRef`].
pub(crate) type Fetched = Result<Job, (RowRef, Box<Refused>)>;

/// Serves [`RowRef`]s until the request channel closes.
pub(crate) fn fetch(
    mut fetcher: RowFetcher,
    factory: Arc<MessageFactory>,
    requests: crossbeam_channel::Receiver<RowRef>,
    out: mpsc::UnboundedSender<Fetched>,
) {
    for r in requests {
        let fetched = match fetcher.fetch(r.offset, r.line) {
            Ok(Row::Recipient(row)) => render(&factory, row, r).map_err(|refused| (r, refused)),
            Ok(Row::Rejected(row)) => Err((
                r,
                Box::new(Refused {
                    recipient: String::new(),
                    domain: String::new(),
                    row,
                }),
            )),
            Err(e) => Err((
                r,
                Box::new(Refused {
                    row: crate::recipients::RejectedRow::new(r.line, "(row)", "", format!("cannot read again: {e}")),
                    recipient: String::new(),
                    domain: String::new(),
                }),
            )),
        };
        if out.send(fetched).is_err() {
            return;
        }
    }
}
