//! Adaptive backoff per (source IP, MX site): a throttling reply ("421 4.7.0 try again later",
//! Yahoo's TSS04, Microsoft's S775, "too many connections", a 5.7.x policy block…) matched by
//! the backoff rules slows that IP down at that site only — to a factor of the rate it was
//! sending there — or suspends it there for a while; the pair recovers after a quiet period.
//! Other sites, and other IPs at the same site, are not touched.
//!
//! Rule durations (hold, quiet) run on the warm-up clock; the pacing of a slowed pair on real
//! time, from the rate the pair was sending at when it was first slowed, as counted here
//! ([`SiteBackoff::sent`]: every campaign of the process, so a cluster node's new chunk does
//! not look idle). A pair slowed before it sent anything has no rate to scale: it is not paced
//! until a later reply finds one (suspensions apply regardless). A refusal seen before the
//! first message — another client on the same IP holding the receiver's connections — must
//! not pace the pair at one message a minute for the rule's hold.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use volley_warmup::backoff::BackoffState;
use volley_warmup::{BackoffAction, BackoffRules, Rate, SendLimiter, WaitReason};

/// The slowest base rate a slowed pair is paced from (one message a minute).
const MIN_BASE_PER_S: f64 = 1.0 / 60.0;

/// Pairs whose send meters are kept before idle ones are dropped.
const METERS_KEPT: usize = 4096;

struct Pair {
    state: BackoffState,
    /// The rate the pair was sending at when first slowed (messages per second); `None`
    /// while it had sent nothing to measure.
    base_per_s: Option<f64>,
    /// The pacing limiter and the factor it was built for.
    pace: Option<(f64, SendLimiter)>,
}

/// Backoff state of the (IP, site) pairs that got a throttling reply.
pub struct SiteBackoff {
    rules: BackoffRules,
    pairs: HashMap<(IpAddr, Arc<str>), Pair>,
    /// What each pair sends, for the base of a slow-down.
    sent: HashMap<(IpAddr, Arc<str>), RateMeter>,
}

impl SiteBackoff {
    /// No pair slowed yet.
    pub fn new(rules: BackoffRules) -> SiteBackoff {
        SiteBackoff {
            rules,
            pairs: HashMap::new(),
            sent: HashMap::new(),
        }
    }

    /// Counts a message `ip` hands on for `site`.
    pub fn sent(&mut self, ip: IpAddr, site: &Arc<str>, now: Instant) {
        if self.sent.len() >= METERS_KEPT && !self.sent.contains_key(&(ip, site.clone())) {
            self.sent.retain(|_, m| m.per_second(now) > 0.0);
        }
        self.sent.entry((ip, site.clone())).or_default().tick(now);
    }

    /// What `ip` has been sending to `site` lately (messages per second; 0: nothing).
    pub fn rate(&mut self, ip: IpAddr, site: &Arc<str>, now: Instant) -> f64 {
        self.sent
            .get_mut(&(ip, site.clone()))
            .map_or(0.0, |m| m.per_second(now))
    }

