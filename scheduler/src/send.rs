//! Running a campaign: the pipeline from recipient file to accounting log.
//!
//! ```text
//! producer thread ──Work──► dispatcher task ──Delivery──► engine pool
//!  read once, dedup, skip     route (MX lookups in tasks), per-site     │
//!  finished rows, render      queues served in turns, IP rotation,      │
//!                             MX fallback, retries, accounting ◄─report─┘
//! fetcher thread ◄─RowRef── (retries and parked rows are read again by offset)
//! ```
//! Memory is bounded by `max_in_flight` rendered messages; parked and retrying recipients are
//! kept as (line, offset). The state directory makes a rerun resume: see [`state`]. The
//! producer and the fetcher run on reading threads a process keeps for its next campaign
//! (`send/reader_threads.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use volley_engine::mx::MxResolver;
use volley_engine::{DeliveryPool, SourceIp};

use crate::accounting::AccountingLog;
use crate::campaign::{Campaign, CampaignError};
use crate::config::SendConfig;
use crate::lineset::LineSet;
use crate::message::MessageFactory;
use crate::recipients::{RecipientError, RecipientReader, RowFetcher};
use crate::rejects::RejectsWriter;
use crate::rotation::IpRotation;
use crate::routing::{Router, Routes};
use crate::shaping::Shaper;
use crate::summary::Summary;
use crate::suppression::{Checker, SuppressionError, SuppressionWriter};

mod dispatch;
mod feedback_feed;
mod job;
mod line_map;
pub mod priority;
mod produce;
mod reader_threads;
mod record;
mod render;
mod retry;
mod return_path;
mod service;
mod sites;
pub mod source_ips;
pub mod state;

pub use service::{Closed, Launched, RouteLimits, SendService, Stopper};
pub use source_ips::{OnUnbindable, Unbindable};
pub use state::StateError;

