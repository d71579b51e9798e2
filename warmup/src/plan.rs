//! The warm-up planner: when will a campaign's share of each provider group be sent, given a
//! pool's warm-up budgets? [`plan`] drives the real [`Budgets`] over simulated time — the same
//! caps, counters, smoothing limiters and overflow order a run uses — with no sockets and no
//! waiting.
//!
//! How it simulates:
//! - A [`MemoryCounterStore`] is seeded with what each (IP, provider) pair already sent today
//!   ([`PlanInput::used_today`]), and the shipped backoff rules are loaded; no reply is ever
//!   observed, so backoff never slows or suspends a pair.
//! - Each provider group is a lane with its own "next try" time. The lane with the earliest
//!   time takes messages until it is told to wait, then jumps to [`Wait::until`]. Lanes
//!   advance in time order, so the budgets' clock never goes back.
//! - IPs take turns as in a run ([`WeightedTurns`] over [`PlanIp::weight`]): a message goes to
//!   the IP whose turn it is when it has room, else to the next IP in the pool's order that has
//!   (the run's overflow). Room is the IP's own rate first ([`PlanIp::rate`], a limiter like the
//!   run's IP rotation: one second's burst, shared across provider groups), then
//!   [`Budgets::try_take`] (what [`Budgets::choose`] does for each IP: caps, counters,
//!   smoothing). [`Budgets`] paces warm pairs only while backoff slows them, so a warm IP with
//!   a rate sends at that rate.
//! - A pair with no cap (a warm IP, or a warming IP past its curve's last day) and no rate of
//!   its own is unlimited: once every limited IP has refused at a moment, what is left goes to
//!   the unlimited ones at once, split as whole cycles of turns would split it (a spent IP's
//!   turn goes to the next unlimited IP in order).
//! - Within a moment the turns are exact; across time a run's throughput decides how often a
//!   paced IP has room at its turn, so the split between paced and unlimited IPs is an
//!   estimate. Per-day totals under caps and the finish times do not depend on it.
//! - A lane not done [`PlanInput::max_days`] days after the start is reported unfinished
//!   (`finish: None`) — a plan always ends.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::backoff::BackoffRules;
use crate::budget::{Budgets, UnknownCurve, Wait, WaitReason};
use crate::clock::ManualClock;
use crate::counters::{CounterError, CounterStore, Counts, MemoryCounterStore, Window};
use crate::curve::CurveSet;
use crate::ipstate::WarmupState;
use crate::limiter::SendLimiter;
use crate::rate::Rate;
use crate::turns::WeightedTurns;

/// Simulated days after which an unfinished provider is reported as not done.
pub const DEFAULT_MAX_DAYS: u32 = 400;

const DAY: Duration = Duration::from_secs(86_400);

/// One IP of the pool, as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanIp {
    /// The source address.
    pub ip: IpAddr,
    /// Warm, or warming up on a curve.
    pub state: WarmupState,
    /// The IP's own sending rate (`rate` in volley.toml), shared across provider groups.
    pub rate: Option<Rate>,
    /// Its share of the turns (`weight` in volley.toml; 0: it takes none).
    pub weight: u32,
}

/// What a plan is computed from.
#[derive(Clone, Debug)]
pub struct PlanInput {
    /// The pool's IPs in the order they are tried (see the module docs).
    pub ips: Vec<PlanIp>,
    /// The curves the IPs name.
    pub curves: CurveSet,
    /// Recipients per provider group.
    pub recipients: BTreeMap<String, u64>,
    /// When sending starts (the warm-up clock's now).
    pub start: SystemTime,
    /// What each (IP, provider group) pair already sent in the window of `start`.
    pub used_today: HashMap<(IpAddr, String), Counts>,
    /// The length of a reporting period (one UTC day by default); periods are aligned on
    /// multiples of it since the Unix epoch, so a day is a UTC day.
    pub every: Duration,
    /// Days simulated at most.
    pub max_days: u32,
}

impl PlanInput {
    /// A plan input with nothing used today, daily periods and [`DEFAULT_MAX_DAYS`].
    pub fn new(ips: Vec<PlanIp>, curves: CurveSet, recipients: BTreeMap<String, u64>, start: SystemTime) -> PlanInput {
        PlanInput {
            ips,
            curves,
            recipients,
            start,
            used_today: HashMap::new(),
            every: DAY,
            max_days: DEFAULT_MAX_DAYS,
        }
    }
}