    /// Whether any pair is slowed or suspended (the common case, none, costs one check).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Feeds a reply: when a rule matches, applies its action to the pair and returns it.
    /// `rate_per_s` is what the pair is sending at now (the base a first slow-down scales;
    /// 0: nothing measured, no pacing until a later reply finds a rate).
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
        let measured = (rate_per_s > 0.0).then(|| rate_per_s.max(MIN_BASE_PER_S));
        let pair = self.pairs.entry((ip, site.clone())).or_insert_with(|| Pair {
            state: BackoffState::default(),
            base_per_s: measured,
            pace: None,
        });
        if pair.base_per_s.is_none() {
            pair.base_per_s = measured;
        }
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
        // Slowed before it sent anything: no rate to scale yet.
        let Some(base) = pair.base_per_s else {
            return Ok(());
        };
        let limiter = match &pair.pace {
            Some((f, limiter)) if (*f - factor).abs() < f64::EPSILON => limiter,
            _ => {
                let rate = per_hour(base * factor);
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
    /// When the meter began counting (again, after an idle reset): a younger meter has seen
    /// only that long of sending.
    born: Instant,
    current: u32,
    previous: u32,
}

/// The meter's window.
const WINDOW: Duration = Duration::from_secs(10);

/// The shortest span a rate is measured over (a burst in the first milliseconds is not a
/// rate of thousands a second).
const MIN_SPAN: Duration = Duration::from_secs(1);

impl Default for RateMeter {
    fn default() -> RateMeter {
        let now = Instant::now();
        RateMeter {
            start: now,
            born: now,
            current: 0,
            previous: 0,
        }
    }
}

impl RateMeter {
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= WINDOW * 2 {
            (self.start, self.born, self.current, self.previous) = (now, now, 0, 0);
        } else if elapsed >= WINDOW {
            (self.start, self.previous, self.current) = (self.start + WINDOW, self.current, 0);
        }
    }

    /// Counts one send.
    pub fn tick(&mut self, now: Instant) {
        self.roll(now);
        self.current = self.current.saturating_add(1);
    }

    /// Sends per second over the last 10-20 seconds, or since the meter began counting when
    /// that is shorter (at least [`MIN_SPAN`]). Regression: a pair slowed in its first
    /// seconds was paced from its sends divided by 10 s — 20 messages in its first 0.2 s made
    /// a base of 2 a second, not 20 — and a test run whose policy blocks came early waited
    /// minutes for its paced retries.
    pub fn per_second(&mut self, now: Instant) -> f64 {
        self.roll(now);
        let window = WINDOW + now.saturating_duration_since(self.start);
        let span = window.min(now.saturating_duration_since(self.born)).max(MIN_SPAN);
        f64::from(self.previous + self.current) / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BackoffRules {
        BackoffRules::default()
    }

    /// Regression: "421 too many connections from <ip>" at the banner before the pair sent
    /// anything (another node on the same IP held the receiver's connections) paced it at half
    /// of one message a minute for the rule's hold — a cluster node stalled for 15 minutes.
    /// With nothing measured there is no pacing; the first reply that finds a rate sets it.
    #[test]
    fn a_slow_down_before_anything_was_sent_does_not_pace_until_a_rate_is_measured() {
        let mut b = SiteBackoff::new(rules());
        let site: Arc<str> = Arc::from("mx.capped");
        let ip: IpAddr = [127, 0, 0, 2].into();
        let now = SystemTime::now();
        let real = |_| Instant::now();
        let text = "Error: too many connections from 127.0.0.2";
        assert_eq!(b.rate(ip, &site, Instant::now()), 0.0);
        for _ in 0..25 {
            let rate = b.rate(ip, &site, Instant::now());
            let action = b.observe(ip, &site, Some(421), None, text, rate, now);
            assert!(matches!(action, Some(BackoffAction::Slow { .. })), "{action:?}");
        }
        assert!(!b.is_empty(), "the pair is slowed");
        assert!(
            (0..1000).all(|_| b.check(ip, &site, now, real).is_ok()),
            "nothing measured: not paced"
        );
        // Sending goes on; the next complaint finds 200 sends in the meter's window.
        let t = Instant::now();
        for _ in 0..200 {
            b.sent(ip, &site, t);
        }
        let rate = b.rate(ip, &site, t);
        assert!(rate > 5.0, "{rate}");
        b.observe(ip, &site, Some(421), None, text, rate, now);
        let passed = (0..1000).filter(|_| b.check(ip, &site, now, real).is_ok()).count();
        assert!(passed < 1000, "paced from the measured rate: {passed} of 1000 passed");
    }

    /// The meters are per (IP, site); idle ones are dropped once many pairs were seen.
    #[test]
    fn sends_are_counted_per_ip_and_site_and_idle_meters_are_dropped() {
        let mut b = SiteBackoff::new(rules());
        let (a, c): (Arc<str>, Arc<str>) = (Arc::from("mx.a"), Arc::from("mx.c"));
        let ip: IpAddr = [127, 0, 0, 2].into();
        let t = Instant::now();
        for _ in 0..10 {
            b.sent(ip, &a, t);
        }
        assert!(b.rate(ip, &a, t) > 0.0 && b.rate(ip, &c, t) == 0.0);
        assert_eq!(b.rate([127, 0, 0, 3].into(), &a, t), 0.0);
        // Long idle: many new pairs push the idle meter out.
        let later = t + WINDOW * 3;
        for i in 0..METERS_KEPT {
            b.sent(ip, &Arc::from(format!("mx{i}")), later);
        }
        assert!(b.sent.len() <= METERS_KEPT && !b.sent.contains_key(&(ip, a.clone())));
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

    #[test]
    fn a_young_meter_measures_over_its_own_age() {
        let ms = Duration::from_millis;
        let mut m = RateMeter::default();
        let t0 = m.start;
        for i in 0..20 {
            m.tick(t0 + ms(i * 10));
        }
        // 20 sends in 0.2 s: over the 1 s floor, 20 a second (over a 10 s window it was 2).
        let r = m.per_second(t0 + ms(200));
        assert!((19.0..=21.0).contains(&r), "{r}");
        let r = m.per_second(t0 + ms(4000));
        assert!((4.9..=5.1).contains(&r), "20 over its 4 s: {r}");
        // Idle past both windows, then a new burst: measured from its restart.
        let later = t0 + Duration::from_secs(60);
        for i in 0..30 {
            m.tick(later + ms(i * 10));
        }
        let r = m.per_second(later + ms(1500));
        assert!((19.0..=21.0).contains(&r), "30 over 1.5 s: {r}");
    }
}
