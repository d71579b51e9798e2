//! Connection pools keyed by (source IP, MX host, destination policy).
//!
//! Each key has a bounded queue of deliveries and connection workers up to a limit learned
//! from the receiver ([`concurrency`]: starts at `initial_connections_per_host`, grows while
//! deliveries succeed, drops to what is open when the receiver refuses one more, never above
//! `max_connections_per_host`). A worker owns one session at a time, takes deliveries from its
//! key's queue, reuses the connection for up to `max_messages_per_connection` messages and
//! hangs up after `idle_timeout` without work. A key with a [`policy::RoutePolicy`] uses the
//! destination's values for each of these (and its TLS policy and recipients per
//! transaction) instead of the pool's, and counts its connections against the destination's
//! total cap when it has one. Workers are started on demand, when the backlog
//! per running connection is long enough. Every delivery produces exactly one
//! [`DeliveryReport`] on the reports channel, with one status per recipient: a connection that
//! breaks defers what it carried, with the reason. Messages already queued behind the first go
//! out as one pipelined batch, at one round trip per message. A delivery whose new connection was refused
//! while other connections to the host work goes back to the queue for those connections: it
//! is not a failure of the host and produces no report of its own.
//!
//! - `pool/concurrency.rs` — the learned connection limit of a route.
//! - `pool/closes.rs` — when a route's connections ended (a receiver still counts them a while).
//! - `pool/policy.rs` — a destination's settings and its cap over all its routes.
//! - `pool/connect.rs` — opening a connection under the caps; refusals told from failures.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::config::SmtpConfig;
use crate::error::SessionError;
use crate::outcome::RecipientStatus;
use crate::route::RouteKey;
use crate::smtp::dot::DataPayload;
use crate::smtp::session::{SessionParams, SmtpSession};
use crate::smtp::transaction::Envelope;

mod closes;
pub mod concurrency;
mod connect;
pub mod policy;

use concurrency::Concurrency;
use connect::{open_connection, Opened, Permits};
use policy::{ConnectionCap, RoutePolicy};

/// One message to deliver: where, to whom, what; `tag` comes back in the report.
#[derive(Debug)]
pub struct Delivery<T> {
    /// Caller's identification, returned untouched.
    pub tag: T,
    /// Source IP and MX host.
    pub route: RouteKey,
    /// Envelope sender and recipients.
    pub envelope: Envelope,
    /// The prepared message (shared, never copied).
    pub payload: DataPayload,
}

/// What happened to a [`Delivery`].
#[derive(Debug)]
pub struct DeliveryReport<T> {
    /// The delivery's tag.
    pub tag: T,
    /// Where it went.
    pub route: RouteKey,
    /// One status per envelope recipient, in order.
    pub statuses: Vec<RecipientStatus>,
    /// Whether it went over TLS.
    pub tls: bool,
    /// Time from the start of the attempt (connection included when one was opened) to the
    /// last reply.
    pub latency: Duration,
}

/// Counters of a pool's activity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Connections opened successfully.
    pub connections_opened: u64,
    /// Connection attempts that failed (connect, greeting, EHLO, TLS).
    pub connect_failures: u64,
    /// Transactions attempted on open connections.
    pub transactions: u64,
    /// Connections currently open.
    pub open_connections: u64,
    /// New connections refused by a receiver (421 at the banner, reset at the greeting) while
    /// others to the same host were open: the receiver's cap, learned, not a failure.
    pub connections_refused: u64,
}

/// The connection limit learned for one (source IP, MX host) route.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteConcurrency {
    /// Source IP.
    pub source_ip: std::net::IpAddr,
    /// MX host name.
    pub mx: String,
    /// MX address.
    pub mx_addr: SocketAddr,
    /// Connections the route may have open now.
    pub limit: usize,
    /// The ceiling (`max_connections_per_host`, or a warming IP's lower cap).
    pub cap: usize,
    /// Whether `limit` was learned from a refusal (the receiver's cap for this source IP).
    pub learned: bool,
    /// Connections open now.
    pub open: usize,
    /// New connections the receiver refused.
    pub refusals: u64,
    /// Connections open when the receiver last refused one (0 before any refusal): what it
    /// allowed then, counted at the moment rather than sampled later.
    pub open_at_refusal: usize,
    /// The destination policy the route follows (`None`: the pool's `[smtp]` settings).
    pub destination: Option<String>,
    /// A ceiling set from outside: this node's share of a limit learned together with other
    /// nodes sending from the same source IP.
    pub outside_cap: Option<usize>,
}

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    failed: AtomicU64,
    transactions: AtomicU64,
    open: AtomicU64,
    refused: AtomicU64,
}