/// How long the end of a run waits for the suppression list to take the last updates before
/// saving them to the spill file for the next run.
const WRITER_CLOSE: Duration = Duration::from_secs(10);

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
    /// Source IPs this host cannot bind (`volley send` refuses to start rather than defer
    /// every recipient for a local problem).
    #[error("{}", source_ips::describe(.0))]
    UnbindableSourceIps(Vec<Unbindable>),
    /// The campaign's state directory cannot be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The suppression list cannot be opened.
    #[error("suppression list: {0}")]
    Suppression(#[from] SuppressionError),
    /// The queue controls (suspensions) cannot be read.
    #[error("queue control: {0}")]
    QueueControls(#[from] crate::queues::ControlsError),
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

/// Runs `campaign` to completion with `config` and returns the summary. Output goes to
/// `<state_dir>/<campaign id>/accounting.jsonl` and `rejects.jsonl`; a rerun resumes.
pub async fn run(campaign: &Campaign, config: &SendConfig) -> Result<Summary, SendError> {
    run_until(campaign, config, std::future::pending()).await
}

/// Like [`run`], but stops early when `stop` resolves (e.g. on Ctrl-C): nothing new is sent,
/// what is on the wire is waited for and recorded, and the summary says `complete: false`.
/// Rerunning resumes where it stopped.
pub async fn run_until(
    campaign: &Campaign,
    config: &SendConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, SendError> {
    let mut summaries = run_many(&[campaign], config, stop).await?;
    summaries
        .pop()
        .ok_or_else(|| SendError::Config("no summary for the campaign".into()))
}

/// Runs several campaigns at once over one delivery pool (the source IPs' connections, the
/// connection caps), each with its own state directory, accounting log and summary. Where
/// they meet at a site, the higher `priority` sends first (see [`priority`]). Stops early when
/// `stop` resolves; summaries come back in the order of `campaigns`.
pub async fn run_many(
    campaigns: &[&Campaign],
    config: &SendConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Vec<Summary>, SendError> {
    run_observed(campaigns, config, stop, Arc::default()).await
}

/// Like [`run_many`], with the run's live counters in `live` (for progress and metrics while it
/// runs).
pub async fn run_observed(
    campaigns: &[&Campaign],
    config: &SendConfig,
    stop: impl std::future::Future<Output = ()>,
    live: Arc<crate::live::Live>,
) -> Result<Vec<Summary>, SendError> {
    let mut ids = std::collections::HashSet::new();
    if let Some(c) = campaigns.iter().find(|c| !ids.insert(c.id())) {
        return Err(SendError::Config(format!(
            "campaign id `{}` is given twice; each campaign needs its own id (its state directory)",
            c.id()
        )));
    }
    // A campaign whose return paths or unsubscribe links cannot be signed refuses before any
    // store is opened.
    for campaign in campaigns {
        return_path::ReturnPath::new(campaign, config)?;
        crate::unsubscribe::UnsubscribeLinks::for_campaign(campaign, config)?;
    }
    let service = SendService::start(config, live, campaigns.len() > 1)?;
    let mut launched = Vec::with_capacity(campaigns.len());
    for campaign in campaigns {
        match service.launch(campaign) {
            Ok(l) => launched.push(l),
            Err(e) => {
                for l in launched {
                    l.cancel();
                    let _ = l.wait().await;
                }
                service.shutdown().await;
                return Err(e);
            }
        }
    }
    let stoppers: Vec<_> = launched.iter().map(Launched::stopper).collect();
    let all_done = futures_util::future::join_all(launched.into_iter().map(Launched::wait));
    tokio::pin!(all_done);
    let finished = tokio::select! {
        done = &mut all_done => done,
        _ = stop => {
            for s in &stoppers {
                s.stop();
            }
            all_done.await
        }
    };
    let closed = service.shutdown().await;
    let mut summaries = Vec::with_capacity(finished.len());
    for summary in finished {
        let mut summary = summary?;
        summary.suppression_updates = closed.written;
        summary.suppression_pending = closed.pending;
        summaries.push(summary);
    }
    Ok(summaries)
}

/// What the campaigns of one process share.
struct Shared {
    /// Bounce classification, loaded once.
    rules: Arc<crate::bounces::BounceRules>,
    /// The DKIM keys, loaded (and self-checked) once; `None` without `[[dkim]]`.
    signers: Option<Arc<volley_engine::dkim::DkimSigners>>,
    pool: DeliveryPool<dispatch::Tag>,
    store: Arc<dyn crate::suppression::SuppressionStore>,
    writer: Arc<SuppressionWriter>,
    seat: Option<priority::Seat>,
    /// Warm-up budgets of the source IPs, one for all campaigns.
    shaper: Arc<Shaper>,
    /// Live counters of the run.
    live: Arc<crate::live::Live>,
    /// Source IPs marked unusable at start (`volley serve`): left out of every pool.
    unusable: Arc<source_ips::Unusable>,
    /// Reputation guards (complaint and hard-bounce rates), one for all campaigns.
    guards: Arc<crate::reputation::Guards>,
    /// MTA-STS policies and TLS reports, one for all campaigns (`None`: off).
    mta_sts: Option<service::MtaStsParts>,
    /// Queue control (suspensions, operators' requests), one for all campaigns.
    queues: Arc<crate::queues::QueueControl>,
}

/// One campaign of a run, from set-up to summary.
struct CampaignRun {
    started: Instant,
    /// Its live counters.
    live: Arc<crate::live::CampaignLive>,
    dispatcher: Option<dispatch::Dispatcher>,
    inputs: Option<dispatch::Inputs>,
    producer: reader_threads::Spawned<produce::ProducerResult>,
    fetch_thread: reader_threads::Spawned<()>,
    stop_flag: Arc<AtomicBool>,
    checker: Arc<Checker>,
    log_path: PathBuf,
    rejects_path: PathBuf,
}

/// Opens the campaign's files and state, starts its reading threads and builds its dispatcher.
fn prepare(
    campaign: &Campaign,
    config: &SendConfig,
    shared: Shared,
    reports: mpsc::UnboundedReceiver<volley_engine::DeliveryReport<dispatch::Tag>>,
) -> Result<CampaignRun, SendError> {
    let started = Instant::now();
    let dir = config.state_dir.join(campaign.id());
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let log_path = dir.join("accounting.jsonl");
    let rejects_path = dir.join("rejects.jsonl");

    let (work_tx, work_rx) = mpsc::channel(1024);
    let (reader, fetcher, factory) = match campaign.spool() {
        // An injection campaign: its spool stream, followed until the run stops.
        Some(stream) => {
            let closed = {
                let work = work_tx.clone();
                Box::new(move || work.is_closed())
            };
            let follower = crate::spool::Follower::new(stream.clone(), closed).map_err(io_err(stream.dir()))?;
            (
                RecipientReader::spooled(follower),
                RowFetcher::spooled(stream.clone()),
                Arc::new(MessageFactory::spooled(campaign.id())),
            )
        }
        None => {
            let (reader, fetcher) = match campaign.chunk_rows() {
                // A cluster chunk: the rows its stream entry carried.
                Some(rows) => (
                    RecipientReader::memory(rows.clone(), campaign.email_column())?,
                    RowFetcher::memory(rows.clone(), campaign.email_column())?,
                ),
                None => (
                    RecipientReader::open(campaign.recipients(), campaign.email_column())?,
                    RowFetcher::open(campaign.recipients(), campaign.email_column())?,
                ),
            };
            let compiled = campaign.compile(reader.columns())?;
            let links = crate::unsubscribe::UnsubscribeLinks::for_campaign(campaign, config)?.map(Arc::new);
            let factory = Arc::new(MessageFactory::new(&compiled).with_unsubscribe_links(links));
            (reader, fetcher, factory)
        }
    };

    let ips = config.pool(campaign.pool()).map_err(SendError::Config)?;
    let (ips, unusable): (Vec<_>, Vec<_>) = ips.into_iter().partition(|s| !shared.unusable.contains_key(&s.address));
    if ips.is_empty() {
        let why: Vec<String> = unusable
            .iter()
            .map(|s| {
                format!(
                    "{}: {}",
                    s.address,
                    shared.unusable.get(&s.address).map_or("", String::as_str)
                )
            })
            .collect();
        return Err(SendError::Config(format!(
            "pool `{}` has no usable source IP ({})",
            campaign.pool(),
            why.join("; ")
        )));
    }
    let rotation = IpRotation::new(ips.iter().map(|s| {
        (
            SourceIp {
                ip: s.address,
                ehlo_name: Arc::from(s.ehlo_name.as_str()),
            },
            s.weight,
            s.rate,
        )
    }))
    .ok_or_else(|| {
        SendError::Config(format!(
            "pool `{}` has no source IP with a positive weight",
            campaign.pool()
        ))
    })?;
    let routes = Routes::new(&config.routes).map_err(SendError::Config)?;
    let resolver = match &config.dns {
        Some(dns) => Some(MxResolver::new(dns).map_err(|e| SendError::Config(format!("dns: {e}")))?),
        None => None,
    };
    let mut router = Router::new(routes, resolver, config.mx_port);
    if let Some((mta_sts, reports)) = &shared.mta_sts {
        router = router.with_mta_sts(mta_sts.clone(), Some(reports.clone()));
    }

    // A cluster node's chunk campaign (one per chunk, its rows written by the node) skips
    // the files only an operator's campaign needs: the node keeps its rows unchanged while the
    // chunk runs, and its feedback names the cluster campaign, whose folder holds the list
    // file. File creation is most of what a chunk costs beyond its messages.
    let chunk = campaign.is_chunk();
    // What earlier runs did.
    if campaign.spool().is_none() && !chunk {
        state::pin_recipients(&dir, campaign.recipients())?;
    }
    // The inbound listener suppresses a mailed unsubscribe in the campaign's list.
    if !chunk {
        let list_file = dir.join(crate::inbound::LIST_FILE);
        std::fs::write(
            &list_file,
            campaign.suppression_list().unwrap_or(crate::suppression::GLOBAL),
        )
        .map_err(|source| SendError::Io {
            path: list_file.clone(),
            source,
        })?;
    }
    let resume = state::resume(&dir)?;
    let journal = state::DispatchJournal::open(&dir)?;
    let log = AccountingLog::open(&log_path).map_err(io_err(&log_path))?;
    // Suppression updates a killed run held only in memory: replayed from the log.
    // Chunk campaigns were always marked: a missing mark means nothing written yet.
    let missing = match chunk {
        true => crate::suppression::mark::Missing::Nothing,
        false => crate::suppression::mark::Missing::Legacy,
    };
    let mark = shared.writer.mark(&dir, log.end(), missing)?;
    let unwritten = crate::suppression::mark::replay(&log_path, mark.replay_from(), campaign.id())?;
    if !unwritten.is_empty() {
        tracing::info!(
            "campaign {}: {} suppression updates of an earlier run were not known to be written; writing them",
            campaign.id(),
            unwritten.len()
        );
    }
    for (update, end) in unwritten {
        let origin = crate::suppression::Origin {
            mark: mark.clone(),
            end,
        };
        shared.writer.push_logged(update, origin);
    }
    state::cut_partial_line(&rejects_path)?;
    let rejects = match chunk {
        true => RejectsWriter::append_on_first(&rejects_path, campaign.recipients()),
        false => RejectsWriter::append(&rejects_path, campaign.recipients()).map_err(io_err(&rejects_path))?,
    };
    let mut summary = resume.summary;
    summary.campaign = campaign.id().to_string();
    summary.resent_after_restart = resume.resent_after_restart;
    let mut pending_lines = LineSet::new();
    for line in resume.pending.keys() {
        pending_lines.insert(*line);
    }
    let congested = Arc::new(produce::Congestion::default());
    let spent = campaign.spool().map(|stream| {
        (
            crate::spool::SegmentGc::new(stream.clone(), resume.finished.clone()),
            Vec::new(),
        )
    });
    // A chunk's rows finished elsewhere are skipped like those an earlier run finished.
    let mut finished = resume.finished;
    for line in campaign.chunk_skip() {
        finished.insert(*line);
    }
    let skip = produce::Skip {
        finished,
        pending: pending_lines,
        congested: congested.clone(),
        unique: campaign.is_chunk(),
    };

    // The suppression list is checked before rendering (blocking while it cannot answer:
    // fail-closed); the recorder feeds it hard and soft bounces.
    let stop_flag = Arc::new(AtomicBool::new(false));
    let checker = Arc::new(Checker::new(
        shared.store,
        campaign.suppression_list(),
        config.suppression.on_unavailable,
        stop_flag.clone(),
    ));
    let live = shared.live.campaign(campaign.id());
    live.set_earlier(summary.outcome_counts());
    let reading = produce::Reading {
        factory,
        gate: checker.clone(),
        signing: signing(campaign, shared.signers, config.dkim_threads),
        live: live.clone(),
    };

    let producer = {
        let work_dir = dir.clone();
        let reading = reading.clone();
        reader_threads::spawn("volley-producer", move || {
            produce::produce(work_dir, reader, reading, skip, work_tx)
        })
        .map_err(io_err(Path::new("producer thread")))?
    };
    let (fetch_tx, fetch_rx) = crossbeam_channel::unbounded();
    let (fetched_tx, fetched_rx) = mpsc::unbounded_channel();
    let fetch_thread = reader_threads::spawn("volley-fetcher", move || {
        produce::fetch(fetcher, reading, fetch_rx, fetched_tx)
    })
    .map_err(io_err(Path::new("fetcher thread")))?;

    let limits = dispatch::Limits {
        max_in_flight: config.max_in_flight,
        per_site: config.max_in_flight_per_site,
        max_parked: config.max_parked,
        retry: config.retry.clone(),
    };
    let recorder = record::Recorder {
        clock: shared.shaper.clock(),
        log,
        path: log_path.clone(),
        rejects,
        rejects_path: rejects_path.clone(),
        summary,
        rules: shared.rules,
        suppression: Some(shared.writer),
        mark,
        live: live.clone(),
        guards: shared.guards,
        guarded_as: campaign.feedback_ids().campaign().to_owned(),
        spent,
    };
    let recorder_live = live;
    let mail_from = return_path::ReturnPath::new(campaign, config)?;
    let mut dispatcher = dispatch::Dispatcher::new(
        limits,
        shared.pool,
        router,
        rotation,
        mail_from,
        recorder,
        journal,
        shared.shaper,
        resume.pending,
        congested,
        fetch_tx,
        shared.queues.clone(),
    );
    dispatcher.seat = shared.seat;
    dispatcher.late_gate = Some(checker.clone());
    let inputs = dispatch::Inputs {
        work: work_rx,
        reports,
        fetched: fetched_rx,
        control: shared.queues.join(campaign.id()),
    };
    Ok(CampaignRun {
        started,
        live: recorder_live,
        dispatcher: Some(dispatcher),
        inputs: Some(inputs),
        producer,
        fetch_thread,
        stop_flag,
        checker,
        log_path,
        rejects_path,
    })
}

impl CampaignRun {
    /// Joins the reading threads and completes the summary.
    fn finish(
        mut self,
        outcome: Result<(bool, u64), SendError>,
        pool_stats: &volley_engine::PoolStats,
        learned_limits: Vec<volley_engine::pool::RouteConcurrency>,
    ) -> Result<Summary, SendError> {
        let (complete, waiting) = outcome?;
        let mut summary = self
            .dispatcher
            .as_mut()
            .map(|d| std::mem::take(&mut d.recorder.summary))
            .unwrap_or_default();
        if let Some(d) = &self.dispatcher {
            summary.reputation_holds = d
                .recorder
                .guards
                .holds()
                .into_iter()
                .filter(|h| match &h.scope {
                    crate::reputation::Scope::Campaign { campaign } => *campaign == summary.campaign,
                    crate::reputation::Scope::Route { .. } => true,
                })
                .collect();
        }
        // The dispatcher holds the fetcher's request channel: dropping it ends that thread.
        drop(self.dispatcher.take());
        let counts = self
            .producer
            .join()
            .map_err(|_| SendError::Config("producer thread panicked".into()))?
            .map_err(|(path, source)| SendError::Io { path, source })?;
        let _ = self.fetch_thread.join();
        summary.suppression_paused_s = self.checker.paused_for().as_secs_f64();
        summary.suppression_unchecked = self.checker.unchecked();
        summary.complete = complete;
        summary.deferred = waiting;
        summary.rows = counts.rows;
        summary.duplicates = counts.duplicates;
        summary.recipients = summary.delivered + summary.deferred + summary.bounced + summary.suppressed;
        summary.connections_opened = pool_stats.connections_opened;
        summary.connect_failures = pool_stats.connect_failures;
        summary.connections_refused = pool_stats.connections_refused;
        summary.connection_limits = learned_limits;
        summary.elapsed_s = self.started.elapsed().as_secs_f64();
        // Totals cover the campaign; the rate covers this run only.
        summary.this_run = self.live.snapshot().this_run();
        summary.msgs_per_s = if summary.elapsed_s > 0.0 {
            summary.this_run.delivered as f64 / summary.elapsed_s
        } else {
            0.0
        };
        for t in summary.by_provider.values_mut() {
            t.last_at = t.last.map(crate::shaping::rfc3339);
        }
        summary.accounting_log = self.log_path;
        summary.rejects_file = self.rejects_path;
        Ok(summary)
    }
}

/// The campaign's DKIM signing: the run's keys, when one covers the campaign's From domain
/// (otherwise messages go unsigned, with a warning when keys exist for other domains).
fn signing(
    campaign: &Campaign,
    signers: Option<Arc<volley_engine::dkim::DkimSigners>>,
    threads: usize,
) -> Option<render::Signing> {
    let signers = signers?;
    if campaign.spool().is_some() {
        // Injected messages are signed for their own From domains, where a key covers it.
        return Some(render::Signing {
            signers,
            threads,
            from_domain: None,
        });
    }
    let from_domain: Arc<str> = Arc::from(campaign.from().address.domain());
    if !signers.has_key_for(&from_domain) {
        tracing::warn!(
            "campaign {}: no [[dkim]] key for its From domain {from_domain}; messages go out unsigned",
            campaign.id()
        );
        return None;
    }
    Some(render::Signing {
        signers,
        threads,
        from_domain: Some(from_domain),
    })
}
