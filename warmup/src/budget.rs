//! Today's sending budget of every (source IP, provider group) pair: the warm-up curve's daily
//! and hourly caps, counters for the current UTC day and hour, a smoothing limiter so an hour's
//! budget is not spent in its first second, and adaptive backoff. [`Budgets::choose`] overflows
//! a message to the first IP of a pool that has budget left.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use crate::backoff::{BackoffAction, BackoffRules, BackoffState};
use crate::clock::ManualClock;
use crate::counters::{CounterError, CounterStore, Counts, Pacing, Taken, Window};
use crate::curve::{Caps, CurveSet};
use crate::day::hour_start;
use crate::ipstate::{day_of, WarmupState};
use crate::limiter::SendLimiter;
use crate::rate::Rate;

/// The position of an IP in the slice given to [`Budgets::choose`].
pub type IpIndex = usize;

/// Why a message may not be sent now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// Today's cap for the provider is spent; `until` is the next UTC midnight.
    DailyCap,
    /// This hour's cap is spent; `until` is the next UTC hour.
    HourlyCap,
    /// The smoothing limiter spreads the hour's budget; `until` is the next free slot.
    Rate,
    /// Like `Rate`, on a pair slowed down by backoff.
    Backoff,
    /// The pair is suspended by backoff until `until`.
    Suspended,
    /// [`Budgets::choose`] was given no IP.
    NoIp,
    /// The shared counter store cannot be reached: a capped pair does not send until it
    /// answers again (`until` is a short retry delay). See [`Budgets::take_store_error`].
    StoreUnavailable,
}

/// How long a capped pair waits before asking an unreachable shared store again.
pub const STORE_RETRY: Duration = Duration::from_secs(1);

/// Not now: when to ask again, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The earliest time the budget may allow a message.
    pub until: SystemTime,
    /// What is spent or held.
    pub reason: WaitReason,
}

/// How many messages waited for budget, and how long in total (for the summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Messages that waited at least once.
    pub waited_count: u64,
    /// Their waits added up.
    pub waited_total: Duration,
}

/// One pair's state as reports show it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// Today's caps (`None`: warm, no cap).
    pub caps: Option<Caps>,
    /// Messages counted today and this hour.
    pub counts: Counts,
    /// The backoff rate factor (1.0: not slowed).
    pub factor: f64,
    /// Until when backoff suspends the pair.
    pub suspended_until: Option<SystemTime>,
}

/// An IP's warm-up names a curve that was not loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("source IP {ip}: warm-up curve {curve:?} is not loaded")]
pub struct UnknownCurve {
    /// The IP.
    pub ip: IpAddr,
    /// The curve it names.
    pub curve: String,
}

struct Smoothing {
    /// The rate the limiter was built for (base rate scaled by the backoff factor).
    rate: Rate,
    limiter: SendLimiter<ManualClock>,
}

struct Pair {
    window: Window,
    caps: Option<Caps>,
    counts: Counts,
    smoothing: Option<Smoothing>,
    backoff: BackoffState,
}

