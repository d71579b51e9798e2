//! The dispatcher's side of queue control (see [`crate::queues`]): recipients waiting for a
//! suspended domain or site, where each parked or retrying row is queued (so that a scope finds
//! its rows without reading them again), what is in flight where, and the operator's requests.
//!
//! A waiting recipient is kept as a row (line and offset, like a parked row) and counts against
//! `max_parked`. A bounced or purged row is read again (within the in-flight budget) for its
//! recipient, and gets its final line instead of a send.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::Dispatcher;
use crate::outcome::Outcome;
use crate::queues::{Action, Affected, GroupBy, QueueScope, Request, Tally};
use crate::send::job::{Job, RowRef};
use crate::send::line_map::LineMap;
use crate::send::produce::Fetched;
use crate::send::record::At;
use crate::send::state::Pending;
use crate::send::SendError;

/// Where a parked or retrying row is queued.
struct RowPlace {
    domain: Arc<str>,
    site: Arc<str>,
    /// The source IP of its last attempt.
    ip: Option<IpAddr>,
    /// When its retry is due (`None`: parked behind a busy site).
    retry_due: Option<SystemTime>,
    first_at: SystemTime,
}

/// A recipient waiting because its domain or site is suspended.
struct Waiting {
    r: RowRef,
    domain: Arc<str>,
    site: Arc<str>,
}

/// A row an operator bounced or purged, being read again for its final line.
struct Doom {
    outcome: Outcome,
    reason: Arc<str>,
    site: Arc<str>,
}

/// Deliveries in the engine at one site: source IP -> domain -> count.
type InFlightAt = HashMap<IpAddr, HashMap<Box<str>, u32>>;

/// Queue control's bookkeeping in one dispatcher.
#[derive(Default)]
pub(crate) struct QueueState {
    /// Parked and retrying rows by line.
    rows: LineMap<RowPlace>,
    waiting: Vec<Waiting>,
    /// The suspensions' generation last looked at.
    seen_generation: u64,
    /// Waiting rows whose scope was resumed are being read again.
    releasing: bool,
    /// Deliveries in the engine: site -> source IP -> domain -> count.
    in_flight: HashMap<Arc<str>, InFlightAt>,
    doomed: LineMap<Doom>,
    /// Doomed rows not yet handed to the fetcher.
    doom_queue: VecDeque<RowRef>,
    /// The domain of the last row noted: rows come in runs of one domain (a congested or
    /// suspended domain's rows), which then share one string.
    last_domain: Option<Arc<str>>,
}

impl QueueState {
    fn domain(&mut self, domain: &str) -> Arc<str> {
        match &self.last_domain {
            Some(d) if &**d == domain => d.clone(),
            _ => {
                let d: Arc<str> = Arc::from(domain);
                self.last_domain = Some(d.clone());
                d
            }
        }
    }

    /// Notes a row parked at `site`.
    pub fn parked(&mut self, r: &RowRef, domain: &str, site: &Arc<str>) {
        let place = RowPlace {
            domain: self.domain(domain),
            site: site.clone(),
            ip: None,
            retry_due: None,
            first_at: r.first_at,
        };
        self.rows.insert(r.line, place);
    }

    /// Notes a row waiting for its retry at `due`.
    pub fn retrying(&mut self, job: &Job, at: At<'_>, due: SystemTime) {
        let place = RowPlace {
            domain: self.domain(job.recipient.domain()),
            site: Arc::from(at.site.unwrap_or("-")),
            ip: at.route.map(|r| r.source.ip),
            retry_due: Some(due),
            first_at: job.first_at,
        };
        self.rows.insert(job.line, place);
    }

    /// Notes an earlier run's deferral, waiting for its retry (where it was queued comes from
    /// the accounting log).
    pub fn resumed(&mut self, line: u64, p: &Pending) {
        let place = RowPlace {
            domain: p.place.domain.clone(),
            site: p.place.site.clone().unwrap_or_else(|| Arc::from("-")),
            ip: p.place.source_ip,
            retry_due: Some(p.due),
            first_at: p.first_at,
        };
        self.rows.insert(line, place);
    }

    /// A parked or retrying row leaves its queue (read again).
    pub fn left(&mut self, line: u64) {
        self.rows.remove(&line);
    }

