//! Live counters of running campaigns, for progress displays and metrics: outcomes (also by
//! source IP, site and category), queue gauges, how far the recipient file has been read, a
//! delivery-latency histogram, and the pool's open connections. Updated by the dispatchers and
//! readers as they go (atomics; one short lock per attempt for the labelled counts, which
//! allocates nothing once a label set has been seen), read at any time with [`Live::snapshot`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::outcome::Outcome;

/// Outcomes in index order (of [`CampaignSnapshot::outcomes`]).
pub const OUTCOMES: [Outcome; 6] = [
    Outcome::Delivered,
    Outcome::Deferred,
    Outcome::Bounced,
    Outcome::Expired,
    Outcome::Suppressed,
    Outcome::Rejected,
];

/// Upper bounds (seconds) of the delivery-latency histogram's buckets; one more is open.
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn index(outcome: Outcome) -> usize {
    OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The labels of an attempt count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    pub outcome: Outcome,
    /// The source IP, when a connection was made.
    pub source_ip: Option<String>,
    /// The MX site, when routed.
    pub site: Option<String>,
    /// The bounce category (`delivered` for deliveries).
    pub category: String,
}

/// The labels of one attempt as the dispatcher has them: borrowed, so that counting an
/// attempt allocates nothing for label sets already seen.
#[derive(Clone, Copy, Debug)]
pub struct AttemptLabels<'a> {
    pub outcome: Outcome,
    /// The source IP, when a connection was made.
    pub source_ip: Option<IpAddr>,
    /// The MX site, when routed.
    pub site: Option<&'a str>,
    /// The bounce category (`delivered` for deliveries).
    pub category: &'a str,
}

/// Attempt counts by (outcome, source IP), then category, then site (`""`: not routed; a
/// site name is never empty). Nested so that each level is looked up by a borrowed key.
type LabelledCounts = HashMap<(Outcome, Option<IpAddr>), HashMap<Box<str>, HashMap<Box<str>, u64>>>;

