//! Adaptive backoff per (source IP, MX site): a throttling reply ("421 4.7.0 try again later",
//! Yahoo's TSS04, Microsoft's S775, "too many connections", a 5.7.x policy block…) matched by
//! the backoff rules slows that IP down at that site only — to a factor of the rate it was
//! sending there — or suspends it there for a while; the pair recovers after a quiet period.
//! Other sites, and other IPs at the same site, are not touched.
//!
//! Rule durations (hold, quiet) run on the warm-up clock; the pacing of a slowed pair on real
//! time, from the rate the site was sending at when it was first slowed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use volley_warmup::backoff::BackoffState;
use volley_warmup::{BackoffAction, BackoffRules, Rate, SendLimiter, WaitReason};

/// The slowest base rate a slowed pair is paced from (one message a minute).
const MIN_BASE_PER_S: f64 = 1.0 / 60.0;

struct Pair {
    state: BackoffState,
    /// The rate the pair was sending at when first slowed (messages per second).
    base_per_s: f64,
    /// The pacing limiter and the factor it was built for.
    pace: Option<(f64, SendLimiter)>,
}

/// Backoff state of the (IP, site) pairs that got a throttling reply.
pub struct SiteBackoff {
    rules: BackoffRules,
    pairs: HashMap<(IpAddr, Arc<str>), Pair>,
}

impl SiteBackoff {
    /// No pair slowed yet.
    pub fn new(rules: BackoffRules) -> SiteBackoff {
        SiteBackoff {
            rules,
            pairs: HashMap::new(),
        }
    }

    /// Whether any pair is slowed or suspended (the common case, none, costs one check).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Feeds a reply: when a rule matches, applies its action to the pair and returns it.
    /// `rate_per_s` is what the pair is sending at now (the base a first slow-down scales).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        ip: IpAddr,
        site: &Arc<str>,
        code: Option<u16>,
        enhanced: Option<&str>,
        text: &str,
        rate_per_s: f64,
        now: SystemTime,
    ) -> Option<BackoffAction> {
        let action = self.rules.matching(code, enhanced, text)?;
        let pair = self.pairs.entry((ip, site.clone())).or_insert_with(|| Pair {
            state: BackoffState::default(),
            base_per_s: rate_per_s.max(MIN_BASE_PER_S),
            pace: None,
        });
        pair.state.apply(action, now, &self.rules);
        Some(action)
    }

    /// May `ip` send to `site` now (warm-up time `now`)? `Err` says until when (real time)
    /// and why. A pair that has recovered is forgotten.
    pub fn check(
        &mut self,
        ip: IpAddr,
        site: &Arc<str>,
        now: SystemTime,
        to_real: impl Fn(SystemTime) -> Instant,
    ) -> Result<(), (Instant, WaitReason)> {
        let key = (ip, site.clone());
        let Some(pair) = self.pairs.get_mut(&key) else {
            return Ok(());
        };
        if let Some(until) = pair.state.suspended_until(now) {
            return Err((to_real(until), WaitReason::Suspended));
        }
        let factor = pair.state.factor_at(now, &self.rules);
        if factor >= 1.0 {
            self.pairs.remove(&key);
            return Ok(());
        }
        let limiter = match &pair.pace {
            Some((f, limiter)) if (*f - factor).abs() < f64::EPSILON => limiter,
            _ => {
                let rate = per_hour(pair.base_per_s * factor);
                &pair.pace.insert((factor, SendLimiter::new(rate))).1
            }
        };
        limiter
            .try_acquire()
            .map_err(|wait| (Instant::now() + wait, WaitReason::Backoff))
    }

    /// The pair's current rate factor (1.0 when not slowed) and suspension.
    pub fn state(&self, ip: IpAddr, site: &Arc<str>, now: SystemTime) -> (f64, Option<SystemTime>) {
        match self.pairs.get(&(ip, site.clone())) {
            None => (1.0, None),
            Some(p) => (p.state.factor_at(now, &self.rules), p.state.suspended_until(now)),
        }
    }
}