    /// A delivery handed to the engine.
    pub fn sent(&mut self, site: &Arc<str>, ip: IpAddr, domain: &str) {
        let by_domain = self.in_flight.entry(site.clone()).or_default().entry(ip).or_default();
        match by_domain.get_mut(domain) {
            Some(n) => *n += 1,
            None => {
                by_domain.insert(domain.into(), 1);
            }
        }
    }

    /// A delivery's report came back (or the pool gave it back).
    pub fn returned(&mut self, site: &str, ip: IpAddr, domain: &str) {
        let Some(by_ip) = self.in_flight.get_mut(site) else {
            return;
        };
        if let Some(by_domain) = by_ip.get_mut(&ip) {
            if let Some(n) = by_domain.get_mut(domain) {
                *n -= 1;
                if *n == 0 {
                    by_domain.remove(domain);
                }
            }
            if by_domain.is_empty() {
                by_ip.remove(&ip);
            }
        }
        if by_ip.is_empty() {
            self.in_flight.remove(site);
        }
    }

    /// Recipients held here that the run still owes an outcome (waiting or doomed).
    pub fn owed(&self) -> usize {
        self.waiting.len() + self.doom_queue.len()
    }

    /// Whether the run has nothing to do here: nothing to purge, and nothing waiting (or
    /// waiting rows are left to a later run: `runs_wait` false).
    pub fn idle(&self, runs_wait: bool) -> bool {
        self.doom_queue.is_empty() && (self.waiting.is_empty() || !runs_wait)
    }
}

impl Dispatcher {
    fn provider_of(&self, site: &str) -> &str {
        self.sites
            .get(site)
            .and_then(|s| s.provider.as_deref())
            .unwrap_or(volley_warmup::provider::OTHER)
    }

    /// Keeps `job` as a row until its domain and site are resumed (the message is dropped).
    pub(super) fn wait_suspended(&mut self, job: Job, site: &Arc<str>) {
        self.rendered -= 1;
        let domain = self.queues.domain(job.recipient.domain());
        self.queues.waiting.push(Waiting {
            r: job.to_ref(),
            domain,
            site: site.clone(),
        });
    }

    /// After a resume, waiting rows no longer suspended are read again (within the in-flight
    /// budget; the rest on the next turn).
    pub(super) fn release_resumed(&mut self) {
        let generation = self.controls.generation();
        if generation != self.queues.seen_generation {
            self.queues.seen_generation = generation;
            self.queues.releasing = !self.queues.waiting.is_empty();
        }
        if !self.queues.releasing {
            return;
        }
        let mut budget = self.limits.max_in_flight.saturating_sub(self.rendered + self.fetching);
        let mut left_over = false;
        let waiting = std::mem::take(&mut self.queues.waiting);
        for w in waiting {
            if self.controls.destination_suspended(&w.domain, &w.site) {
                self.queues.waiting.push(w);
            } else if budget > 0 && self.fetch.send(w.r).is_ok() {
                budget -= 1;
                self.fetching += 1;
            } else {
                left_over = true;
                self.queues.waiting.push(w);
            }
        }
        self.queues.releasing = left_over;
    }

    /// Bounced or purged rows are read again (within the in-flight budget) for their line.
    pub(super) fn feed_doomed(&mut self) {
        while self.rendered + self.fetching < self.limits.max_in_flight {
            let Some(r) = self.queues.doom_queue.pop_front() else {
                break;
            };
            if self.fetch.send(r).is_err() {
                self.queues.doom_queue.push_front(r);
                break;
            }
            self.fetching += 1;
        }
    }

    /// A row read again for an operator's bounce or purge gets its final line (`None`);
    /// any other comes back to be routed.
    pub(super) fn doomed(&mut self, fetched: Fetched) -> Result<Option<Fetched>, SendError> {
        let Some(doom) = self.queues.doomed.remove(&fetched.line()) else {
            return Ok(Some(fetched));
        };
        match fetched {
            Fetched::Job(job) => {
                let provider = self.provider_of(&doom.site).to_string();
                let at = At {
                    site: Some(&doom.site),
                    provider: Some(&provider),
                    route: None,
                };
                self.recorder.by_operator(&job, at, doom.outcome, &doom.reason)?;
                Ok(None)
            }
            // Refused or suppressed meanwhile: that is its final line.
            other => Ok(Some(other)),
        }
    }