struct Workers {
    running: usize,
    idle: usize,
}

/// Limits of one (source IP, MX host) route tighter than its policy: a warming IP opens fewer
/// connections to a provider and sends fewer messages on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimits {
    /// Connections open at once on the route (at most the policy's `max_connections_per_ip`).
    pub max_connections: usize,
    /// Messages per connection before it is replaced (at most the policy's
    /// `max_messages_per_connection`).
    pub max_messages_per_connection: usize,
}

struct Host<T> {
    key: RouteKey,
    /// The route's settings: its destination policy, or the pool's `[smtp]` ones.
    policy: RoutePolicy,
    /// Session parameters under the policy's TLS setting.
    params: SessionParams,
    /// The destination's cap over all its routes (`TotalCap`), if it has one.
    shared: Option<Arc<ConnectionCap>>,
    /// This route's learned connection limit under its cap (`RouteLimits`).
    concurrency: Mutex<Concurrency>,
    /// Messages per connection (`RouteLimits`).
    max_messages: AtomicUsize,
    tx: async_channel::Sender<Delivery<T>>,
    rx: async_channel::Receiver<Delivery<T>>,
    /// Deliveries given back after a refused connection, served before the queue.
    returned: Mutex<VecDeque<Delivery<T>>>,
    /// Connections of this route open now.
    open: AtomicUsize,
    /// Connections of this route being opened now (the receiver counts them already).
    opening: AtomicUsize,
    /// When this route's connections ended (the receiver counts them until it notices).
    closes: Mutex<closes::RecentCloses>,
    workers: Mutex<Workers>,
    tls_fallback_until: Mutex<Option<Instant>>,
}

impl<T> Host<T> {
    /// Deliveries waiting for a worker.
    fn queued(&self) -> usize {
        self.rx.len() + lock(&self.returned).len()
    }

    fn take_returned(&self) -> Option<Delivery<T>> {
        lock(&self.returned).pop_front()
    }
}

struct Inner<T> {
    /// One place per open connection (`max_connections`); while workers wait for one, idle
    /// connections close.
    connections: ConnectionCap,
    config: SmtpConfig,
    params: SessionParams,
    hosts: Mutex<HashMap<RouteKey, Arc<Host<T>>>>,
    tasks: Mutex<JoinSet<()>>,
    reports: mpsc::UnboundedSender<DeliveryReport<T>>,
    counters: Counters,
    /// `tls = "required"`: MX addresses that offered no STARTTLS, until when they are not
    /// connected to again (their deliveries are deferred at once).
    no_starttls: Mutex<HashMap<SocketAddr, Instant>>,
    /// Destinations' caps over all their routes, by the name of the block that set them.
    shared_caps: Mutex<HashMap<Arc<str>, Arc<ConnectionCap>>>,
    /// Ceilings set from outside per (source IP, MX host name): see
    /// [`DeliveryPool::set_outside_cap`].
    outside_caps: Mutex<HashMap<(std::net::IpAddr, String), usize>>,
}

