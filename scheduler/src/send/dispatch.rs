//! The dispatcher: one task that owns the run's queues and decides what goes where.
//!
//! It takes rendered recipients from the producer (while fewer than `max_in_flight` are held),
//! resolves their destination in lookup tasks, queues them per site, hands them to the engine
//! site by site in turns, and turns every report into accounting lines: final outcomes, MX
//! fallback within an attempt (connection failures), retries on the schedule, expiry.
//! The turns themselves (IP choice, overflow, holds, hand-over) are in `dispatch/turns.rs`;
//! queue control (suspended recipients, the operator's view, retry, bounce, purge) in
//! `dispatch/queue_ops.rs`; what the engine reports back (MX fallback, outcome, retry or
//! expiry) in `dispatch/report.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use volley_engine::{Delivery, DeliveryPool, DeliveryReport, RecipientStatus, RouteKey};

use super::job::{Job, RowRef};
use super::line_map::LineMap;
use super::priority::Seat;
use super::produce::{Congestion, Fetched, Work};
use super::record::{At, Recorder};
use super::retry::RetryQueue;
use super::sites::Sites;
use super::state::{DispatchJournal, Pending};
use super::SendError;
use crate::config::RetryConfig;
use crate::rotation::IpRotation;
use crate::routing::{Destination, Router};
use crate::shaping::Shaper;

/// How long a resolved destination is reused without asking the resolver again (which has
/// its own TTL-based cache; this only saves a task per recipient).
const DESTINATION_TTL: Duration = Duration::from_secs(30);

/// Most domains kept in that shortcut (bounds its memory on lists with millions of domains).
const DESTINATION_CACHE: usize = 50_000;

/// Rendered jobs one site takes per turn.
const TURN_BATCH: usize = 32;

mod queue_ops;
mod report;
mod turns;

/// Identifies a delivery when its report comes back.
#[derive(Debug)]
pub(crate) struct Tag {
    job: Job,
    site: Arc<str>,
    /// The site's provider group (warm-up budgets, backoff).
    provider: Arc<str>,
    host: usize,
    /// The campaign's index when several share the pool.
    pub campaign: usize,
}

/// Limits and policy of the dispatcher.
pub(crate) struct Limits {
    pub max_in_flight: usize,
    pub per_site: usize,
    pub max_parked: usize,
    pub retry: RetryConfig,
}

/// Channels the dispatcher listens on.
pub(crate) struct Inputs {
    pub work: mpsc::Receiver<Work>,
    pub reports: mpsc::UnboundedReceiver<DeliveryReport<Tag>>,
    pub fetched: mpsc::UnboundedReceiver<Fetched>,
    /// Queue control's requests (see [`crate::queues`]).
    pub control: mpsc::UnboundedReceiver<crate::queues::Request>,
}