    /// Answers an operator's request.
    pub(super) fn on_request(&mut self, request: Request) -> Result<(), SendError> {
        match request {
            Request::Show { by, reply } => {
                let _ = reply.send(self.tallies(by));
            }
            Request::Act { action, scope, reply } => {
                let affected = self.act(&action, &scope)?;
                let _ = reply.send(affected);
            }
            Request::Resumed => self.release_resumed(),
        }
        Ok(())
    }

    /// The campaign's queues grouped by `by`.
    fn tallies(&self, by: GroupBy) -> Vec<(String, Tally)> {
        let mut out: HashMap<String, Tally> = HashMap::new();
        // Counts one recipient (or `n` in flight) into its queue's tally; the queue's MX
        // hosts are noted the first time.
        let mut count = |domain: &str, site: &str, ip: Option<IpAddr>, update: &dyn Fn(&mut Tally)| {
            let key = by.key(domain, site, self.provider_of(site), ip);
            let t = out.entry(key).or_default();
            if t.mx_hosts.is_empty() {
                if let Some(s) = self.sites.get(site) {
                    t.mx_hosts.extend(s.dest.hosts.iter().map(|(_, h)| h.name.to_string()));
                }
            }
            update(t);
        };
        for (key, site) in self.sites.iter() {
            for job in &site.ready {
                count(job.recipient.domain(), key, None, &|t| {
                    t.ready += 1;
                    t.saw(job.first_at);
                });
            }
        }
        for row in self.queues.rows.values() {
            count(&row.domain, &row.site, row.ip, &|t| {
                match row.retry_due {
                    Some(due) => {
                        t.retrying += 1;
                        t.next_attempt = Some(t.next_attempt.map_or(due, |n| n.min(due)));
                    }
                    None => t.parked += 1,
                }
                t.saw(row.first_at);
            });
        }
        for w in &self.queues.waiting {
            count(&w.domain, &w.site, None, &|t| {
                t.suspended += 1;
                t.saw(w.r.first_at);
            });
        }
        for (site, by_ip) in &self.queues.in_flight {
            for (ip, by_domain) in by_ip {
                for (domain, n) in by_domain {
                    count(domain, site, Some(*ip), &|t| t.in_flight += u64::from(*n));
                }
            }
        }
        out.into_iter().collect()
    }

    /// What `scope` holds in this campaign now (nothing changes).
    fn count(&self, scope: &QueueScope) -> Affected {
        let mut held = Affected::default();
        for (site, by_ip) in &self.queues.in_flight {
            for (ip, by_domain) in by_ip {
                for (domain, n) in by_domain {
                    if scope.holds(domain, site, self.provider_of(site), Some(*ip)) {
                        held.in_flight_untouched += u64::from(*n);
                    }
                }
            }
        }
        for (key, site) in self.sites.iter() {
            let provider = self.provider_of(key);
            held.ready += site
                .ready
                .iter()
                .filter(|j| scope.holds(j.recipient.domain(), key, provider, None))
                .count() as u64;
        }
        for p in self.queues.rows.values() {
            if scope.holds(&p.domain, &p.site, self.provider_of(&p.site), p.ip) {
                match p.retry_due {
                    Some(_) => held.retrying += 1,
                    None => held.parked += 1,
                }
            }
        }
        for w in &self.queues.waiting {
            if scope.holds(&w.domain, &w.site, self.provider_of(&w.site), None) {
                held.suspended += 1;
            }
        }
        held
    }