/// The budgets of all (source IP, provider group) pairs.
pub struct Budgets {
    curves: CurveSet,
    ips: HashMap<IpAddr, WarmupState>,
    warm_rates: HashMap<IpAddr, Rate>,
    rules: BackoffRules,
    store: Box<dyn CounterStore>,
    clock: ManualClock,
    pairs: HashMap<(IpAddr, String), Pair>,
    stats: WaitStats,
    store_error: Option<CounterError>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("ips", &self.ips)
            .field("pairs", &self.pairs.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Budgets {
    /// Budgets over loaded curves, with backoff rules and a counter store. IPs not added with
    /// [`Budgets::add_ip`] are warm.
    pub fn new(curves: CurveSet, rules: BackoffRules, store: Box<dyn CounterStore>) -> Budgets {
        Budgets {
            curves,
            ips: HashMap::new(),
            warm_rates: HashMap::new(),
            rules,
            store,
            clock: ManualClock::default(),
            pairs: HashMap::new(),
            stats: WaitStats::default(),
            store_error: None,
        }
    }

    /// Sets a source IP's warm-up state; its curve must be loaded.
    pub fn add_ip(&mut self, ip: IpAddr, state: WarmupState) -> Result<(), UnknownCurve> {
        if let WarmupState::Warming { curve, .. } = &state {
            if self.curves.get(curve).is_none() {
                return Err(UnknownCurve {
                    ip,
                    curve: curve.clone(),
                });
            }
        }
        self.ips.insert(ip, state);
        // Caps are recomputed on the next use of each of the IP's pairs.
        self.pairs.retain(|(p, _), _| *p != ip);
        Ok(())
    }

    /// The rate a warm IP sends at to each provider group (its configured rate). Backoff scales
    /// it down for a slowed pair; without one, a slowed warm pair is not limited (suspension
    /// still applies).
    pub fn set_warm_rate(&mut self, ip: IpAddr, rate: Rate) {
        self.warm_rates.insert(ip, rate);
    }

    /// Takes one message of the (ip, provider) budget at `now`, or says when to ask again.
    ///
    /// With a shared store ([`CounterStore::shared`]), a capped pair asks the store for every
    /// message: smoothing through [`CounterStore::pace`], the caps through
    /// [`CounterStore::take`], so processes sharing the IP never exceed its caps together. If
    /// the store cannot answer, the pair does not send ([`WaitReason::StoreUnavailable`]) and
    /// the error is kept for [`Budgets::take_store_error`]. Warm pairs are counted in memory
    /// and written in batches by [`CounterStore::flush`].
    pub fn try_take(&mut self, ip: IpAddr, provider: &str, now: SystemTime) -> Result<(), Wait> {
        self.clock.set(now);
        let window = Window::of(now);
        self.refresh(ip, provider, window);
        let Budgets {
            pairs,
            rules,
            warm_rates,
            clock,
            store,
            store_error,
            ..
        } = self;
        let Some(pair) = pairs.get_mut(&(ip, provider.to_string())) else {
            return Ok(());
        };
        if let Some(until) = pair.backoff.suspended_until(now) {
            return Err(Wait {
                until,
                reason: WaitReason::Suspended,
            });
        }
        // Counts only grow within a window: a cap seen spent stays spent, in every process.
        if let Some(spent) = pair.caps.and_then(|caps| Taken::spent(pair.counts, caps)) {
            return Err(cap_wait(spent, window));
        }
        let mut unavailable = |e: CounterError| {
            *store_error = Some(e);
            Wait {
                until: now + STORE_RETRY,
                reason: WaitReason::StoreUnavailable,
            }
        };
        let factor = pair.backoff.factor_at(now, rules);
        // Curve caps are smoothed with a minute's burst; a warm IP's own rate (only used while
        // backoff slows the pair) with a second's, like its per-IP limiter.
        let base = match pair.caps {
            Some(caps) => Some((hourly_rate(caps.hourly), Burst::Minute)),
            None if factor < 1.0 => warm_rates.get(&ip).map(|r| (*r, Burst::Second)),
            None => None,
        };
        match base.map(|(rate, burst)| (rate.scaled(factor), burst)) {
            None => pair.smoothing = None,
            Some((rate, burst)) => {
                let reason = if factor < 1.0 {
                    WaitReason::Backoff
                } else {
                    WaitReason::Rate
                };
                // A capped pair is a budget shared with every process on the IP, and so is its
                // smoothing when the store paces; backoff of a warm pair stays this process's.
                let pacing = match burst {
                    Burst::Minute => store.pace(ip, provider, rate, minute_burst(rate), now),
                    Burst::Second => Ok(Pacing::Local),
                };
                match pacing.map_err(&mut unavailable)? {
                    Pacing::Allowed => pair.smoothing = None,
                    Pacing::Wait(wait) => {
                        pair.smoothing = None;
                        return Err(Wait {
                            until: now + wait,
                            reason,
                        });
                    }
                    Pacing::Local => {
                        let smoothing = match pair.smoothing.take() {
                            Some(s) if s.rate == rate => s,
                            _ => Smoothing {
                                rate,
                                limiter: match burst {
                                    Burst::Minute => SendLimiter::with_burst(rate, minute_burst(rate), clock.clone()),
                                    Burst::Second => SendLimiter::with_clock(rate, clock.clone()),
                                },
                            },
                        };
                        let allowed = smoothing.limiter.try_acquire();
                        pair.smoothing = Some(smoothing);
                        if let Err(wait) = allowed {
                            // The limiters' clock never goes back: a `now` older than the
                            // latest seen waits from the latest.
                            return Err(Wait {
                                until: clock.now_system() + wait,
                                reason,
                            });
                        }
                    }
                }
            }
        }
        match pair.caps {
            Some(caps) if store.shared() => {
                let taken = store.take(ip, provider, window, caps).map_err(unavailable)?;
                pair.counts = taken.counts();
                if !matches!(taken, Taken::Ok(_)) {
                    return Err(cap_wait(taken, window));
                }
            }
            _ => {
                pair.counts = pair.counts.plus(1);
                let written = store
                    .add(ip, provider, window, 1)
                    .and_then(|()| store.flush(now, false));
                if let Err(e) = written {
                    *store_error = Some(e);
                }
            }
        }
        Ok(())
    }

    /// Picks the IP for the next message to `provider`: the first of `ips` (the caller's
    /// rotation order) with budget left, whose budget is taken. When none has, the earliest
    /// time any of them has budget again.
    pub fn choose(&mut self, ips: &[IpAddr], provider: &str, now: SystemTime) -> Result<IpIndex, Wait> {
        let mut earliest: Option<Wait> = None;
        for (i, ip) in ips.iter().enumerate() {
            match self.try_take(*ip, provider, now) {
                Ok(()) => return Ok(i),
                Err(wait) => {
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

    /// Counts a message that waited for budget from `since` until it was sent at `now`.
    pub fn record_waited(&mut self, since: SystemTime, now: SystemTime) {
        self.stats.waited_count += 1;
        self.stats.waited_total += now.duration_since(since).unwrap_or_default();
    }

    /// How many messages waited, and how long in total.
    pub fn wait_stats(&self) -> WaitStats {
        self.stats
    }

    /// Feeds a reply from `provider` to `ip` to adaptive backoff; returns the action taken, if
    /// a rule matched. Only that pair is affected.
    pub fn observe(
        &mut self,
        ip: IpAddr,
        provider: &str,
        code: Option<u16>,
        enhanced: Option<&str>,
        text: &str,
        now: SystemTime,
    ) -> Option<BackoffAction> {
        let action = self.rules.matching(code, enhanced, text)?;
        self.clock.set(now);
        self.refresh(ip, provider, Window::of(now));
        if let Some(pair) = self.pairs.get_mut(&(ip, provider.to_string())) {
            pair.backoff.apply(action, now, &self.rules);
        }
        Some(action)
    }

    /// The pair's caps, counts and backoff at `now`. With a shared store the counts are those
    /// of this process's last answer from it (other processes may have counted since).
    pub fn usage(&mut self, ip: IpAddr, provider: &str, now: SystemTime) -> Usage {
        self.refresh(ip, provider, Window::of(now));
        let pair = self.pairs.get(&(ip, provider.to_string()));
        Usage {
            caps: pair.and_then(|p| p.caps),
            counts: pair.map(|p| p.counts).unwrap_or_default(),
            factor: pair.map_or(1.0, |p| p.backoff.factor_at(now, &self.rules)),
            suspended_until: pair.and_then(|p| p.backoff.suspended_until(now)),
        }
    }

    /// Writes the counters now (call at shutdown and when a run ends).
    pub fn flush(&mut self, now: SystemTime) -> Result<(), CounterError> {
        self.store.flush(now, true)
    }

    /// The last error of the counter store while taking budget, if any. Warm pairs keep
    /// counting in memory meanwhile; with a shared store, capped pairs wait
    /// ([`WaitReason::StoreUnavailable`]) until it answers.
    pub fn take_store_error(&mut self) -> Option<CounterError> {
        self.store_error.take()
    }

    /// Creates the pair, or moves it to `window`: a new day rebuilds the caps, a new day or hour
    /// reloads the counts from the store.
    fn refresh(&mut self, ip: IpAddr, provider: &str, window: Window) {
        let key = (ip, provider.to_string());
        let current = self.pairs.get(&key).map(|p| p.window);
        if current == Some(window) {
            return;
        }
        let caps = match (current, self.pairs.get(&key)) {
            (Some(w), Some(pair)) if w.day == window.day => pair.caps,
            _ => self.caps_for(ip, provider, window),
        };
        let counts = match self.store.load(ip, provider, window) {
            Ok(counts) => counts,
            Err(e) => {
                self.store_error = Some(e);
                Counts::default()
            }
        };
        let pair = self.pairs.entry(key).or_insert_with(|| Pair {
            window,
            caps,
            counts,
            smoothing: None,
            backoff: BackoffState::default(),
        });
        pair.window = window;
        pair.caps = caps;
        pair.counts = counts;
    }

    fn caps_for(&self, ip: IpAddr, provider: &str, window: Window) -> Option<Caps> {
        match self.ips.get(&ip)? {
            WarmupState::Warm => None,
            WarmupState::Warming { curve, start } => self.curves.get(curve)?.caps(day_of(*start, window.day), provider),
        }
    }
}

/// The wait for a spent cap: the next UTC midnight or hour.
fn cap_wait(spent: Taken, window: Window) -> Wait {
    match spent {
        Taken::HourlySpent(_) => Wait {
            until: hour_start(window.hour + 1),
            reason: WaitReason::HourlyCap,
        },
        Taken::DailySpent(_) | Taken::Ok(_) => Wait {
            until: window.day.next().start(),
            reason: WaitReason::DailyCap,
        },
    }
}

/// An hourly cap as a rate.
fn hourly_rate(hourly: u64) -> Rate {
    let count = NonZeroU32::new(u32::try_from(hourly).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
    Rate::per_hour(count)
}

#[derive(Clone, Copy)]
enum Burst {
    Minute,
    Second,
}

/// A minute's worth of the rate (at least 1): an idle pair may send a small lump, never the
/// hour's budget at once.
fn minute_burst(rate: Rate) -> NonZeroU32 {
    let per_minute = (rate.per_second() * 60.0).floor();
    NonZeroU32::new(per_minute.clamp(1.0, f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN)
}
