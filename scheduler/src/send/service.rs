//! A long-lived sending service: one delivery pool (the source IPs' connections and caps), one
//! suppression list and writer, one set of warm-up budgets and one priority gate, which
//! campaigns join while others run (`volley serve`), and each of which can be paused, resumed
//! or cancelled on its own. [`super::run_many`] is this service with a fixed set of campaigns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use volley_engine::mx::MxResolver;
use volley_engine::{DeliveryPool, SourceIp};

use super::dispatch::Tag;
use super::feedback_feed::FeedbackFeed;
use super::{prepare, priority, OnUnbindable, SendError, Shared};
use crate::campaign::Campaign;
use crate::config::SendConfig;
use crate::live::{CampaignLive, Live};
use crate::shaping::Shaper;
use crate::summary::Summary;
use crate::suppression::{open_store, SuppressionStore, SuppressionWriter};
use crate::tls_reports::mail::{self, MailRoute};
use crate::tls_reports::outbox::Outbox;
use crate::tls_reports::{Reporter, TlsReports};
use volley_engine::mta_sts::{MtaSts, StsTls};
use volley_engine::smtp::session::SessionParams;

type Report = volley_engine::DeliveryReport<Tag>;

/// What the service's shutdown did with the last suppression updates.
#[derive(Clone, Copy, Debug, Default)]
pub struct Closed {
    /// Updates written to the store over the service's life.
    pub written: u64,
    /// Updates left in the spill file or lost.
    pub pending: u64,
}

/// A campaign started on the service.
pub struct Launched {
    /// Its live counters (pause and resume through [`CampaignLive::set_paused`]).
    pub live: Arc<CampaignLive>,
    stop: Stopper,
    done: tokio::task::JoinHandle<Result<Summary, SendError>>,
}

impl Launched {
    /// Stops it early: nothing new is sent, what is on the wire is recorded; a later run
    /// resumes where it stopped.
    pub fn cancel(&self) {
        self.stop.stop();
    }

    /// A handle that cancels it, usable after [`Launched::wait`] took it.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Whether it has ended (finished, cancelled or failed).
    pub fn is_finished(&self) -> bool {
        self.done.is_finished()
    }

    /// Waits for its summary.
    pub async fn wait(self) -> Result<Summary, SendError> {
        self.done
            .await
            .unwrap_or_else(|e| Err(SendError::Config(format!("campaign task failed: {e}"))))
    }
}

/// The service's view of its connection pool's per-route limits, usable from another task.
#[derive(Clone)]
pub struct RouteLimits(DeliveryPool<Tag>);

impl RouteLimits {
    /// The limit of every (source IP, MX host) route served.
    pub fn concurrency(&self) -> Vec<volley_engine::pool::RouteConcurrency> {
        self.0.concurrency()
    }

    /// Sets or lifts a ceiling on the routes from `source` to MX host `mx` (see
    /// [`DeliveryPool::set_outside_cap`]).
    pub fn set_outside_cap(&self, source: std::net::IpAddr, mx: &str, cap: Option<usize>) {
        self.0.set_outside_cap(source, mx, cap);
    }
}