/// `map[key]`, inserted (the key allocated) only the first time.
fn slot<'m, V: Default>(map: &'m mut HashMap<Box<str>, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.into(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// One campaign's live counters.
#[derive(Debug, Default)]
pub struct CampaignLive {
    id: String,
    outcomes: [AtomicU64; 6],
    labelled: Mutex<LabelledCounts>,
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    queued: AtomicU64,
    retrying: AtomicU64,
    /// Messages on the wire or waiting for their MX lookup.
    busy: AtomicU64,
    bytes_read: AtomicU64,
    bytes_total: AtomicU64,
    paused: AtomicBool,
    /// Why a reputation guard holds the campaign, while it does.
    hold: Mutex<Option<String>>,
    /// Outcomes recorded by earlier runs of the campaign (a resumed run's starting point).
    earlier: [AtomicU64; 6],
    /// Told once when every recipient is handed on (see [`Live::handed_on`]).
    handed_on: Option<Arc<tokio::sync::Notify>>,
    handed_on_told: AtomicBool,
}

impl CampaignLive {
    /// Pauses (`true`) or resumes the campaign: while paused nothing new is sent; what is on
    /// the wire is still recorded.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Sets (or clears) the reputation hold shown for the campaign.
    pub fn set_hold(&self, reason: Option<String>) {
        let mut hold = lock(&self.hold);
        if *hold != reason {
            *hold = reason;
        }
    }

    /// Why a reputation guard holds the campaign, while it does.
    pub fn hold(&self) -> Option<String> {
        lock(&self.hold).clone()
    }

    /// Whether the campaign is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Counts one attempt (or a row that was never sent: suppressed, rejected).
    pub fn attempt(&self, labels: AttemptLabels<'_>, latency: Option<Duration>) {
        self.outcomes[index(labels.outcome)].fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = latency.filter(|_| labels.outcome == Outcome::Delivered) {
            let s = latency.as_secs_f64();
            let bucket = LATENCY_BUCKETS
                .iter()
                .position(|b| s <= *b)
                .unwrap_or(LATENCY_BUCKETS.len());
            self.latency[bucket].fetch_add(1, Ordering::Relaxed);
            self.latency_sum_us.fetch_add(
                u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        let mut counts = lock(&self.labelled);
        let by_category = counts.entry((labels.outcome, labels.source_ip)).or_default();
        *slot(slot(by_category, labels.category), labels.site.unwrap_or("")) += 1;
    }

    /// What earlier runs of the campaign recorded (read back from its accounting log when a
    /// run resumes); [`CampaignSnapshot::total`] adds it to this run's counts.
    pub fn set_earlier(&self, earlier: OutcomeCounts) {
        for (slot, n) in self.earlier.iter().zip(earlier.to_array()) {
            slot.store(n, Ordering::Relaxed);
        }
    }

    /// Rendered and parked messages waiting in this campaign's queues, and deferred ones waiting
    /// for their retry.
    pub fn set_queues(&self, queued: u64, retrying: u64) {
        self.queued.store(queued, Ordering::Relaxed);
        self.retrying.store(retrying, Ordering::Relaxed);
        if let Some(notify) = &self.handed_on {
            if !self.handed_on_told.load(Ordering::Relaxed) && self.all_handed_on() {
                self.handed_on_told.store(true, Ordering::Relaxed);
                notify.notify_one();
            }
        }
    }

    /// Messages on the wire or waiting for their MX lookup.
    pub fn set_busy(&self, busy: u64) {
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Whether the campaign has read all its recipients and waits only for the retries of
    /// deferred ones: nothing queued, nothing on the wire, something deferred.
    pub fn only_retries_left(&self) -> bool {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.all_handed_on() && load(&self.busy) == 0 && load(&self.retrying) > 0
    }

    /// Whether every recipient has been read and handed on: nothing is left in the queues
    /// (what remains is on the wire, waiting for its MX lookup or for a retry).
    pub fn all_handed_on(&self) -> bool {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let total = load(&self.bytes_total);
        total > 0 && load(&self.bytes_read) >= total && load(&self.queued) == 0
    }

    /// How far the recipient file has been read.
    pub fn set_read(&self, bytes_read: u64, bytes_total: u64) {
        self.bytes_read.store(bytes_read, Ordering::Relaxed);
        self.bytes_total.store(bytes_total, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> CampaignSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut labelled: Vec<(Labels, u64)> = Vec::new();
        for (&(outcome, ip), by_category) in lock(&self.labelled).iter() {
            for (category, by_site) in by_category {
                for (site, &n) in by_site {
                    let labels = Labels {
                        outcome,
                        source_ip: ip.map(|ip| ip.to_string()),
                        site: (!site.is_empty()).then(|| site.to_string()),
                        category: category.to_string(),
                    };
                    labelled.push((labels, n));
                }
            }
        }
        labelled.sort();
        CampaignSnapshot {
            id: self.id.clone(),
            outcomes: self.outcomes.each_ref().map(load),
            labelled,
            latency: self.latency.each_ref().map(load),
            latency_sum_s: load(&self.latency_sum_us) as f64 / 1e6,
            queued: load(&self.queued),
            retrying: load(&self.retrying),
            bytes_read: load(&self.bytes_read),
            bytes_total: load(&self.bytes_total),
            paused: self.is_paused(),
            hold: lock(&self.hold).clone(),
            earlier: self.earlier.each_ref().map(load),
        }
    }
}

/// A campaign's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CampaignSnapshot {
    pub id: String,
    /// Attempts per outcome in this run (indexes of [`OUTCOMES`]); deferred counts deferrals.
    pub outcomes: [u64; 6],
    /// The same, recorded by earlier runs of the campaign (zero on a first run).
    pub earlier: [u64; 6],
    /// Attempts per label set, sorted.
    pub labelled: Vec<(Labels, u64)>,
    /// Deliveries per latency bucket (bounds in [`LATENCY_BUCKETS`], the last one open).
    pub latency: [u64; LATENCY_BUCKETS.len() + 1],
    pub latency_sum_s: f64,
    pub queued: u64,
    pub retrying: u64,
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub paused: bool,
    /// Why a reputation guard holds the campaign (nothing new is sent until an operator lifts
    /// the hold).
    pub hold: Option<String>,
}

impl CampaignSnapshot {
    /// Attempts with outcome `o` in this run.
    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[index(o)]
    }

    /// Attempts with outcome `o` over the whole campaign: earlier runs and this one.
    pub fn total(&self, o: Outcome) -> u64 {
        self.earlier[index(o)] + self.outcomes[index(o)]
    }

    /// Final outcomes (all but deferrals) in this run.
    pub fn finals(&self) -> u64 {
        self.outcomes.iter().sum::<u64>() - self.count(Outcome::Deferred)
    }

    /// This run's counts.
    pub fn this_run(&self) -> OutcomeCounts {
        OutcomeCounts::from_array(self.outcomes)
    }

    /// The campaign's counts, earlier runs included.
    pub fn totals(&self) -> OutcomeCounts {
        let mut all = self.outcomes;
        for (a, e) in all.iter_mut().zip(self.earlier) {
            *a += e;
        }
        OutcomeCounts::from_array(all)
    }

    /// Share of the recipient file read, 0..=1 (0 before reading starts).
    pub fn read_share(&self) -> f64 {
        if self.bytes_total == 0 {
            0.0
        } else {
            (self.bytes_read as f64 / self.bytes_total as f64).min(1.0)
        }
    }
}

/// Counts per outcome, of one run or of a whole campaign.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    /// Deliveries.
    pub delivered: u64,
    /// Deferrals (a recipient deferred twice counts twice).
    pub deferred: u64,
    /// Permanent failures (expiries not included).
    pub bounced: u64,
    /// Recipients given up after the retry period.
    pub expired: u64,
    /// Rows skipped because the address is suppressed.
    pub suppressed: u64,
    /// Rows refused.
    pub rejected: u64,
}

impl OutcomeCounts {
    /// From counts in the order of [`OUTCOMES`].
    pub fn from_array(a: [u64; 6]) -> OutcomeCounts {
        let [delivered, deferred, bounced, expired, suppressed, rejected] = a;
        OutcomeCounts {
            delivered,
            deferred,
            bounced,
            expired,
            suppressed,
            rejected,
        }
    }

    /// The counts in the order of [`OUTCOMES`].
    pub fn to_array(self) -> [u64; 6] {
        [
            self.delivered,
            self.deferred,
            self.bounced,
            self.expired,
            self.suppressed,
            self.rejected,
        ]
    }

    /// Final outcomes (all but deferrals).
    pub fn finals(&self) -> u64 {
        self.to_array().iter().sum::<u64>() - self.deferred
    }
}

/// A warming IP's use of today's budget for one provider group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WarmupUse {
    pub ip: std::net::IpAddr,
    pub provider: String,
    /// Sent today (UTC), by every campaign and process sharing the counters.
    pub sent_today: u64,
    /// Today's cap.
    pub daily_cap: u64,
}

/// The live counters of every campaign of a run, the pool's connection gauge, and the warming
/// IPs' budget use.
#[derive(Debug, Default)]
pub struct Live {
    campaigns: Mutex<Vec<Arc<CampaignLive>>>,
    open_connections: AtomicU64,
    warmup: Mutex<Vec<WarmupUse>>,
    connection_limits: Mutex<Vec<volley_engine::pool::RouteConcurrency>>,
    reputation: Mutex<Vec<crate::reputation::RateView>>,
    listings: Mutex<Vec<crate::reputation::ListingView>>,
    handed_on: Arc<tokio::sync::Notify>,
}

impl Live {
    /// A new campaign's counters (replacing those of an earlier run of the same id).
    pub fn campaign(&self, id: &str) -> Arc<CampaignLive> {
        let c = Arc::new(CampaignLive {
            id: id.to_string(),
            handed_on: Some(self.handed_on.clone()),
            ..CampaignLive::default()
        });
        let mut campaigns = lock(&self.campaigns);
        campaigns.retain(|old| old.id != id);
        campaigns.push(c.clone());
        c
    }

    /// Told (`notify_one`) when a campaign has handed on every recipient
    /// ([`CampaignLive::all_handed_on`] became true): a cluster node then starts its next chunk
    /// at once rather than at its next look.
    pub fn handed_on(&self) -> &Arc<tokio::sync::Notify> {
        &self.handed_on
    }

    /// Drops the counters of campaign `id` (a finished chunk of a cluster campaign: its
    /// outcomes are in the node's log and in Redis; a long campaign's chunks would otherwise
    /// pile up in the metrics).
    pub fn forget(&self, id: &str) {
        lock(&self.campaigns).retain(|c| c.id != id);
    }

    pub(crate) fn set_open_connections(&self, n: u64) {
        self.open_connections.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_connection_limits(&self, limits: Vec<volley_engine::pool::RouteConcurrency>) {
        *lock(&self.connection_limits) = limits;
    }

    /// The connection limit of every (source IP, MX host) route the pool has served: what it
    /// grew to, or learned from a receiver's refusals.
    pub fn connection_limits(&self) -> Vec<volley_engine::pool::RouteConcurrency> {
        lock(&self.connection_limits).clone()
    }

    pub(crate) fn set_reputation(&self, rates: Vec<crate::reputation::RateView>) {
        *lock(&self.reputation) = rates;
    }

    /// The reputation guards' rates per campaign and per (source IP, provider group), and
    /// whether each is held (refreshed about once a second).
    pub fn reputation(&self) -> Vec<crate::reputation::RateView> {
        lock(&self.reputation).clone()
    }

    pub(crate) fn set_listings(&self, listings: Vec<crate::reputation::ListingView>) {
        *lock(&self.listings) = listings;
    }

    /// Every source IP's blocklist state, when `[blocklists]` monitors them (refreshed about
    /// once a second from the monitor's last look-ups).
    pub fn listings(&self) -> Vec<crate::reputation::ListingView> {
        lock(&self.listings).clone()
    }

    pub(crate) fn set_warmup(&self, usage: Vec<WarmupUse>) {
        *lock(&self.warmup) = usage;
    }

    /// The warming IPs' use of today's budgets (empty when no IP warms up).
    pub fn warmup(&self) -> Vec<WarmupUse> {
        lock(&self.warmup).clone()
    }

    /// Connections the delivery pool has open.
    pub fn open_connections(&self) -> u64 {
        self.open_connections.load(Ordering::Relaxed)
    }

    /// Every campaign's counters now.
    pub fn snapshot(&self) -> Vec<CampaignSnapshot> {
        lock(&self.campaigns).iter().map(|c| c.snapshot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(outcome: Outcome, ip: &str) -> AttemptLabels<'static> {
        AttemptLabels {
            outcome,
            source_ip: ip.parse().ok(),
            site: Some("mx.a.test"),
            category: "delivered",
        }
    }

    #[test]
    fn counts_outcomes_labels_latency_and_gauges() {
        let live = Live::default();
        let c = live.campaign("c1");
        c.attempt(labels(Outcome::Delivered, "127.0.0.2"), Some(Duration::from_millis(3)));
        c.attempt(
            labels(Outcome::Delivered, "127.0.0.2"),
            Some(Duration::from_millis(700)),
        );
        c.attempt(labels(Outcome::Deferred, "127.0.0.3"), Some(Duration::from_millis(1)));
        c.set_queues(10, 2);
        c.set_read(50, 200);
        let s = &live.snapshot()[0];
        assert_eq!(s.id, "c1");
        assert_eq!(
            (s.count(Outcome::Delivered), s.count(Outcome::Deferred), s.finals()),
            (2, 1, 2)
        );
        assert_eq!(s.labelled.len(), 2);
        assert_eq!(s.labelled[0].1, 2);
        assert_eq!(s.labelled[0].0.source_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(s.labelled[0].0.site.as_deref(), Some("mx.a.test"));
        assert_eq!(s.latency[0], 1, "3 ms in the 5 ms bucket");
        assert_eq!(s.latency[7], 1, "700 ms in the 1 s bucket");
        assert_eq!(s.latency.iter().sum::<u64>(), 2, "deferrals have no delivery latency");
        assert!((s.latency_sum_s - 0.703).abs() < 1e-9);
        assert_eq!((s.queued, s.retrying, s.read_share()), (10, 2, 0.25));
    }
}
