//! Running a campaign: the pipeline from recipient file to accounting log.
//!
//! ```text
//! producer thread ──Work──► dispatcher task ──Delivery──► engine pool ──report──► accounting task
//!  read, dedup, build,        route, rotate IP,                                   log line, tallies,
//!  dot-stuff, reject          in-flight permit                                    release permit
//! ```
//! Memory is bounded by the work channel, the pool's per-host queues and `max_in_flight`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Semaphore};
use volley_engine::mx::MxResolver;
use volley_engine::{
    DataPayload, Delivery, DeliveryPool, DeliveryReport, Envelope, MxHost, RecipientStatus, RouteKey, SourceIp,
};

use crate::accounting::{now_rfc3339, AccountingLog, AccountingRecord};
use crate::address::EmailAddress;
use crate::campaign::{Campaign, CampaignError};
use crate::config::SendConfig;
use crate::message::MessageFactory;
use crate::outcome::{category, Outcome};
use crate::recipients::{Deduplicator, RecipientError, RecipientReader, RejectedRow, Row};
use crate::rejects::RejectsWriter;
use crate::rotation::IpRotation;
use crate::routing::{Router, Routes};
use crate::summary::Summary;

/// Why a run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The campaign is invalid.
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// The recipients file cannot be read.
    #[error(transparent)]
    Recipients(#[from] RecipientError),
    /// The configuration cannot be used.
    #[error("configuration: {0}")]
    Config(String),
    /// A file of the run (state directory, accounting log, rejects file) failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SendError + '_ {
    move |source| SendError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Identifies a delivery when its report comes back.
#[derive(Debug)]
struct Tag {
    recipient: EmailAddress,
    message_id: Arc<str>,
    attempt: u32,
}

/// What the producer hands on.
enum Work {
    Send {
        recipient: EmailAddress,
        message_id: Arc<str>,
        payload: DataPayload,
    },
    /// A refused row, with the recipient's address as far as it is known: the email column's
    /// value, or the parsed address when the row was refused while building its message.
    Rejected {
        row: RejectedRow,
        recipient: String,
        domain: String,
    },
}

/// A recipient whose outcome was decided without a delivery attempt.
struct LocalOutcome {
    recipient: String,
    domain: String,
    outcome: Outcome,
    status: Option<RecipientStatus>,
    line: Option<u64>,
    message_id: Option<Arc<str>>,
    /// Why, when there is no status (rejected rows).
    reason: String,
}

/// Counts kept by the producer.
#[derive(Default)]
struct ProducerCounts {
    rows: u64,
    duplicates: u64,
}

/// Runs `campaign` to completion with `config` and returns the summary. Output goes to
/// `<state_dir>/<campaign id>/accounting.jsonl` and `rejects.jsonl`.
pub async fn run(campaign: &Campaign, config: &SendConfig) -> Result<Summary, SendError> {
    let started = Instant::now();
    let dir = config.state_dir.join(campaign.id());
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let log_path = dir.join("accounting.jsonl");
    let rejects_path = dir.join("rejects.jsonl");

    let reader = RecipientReader::open(campaign.recipients(), campaign.email_column())?;
    let compiled = campaign.compile(reader.columns())?;
    let factory = MessageFactory::new(&compiled);
    let rejects = RejectsWriter::create(&rejects_path, campaign.recipients()).map_err(io_err(&rejects_path))?;
    let mut log = AccountingLog::open(&log_path).map_err(io_err(&log_path))?;

    let routes = Routes::new(&config.routes).map_err(SendError::Config)?;
    let resolver = match &config.dns {
        Some(dns) => Some(MxResolver::new(dns).map_err(|e| SendError::Config(format!("dns: {e}")))?),
        None => None,
    };
    let router = Router::new(routes, resolver, config.mx_port);
    let rotation = IpRotation::new(config.source_ips.iter().map(|s| {
        (
            SourceIp {
                ip: s.address,
                ehlo_name: Arc::from(s.ehlo_name.as_str()),
            },
            s.weight,
            s.rate,
        )
    }))
    .ok_or_else(|| SendError::Config("no source IP with a positive weight".into()))?;
    let params = config
        .smtp
        .session_params()
        .map_err(|e| SendError::Config(e.to_string()))?;

    let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<DeliveryReport<Tag>>();
    let (local_tx, mut local_rx) = mpsc::unbounded_channel::<LocalOutcome>();
    let pool = DeliveryPool::new(config.smtp.clone(), params, reports_tx);
    let permits = Arc::new(Semaphore::new(config.max_in_flight));

    // Producer: blocking file reading and message building off the async threads.
    let (work_tx, work_rx) = mpsc::channel::<Work>(1024);
    let producer = std::thread::Builder::new()
        .name("volley-producer".into())
        .spawn(move || produce(reader, factory, rejects, work_tx))
        .map_err(io_err(Path::new("producer thread")))?;

    let mail_from: Arc<str> = Arc::from(campaign.envelope_from().as_str());
    let shared = Arc::new(Dispatch {
        pool,
        router,
        rotation: std::sync::Mutex::new(rotation),
        mail_from,
        local: local_tx,
    });
    let dispatcher = tokio::spawn(dispatch(work_rx, shared, permits.clone()));

    // Accounting: every report and local outcome becomes log lines and tallies.
    let mut summary = Summary {
        campaign: campaign.id().to_string(),
        ..Summary::default()
    };
    let campaign_id = campaign.id();
    let mut reports_open = true;
    let mut local_open = true;
    while reports_open || local_open {
        tokio::select! {
            report = reports_rx.recv(), if reports_open => match report {
                Some(report) => {
                    permits.add_permits(1);
                    record_report(&mut log, &mut summary, campaign_id, &report).map_err(io_err(&log_path))?;
                }
                None => reports_open = false,
            },
            local = local_rx.recv(), if local_open => match local {
                Some(local) => record_local(&mut log, &mut summary, campaign_id, &local).map_err(io_err(&log_path))?,
                None => local_open = false,
            },
        }
    }
    log.flush().map_err(io_err(&log_path))?;
    let pool_stats = dispatcher
        .await
        .map_err(|e| SendError::Config(format!("dispatcher failed: {e}")))?;
    let counts = producer
        .join()
        .map_err(|_| SendError::Config("producer thread panicked".into()))?
        .map_err(|(path, source)| SendError::Io { path, source })?;

    summary.rows = counts.rows;
    summary.duplicates = counts.duplicates;
    summary.recipients = summary.delivered + summary.deferred + summary.bounced + summary.expired + summary.suppressed;
    summary.connections_opened = pool_stats.connections_opened;
    summary.connect_failures = pool_stats.connect_failures;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    summary.msgs_per_s = if summary.elapsed_s > 0.0 {
        summary.delivered as f64 / summary.elapsed_s
    } else {
        0.0
    };
    summary.accounting_log = log_path;
    summary.rejects_file = rejects_path;
    Ok(summary)
}

type ProducerResult = Result<ProducerCounts, (PathBuf, std::io::Error)>;

fn produce(
    mut reader: RecipientReader,
    factory: MessageFactory,
    mut rejects: RejectsWriter,
    work: mpsc::Sender<Work>,
) -> ProducerResult {
    let mut counts = ProducerCounts::default();
    let mut dedup = Deduplicator::new();
    let path = reader.path().to_path_buf();
    let email_column = reader.columns().get(reader.email_index()).cloned().unwrap_or_default();
    let mut seq = 0u64;
    while let Some(row) = reader.next_row() {
        let row = row.map_err(|e| (path.clone(), std::io::Error::other(e.to_string())))?;
        counts.rows += 1;
        let item = match row {
            Row::Rejected(row) => {
                // Only the email column's own value names the recipient; other fields' values
                // (a whole malformed row, an injected header) are not addresses.
                let recipient = if row.field == email_column {
                    row.value.clone()
                } else {
                    String::new()
                };
                Work::Rejected {
                    row,
                    recipient,
                    domain: String::new(),
                }
            }
            Row::Recipient(row) => {
                if !dedup.first_time(&row.email) {
                    counts.duplicates += 1;
                    continue;
                }
                seq += 1;
                let refused = |rejected: RejectedRow| Work::Rejected {
                    row: rejected,
                    recipient: row.email.as_str().to_string(),
                    domain: row.email.domain().to_string(),
                };
                match factory.build(seq, &row) {
                    Err(e) => refused(e.to_rejected(row.line, row.email.as_str())),
                    Ok(built) => match volley_engine::smtp::dot::prepare(&built.bytes) {
                        Err(e) => refused(RejectedRow::new(
                            row.line,
                            "(message)",
                            row.email.as_str(),
                            e.to_string(),
                        )),
                        Ok(payload) => Work::Send {
                            recipient: row.email,
                            message_id: Arc::from(built.message_id),
                            payload,
                        },
                    },
                }
            }
        };
        if let Work::Rejected { row, .. } = &item {
            rejects.write(row).map_err(|e| (PathBuf::from("rejects file"), e))?;
        }
        if work.blocking_send(item).is_err() {
            break; // the run is shutting down
        }
    }
    rejects.finish().map_err(|e| (PathBuf::from("rejects file"), e))?;
    Ok(counts)
}

/// What the dispatcher shares with the tasks that resolve MX hosts.
struct Dispatch {
    pool: DeliveryPool<Tag>,
    router: Router,
    rotation: std::sync::Mutex<IpRotation>,
    mail_from: Arc<str>,
    local: mpsc::UnboundedSender<LocalOutcome>,
}

impl Dispatch {
    /// Picks the next source IP with budget (waiting, without holding the lock, when none has)
    /// and queues the delivery on the pool. The in-flight permit is released by the
    /// accounting task when the report comes back.
    async fn submit(&self, recipient: EmailAddress, message_id: Arc<str>, payload: DataPayload, mx: MxHost) {
        let source = loop {
            let pick = self
                .rotation
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next_ip()
                .cloned();
            match pick {
                Ok(ip) => break ip,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        };
        let envelope = Envelope {
            mail_from: self.mail_from.to_string(),
            recipients: vec![recipient.as_str().to_string()],
        };
        let tag = Tag {
            recipient,
            message_id,
            attempt: 1,
        };
        let route = RouteKey { source, mx };
        self.pool
            .submit(Delivery {
                tag,
                route,
                envelope,
                payload,
            })
            .await;
    }

    /// A recipient decided without a delivery attempt (no route, null MX, DNS failure).
    fn decided(&self, recipient: &EmailAddress, message_id: Arc<str>, status: RecipientStatus) {
        let _ = self.local.send(LocalOutcome {
            domain: recipient.domain().to_string(),
            recipient: recipient.as_str().to_string(),
            outcome: Outcome::from(status.disposition),
            status: Some(status),
            line: None,
            message_id: Some(message_id),
            reason: String::new(),
        });
    }
}

/// Routes every prepared message. Overridden domains go straight to the pool; domains that
/// need an MX lookup are resolved in their own task, so a slow DNS answer for one domain never
/// holds up the others. Every message holds an in-flight permit from here until its report.
async fn dispatch(
    mut work: mpsc::Receiver<Work>,
    shared: Arc<Dispatch>,
    permits: Arc<Semaphore>,
) -> volley_engine::PoolStats {
    let mut lookups = tokio::task::JoinSet::new();
    while let Some(item) = work.recv().await {
        let (recipient, message_id, payload) = match item {
            Work::Rejected {
                row: r,
                recipient,
                domain,
            } => {
                let _ = shared.local.send(LocalOutcome {
                    recipient,
                    domain,
                    outcome: Outcome::Rejected,
                    status: None,
                    line: Some(r.line),
                    message_id: None,
                    reason: format!("line {}: {}: {}", r.line, r.field, r.reason),
                });
                continue;
            }
            Work::Send {
                recipient,
                message_id,
                payload,
            } => (recipient, message_id, payload),
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        if let Some(mx) = shared.router.route_override(recipient.domain()).cloned() {
            permit.forget();
            shared.submit(recipient, message_id, payload, mx).await;
            continue;
        }
        let task = shared.clone();
        lookups.spawn(async move {
            match task.router.destination(recipient.domain()).await {
                Ok(mx) => {
                    permit.forget();
                    task.submit(recipient, message_id, payload, mx).await;
                }
                // Decided here: the permit is released on drop.
                Err(status) => task.decided(&recipient, message_id, status),
            }
        });
        while lookups.try_join_next().is_some() {}
    }
    while lookups.join_next().await.is_some() {}
    shared.pool.close().await;
    shared.pool.stats()
}

fn record_report(
    log: &mut AccountingLog,
    summary: &mut Summary,
    campaign: &str,
    report: &DeliveryReport<Tag>,
) -> std::io::Result<()> {
    let ts = now_rfc3339();
    let source = report.route.source.ip.to_string();
    for status in &report.statuses {
        let outcome = Outcome::from(status.disposition);
        let recipient = &report.tag.recipient;
        if status.maybe_delivered {
            summary.maybe_duplicates += 1;
        }
        summary.record(outcome, Some(&source), recipient.domain());
        log.write(&AccountingRecord {
            ts: ts.clone(),
            campaign,
            recipient: recipient.as_str(),
            domain: recipient.domain(),
            source_ip: Some(report.route.source.ip),
            mx: Some(&report.route.mx.name),
            outcome,
            code: status.code,
            enhanced: status.enhanced.map(|e| e.to_string()),
            category: category(status),
            attempt: report.tag.attempt,
            latency_ms: report.latency.as_millis() as u64,
            message_id: Some(&report.tag.message_id),
            phase: Some(status.phase.as_str()),
            text: &status.text,
            tls: report.tls,
            maybe_duplicate: status.maybe_delivered,
            line: None,
        })?;
    }
    Ok(())
}

fn record_local(
    log: &mut AccountingLog,
    summary: &mut Summary,
    campaign: &str,
    local: &LocalOutcome,
) -> std::io::Result<()> {
    summary.record(local.outcome, None, &local.domain);
    let status = local.status.as_ref();
    log.write(&AccountingRecord {
        ts: now_rfc3339(),
        campaign,
        recipient: &local.recipient,
        domain: &local.domain,
        source_ip: None,
        mx: None,
        outcome: local.outcome,
        code: status.and_then(|s| s.code),
        enhanced: status.and_then(|s| s.enhanced.map(|e| e.to_string())),
        category: status.map(category).unwrap_or("invalid-recipient"),
        attempt: 1,
        latency_ms: 0,
        message_id: local.message_id.as_deref(),
        phase: status.map(|s| s.phase.as_str()),
        text: status.map(|s| &*s.text).unwrap_or(&local.reason),
        tls: false,
        maybe_duplicate: false,
        line: local.line,
    })
}