/// Cancels a launched campaign.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Nothing new is sent; what is on the wire is recorded.
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// The shared sending machinery.
pub struct SendService {
    config: SendConfig,
    pool: DeliveryPool<Tag>,
    rules: Arc<crate::bounces::BounceRules>,
    signers: Option<Arc<volley_engine::dkim::DkimSigners>>,
    store: Arc<dyn SuppressionStore>,
    writer: Arc<SuppressionWriter>,
    shaper: Arc<Shaper>,
    gate: Arc<priority::PriorityGate>,
    /// Whether campaigns meet at the priority gate (several may run at once).
    gated: bool,
    live: Arc<Live>,
    /// Where each campaign's delivery reports go (index = campaign).
    routes: Arc<Mutex<Vec<mpsc::UnboundedSender<Report>>>>,
    /// Campaign ids launched, so that two never share a state directory at once.
    running: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Source IPs that could not be bound at start, with the OS error (serve mode).
    unusable: Arc<super::source_ips::Unusable>,
    /// Reputation guards and their holds, for every campaign of the process.
    guards: Arc<crate::reputation::Guards>,
    /// Queue control: suspensions (kept in the state directory) and the campaigns' queues.
    queues: Arc<crate::queues::QueueControl>,
    /// MTA-STS policies and the TLS reports of the sessions under them (with `[dns]`, unless
    /// `[mta_sts] enabled = false`).
    mta_sts: Option<MtaStsParts>,
    /// Complaints and late bounces another process's listener logged, for the guards.
    feed: Arc<FeedbackFeed>,
    /// Whether the feed runs (off when this process's own listener feeds the guards).
    feed_on: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The policies and the reports of MTA-STS.
pub(super) type MtaStsParts = (Arc<MtaSts>, TlsReports);

/// How often the TLS reports are rewritten while campaigns run.
const TLS_REPORT_FLUSH: Duration = Duration::from_secs(60);

/// MTA-STS for MX-routed mail: the verified TLS contexts in the session parameters, the
/// policy cache (`<state_dir>/mta-sts/policies.json`) and the TLS reports. Off without `[dns]`
/// (routing overrides bypass policies) or with `[mta_sts] enabled = false`.
fn start_mta_sts(
    config: &SendConfig,
    params: SessionParams,
) -> Result<(SessionParams, Option<MtaStsParts>), SendError> {
    let Some(dns) = config.dns.as_ref().filter(|_| config.mta_sts.enabled) else {
        return Ok((params, None));
    };
    let setup = |e: &dyn std::fmt::Display| SendError::Config(format!("mta_sts: {e}"));
    let tls = StsTls::new(config.mta_sts.ca_file.as_deref()).map_err(|e| setup(&e))?;
    let cache = config.state_dir.join("mta-sts").join("policies.json");
    let mta_sts = Arc::new(MtaSts::new(&config.mta_sts, dns, &tls, Some(&cache)).map_err(|e| setup(&e))?);
    let (checks_tx, checks_rx) = mpsc::unbounded_channel();
    let first_name = config
        .source_ips
        .first()
        .map_or("localhost", |ip| ip.ehlo_name.as_str());
    let reporter = Reporter {
        organization: config.mta_sts.report_organization.clone(),
        contact: config
            .mta_sts
            .report_contact
            .clone()
            .unwrap_or_else(|| format!("postmaster@{first_name}")),
    };
    let reports = TlsReports::new(&config.state_dir, reporter, Some(mta_sts.clone()), checks_rx);
    let mut params = params;
    params.tls = params.tls.with_mta_sts(tls, Some(checks_tx));
    Ok((params, Some((mta_sts, reports))))
}

/// Where finished TLS reports go: `https:` through the MTA-STS client, `mailto:` over SMTP
/// from the first source IP that could be bound (none: `mailto:` reports wait, logged).
fn tls_outbox(
    config: &SendConfig,
    mta_sts: Arc<MtaSts>,
    params: SessionParams,
    unusable: &super::source_ips::Unusable,
    signers: Option<Arc<volley_engine::dkim::DkimSigners>>,
) -> Result<Outbox, SendError> {
    let source = config.source_ips.iter().find(|s| !unusable.contains_key(&s.address));
    if let Some(from) = &config.mta_sts.report_from {
        let domain = from.rsplit_once('@').map_or("", |(_, d)| d);
        if !signers.as_ref().is_some_and(|s| s.has_key_for(domain)) {
            tracing::warn!(
                "[mta_sts] report_from {from}: no [[dkim]] key for {domain}; TLS reports are mailed unsigned, and receivers may discard them"
            );
        }
    }
    let mail = match (source, config.dns.as_ref()) {
        (Some(source), Some(dns)) => {
            let resolver = MxResolver::new(dns).map_err(|e| SendError::Config(format!("dns: {e}")))?;
            Some(Arc::new(MailRoute {
                resolver,
                mx_port: config.mx_port,
                source: SourceIp {
                    ip: source.address,
                    ehlo_name: Arc::from(source.ehlo_name.as_str()),
                },
                params,
                from: config
                    .mta_sts
                    .report_from
                    .clone()
                    .unwrap_or_else(|| mail::default_from(&source.ehlo_name)),
                signers,
            }))
        }
        _ => None,
    };
    Ok(Outbox { mta_sts, mail })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SendService {
    /// Opens the suppression list, the warm-up budgets, the DKIM keys and the pool. `several`:
    /// campaigns may run at once and meet at the priority gate (a single campaign skips it).
    /// Refuses to start when a source IP cannot be bound.
    pub fn start(config: &SendConfig, live: Arc<Live>, several: bool) -> Result<SendService, SendError> {
        SendService::start_with(config, live, several, OnUnbindable::Refuse)
    }

    /// Like [`SendService::start`]; `on_unbindable` says whether a source IP this host cannot
    /// bind refuses the start or is left out of every pool (see [`SendService::unusable_ips`]).
    pub fn start_with(
        config: &SendConfig,
        live: Arc<Live>,
        several: bool,
        on_unbindable: OnUnbindable,
    ) -> Result<SendService, SendError> {
        let unbindable = super::source_ips::unbindable(&config.source_ips);
        if !unbindable.is_empty() && on_unbindable == OnUnbindable::Refuse {
            return Err(SendError::UnbindableSourceIps(unbindable));
        }
        for u in &unbindable {
            tracing::warn!("{u}; marked unusable, no campaign sends from it");
        }
        let unusable: super::source_ips::Unusable = unbindable
            .into_iter()
            .map(|u| (u.address, u.error.to_string()))
            .collect();
        let params = config
            .smtp
            .session_params()
            .map_err(|e| SendError::Config(e.to_string()))?;
        let mail_params = params.clone();
        let (params, mta_sts) = start_mta_sts(config, params)?;
        let signers = if config.dkim.is_empty() {
            None
        } else {
            let (signers, _warnings) = volley_engine::dkim::DkimSigners::load(&config.dkim)
                .map_err(|e| SendError::Config(format!("dkim: {e}")))?;
            Some(Arc::new(signers))
        };
        let outbox = match &mta_sts {
            Some((policies, _)) => Some(tls_outbox(
                config,
                policies.clone(),
                mail_params,
                &unusable,
                signers.clone(),
            )?),
            None => None,
        };
        // One suppression list and one writer for the process (the embedded store opens once).
        let store = open_store(&config.suppression, &config.state_dir)?;
        let writer = Arc::new(SuppressionWriter::start(
            store.clone(),
            &config.state_dir,
            &config.suppression,
        )?);
        let (reports_tx, mut reports_rx) = mpsc::unbounded_channel::<Report>();
        let pool = DeliveryPool::new(config.smtp.clone(), params, reports_tx);
        let rules = Arc::new(
            config
                .bounces
                .load()
                .map_err(|e| SendError::Config(format!("bounces.rules: {e}")))?,
        );
        // One budget per (IP, provider) for every campaign of the process; counters of earlier
        // runs (today's, this hour's) are read back so a restart does not reset a budget.
        let counters =
            crate::warmup_counters::open(&config.warmup, config.suppression.redis.as_deref(), &config.state_dir)
                .map_err(|e| SendError::Config(format!("warm-up counters: {e}")))?;
        let shaper = Arc::new(
            Shaper::open(config, &config.state_dir, counters).map_err(|e| SendError::Config(format!("warmup: {e}")))?,
        );
        let guards = Arc::new(crate::reputation::Guards::open(&config.reputation, &config.state_dir));
        let queues = Arc::new(crate::queues::QueueControl::open(&config.state_dir)?);
        let monitor = match &config.blocklists {
            Some(blocklists) => {
                let dns = config.dns.clone().unwrap_or_default();
                let resolver = volley_engine::mx::build_resolver(&dns)
                    .map_err(|e| SendError::Config(format!("blocklists: dns: {e}")))?;
                let ips = config.source_ips.iter().map(|ip| ip.address).collect();
                Some(crate::blocklists::spawn_monitor(
                    blocklists.clone(),
                    resolver,
                    ips,
                    guards.clone(),
                ))
            }
            None => None,
        };
        let routes: Arc<Mutex<Vec<mpsc::UnboundedSender<Report>>>> = Arc::default();
        // Reports go back to the campaign that sent the delivery.
        let demux = {
            let routes = routes.clone();
            tokio::spawn(async move {
                while let Some(report) = reports_rx.recv().await {
                    if let Some(tx) = lock(&routes).get(report.tag.campaign) {
                        let _ = tx.send(report);
                    }
                }
            })
        };
        let feed = Arc::new(FeedbackFeed::new(config.state_dir.clone()));
        let feed_on = Arc::new(AtomicBool::new(true));
        // The pool's open connections and the warming IPs' budget use, for the live counters.
        let gauge = {
            let (pool, live, shaper, guards) = (pool.clone(), live.clone(), shaper.clone(), guards.clone());
            let (feed, feed_on) = (feed.clone(), feed_on.clone());
            tokio::spawn(async move {
                for tick in 0u64.. {
                    live.set_open_connections(pool.stats().open_connections);
                    live.set_warmup(shaper.warming_usage());
                    if tick % 4 == 0 {
                        live.set_connection_limits(pool.concurrency());
                        // Holds placed or lifted by other processes (`volley reputation`), and
                        // what another process's inbound listener logged.
                        let (g, f, on) = (guards.clone(), feed.clone(), feed_on.load(Ordering::Relaxed));
                        let _ = tokio::task::spawn_blocking(move || {
                            g.refresh();
                            if on {
                                f.poll(&g);
                            }
                        })
                        .await;
                        live.set_reputation(guards.rates(std::time::SystemTime::now()));
                        live.set_listings(guards.listings());
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        Ok(SendService {
            config: config.clone(),
            pool,
            rules,
            signers,
            store,
            writer,
            shaper,
            gate: Arc::new(priority::PriorityGate::new(Vec::new())),
            gated: several,
            live,
            routes,
            running: Arc::default(),
            unusable: Arc::new(unusable),
            guards,
            queues,
            tasks: [demux, gauge]
                .into_iter()
                .chain(monitor)
                .chain(mta_sts.as_ref().map(|(_, r)| r.spawn_flusher(TLS_REPORT_FLUSH)))
                .chain(outbox.map(|o| o.spawn(config.state_dir.clone(), TLS_REPORT_FLUSH)))
                .collect(),
            mta_sts,
            feed,
            feed_on,
        })
    }

    /// Source IPs left out of every pool because this host could not bind them at start,
    /// with the OS error.
    pub fn unusable_ips(&self) -> &super::source_ips::Unusable {
        &self.unusable
    }

    /// The service's suppression list.
    pub fn store(&self) -> &Arc<dyn SuppressionStore> {
        &self.store
    }

    /// An (IP, provider group) pair's warm-up caps today, what it sent today and this hour, and
    /// its backoff, as the service's budgets count them.
    pub fn warmup_usage(&self, ip: std::net::IpAddr, provider: &str) -> volley_warmup::budget::Usage {
        self.shaper.usage(ip, provider)
    }

    /// The reputation guards: rates, holds, and lifting a hold.
    pub fn guards(&self) -> &Arc<crate::reputation::Guards> {
        &self.guards
    }

    /// Queue control: suspend and resume scopes, and the operators' requests to the running
    /// campaigns.
    pub fn queues(&self) -> &Arc<crate::queues::QueueControl> {
        &self.queues
    }

    /// The queues of every running campaign grouped by `by`, with the pool's connection limits.
    pub async fn queue_view(&self, by: crate::queues::GroupBy) -> Vec<crate::queues::QueueView> {
        let limits = self.pool.concurrency();
        self.queues.show(by, &limits).await
    }

    /// This process's inbound listener feeds the guards itself (`volley serve` with
    /// `[inbound]`): the campaigns' feedback logs are no longer read for them.
    pub fn guards_fed_in_process(&self) {
        self.feed_on.store(false, Ordering::Relaxed);
    }

    /// Its pool's per-route connection limits.
    pub fn route_limits(&self) -> RouteLimits {
        RouteLimits(self.pool.clone())
    }

    /// The live counters of every campaign launched.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Starts `campaign` next to those already running. Its id must not be running already
    /// (one state directory per id).
    pub fn launch(&self, campaign: &Campaign) -> Result<Launched, SendError> {
        self.launch_with(campaign, false)
    }

    /// [`SendService::launch`], paused from its first recipient when `paused` (resume it with
    /// [`CampaignLive::set_paused`]).
    pub fn launch_with(&self, campaign: &Campaign, paused: bool) -> Result<Launched, SendError> {
        if !lock(&self.running).insert(campaign.id().to_string()) {
            return Err(SendError::Config(format!(
                "campaign id `{}` is already running; each campaign needs its own id (its state directory)",
                campaign.id()
            )));
        }
        let launched = self.launch_registered(campaign, paused);
        if launched.is_err() {
            lock(&self.running).remove(campaign.id());
        }
        launched
    }

    fn launch_registered(&self, campaign: &Campaign, paused: bool) -> Result<Launched, SendError> {
        let (tx, rx) = mpsc::unbounded_channel();
        // The index is taken under the routes lock so that gate and routes agree.
        let mut routes = lock(&self.routes);
        let index = if self.gated {
            // A cluster campaign's chunks are one campaign at the gate.
            self.gate.join(campaign.priority(), campaign.chunk_of_campaign())
        } else {
            routes.len()
        };
        let shared = Shared {
            rules: self.rules.clone(),
            signers: self.signers.clone(),
            pool: self.pool.clone(),
            store: self.store.clone(),
            writer: self.writer.clone(),
            shaper: self.shaper.clone(),
            live: self.live.clone(),
            unusable: self.unusable.clone(),
            guards: self.guards.clone(),
            mta_sts: self.mta_sts.clone(),
            queues: self.queues.clone(),
            seat: self.gated.then(|| priority::Seat {
                gate: self.gate.clone(),
                campaign: index,
            }),
        };
        let mut run = prepare(campaign, &self.config, shared, rx)?;
        run.live.set_paused(paused);
        self.feed.follow(campaign.id());
        debug_assert_eq!(routes.len(), index);
        routes.push(tx);
        drop(routes);
        let live = run.live.clone();
        let (stop, mut stopped) = watch::channel(false);
        let stop = Stopper(Arc::new(stop));
        let (pool, gate, running, feed, id) = (
            self.pool.clone(),
            self.gate.clone(),
            self.running.clone(),
            self.feed.clone(),
            campaign.id().to_string(),
        );
        let done = tokio::spawn(async move {
            let (mut dispatcher, inputs) = (run.dispatcher.take(), run.inputs.take());
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let outcome = match (&mut dispatcher, inputs) {
                (Some(d), Some(inputs)) => d.run(inputs, stop).await,
                _ => Ok((false, 0)),
            };
            run.dispatcher = dispatcher;
            // A reading thread paused on an unreachable suppression list gives up its batch now.
            run.stop_flag.store(true, Ordering::Relaxed);
            gate.retire(index);
            let stats = pool.stats();
            let learned: Vec<_> = pool.concurrency().into_iter().filter(|r| r.learned).collect();
            // Joins the reading threads: off the runtime's worker threads.
            let summary = tokio::task::spawn_blocking(move || run.finish(outcome, &stats, learned))
                .await
                .unwrap_or_else(|e| Err(SendError::Config(format!("campaign {id} failed: {e}"))));
            feed.forget(&id);
            lock(&running).remove(&id);
            summary
        });
        Ok(Launched { live, stop, done })
    }

    /// Closes the pool (waiting for what is on the wire), flushes the warm-up counters and
    /// hands the last suppression updates to the store (or the spill file).
    pub async fn shutdown(self) -> Closed {
        self.pool.close().await;
        for task in &self.tasks {
            task.abort();
        }
        self.live.set_open_connections(0);
        self.shaper.flush();
        if let Some((mta_sts, reports)) = &self.mta_sts {
            mta_sts.save();
            if let Err(e) = reports.flush().await {
                tracing::warn!(error = %e, "TLS reports not written");
            }
        }
        drop(self.routes);
        let writer = self.writer;
        let closed = match Arc::try_unwrap(writer) {
            Ok(writer) => tokio::task::spawn_blocking(move || writer.close(super::WRITER_CLOSE))
                .await
                .unwrap_or_default(),
            Err(_) => Default::default(),
        };
        if closed.unsaved > 0 {
            tracing::error!(
                "{} suppression updates could neither be written nor saved to the spill file",
                closed.unsaved
            );
        }
        Closed {
            written: closed.written,
            pending: closed.spilled + closed.unsaved,
        }
    }
}
