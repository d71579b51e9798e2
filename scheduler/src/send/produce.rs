//! The two blocking threads of a run: the producer streams the recipient file once (skipping
//! duplicates and what earlier runs finished), and the fetcher reads single rows again by
//! offset for retries and for rows parked behind a busy site.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use super::job::{Job, Refused, RowRef, SuppressedRow};
use super::render::{Done, Renderer, Signing};
use crate::lineset::LineSet;
use crate::message::MessageFactory;
use crate::recipients::{scan_duplicates, RecipientReader, RecipientRow, Row, RowFetcher};
use crate::suppression::{Checker, Entry, Stopped};

/// What the producer hands to the scheduler.
pub(crate) enum Work {
    /// A new recipient, rendered.
    Send(Job),
    /// A refused row not recorded by an earlier run.
    Rejected(Box<Refused>),
    /// A recipient on the suppression list: not sent.
    Suppressed(Box<SuppressedRow>),
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
    /// The rows are known to be unique (a cluster chunk: its publisher dropped the
    /// duplicates of the whole list), so no scan for duplicates.
    pub unique: bool,
}

/// What both reading threads need to turn rows into jobs.
#[derive(Clone)]
pub(crate) struct Reading {
    pub factory: Arc<MessageFactory>,
    /// The suppression check (fail-closed).
    pub gate: Arc<Checker>,
    /// DKIM signing, when a key covers the campaign's From domain.
    pub signing: Option<Signing>,
    /// Live counters: how far the file has been read.
    pub live: Arc<crate::live::CampaignLive>,
}

/// Rows checked against the suppression list in one call.
pub(crate) const CHECK_BATCH: usize = 256;

/// First finds the duplicate rows with a disk-backed pass over the file (flat memory at any
/// size; the work files go under `work_dir`), then streams the rows. Rows to send now are
/// checked against the suppression list in batches before they are rendered.
pub(crate) fn produce(
    work_dir: PathBuf,
    mut reader: RecipientReader,
    reading: Reading,
    skip: Skip,
    work: mpsc::Sender<Work>,
) -> ProducerResult {
    let Reading {
        factory,
        gate,
        signing,
        live,
    } = reading;
    let file_size = reader.size();
    let done: Done = {
        let work = work.clone();
        Arc::new(move |job: Result<Job, Box<Refused>>| {
            let item = match job {
                Ok(job) => Work::Send(job),
                Err(refused) => Work::Rejected(refused),
            };
            let _ = work.blocking_send(item); // closed: the run is shutting down
        })
    };
    let renderer =
        Renderer::start(factory, signing.as_ref(), done).map_err(|e| (PathBuf::from("signing threads"), e))?;
    let mut counts = ProducerCounts::default();
    let path = reader.path().to_path_buf();
    let email_column = reader.columns().get(reader.email_index()).cloned().unwrap_or_default();
    // Injected messages to the same address are separate messages, not duplicates.
    let spooled = reader.is_spooled();
    let duplicates = if spooled || skip.unique {
        LineSet::new()
    } else {
        scan_duplicates(&path, &email_column, &work_dir)
            .map_err(|e| (path.clone(), std::io::Error::other(e.to_string())))?
            .duplicates
    };
    let mut batch: Vec<RecipientRow> = Vec::with_capacity(CHECK_BATCH);
    let mut open = true;
    loop {
        // A spool stream has caught up with its writer: what was gathered goes now, not when
        // the batch fills.
        if spooled && !batch.is_empty() && reader.would_wait() {
            open = send_batch(&mut batch, &gate, &renderer, &work);
            if !open {
                break;
            }
        }
        let Some(row) = reader.next_row() else { break };
        let row = row.map_err(|e| (path.clone(), std::io::Error::other(e.to_string())))?;
        counts.rows += 1;
        if counts.rows % 256 == 0 && !spooled {
            live.set_read(reader.last_offset(), file_size);
        }
        let item = match row {
            Row::Rejected(row) => {
                // The recorder writes the rejects file with the accounting line; rows an
                // earlier run refused are in both already.
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
                    batch.push(row);
                    if batch.len() < CHECK_BATCH {
                        continue;
                    }
                    open = send_batch(&mut batch, &gate, &renderer, &work);
                    if !open {
                        break;
                    }
                    continue;
                }
            }
        };
        if work.blocking_send(item).is_err() {
            open = false;
            break; // the run is shutting down
        }
    }
    if open {
        send_batch(&mut batch, &gate, &renderer, &work);
        live.set_read(file_size, file_size);
    }
    // Every signed message reaches the dispatcher before the work channel closes.
    renderer.close();
    Ok(counts)
}

