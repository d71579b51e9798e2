//! Delivering the reports: a bounded queue the sessions drop jobs into (never waiting), and a
//! few worker tasks that render each report and send it over SMTP with the engine's client
//! (`volley_engine::smtp::session`) to `feedback_to`. A worker keeps its connection while jobs
//! are queued and quits when the queue is empty. A report that cannot be delivered yet (no
//! listener, a 4xx, a broken connection) is tried again with growing pauses, at most
//! `feedback_attempts` times; then, or at a 5xx, it is counted as failed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use volley_engine::smtp::session::{SessionParams, SmtpSession};
use volley_engine::smtp::transaction::Envelope;
use volley_engine::timeouts::Timeouts;
use volley_engine::tls::{TlsClient, TlsPolicy};
use volley_engine::{Disposition, MxHost, SourceIp};

use super::report::{self, Report};
use super::{FeedbackKind, Job};
use crate::sink::config::SinkConfig;
use crate::sink::error::SinkError;
use crate::sink::stats::{bump, Counters};

/// Reports waiting to be sent; beyond it a new one is counted as failed (the session never
/// waits for the feedback path).
const QUEUE: usize = 10_000;
/// Connections to the feedback listener at once.
const WORKERS: usize = 4;
/// The first pause before another attempt; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Every SMTP phase of a report's delivery (a loopback listener answers at once).
const PHASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Cap on one reply from the listener.
const MAX_REPLY: usize = 64 * 1024;

/// The sessions' end of the queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    tx: async_channel::Sender<Job>,
}

impl Outbox {
    /// Queues `job` without waiting; a full queue counts it as failed.
    pub(crate) fn submit(&self, job: Job, counters: &Counters) {
        if let Err(e) = self.tx.try_send(job) {
            bump(&counters.feedback_failed);
            tracing::warn!(
                "sink: feedback queue full ({QUEUE} reports); the report for {} is dropped",
                e.into_inner().recipient
            );
        }
    }
}

/// The workers' end of the queue and what they need to deliver.
#[derive(Debug)]
pub(crate) struct Mailer {
    rx: async_channel::Receiver<Job>,
    delivery: Arc<Delivery>,
}

/// Where and how reports go.
#[derive(Debug)]
struct Delivery {
    hostname: String,
    source: SourceIp,
    listener: MxHost,
    params: SessionParams,
    attempts: u32,
}

/// The queue for `config`'s reports, when it sends any.
pub(crate) fn channel(config: &SinkConfig) -> Result<Option<(Outbox, Mailer)>, SinkError> {
    let Some(to) = config.feedback_to.filter(|_| config.sends_feedback()) else {
        return Ok(None);
    };
    let tls = TlsClient::new(TlsPolicy::Disabled, false, None).map_err(|e| SinkError::FeedbackClient(e.to_string()))?;
    let local: IpAddr = if to.is_ipv4() {
        Ipv4Addr::LOCALHOST.into()
    } else {
        Ipv6Addr::LOCALHOST.into()
    };
    let delivery = Delivery {
        hostname: config.hostname.clone(),
        source: SourceIp {
            ip: local,
            ehlo_name: Arc::from(config.hostname.as_str()),
        },
        listener: MxHost {
            name: Arc::from(to.ip().to_string()),
            addr: to,
        },
        params: SessionParams {
            timeouts: Timeouts::uniform(PHASE_TIMEOUT),
            tls,
            max_reply_size: MAX_REPLY,
        },
        attempts: config.feedback_attempts.max(1),
    };
    let (tx, rx) = async_channel::bounded(QUEUE);
    Ok(Some((
        Outbox { tx },
        Mailer {
            rx,
            delivery: Arc::new(delivery),
        },
    )))
}

impl Mailer {
    /// Spawns the workers on the current runtime. They end once every [`Outbox`] is gone
    /// and the queue is empty.
    pub(crate) fn spawn(self, counters: Arc<Counters>) {
        for _ in 0..WORKERS {
            tokio::spawn(worker(
                self.rx.clone(),
                Arc::clone(&self.delivery),
                Arc::clone(&counters),
            ));
        }
    }
}

/// The listener's address, for logs.
fn target(delivery: &Delivery) -> SocketAddr {
    delivery.listener.addr
}

async fn worker(rx: async_channel::Receiver<Job>, delivery: Arc<Delivery>, counters: Arc<Counters>) {
    let mut session: Option<SmtpSession> = None;
    while let Ok(job) = rx.recv().await {
        let sent = match report::render(&job, &delivery.hostname) {
            Ok(report) => deliver(&report, &job, &delivery, &mut session).await,
            Err(e) => {
                tracing::warn!("sink: cannot write the report for {}: {e}", job.recipient);
                false
            }
        };
        let counter = match (sent, job.kind) {
            (true, FeedbackKind::Complaint) => &counters.complaints_sent,
            (true, FeedbackKind::LateBounce) => &counters.late_bounces_sent,
            (false, _) => &counters.feedback_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if rx.is_empty() {
            if let Some(open) = session.take() {
                open.quit().await;
            }
        }
    }
}

/// Sends `report` (about `job`) on `session`, opening one when needed; whether the listener
/// accepted it.
async fn deliver(report: &Report, job: &Job, delivery: &Delivery, session: &mut Option<SmtpSession>) -> bool {
    let payload = match volley_engine::smtp::dot::prepare(&report.message) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::warn!("sink: the report for {} cannot be sent: {e}", job.recipient);
            return false;
        }
    };
    let envelope = Envelope {
        mail_from: report.mail_from.clone(),
        recipients: vec![job.return_path.clone()],
    };
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=delivery.attempts {
        let why = match attempt_once(&envelope, &payload, delivery, session).await {
            Ok(()) => return true,
            Err(Attempt::Refused(why)) => {
                tracing::warn!(
                    "sink: {} refused the report for {}: {why}",
                    target(delivery),
                    job.recipient
                );
                return false;
            }
            Err(Attempt::Later(why)) => why,
        };
        if attempt == delivery.attempts {
            tracing::warn!(
                "sink: the report for {} was not delivered to {} after {attempt} attempts: {why}",
                job.recipient,
                target(delivery)
            );
            break;
        }
        tracing::debug!(
            "sink: report for {} not delivered to {} (attempt {attempt}): {why}",
            job.recipient,
            target(delivery)
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
    false
}

/// Why one attempt did not deliver.
enum Attempt {
    /// A permanent refusal (5xx): not tried again.
    Refused(String),
    /// Worth another try (no listener, 4xx, broken connection).
    Later(String),
}

async fn attempt_once(
    envelope: &Envelope,
    payload: &volley_engine::DataPayload,
    delivery: &Delivery,
    session: &mut Option<SmtpSession>,
) -> Result<(), Attempt> {
    let open = match session {
        Some(open) => open,
        None => {
            let opened = SmtpSession::connect(&delivery.source, &delivery.listener, &delivery.params, false)
                .await
                .map_err(|e| Attempt::Later(e.to_string()))?;
            session.insert(opened)
        }
    };
    let result = open.send_message(envelope, payload).await;
    if result.connection_error.is_some() {
        *session = None;
    }
    let Some(status) = result.statuses.into_iter().next() else {
        return Err(Attempt::Later("no status for the recipient".into()));
    };
    match status.disposition {
        Disposition::Delivered => Ok(()),
        Disposition::Bounced => Err(Attempt::Refused(status.text.to_string())),
        Disposition::Deferred => Err(Attempt::Later(status.text.to_string())),
    }
}