/// A set of per-(source IP, MX host) connection pools sharing one configuration.
pub struct DeliveryPool<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for DeliveryPool<T> {
    fn clone(&self) -> Self {
        DeliveryPool {
            inner: self.inner.clone(),
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: Send + 'static> DeliveryPool<T> {
    /// A pool that reports every delivery's outcome on `reports`.
    pub fn new(config: SmtpConfig, params: SessionParams, reports: mpsc::UnboundedSender<DeliveryReport<T>>) -> Self {
        let inner = Inner {
            connections: ConnectionCap::new(config.max_connections),
            config,
            params,
            hosts: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            reports,
            counters: Counters::default(),
            no_starttls: Mutex::new(HashMap::new()),
            shared_caps: Mutex::new(HashMap::new()),
            outside_caps: Mutex::new(HashMap::new()),
        };
        DeliveryPool { inner: Arc::new(inner) }
    }

    /// Sets (`Some`) or lifts (`None`) a ceiling on the connections of every route from
    /// `source` to MX host `mx`, now and for routes made later: a cluster node's share of the
    /// receiver's limit for that source IP, learned with the other nodes that send from it.
    /// The route's own limit still applies below it.
    pub fn set_outside_cap(&self, source: std::net::IpAddr, mx: &str, cap: Option<usize>) {
        {
            let mut caps = lock(&self.inner.outside_caps);
            match cap {
                Some(c) => caps.insert((source, mx.to_owned()), c),
                None => caps.remove(&(source, mx.to_owned())),
            };
        }
        let hosts: Vec<_> = lock(&self.inner.hosts).values().cloned().collect();
        for h in hosts
            .iter()
            .filter(|h| h.key.source.ip == source && h.key.mx.name.as_ref() == mx)
        {
            lock(&h.concurrency).set_outside(cap);
        }
    }

    /// Queues a delivery on its (source IP, MX host) pool, waiting while that queue is full,
    /// and starts a connection worker when queued work outnumbers idle workers.
    pub async fn submit(&self, delivery: Delivery<T>) {
        let host = self.host(&delivery.route);
        if let Err(async_channel::SendError(delivery)) = host.tx.send(delivery).await {
            // The pool is closing: the delivery is not lost, it is reported deferred.
            let status = RecipientStatus::from_error(&SessionError::Closed {
                phase: crate::phase::Phase::Connect,
            });
            report(&self.inner, delivery, vec![status], false, Duration::ZERO);
            return;
        }
        start_worker_if_needed(&self.inner, &host);
    }

    /// Queues a delivery without waiting: `Err` gives it back when its (source IP, MX host)
    /// queue is full or the pool is closing, so a caller serving many destinations can move
    /// on to another instead of stalling behind a slow one.
    #[allow(clippy::result_large_err)] // the delivery is handed back whole, not an error value
    pub fn try_submit(&self, delivery: Delivery<T>) -> Result<(), Delivery<T>> {
        let host = self.host(&delivery.route);
        match host.tx.try_send(delivery) {
            Ok(()) => {
                start_worker_if_needed(&self.inner, &host);
                Ok(())
            }
            Err(async_channel::TrySendError::Full(d) | async_channel::TrySendError::Closed(d)) => Err(d),
        }
    }

    /// How many more deliveries the (source IP, MX host) queue of `route` takes before
    /// [`DeliveryPool::try_submit`] would refuse one.
    pub fn room(&self, route: &RouteKey) -> usize {
        match lock(&self.inner.hosts).get(route) {
            Some(host) => self.inner.config.queue_per_host.saturating_sub(host.tx.len()),
            None => self.inner.config.queue_per_host,
        }
    }

    /// Tightens (or relaxes back) one route's limits; values are clamped to the route's policy
    /// (`max_connections_per_ip` and `max_messages_per_connection`: the destination's, else the
    /// pool's), and to at least 1. A lowered cap stops new connections; those already open
    /// stay until they idle out or reach their message count.
    pub fn set_route_limits(&self, route: &RouteKey, limits: RouteLimits) {
        let host = self.host(route);
        let policy = &host.policy;
        let connections = limits.max_connections.clamp(1, policy.max_connections_per_ip.max(1));
        let messages = limits
            .max_messages_per_connection
            .clamp(1, policy.max_messages_per_connection.max(1));
        lock(&host.concurrency).set_cap(connections);
        host.max_messages.store(messages, Ordering::Relaxed);
    }

    /// The connection limit of every route the pool has served, learned or grown.
    pub fn concurrency(&self) -> Vec<RouteConcurrency> {
        let hosts: Vec<_> = lock(&self.inner.hosts).values().cloned().collect();
        let mut out: Vec<_> = hosts
            .iter()
            .map(|h| {
                let c = lock(&h.concurrency);
                RouteConcurrency {
                    source_ip: h.key.source.ip,
                    mx: h.key.mx.name.to_string(),
                    mx_addr: h.key.mx.addr,
                    limit: c.limit(),
                    cap: c.cap(),
                    learned: c.learned(),
                    open: h.open.load(Ordering::Relaxed),
                    refusals: c.refusals(),
                    open_at_refusal: c.open_at_refusal(),
                    destination: h.key.policy.as_ref().map(|p| p.name.to_string()),
                    outside_cap: c.outside(),
                }
            })
            .collect();
        out.sort_by(|a, b| (a.source_ip, &a.mx, a.mx_addr).cmp(&(b.source_ip, &b.mx, b.mx_addr)));
        out
    }

    /// The activity counters.
    pub fn stats(&self) -> PoolStats {
        let c = &self.inner.counters;
        PoolStats {
            connections_opened: c.opened.load(Ordering::Relaxed),
            connect_failures: c.failed.load(Ordering::Relaxed),
            transactions: c.transactions.load(Ordering::Relaxed),
            open_connections: c.open.load(Ordering::Relaxed),
            connections_refused: c.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops taking deliveries, lets the workers finish what is queued, QUITs every
    /// connection and waits for all of it.
    pub async fn close(&self) {
        for host in lock(&self.inner.hosts).values() {
            host.tx.close();
        }
        let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        while tasks.join_next().await.is_some() {}
    }

    fn host(&self, key: &RouteKey) -> Arc<Host<T>> {
        let mut hosts = lock(&self.inner.hosts);
        if let Some(h) = hosts.get(key) {
            return h.clone();
        }
        let (tx, rx) = async_channel::bounded(self.inner.config.queue_per_host);
        let config = &self.inner.config;
        let policy = match &key.policy {
            Some(p) => RoutePolicy::clone(p),
            None => RoutePolicy::from_config("smtp", config),
        };
        let mut params = self.inner.params.clone();
        if params.tls.policy() != policy.tls {
            params.tls = params.tls.with_policy(policy.tls);
        }
        if let Some(route) = &policy.mta_sts {
            params.tls = params.tls.for_route(route.clone());
        }
        let shared = policy.total.as_ref().map(|cap| {
            lock(&self.inner.shared_caps)
                .entry(cap.owner.clone())
                .or_insert_with(|| Arc::new(ConnectionCap::new(cap.max)))
                .clone()
        });
        let mut concurrency = Concurrency::new(
            policy.initial_connections,
            policy.max_connections_per_ip,
            config.concurrency_probe_interval,
        );
        let outside = lock(&self.inner.outside_caps)
            .get(&(key.source.ip, key.mx.name.to_string()))
            .copied();
        concurrency.set_outside(outside);
        let host = Arc::new(Host {
            key: key.clone(),
            concurrency: Mutex::new(concurrency),
            max_messages: AtomicUsize::new(policy.max_messages_per_connection),
            policy,
            params,
            shared,
            tx,
            rx,
            returned: Mutex::new(VecDeque::new()),
            open: AtomicUsize::new(0),
            opening: AtomicUsize::new(0),
            closes: Mutex::new(closes::RecentCloses::default()),
            workers: Mutex::new(Workers { running: 0, idle: 0 }),
            tls_fallback_until: Mutex::new(None),
        });
        hosts.insert(key.clone(), host.clone());
        host
    }
}

fn report<T>(inner: &Inner<T>, d: Delivery<T>, statuses: Vec<RecipientStatus>, tls: bool, latency: Duration) {
    let report = DeliveryReport {
        tag: d.tag,
        route: d.route,
        statuses,
        tls,
        latency,
    };
    // The receiver is gone only when the caller stopped listening; nothing left to tell.
    let _ = inner.reports.send(report);
}

/// How often an idle worker holding a connection checks whether others wait for one (and
/// for deliveries given back after a refused connection).
const YIELD_CHECK: Duration = Duration::from_millis(250);

/// Starts a connection worker for `host` when its backlog calls for one under its learned
/// limit ([`Concurrency::wants_another`]).
fn start_worker_if_needed<T: Send + 'static>(inner: &Arc<Inner<T>>, host: &Arc<Host<T>>) {
    let queued = host.queued();
    let mut workers = lock(&host.workers);
    // At the pool-wide connection cap, a route gets one worker (waiting for a connection)
    // rather than one per queued delivery: idle workers cost memory too.
    let at_cap = inner.connections.is_full() || host.shared.as_ref().is_some_and(|s| s.is_full());
    let wants = lock(&host.concurrency).wants_another(workers.running, workers.idle, queued);
    if wants && (workers.running == 0 || !at_cap) {
        workers.running += 1;
        drop(workers);
        let (task_inner, host) = (inner.clone(), host.clone());
        lock(&inner.tasks).spawn(run_worker(task_inner, host));
    }
}

/// Whether more workers run than the route's limit allows now; if so this one is no longer
/// counted (it stops).
fn over_limit<T>(host: &Host<T>) -> bool {
    let limit = lock(&host.concurrency).limit();
    let mut workers = lock(&host.workers);
    if workers.running > limit {
        workers.running -= 1;
        return true;
    }
    false
}

/// Takes the next delivery; `None` when the worker should stop: idle for `idle_timeout` with an
/// empty queue, the pool closed, or (`holding` a connection) other workers wait for a
/// connection under `max_connections` while this one has nothing to send.
async fn next_delivery<T>(inner: &Inner<T>, host: &Host<T>, holding: bool) -> Option<Delivery<T>> {
    let idle_since = Instant::now();
    let idle_timeout = host.policy.idle_timeout;
    loop {
        if let Some(d) = host.take_returned() {
            return Some(d);
        }
        let wait = idle_timeout.saturating_sub(idle_since.elapsed());
        let wait = if holding { wait.min(YIELD_CHECK) } else { wait };
        lock(&host.workers).idle += 1;
        let got = tokio::time::timeout(wait, host.rx.recv()).await;
        let mut workers = lock(&host.workers);
        workers.idle -= 1;
        match got {
            Ok(Ok(d)) => return Some(d),
            Ok(Err(_closed)) if host.queued() == 0 => {
                workers.running -= 1;
                return None;
            }
            Ok(Err(_closed)) => continue,
            // Retire only when nothing is queued: checked under the same lock `submit` uses to
            // decide whether to start a worker, so a queued delivery always has one.
            Err(_idle)
                if host.queued() == 0
                    && (idle_since.elapsed() >= idle_timeout || (holding && others_wait(inner, host))) =>
            {
                workers.running -= 1;
                return None;
            }
            Err(_idle) => continue,
        }
    }
}

/// Whether workers wait for a connection under a cap this route's connections count against
/// (the pool's `max_connections`, the destination's total).
fn others_wait<T>(inner: &Inner<T>, host: &Host<T>) -> bool {
    inner.connections.has_waiters() || host.shared.as_ref().is_some_and(|s| s.has_waiters())
}

async fn run_worker<T: Send + 'static>(inner: Arc<Inner<T>>, host: Arc<Host<T>>) {
    // The session and the permits it holds (`max_connections`, the destination's total) live
    // and die together.
    let mut session: Option<(SmtpSession, Permits)> = None;
    let mut sent_on_connection = 0usize;
    // Deliveries of a batch that never reached the server before its connection broke: they
    // go first, on the next connection.
    let mut unsent: VecDeque<Delivery<T>> = VecDeque::new();
    while let Some(delivery) = match unsent.pop_front() {
        Some(d) => Some(d),
        None => next_delivery(&inner, &host, session.is_some()).await,
    } {
        let started = Instant::now();
        let (mut open, permit) = match session.take() {
            Some(s) => s,
            None => match open_connection(&inner, &host).await {
                Opened::Session(s, permit) => {
                    sent_on_connection = 0;
                    (*s, permit)
                }
                Opened::Refused { pause } => {
                    // Not this host's failure: the delivery (and what a broken batch left
                    // unsent) waits for the open connections.
                    {
                        let mut returned = lock(&host.returned);
                        for d in unsent.drain(..).rev() {
                            returned.push_front(d);
                        }
                        returned.push_front(delivery);
                    }
                    if !pause.is_zero() {
                        // Still counted as running, so no other worker takes its place at once.
                        tokio::time::sleep(pause).await;
                    }
                    lock(&host.workers).running -= 1;
                    // Those connections may have closed meanwhile: then a worker starts again.
                    start_worker_if_needed(&inner, &host);
                    return;
                }
                Opened::Failed(status) => {
                    let n = delivery.envelope.recipients.len();
                    report(&inner, delivery, vec![status.clone(); n], false, started.elapsed());
                    fail_queued(&inner, &host, &status);
                    continue;
                }
            },
        };
        let room = host
            .max_messages
            .load(Ordering::Relaxed)
            .saturating_sub(sent_on_connection);
        let batch = batch_after(&host, delivery, room, &mut unsent);
        let (sent, broken) = send_batch(&inner, &host, &mut open, batch, started, &mut unsent).await;
        sent_on_connection += sent;
        if broken {
            closed(&inner, &host);
        } else if sent_on_connection >= host.max_messages.load(Ordering::Relaxed) {
            open.quit().await;
            closed(&inner, &host);
        } else if unsent.is_empty() && over_limit(&host) {
            // The limit dropped below the connections open (a refusal, or this node's share
            // of a cap learned with other nodes on the source IP): this one goes, so that the
            // receiver's slots go to who was refused.
            open.quit().await;
            closed(&inner, &host);
            drop(permit);
            start_worker_if_needed(&inner, &host);
            return;
        } else {
            session = Some((open, permit));
        }
        if !broken {
            let running = lock(&host.workers).running;
            let mut concurrency = lock(&host.concurrency);
            for _ in 0..sent {
                concurrency.on_success(running, Instant::now());
            }
        }
        // The backlog (or a grown limit) may call for another connection.
        start_worker_if_needed(&inner, &host);
    }
    if let Some((s, _permit)) = session {
        s.quit().await;
        closed(&inner, &host);
    }
}

/// After a connection failure with no other connection of the route open or opening, the
/// deliveries queued behind it would fail the same way, one connection attempt (and perhaps one
/// timeout) each: they get the same status at once, for the caller's MX fallback and retries.
fn fail_queued<T>(inner: &Inner<T>, host: &Host<T>, status: &RecipientStatus) {
    if host.open.load(Ordering::Relaxed) + host.opening.load(Ordering::Relaxed) > 0 {
        return;
    }
    while let Some(d) = host.take_returned().or_else(|| host.rx.try_recv().ok()) {
        let n = d.envelope.recipients.len();
        report(inner, d, vec![status.clone(); n], false, Duration::ZERO);
    }
}

/// Counts a connection of `host` as closed (after its QUIT: until then the receiver counts it
/// as open, and so do we).
fn closed<T>(inner: &Inner<T>, host: &Host<T>) {
    inner.counters.open.fetch_sub(1, Ordering::Relaxed);
    host.open.fetch_sub(1, Ordering::Relaxed);
    lock(&host.closes).record(Instant::now());
}

/// Most messages sent as one pipelined batch (see [`batch_after`]). A batch reports when it
/// ends, so this bounds how long a report waits (about one round trip per message).
const MAX_BATCH: usize = 64;

/// `first` and the deliveries ready behind it, without waiting (`unsent` ones first, then
/// those queued): at most [`MAX_BATCH`], `room` (what the connection may still carry), and a
/// fair share of the queue among the route's workers, so that one connection does not take
/// what others would send in parallel. Sent together, they cost one round trip each
/// (`SmtpSession::send_batch`).
fn batch_after<T>(
    host: &Host<T>,
    first: Delivery<T>,
    room: usize,
    unsent: &mut VecDeque<Delivery<T>>,
) -> Vec<Delivery<T>> {
    let workers = lock(&host.workers).running.max(1);
    let share = unsent.len() + host.rx.len().div_ceil(workers);
    let limit = room.clamp(1, MAX_BATCH).min(1 + share);
    let mut batch = Vec::with_capacity(limit.min(unsent.len() + host.rx.len() + 1));
    batch.push(first);
    while batch.len() < limit {
        match unsent.pop_front().map_or_else(|| host.rx.try_recv().ok(), Some) {
            Some(d) => batch.push(d),
            None => break,
        }
    }
    batch
}

/// Sends a batch on the session in transactions of at most `max_recipients_per_transaction`
/// recipients and reports every delivery it decided. A delivery of which nothing was sent
/// before the connection broke goes to `unsent`, for the next connection: it was not tried.
/// The first delivery of a batch is always tried, so `unsent` drains. Returns the deliveries
/// sent and whether the connection broke.
async fn send_batch<T>(
    inner: &Inner<T>,
    host: &Host<T>,
    session: &mut SmtpSession,
    batch: Vec<Delivery<T>>,
    started: Instant,
    unsent: &mut VecDeque<Delivery<T>>,
) -> (usize, bool) {
    let messages: Vec<_> = batch.iter().map(|d| (&d.envelope, &d.payload)).collect();
    let result = session
        .send_batch(&messages, host.policy.max_recipients_per_transaction)
        .await;
    drop(messages);
    inner
        .counters
        .transactions
        .fetch_add(result.transactions as u64, Ordering::Relaxed);
    let tls = session.is_tls();
    let mut sent = 0;
    // A message's attempt starts when the one before it in the batch was answered (its
    // envelope was on the wire with that one's content) and ends at its own last reply: a
    // message late in a long batch did not wait for the server since the batch began.
    let mut turn = started;
    for ((delivery, statuses), finished) in batch.into_iter().zip(result.statuses).zip(result.finished) {
        match statuses {
            Some(statuses) => {
                sent += 1;
                let end = finished.unwrap_or_else(Instant::now);
                let latency = end.saturating_duration_since(turn);
                turn = end.max(turn);
                report(inner, delivery, statuses, tls, latency);
            }
            None => unsent.push_back(delivery),
        }
    }
    (sent, result.connection_error.is_some())
}