/// Inputs no plan can be made from.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The pool has no IP (with a positive weight).
    #[error("the pool has no source IP (with a positive weight) to plan with")]
    NoIp,
    /// The reporting period is zero.
    #[error("the reporting period must be longer than zero")]
    ZeroPeriod,
    /// An IP names a curve that is not loaded.
    #[error(transparent)]
    UnknownCurve(#[from] UnknownCurve),
    /// Seeding today's counts failed.
    #[error("seeding today's counts: {0}")]
    Counters(#[from] CounterError),
}

/// The prediction for a pool.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// When sending starts.
    #[serde(with = "humantime_serde")]
    pub start: SystemTime,
    /// The reporting period.
    #[serde(rename = "every_s", serialize_with = "secs")]
    pub every: Duration,
    /// Days simulated at most.
    pub max_days: u32,
    /// One entry per provider group with recipients, by name.
    pub providers: Vec<ProviderPlan>,
}

/// The prediction for one provider group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderPlan {
    /// The group's name.
    pub provider: String,
    /// Its recipients.
    pub recipients: u64,
    /// How many the plan sends (all of them unless unfinished).
    pub sent: u64,
    /// When the last message goes; `None`: not done within `max_days`.
    #[serde(with = "humantime_serde::option")]
    pub finish: Option<SystemTime>,
    /// `finish` as seconds after the start.
    pub finish_after_s: Option<f64>,
    /// Messages sent at the start itself.
    pub at_once: u64,
    /// Messages that wait for budget (until `finish`, or beyond the plan when unfinished).
    pub waiting: u64,
    /// What the waiting is mostly for (`daily cap`, `hourly cap`, `rate`…): the reason behind
    /// the longest total wait; `None` when nothing waits.
    pub held_by: Option<&'static str>,
    /// Messages per IP over the whole plan, in rotation order (IPs that carry none left out).
    pub per_ip: Vec<IpShare>,
    /// Messages per reporting period, periods with none left out.
    pub periods: Vec<Period>,
}

/// Messages one IP carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IpShare {
    /// The IP.
    pub ip: IpAddr,
    /// Its messages.
    pub sent: u64,
}

/// Messages in one reporting period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Period {
    /// The period's start.
    #[serde(with = "humantime_serde")]
    pub start: SystemTime,
    /// Its messages.
    pub sent: u64,
    /// Per IP, in rotation order (IPs that carry none left out).
    pub per_ip: Vec<IpShare>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A wait reason as reports name it.
pub fn reason_name(reason: WaitReason) -> &'static str {
    match reason {
        WaitReason::DailyCap => "daily cap",
        WaitReason::HourlyCap => "hourly cap",
        WaitReason::Rate => "rate",
        WaitReason::Backoff => "backoff",
        WaitReason::Suspended => "suspended",
        WaitReason::NoIp => "no IP",
        WaitReason::StoreUnavailable => "counter store unavailable",
    }
}

/// One provider group's progress through simulated time.
struct Lane {
    provider: String,
    recipients: u64,
    remaining: u64,
    next: SystemTime,
    finish: Option<SystemTime>,
    at_once: u64,
    per_ip: Vec<u64>,
    /// Period number -> messages per IP.
    periods: BTreeMap<u64, Vec<u64>>,
    waited: HashMap<WaitReason, Duration>,
}

impl Lane {
    fn take(&mut self, ip: usize, n: u64, now: SystemTime, input: &PlanInput) {
        let ips = input.ips.len();
        self.per_ip[ip] += n;
        let period = since_epoch(now).as_nanos() / input.every.as_nanos().max(1);
        let period = u64::try_from(period).unwrap_or(u64::MAX);
        self.periods.entry(period).or_insert_with(|| vec![0; ips])[ip] += n;
        if now == input.start {
            self.at_once += n;
        }
        self.remaining -= n;
        if self.remaining == 0 {
            self.finish = Some(now);
        }
    }