    /// Does `action` to the recipients of `scope` that are not on the wire.
    fn act(&mut self, action: &Action, scope: &QueueScope) -> Result<Affected, SendError> {
        if *action == Action::Count {
            return Ok(self.count(scope));
        }
        let mut affected = Affected {
            in_flight_untouched: self.count(scope).in_flight_untouched,
            ..Affected::default()
        };
        let in_scope: Vec<u64> = {
            let rows = &self.queues.rows;
            rows.iter()
                .filter(|(_, p)| scope.holds(&p.domain, &p.site, self.provider_of(&p.site), p.ip))
                .map(|(line, _)| *line)
                .collect()
        };
        let (doom, reason) = match action {
            Action::Retry => {
                let lines: std::collections::HashSet<u64> = in_scope
                    .iter()
                    .copied()
                    .filter(|l| self.queues.rows.get(l).is_some_and(|p| p.retry_due.is_some()))
                    .collect();
                let now = SystemTime::now();
                for r in self.retries.take_where(|r| lines.contains(&r.line)) {
                    affected.retrying += 1;
                    if let Some(p) = self.queues.rows.get_mut(&r.line) {
                        p.retry_due = Some(now);
                    }
                    self.retries.push(now, r);
                }
                self.retry_sites_now(scope);
                return Ok(affected);
            }
            Action::Bounce(reason) => (Outcome::Bounced, reason),
            Action::Purge(reason) => (Outcome::Expired, reason),
            Action::Count => return Ok(affected),
        };
        let reason: Arc<str> = Arc::from(reason.as_str());
        let mut doomed: Vec<(RowRef, Arc<str>)> = Vec::new();
        // Retrying rows.
        let lines: std::collections::HashSet<u64> = in_scope.iter().copied().collect();
        for r in self.retries.take_where(|r| lines.contains(&r.line)) {
            if let Some(p) = self.queues.rows.remove(&r.line) {
                affected.retrying += 1;
                doomed.push((r, p.site));
            }
        }
        // Parked rows, and rendered ones waiting for their turn.
        let mut ready = Vec::new();
        let mut unparked = 0;
        let providers: HashMap<Arc<str>, Arc<str>> = self
            .sites
            .iter()
            .map(|(k, s)| {
                let p = s.provider.clone();
                (
                    k.clone(),
                    p.unwrap_or_else(|| Arc::from(volley_warmup::provider::OTHER)),
                )
            })
            .collect();
        for (key, site) in self.sites.iter_mut() {
            let provider = providers.get(key).map_or(volley_warmup::provider::OTHER, |p| &**p);
            let rows = &mut self.queues.rows;
            site.parked.retain(|r| {
                let take = lines.contains(&r.line) && rows.remove(&r.line).is_some();
                if take {
                    doomed.push((*r, key.clone()));
                    unparked += 1;
                }
                !take
            });
            let (take, keep): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut site.ready)
                .into_iter()
                .partition(|j| scope.holds(j.recipient.domain(), key, provider, None));
            site.ready = keep;
            ready.extend(take.into_iter().map(|j| (j, key.clone())));
        }
        self.sites.parked -= unparked;
        affected.parked = unparked as u64;
        // Waiting for a resume.
        let waiting = std::mem::take(&mut self.queues.waiting);
        for w in waiting {
            if scope.holds(&w.domain, &w.site, self.provider_of(&w.site), None) {
                affected.suspended += 1;
                doomed.push((w.r, w.site));
            } else {
                self.queues.waiting.push(w);
            }
        }
        affected.ready = ready.len() as u64;
        for (job, site) in ready {
            self.rendered -= 1;
            let provider = self.provider_of(&site).to_string();
            let at = At {
                site: Some(&site),
                provider: Some(&provider),
                route: None,
            };
            self.recorder.by_operator(&job, at, doom, &reason)?;
        }
        for (r, site) in doomed {
            self.queues.doomed.insert(
                r.line,
                Doom {
                    outcome: doom,
                    reason: reason.clone(),
                    site,
                },
            );
            self.queues.doom_queue.push_back(r);
        }
        self.feed_doomed();
        tracing::info!("queue control: {action:?} {scope}: {affected:?}");
        Ok(affected)
    }

    /// Retry now also means "the hosts are back": the sites of `scope` forget their hosts'
    /// down marks and look for room again.
    fn retry_sites_now(&mut self, scope: &QueueScope) {
        let per_site = self.limits.per_site;
        let mut woken = Vec::new();
        for (key, site) in self.sites.iter_mut() {
            let provider = site.provider.as_deref().unwrap_or(volley_warmup::provider::OTHER);
            let domains_in_scope = site
                .ready
                .iter()
                .any(|j| scope.holds(j.recipient.domain(), key, provider, None));
            if scope.holds("", key, provider, None) || domains_in_scope {
                for (_, host) in site.dest.hosts.iter() {
                    self.down.remove(&host.addr);
                }
                site.blocked = false;
                woken.push(key.clone());
            }
        }
        for key in woken {
            self.sites.wake(&key, per_site);
        }
    }
}