/// Checks a batch of new rows against the suppression list, renders the rest and hands them
/// on. False when the run is shutting down.
fn send_batch(batch: &mut Vec<RecipientRow>, gate: &Checker, renderer: &Renderer, work: &mpsc::Sender<Work>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let hits = {
        let addresses: Vec<&str> = batch.iter().map(|r| r.email.as_str()).collect();
        match gate.check_batch(&addresses) {
            Ok(hits) => hits,
            Err(Stopped) => return false,
        }
    };
    for (row, hit) in batch.drain(..).zip(hits) {
        if let Some(hit) = hit {
            if work
                .blocking_send(Work::Suppressed(Box::new(suppressed(&row, hit))))
                .is_err()
            {
                return false;
            }
            continue;
        }
        let r = RowRef {
            line: row.line,
            offset: row.offset,
            attempt: 1,
            first_at: SystemTime::now(),
        };
        if let Err(refused) = renderer.render(row, r) {
            if work.blocking_send(Work::Rejected(refused)).is_err() {
                return false;
            }
        }
    }
    !work.is_closed()
}

fn suppressed(row: &RecipientRow, (scope, entry): (String, Entry)) -> SuppressedRow {
    SuppressedRow {
        line: row.line,
        recipient: row.email.as_str().to_string(),
        domain: row.email.domain().to_string(),
        scope,
        reason: entry.reason,
    }
}

/// What the fetcher sends back for a [`RowRef`].
pub(crate) enum Fetched {
    /// Rendered, ready to route.
    Job(Job),
    /// The row (at this line) can no longer be sent (changed file, bad row, unsignable).
    Refused(u64, Box<Refused>),
    /// The address (at this line) was suppressed meanwhile.
    Suppressed(u64, Box<SuppressedRow>),
}

impl Fetched {
    /// The recipient's line.
    pub fn line(&self) -> u64 {
        match self {
            Fetched::Job(job) => job.line,
            Fetched::Refused(line, _) | Fetched::Suppressed(line, _) => *line,
        }
    }
}

/// Serves [`RowRef`]s until the request channel closes. Requests that queued up meanwhile are
/// taken together, so the suppression list is asked once per batch.
pub(crate) fn fetch(
    mut fetcher: RowFetcher,
    reading: Reading,
    requests: crossbeam_channel::Receiver<RowRef>,
    out: mpsc::UnboundedSender<Fetched>,
) {
    let Reading {
        factory, gate, signing, ..
    } = reading;
    let done: Done = {
        let out = out.clone();
        Arc::new(move |job: Result<Job, Box<Refused>>| {
            let _ = out.send(match job {
                Ok(job) => Fetched::Job(job),
                Err(refused) => Fetched::Refused(refused.row.line, refused),
            });
        })
    };
    let renderer = match Renderer::start(factory, signing.as_ref(), done) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the signing threads for retries: {e}");
            return;
        }
    };
    serve(&mut fetcher, &gate, &renderer, &requests, &out);
    renderer.close();
}

fn serve(
    fetcher: &mut RowFetcher,
    gate: &Checker,
    renderer: &Renderer,
    requests: &crossbeam_channel::Receiver<RowRef>,
    out: &mpsc::UnboundedSender<Fetched>,
) {
    let mut refs = Vec::with_capacity(CHECK_BATCH);
    let mut rows = Vec::with_capacity(CHECK_BATCH);
    while let Ok(first) = requests.recv() {
        refs.push(first);
        while refs.len() < CHECK_BATCH {
            match requests.try_recv() {
                Ok(r) => refs.push(r),
                Err(_) => break,
            }
        }
        for r in refs.drain(..) {
            match fetcher.fetch(r.offset, r.line) {
                Ok(Row::Recipient(row)) => rows.push((r, row)),
                Ok(Row::Rejected(row)) => {
                    let refused = Refused {
                        recipient: String::new(),
                        domain: String::new(),
                        row,
                    };
                    if out.send(Fetched::Refused(r.line, Box::new(refused))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let reason = format!("cannot read again: {e}");
                    let refused = Refused {
                        row: crate::recipients::RejectedRow::new(r.line, "(row)", "", reason),
                        recipient: String::new(),
                        domain: String::new(),
                    };
                    if out.send(Fetched::Refused(r.line, Box::new(refused))).is_err() {
                        return;
                    }
                }
            }
        }
        if rows.is_empty() {
            continue;
        }
        let hits = {
            let addresses: Vec<&str> = rows.iter().map(|(_, row)| row.email.as_str()).collect();
            match gate.check_batch(&addresses) {
                Ok(hits) => hits,
                Err(Stopped) => return,
            }
        };
        for ((r, row), hit) in rows.drain(..).zip(hits) {
            let fetched = match hit {
                Some(hit) => Fetched::Suppressed(r.line, Box::new(suppressed(&row, hit))),
                None => match renderer.render(row, r) {
                    Ok(()) => continue,
                    Err(refused) => Fetched::Refused(r.line, refused),
                },
            };
            if out.send(fetched).is_err() {
                return;
            }
        }
    }
}