pub(crate) struct Dispatcher {
    pub limits: Limits,
    pub pool: DeliveryPool<Tag>,
    pub router: Arc<Router>,
    pub rotation: IpRotation,
    /// The envelope sender of each message (fixed, or VERP per message).
    pub mail_from: super::return_path::ReturnPath,
    pub recorder: Recorder,
    pub journal: DispatchJournal,
    /// Warm-up budgets and backoff, shared with the other campaigns of the run.
    pub shaper: Arc<Shaper>,
    /// Limits set on warming IPs' routes (reset when today's caps change them).
    route_limits: HashMap<RouteKey, volley_engine::RouteLimits>,
    /// Sites split per provider group (routing overrides, `#`) or destination block (`@`):
    /// (site, `#` or `@`, provider or block) -> destination.
    split_sites: HashMap<(Arc<str>, char, Arc<str>), Destination>,
    /// Earlier runs' deferrals, until the producer says where their rows are.
    pub pending: HashMap<u64, Pending>,
    sites: Sites,
    down: HashMap<SocketAddr, Instant>,
    retries: RetryQueue,
    routed_tx: mpsc::UnboundedSender<(Box<str>, Result<Destination, RecipientStatus>)>,
    routed_rx: mpsc::UnboundedReceiver<(Box<str>, Result<Destination, RecipientStatus>)>,
    /// Jobs waiting for their domain's lookup (one lookup task per domain).
    resolving: HashMap<Box<str>, Vec<Job>>,
    /// Recent destinations per domain, so most jobs route without a task.
    destinations: HashMap<Box<str>, (Destination, Instant)>,
    /// Rendered jobs alive (routing, queued, or in the engine).
    rendered: usize,
    lookups: usize,
    fetching: usize,
    in_engine: usize,
    rate_wait: Option<Instant>,
    /// Domains whose new rows the producer parks unrendered, shared with it.
    congested: Arc<Congestion>,
    /// Those domains' sites.
    domain_site: HashMap<Box<str>, Arc<str>>,
    /// Requests to read rows again (retries, parked rows).
    fetch: crossbeam_channel::Sender<RowRef>,
    /// Sites with parked rows.
    parked_sites: std::collections::HashSet<Arc<str>>,
    /// Parked rows being read again, and the site they were parked at.
    unparking: LineMap<Arc<str>>,
    /// Dispatch batch: journaled together, then handed to the engine.
    batch: Vec<Delivery<Tag>>,
    /// The campaign's place among campaigns sharing the pool (none when it runs alone).
    pub seat: Option<Seat>,
    /// The suppression gate, asked right before each hand-over about addresses other
    /// processes suppressed during the run (`Checker::late_hit`).
    pub late_gate: Option<Arc<crate::suppression::Checker>>,
    /// When to look again at sites held back for a higher-priority campaign or blocked by
    /// other campaigns' deliveries.
    recheck: Option<Instant>,
    /// Suspensions, shared with every campaign of the process.
    controls: Arc<crate::queues::QueueControl>,
    /// Queue control's bookkeeping: waiting rows, where rows are queued, what is in flight.
    queues: queue_ops::QueueState,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        limits: Limits,
        pool: DeliveryPool<Tag>,
        router: Router,
        rotation: IpRotation,
        mail_from: super::return_path::ReturnPath,
        recorder: Recorder,
        journal: DispatchJournal,
        shaper: Arc<Shaper>,
        pending: HashMap<u64, Pending>,
        congested: Arc<Congestion>,
        fetch: crossbeam_channel::Sender<RowRef>,
        controls: Arc<crate::queues::QueueControl>,
    ) -> Dispatcher {
        let (routed_tx, routed_rx) = mpsc::unbounded_channel();
        Dispatcher {
            limits,
            pool,
            router: Arc::new(router),
            rotation,
            mail_from,
            recorder,
            journal,
            shaper,
            split_sites: HashMap::new(),
            route_limits: HashMap::new(),
            pending,
            sites: Sites::default(),
            down: HashMap::new(),
            retries: RetryQueue::default(),
            routed_tx,
            routed_rx,
            resolving: HashMap::new(),
            destinations: HashMap::new(),
            rendered: 0,
            lookups: 0,
            fetching: 0,
            in_engine: 0,
            rate_wait: None,
            unparking: LineMap::default(),
            parked_sites: std::collections::HashSet::new(),
            congested,
            domain_site: HashMap::new(),
            fetch,
            batch: Vec::new(),
            seat: None,
            late_gate: None,
            recheck: None,
            controls,
            queues: Default::default(),
        }
    }

    /// Runs until every recipient has a final outcome, or until `stop` resolves (then waits
    /// for what is in the engine and leaves the rest to the next run). Returns whether the
    /// run completed, and the recipients still waiting for a retry.
    pub async fn run(
        &mut self,
        mut inputs: Inputs,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(bool, u64), SendError> {
        tokio::pin!(stop);
        let mut producing = true;
        let mut stopping = false;
        let mut control_open = true;
        loop {
            // Paused: nothing new goes out; reports of what is on the wire are still taken.
            // Paused by an operator, or held by a reputation guard until one lifts the hold.
            let paused = self.recorder.live.is_paused() || self.recorder.held();
            if !stopping && !paused {
                self.sites.release(Instant::now(), self.limits.per_site);
                self.dispatch()?;
                self.unpark();
                self.due_retries();
                self.release_resumed();
            }
            if !stopping {
                self.feed_doomed();
            }
            // Rendered jobs alive include those routing and in the engine: they are busy,
            // not queued.
            let busy = self.in_engine + self.lookups;
            self.recorder.live.set_queues(
                (self.rendered.saturating_sub(busy) + self.sites.parked + self.fetching + self.queues.owed()) as u64,
                self.retries.len() as u64,
            );
            self.recorder.live.set_busy(busy as u64);
            // Paused or held, the loop takes no work, so it would never see the producer end:
            // a campaign held after its last outcome waited for a lift with nothing left to
            // send (found by CI). The producer has ended once its channel is closed and drained.
            if producing && inputs.work.is_closed() && inputs.work.is_empty() {
                producing = false;
            }
            if !producing && self.idle() {
                break;
            }
            if stopping && self.in_engine == 0 && self.lookups == 0 && self.fetching == 0 {
                break;
            }
            let retry_wait = if stopping || paused {
                None
            } else {
                self.retries.wait(SystemTime::now())
            };
            // Suppression updates that cannot be written (Redis down) pile up to a bound; past
            // it no new mail is taken until they drain.
            let held_back = self.recorder.suppression_over_bound();
            let wake = [
                retry_wait,
                self.rate_wait.map(|t| t.saturating_duration_since(Instant::now())),
                held_back.then_some(Duration::from_millis(100)),
                paused.then_some(Duration::from_millis(100)),
                self.recheck.map(|t| t.saturating_duration_since(Instant::now())),
                self.sites
                    .next_release()
                    .map(|t| t.saturating_duration_since(Instant::now())),
            ]
            .into_iter()
            .flatten()
            .min();
            // Parked rows are small (line, offset) but not free: past `max_parked` the producer
            // waits for the busy sites to drain, which bounds memory at any list size.
            let can_take = producing
                && !stopping
                && !paused
                && !held_back
                && self.rendered < self.limits.max_in_flight
                && self.sites.parked + self.queues.owed() < self.limits.max_parked;
            tokio::select! {
                biased;
                report = inputs.reports.recv(), if self.in_engine > 0 => {
                    if let Some(report) = report {
                        self.on_report(report)?;
                        // Take every report already queued, then push the log to the OS.
                        while let Ok(report) = inputs.reports.try_recv() {
                            self.on_report(report)?;
                        }
                    }
                    self.recorder.flush()?;
                }
                routed = self.routed_rx.recv(), if self.lookups > 0 => {
                    if let Some((domain, dest)) = routed {
                        self.lookups -= 1;
                        let jobs = self.resolving.remove(&domain).unwrap_or_default();
                        if stopping {
                            self.rendered -= jobs.len();
                        } else {
                            if let Ok(d) = &dest {
                                if self.destinations.len() >= DESTINATION_CACHE {
                                    self.destinations.clear(); // only a shortcut: start over
                                }
                                self.destinations.insert(domain, (d.clone(), Instant::now() + DESTINATION_TTL));
                            }
                            for job in jobs {
                                self.on_routed(job, dest.clone())?;
                            }
                        }
                    }
                }
                fetched = inputs.fetched.recv(), if self.fetching > 0 => {
                    if let Some(fetched) = fetched {
                        self.fetching -= 1;
                        if !stopping {
                            self.on_fetched(fetched)?;
                        }
                    }
                }
                request = inputs.control.recv(), if control_open => match request {
                    Some(request) => {
                        self.on_request(request)?;
                        self.recorder.flush()?;
                    }
                    None => control_open = false,
                },
                work = inputs.work.recv(), if can_take => match work {
                    Some(work) => self.on_work(work)?,
                    None => producing = false,
                },
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    producing = false;
                    inputs.work.close();
                    self.rendered -= self.sites.clear();
                }
                _ = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600))), if wake.is_some() => {
                    self.rate_wait = None;
                    if self.recheck.is_some_and(|t| t <= Instant::now()) {
                        self.recheck = None;
                        self.sites.wake_all(self.limits.per_site);
                    }
                }
            }
        }
        self.recorder.flush()?;
        let waiting = self.retries.len() as u64
            + self.sites.parked as u64
            + self.pending.len() as u64
            + self.queues.owed() as u64;
        Ok((!stopping && waiting == 0, waiting))
    }

    fn idle(&self) -> bool {
        self.rendered == 0
            && self.fetching == 0
            && self.retries.is_empty()
            && self.sites.parked == 0
            && self.queues.idle(self.controls.runs_wait())
    }

    fn on_work(&mut self, work: Work) -> Result<(), SendError> {
        match work {
            Work::Send(job) => {
                self.rendered += 1;
                self.route(job)
            }
            Work::Rejected(refused) => self.recorder.rejected(&refused),
            Work::Suppressed(row) => self.recorder.suppressed(&row),
            Work::Park { line, offset, domain } => {
                let r = RowRef {
                    line,
                    offset,
                    attempt: 1,
                    first_at: SystemTime::now(),
                };
                self.park(&domain, r);
                Ok(())
            }
            Work::Pending { line, offset } => {
                if let Some(p) = self.pending.remove(&line) {
                    self.queues.resumed(line, &p);
                    let r = RowRef {
                        line,
                        offset,
                        attempt: p.attempt,
                        first_at: p.first_at,
                    };
                    self.retries.push(p.due, r);
                }
                Ok(())
            }
        }
    }

    fn on_fetched(&mut self, fetched: Fetched) -> Result<(), SendError> {
        if let Some(site) = self.unparking.remove(&fetched.line()) {
            if let Some(s) = self.sites.get_mut(&site) {
                s.unparking -= 1;
            }
        }
        // Read again for an operator's bounce or purge: its final line, not a send.
        let Some(fetched) = self.doomed(fetched)? else {
            return Ok(());
        };
        match fetched {
            Fetched::Job(job) => {
                self.rendered += 1;
                self.route(job)
            }
            Fetched::Refused(_, refused) => self.recorder.rejected(&refused),
            Fetched::Suppressed(_, row) => self.recorder.suppressed(&row),
        }
    }

    /// Overrides and recently resolved domains are decided here; an MX lookup runs in its own
    /// task (one per domain, later jobs of the domain wait with it) so one slow answer never
    /// holds up other domains.
    fn route(&mut self, job: Job) -> Result<(), SendError> {
        let domain = job.recipient.domain();
        if let Some(dest) = self.router.route_override(domain).cloned() {
            return self.enqueue(job, &dest);
        }
        if let Some((dest, until)) = self.destinations.get(domain) {
            if *until > Instant::now() {
                let dest = dest.clone();
                return self.enqueue(job, &dest);
            }
        }
        if let Some(waiting) = self.resolving.get_mut(domain) {
            waiting.push(job);
            return Ok(());
        }
        let domain: Box<str> = domain.into();
        self.lookups += 1;
        let (router, tx) = (self.router.clone(), self.routed_tx.clone());
        let key = domain.clone();
        tokio::spawn(async move {
            let dest = router.destination(&key).await;
            let _ = tx.send((key, dest));
        });
        self.resolving.insert(domain, vec![job]);
        Ok(())
    }

    fn on_routed(&mut self, mut job: Job, dest: Result<Destination, RecipientStatus>) -> Result<(), SendError> {
        match dest {
            Ok(dest) => self.enqueue(job, &dest),
            // No destination: bounced (null MX, NXDOMAIN) or deferred (DNS trouble).
            Err(status) => {
                job.attempt_began(SystemTime::now());
                self.settle(job, At::default(), status, Duration::ZERO, false)
            }
        }
    }

    fn enqueue(&mut self, mut job: Job, dest: &Destination) -> Result<(), SendError> {
        let per_site = self.limits.per_site;
        let domain = job.recipient.domain();
        let (dest, provider) = self.shaped(dest, domain);
        let dest = &dest;
        let site = self.sites.site(dest);
        if site.provider.is_none() {
            // Every job of a site resolves alike: same MX hosts and provider group, and a
            // domain with a `domains` block of its own has a site of its own (`shaped`).
            let hosts: Vec<&str> = dest.hosts.iter().map(|(_, h)| &*h.name).collect();
            let destinations = self.shaper.destinations();
            let resolved = destinations.resolve(domain, &hosts, &provider);
            site.policy = match &dest.sts {
                Some(route) => Some(destinations.under_mta_sts(resolved.policy.as_deref(), route.clone())),
                None => resolved.policy,
            };
            site.rate = resolved.rate;
            site.provider = Some(provider);
        }
        if site.held_until.is_some() && site.held_for_budget {
            job.held_since = Some(Instant::now());
        }
        // A suspended domain or site: the recipient waits as a row until it is resumed.
        if self.controls.destination_suspended(job.recipient.domain(), &dest.site) {
            self.wait_suspended(job, &dest.site);
            return Ok(());
        }
        if site.ready.len() >= per_site {
            // Beyond the site's ready cap: keep only where the row is, and have the producer
            // park this domain's next rows without rendering them.
            let r = job.to_ref();
            site.parked.push_back(r);
            let domain = job.recipient.domain();
            self.queues.parked(&r, domain, &dest.site);
            if !self.domain_site.contains_key(domain) {
                site.congested.push(domain.into());
                self.domain_site.insert(domain.into(), dest.site.clone());
                self.congested.insert(domain);
            }
            self.parked_one(&dest.site);
            self.rendered -= 1;
            return Ok(());
        }
        site.ready.push_back(job);
        let ready = if site.in_flight < per_site { site.ready.len() } else { 0 };
        if let Some(seat) = &self.seat {
            seat.gate.publish(seat.campaign, &dest.site, ready, site.in_flight);
        }
        self.sites.wake(&dest.site, per_site);
        Ok(())
    }

    /// The destination as budgets see it, and its provider group. The provider group of an MX
    /// site comes from its MX host names; a routing override (or an MX site no group
    /// recognises) whose recipient domain belongs to a group gets a site of its own per group,
    /// so one relay address does not put every provider behind one budget. Likewise a domain
    /// matched by a `[[destination]]` block's `domains` gets a site (and engine routes) of its
    /// own, `site@block`, under that block's settings.
    fn shaped(&mut self, dest: &Destination, domain: &str) -> (Destination, Arc<str>) {
        let hosts: Vec<&str> = dest.hosts.iter().map(|(_, h)| &*h.name).collect();
        let (provider, by_domain) = self.shaper.provider(&hosts, domain);
        let mut dest = dest.clone();
        if by_domain {
            dest = self.split(&dest, '#', &provider);
        }
        if let Some(block) = self.shaper.destinations().domain_block(domain) {
            dest = self.split(&dest, '@', &block);
        }
        (dest, provider)
    }

    /// The site `dest.site` + `kind` + `tag`, with `dest`'s hosts.
    fn split(&mut self, dest: &Destination, kind: char, tag: &Arc<str>) -> Destination {
        let key = (dest.site.clone(), kind, tag.clone());
        let split = self.split_sites.entry(key).or_insert_with(|| Destination {
            site: Arc::from(format!("{}{kind}{tag}", dest.site)),
            hosts: dest.hosts.clone(),
            sts: dest.sts.clone(),
        });
        if split.hosts != dest.hosts || split.sts != dest.sts {
            split.hosts = dest.hosts.clone();
            split.sts = dest.sts.clone();
        }
        split.clone()
    }

    /// A row the producer parked for a congested domain joins its site's parked rows (or, when
    /// the site has drained meanwhile, is read again at once).
    fn park(&mut self, domain: &str, r: RowRef) {
        let site_key = self.domain_site.get(domain).cloned();
        match site_key.and_then(|k| self.sites.get_mut(&k).map(|s| (k, s))) {
            Some((key, site)) => {
                site.parked.push_back(r);
                self.queues.parked(&r, domain, &key);
                self.parked_one(&key);
            }
            None => {
                if self.fetch.send(r).is_ok() {
                    self.fetching += 1;
                }
            }
        }
    }

    /// Counts a row just parked at site `key`.
    fn parked_one(&mut self, key: &Arc<str>) {
        self.sites.parked += 1;
        self.recorder.summary.peak_parked = self.recorder.summary.peak_parked.max(self.sites.parked as u64);
        if !self.parked_sites.contains(key) {
            self.parked_sites.insert(key.clone());
        }
    }

    /// Sites with room get parked rows read again.
    fn unpark(&mut self) {
        let fetch = &self.fetch;
        if self.sites.parked == 0 {
            return;
        }
        let per_site = self.limits.per_site;
        let budget = self.limits.max_in_flight.saturating_sub(self.rendered + self.fetching);
        let mut sent = 0;
        let mut unparked = 0;
        let mut emptied = Vec::new();
        for key in &self.parked_sites {
            let Some(site) = self.sites.get_mut(key) else {
                emptied.push(key.clone());
                continue;
            };
            while sent < budget && site.ready.len() + site.unparking < per_site / 2 + 1 {
                let Some(r) = site.parked.pop_front() else { break };
                if fetch.send(r).is_err() {
                    site.parked.push_front(r);
                    break;
                }
                self.unparking.insert(r.line, key.clone());
                self.queues.left(r.line);
                site.unparking += 1;
                sent += 1;
                unparked += 1;
            }
            if site.parked.is_empty() {
                emptied.push(key.clone());
                for domain in site.congested.drain(..) {
                    self.congested.remove(&domain);
                    self.domain_site.remove(&domain);
                }
            }
        }
        for key in emptied {
            self.parked_sites.remove(&key);
        }
        self.sites.parked -= unparked;
        self.fetching += sent;
    }

    /// Due retries are read again (within the in-flight budget).
    fn due_retries(&mut self) {
        let fetch = &self.fetch;
        let now = SystemTime::now();
        while self.rendered + self.fetching < self.limits.max_in_flight {
            let Some(r) = self.retries.pop_due(now) else { break };
            if fetch.send(r).is_err() {
                self.retries.push(now, r);
                break;
            }
            self.queues.left(r.line);
            self.fetching += 1;
        }
    }
}