/// A rate in messages per second as a whole number per hour (at least one).
fn per_hour(per_s: f64) -> Rate {
    let n = (per_s * 3600.0).round().clamp(1.0, f64::from(u32::MAX)) as u32;
    Rate::per_hour(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

/// Counts a site's sends to measure its recent rate: two 10-second windows.
#[derive(Clone, Copy, Debug)]
pub struct RateMeter {
    start: Instant,
    current: u32,
    previous: u32,
}

/// The meter's window.
const WINDOW: Duration = Duration::from_secs(10);

impl Default for RateMeter {
    fn default() -> RateMeter {
        RateMeter {
            start: Instant::now(),
            current: 0,
            previous: 0,
        }
    }
}

impl RateMeter {
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= WINDOW * 2 {
            (self.start, self.current, self.previous) = (now, 0, 0);
        } else if elapsed >= WINDOW {
            (self.start, self.previous, self.current) = (self.start + WINDOW, self.current, 0);
        }
    }

    /// Counts one send.
    pub fn tick(&mut self, now: Instant) {
        self.roll(now);
        self.current = self.current.saturating_add(1);
    }

    /// Sends per second over the last 10-20 seconds.
    pub fn per_second(&mut self, now: Instant) -> f64 {
        self.roll(now);
        let span = WINDOW + now.saturating_duration_since(self.start);
        f64::from(self.previous + self.current) / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BackoffRules {
        BackoffRules::default()
    }

    #[test]
    fn a_throttling_reply_slows_only_its_ip_and_site() {
        let mut b = SiteBackoff::new(rules());
        let (slow, fast): (Arc<str>, Arc<str>) = (Arc::from("mx.slow"), Arc::from("mx.fast"));
        let ip: IpAddr = [127, 0, 0, 2].into();
        let other_ip: IpAddr = [127, 0, 0, 3].into();
        let now = SystemTime::now();
        let real = |_| Instant::now();
        assert!(b.observe(ip, &slow, Some(250), None, "OK", 100.0, now).is_none());
        assert!(b.is_empty());
        let action = b.observe(ip, &slow, Some(421), Some("4.7.0"), "Try again later", 100.0, now);
        assert!(matches!(action, Some(BackoffAction::Slow { .. })), "{action:?}");
        assert!(b.check(ip, &fast, now, real).is_ok());
        assert!(b.check(other_ip, &slow, now, real).is_ok());
        // Slowed to half of 100/s: about 50 of 100 immediate asks pass (one second's burst).
        let passed = (0..100).filter(|_| b.check(ip, &slow, now, real).is_ok()).count();
        assert!((40..=60).contains(&passed), "{passed}");
        let (factor, suspended) = b.state(ip, &slow, now);
        assert!((factor - 0.5).abs() < 1e-9 && suspended.is_none(), "{factor}");
        // Recovered after hold + quiet periods: forgotten.
        let later = now + Duration::from_secs(24 * 3600);
        assert!(b.check(ip, &slow, later, real).is_ok());
        assert!(b.is_empty());
    }

    #[test]
    fn a_suspension_holds_the_pair_until_it_ends() {
        let mut b = SiteBackoff::new(rules());
        let site: Arc<str> = Arc::from("mx.yahoo");
        let ip: IpAddr = [127, 0, 0, 2].into();
        let now = SystemTime::now();
        b.observe(
            ip,
            &site,
            Some(421),
            Some("4.7.0"),
            "[TSS09] All messages from ip deferred",
            5.0,
            now,
        );
        let until = now + Duration::from_secs(3600);
        let got = b.check(ip, &site, now, |t| {
            assert_eq!(t, until);
            Instant::now()
        });
        assert!(matches!(got, Err((_, WaitReason::Suspended))), "{got:?}");
    }

    #[test]
    fn the_meter_measures_recent_sends() {
        let mut m = RateMeter::default();
        let t0 = m.start;
        for i in 0..100 {
            m.tick(t0 + Duration::from_millis(i * 100));
        }
        let r = m.per_second(t0 + Duration::from_secs(10));
        assert!((4.0..=10.0).contains(&r), "{r}");
        assert!(m.per_second(t0 + Duration::from_secs(60)) < 1e-9);
    }
}