    fn report(self, input: &PlanInput) -> ProviderPlan {
        let shares = |counts: &[u64]| -> Vec<IpShare> {
            input
                .ips
                .iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(ip, n)| IpShare { ip: ip.ip, sent: *n })
                .collect()
        };
        let every = input.every;
        ProviderPlan {
            sent: self.recipients - self.remaining,
            finish_after_s: self
                .finish
                .map(|f| f.duration_since(input.start).unwrap_or_default().as_secs_f64()),
            at_once: self.at_once,
            waiting: self.recipients - self.at_once,
            held_by: self
                .waited
                .iter()
                .max_by_key(|(reason, d)| (**d, reason_name(**reason)))
                .map(|(reason, _)| reason_name(*reason)),
            per_ip: shares(&self.per_ip),
            periods: self
                .periods
                .iter()
                .map(|(period, counts)| Period {
                    start: period_start(*period, every),
                    sent: counts.iter().sum(),
                    per_ip: shares(counts),
                })
                .collect(),
            provider: self.provider,
            recipients: self.recipients,
            finish: self.finish,
        }
    }
}

/// The start of period number `period` of length `every`.
fn period_start(period: u64, every: Duration) -> SystemTime {
    let nanos = u128::from(period).saturating_mul(every.as_nanos());
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// The pool's budgets, the IPs' own rates and their turns: which IP takes the next message.
struct Pool {
    budgets: Budgets,
    addrs: Vec<IpAddr>,
    /// Per IP: its own rate's limiter.
    rates: Vec<Option<SendLimiter<ManualClock>>>,
    /// Per IP: its weight.
    weights: Vec<u32>,
    turns: WeightedTurns,
    clock: ManualClock,
}

/// What one lane's IPs can do at one moment.
struct Moment {
    /// Per IP: no cap and no rate for this provider group (it never refuses).
    unlimited: Vec<bool>,
    /// Per IP: the wait it answered when it refused at this moment (it refuses again until
    /// time moves: budgets and limiters only refill with time).
    refused: Vec<Option<Wait>>,
}

impl Moment {
    /// Whether only unlimited IPs can still take messages (and there is one).
    fn only_unlimited_left(&self) -> bool {
        self.unlimited.iter().any(|u| *u) && self.unlimited.iter().zip(&self.refused).all(|(u, r)| *u || r.is_some())
    }
}

impl Pool {
    fn new(input: &PlanInput) -> Result<Pool, PlanError> {
        let mut store = MemoryCounterStore::default();
        let window = Window::of(input.start);
        for ((ip, provider), counts) in &input.used_today {
            let this_hour = counts.hour.min(counts.day);
            store.add(*ip, provider, window, this_hour)?;
            // The rest of the day's count, in an earlier hour of the same day (the store keeps
            // the latest hour, so this adds to the day only).
            let earlier = Window {
                day: window.day,
                hour: window.hour.saturating_sub(1),
            };
            if counts.day > this_hour && earlier.hour < window.hour {
                store.add(*ip, provider, earlier, counts.day - this_hour)?;
            }
        }
        let mut budgets = Budgets::new(input.curves.clone(), BackoffRules::default(), Box::new(store));
        let clock = ManualClock::at(input.start);
        let mut rates = Vec::with_capacity(input.ips.len());
        for ip in &input.ips {
            budgets.add_ip(ip.ip, ip.state.clone())?;
            if let Some(rate) = ip.rate {
                budgets.set_warm_rate(ip.ip, rate);
            }
            rates.push(ip.rate.map(|r| SendLimiter::with_clock(r, clock.clone())));
        }
        Ok(Pool {
            budgets,
            addrs: input.ips.iter().map(|ip| ip.ip).collect(),
            rates,
            weights: input.ips.iter().map(|ip| ip.weight).collect(),
            turns: WeightedTurns::new(input.ips.iter().map(|ip| ip.weight)),
            clock,
        })
    }

    /// The IPs as they stand for `provider` at `now`, none refused yet.
    /// (An IP of weight 0 takes no turn and no overflow, as in a run: it counts as refused.)
    fn moment(&mut self, provider: &str, now: SystemTime) -> Moment {
        let unlimited = (0..self.addrs.len())
            .map(|i| {
                self.weights[i] > 0
                    && self.rates[i].is_none()
                    && self.budgets.usage(self.addrs[i], provider, now).caps.is_none()
            })
            .collect();
        let never = Wait {
            until: now + DAY.saturating_mul(u32::MAX),
            reason: WaitReason::NoIp,
        };
        Moment {
            unlimited,
            refused: self.weights.iter().map(|w| (*w == 0).then_some(never)).collect(),
        }
    }

    /// The IP for the next message to `provider` at `now`, as a run picks it: the IP whose
    /// turn it is, else the next in order with room (its own rate first, then
    /// [`Budgets::try_take`]); the earliest wait when none has room.
    fn choose(&mut self, provider: &str, now: SystemTime, moment: &mut Moment) -> Result<usize, Wait> {
        self.clock.set(now);
        let first = self.turns.next_turn();
        let n = self.addrs.len();
        let mut earliest: Option<Wait> = None;
        for i in (0..n).map(|k| (first + k) % n) {
            let taken = match moment.refused[i] {
                Some(wait) => Err(wait),
                None => match self.rates[i].as_ref().map_or(Ok(()), SendLimiter::try_acquire) {
                    Err(d) => Err(Wait {
                        until: self.clock.now_system() + d,
                        reason: WaitReason::Rate,
                    }),
                    Ok(()) => self.budgets.try_take(self.addrs[i], provider, now),
                },
            };
            match taken {
                Ok(()) => return Ok(i),
                Err(wait) => {
                    moment.refused[i] = Some(wait);
                    if earliest.is_none_or(|e| wait.until < e.until) {
                        earliest = Some(wait);
                    }
                }
            }
        }
        Err(earliest.unwrap_or(Wait {
            until: now,
            reason: WaitReason::NoIp,
        }))
    }

    /// Splits `n` messages among the unlimited IPs of `moment` as turns would (whole cycles
    /// at once, the rest turn by turn); per IP, its messages.
    fn split_unlimited(&mut self, n: u64, moment: &Moment) -> Vec<u64> {
        let ips = self.addrs.len();
        // The IP that takes turn `slot`: itself when unlimited, else the next unlimited one.
        let taker = |slot: usize| {
            (0..ips)
                .map(|k| (slot + k) % ips)
                .find(|i| moment.unlimited[*i])
                .unwrap_or(slot)
        };
        let mut per_cycle = vec![0u64; ips];
        let mut turns = self.turns.clone();
        for _ in 0..turns.cycle() {
            per_cycle[taker(turns.next_turn())] += 1;
        }
        let cycle = self.turns.cycle().max(1);
        let mut out: Vec<u64> = per_cycle.iter().map(|c| c * (n / cycle)).collect();
        for _ in 0..n % cycle {
            out[taker(self.turns.next_turn())] += 1;
        }
        out
    }
}

/// Predicts, per provider group, when its recipients will have been sent from the pool.
pub fn plan(input: &PlanInput) -> Result<Plan, PlanError> {
    if input.ips.iter().all(|ip| ip.weight == 0) {
        return Err(PlanError::NoIp);
    }
    if input.every.is_zero() {
        return Err(PlanError::ZeroPeriod);
    }
    let mut pool = Pool::new(input)?;
    let deadline = input.start + DAY.saturating_mul(input.max_days);
    let mut lanes: Vec<Lane> = input
        .recipients
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(provider, n)| Lane {
            provider: provider.clone(),
            recipients: *n,
            remaining: *n,
            next: input.start,
            finish: None,
            at_once: 0,
            per_ip: vec![0; input.ips.len()],
            periods: BTreeMap::new(),
            waited: HashMap::new(),
        })
        .collect();
    while let Some(lane) = lanes
        .iter_mut()
        .filter(|l| l.remaining > 0 && l.next < deadline)
        .min_by_key(|l| l.next)
    {
        let now = lane.next;
        let mut moment = pool.moment(&lane.provider, now);
        loop {
            if moment.only_unlimited_left() {
                let split = pool.split_unlimited(lane.remaining, &moment);
                for (ip, n) in split.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                    lane.take(ip, n, now, input);
                }
                break;
            }
            match pool.choose(&lane.provider, now, &mut moment) {
                Ok(ip) => lane.take(ip, 1, now, input),
                Err(wait) => {
                    // A wait always moves time on, so the simulation advances.
                    let until = wait.until.max(now + Duration::from_nanos(1));
                    *lane.waited.entry(wait.reason).or_default() += until.duration_since(now).unwrap_or_default();
                    lane.next = until;
                    break;
                }
            }
            if lane.remaining == 0 {
                break;
            }
        }
    }
    Ok(Plan {
        start: input.start,
        every: input.every,
        max_days: input.max_days,
        providers: lanes.into_iter().map(|l| l.report(input)).collect(),
    })
}

#[cfg(test)]
mod tests;
