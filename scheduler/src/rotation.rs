//! Source-IP rotation: smooth weighted round robin (each IP gets its weight's share, spread
//! evenly rather than in bursts), with an optional rate per IP. An IP at its rate is skipped
//! for the next one in rotation that has budget; when none has, the caller is told how long to
//! wait.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use volley_engine::SourceIp;
use volley_warmup::{Rate, SendLimiter};

struct Slot<C: Clock> {
    ip: SourceIp,
    weight: i64,
    current: i64,
    limiter: Option<SendLimiter<C>>,
}

/// Picks source IPs in proportion to their weights, within their rates.
pub struct IpRotation<C: Clock = DefaultClock> {
    slots: Vec<Slot<C>>,
    total: i64,
}

impl IpRotation<DefaultClock> {
    /// A rotation over `(ip, weight, rate)` on the system clock; IPs with weight 0 are left out.
    /// Returns `None` when no IP has a positive weight.
    pub fn new(ips: impl IntoIterator<Item = (SourceIp, u32, Option<Rate>)>) -> Option<IpRotation> {
        IpRotation::with_clock(ips, DefaultClock::default())
    }
}

impl<C: Clock + Clone> IpRotation<C> {
    /// Like [`IpRotation::new`] on a given clock (tests use a fake one).
    pub fn with_clock(ips: impl IntoIterator<Item = (SourceIp, u32, Option<Rate>)>, clock: C) -> Option<IpRotation<C>> {
        let slots: Vec<_> = ips
            .into_iter()
            .filter(|(_, w, _)| *w > 0)
            .map(|(ip, w, rate)| Slot {
                ip,
                weight: i64::from(w),
                current: 0,
                limiter: rate.map(|r| SendLimiter::with_clock(r, clock.clone())),
            })
            .collect();
        let total = slots.iter().map(|s| s.weight).sum();
        if slots.is_empty() {
            None
        } else {
            Some(IpRotation { slots, total })
        }
    }

    fn next_slot(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.slots.len() {
            self.slots[i].current += self.slots[i].weight;
            if self.slots[i].current > self.slots[best].current {
                best = i;
            }
        }
        self.slots[best].current -= self.total;
        best
    }

    /// The next source IP with budget, or how long until one has.
    pub fn next_ip(&mut self) -> Result<&SourceIp, Duration> {
        let mut wait = Duration::MAX;
        for _ in 0..self.slots.len() {
            let i = self.next_slot();
            match self.slots[i].limiter.as_ref().map_or(Ok(()), SendLimiter::try_acquire) {
                Ok(()) => return Ok(&self.slots[i].ip),
                Err(w) => wait = wait.min(w),
            }
        }
        Err(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::net::IpAddr;
    use std::sync::Arc;

    fn ip(last: u8) -> SourceIp {
        SourceIp {
            ip: [127, 0, 0, last].into(),
            ehlo_name: Arc::from("x"),
        }
    }

    fn last_octet(ip: IpAddr) -> u8 {
        match ip {
            IpAddr::V4(v) => v.octets()[3],
            IpAddr::V6(_) => 0,
        }
    }

    #[test]
    fn weights_are_respected_and_spread() {
        let mut r = IpRotation::new([(ip(2), 1, None), (ip(3), 3, None), (ip(4), 0, None)]).expect("rotation");
        let picks: Vec<u8> = (0..8)
            .map(|_| r.next_ip().map(|s| last_octet(s.ip)).unwrap_or(0))
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 2);
        assert_eq!(picks.iter().filter(|&&p| p == 3).count(), 6);
        assert!(!picks.contains(&4));
        assert!(
            !picks.windows(4).any(|w| w.iter().all(|&p| p == 3)),
            "smooth: {picks:?}"
        );
        assert!(IpRotation::new([(ip(2), 0, None)]).is_none());
    }

    #[test]
    fn a_limited_ip_spills_to_the_others_and_all_limited_means_wait() {
        let clock = FakeRelativeClock::default();
        let slow: Rate = "1/s".parse().expect("rate");
        let mut r =
            IpRotation::with_clock([(ip(2), 1, Some(slow)), (ip(3), 1, Some(slow))], clock.clone()).expect("rotation");
        let a = r.next_ip().map(|s| last_octet(s.ip));
        let b = r.next_ip().map(|s| last_octet(s.ip));
        let mut got = [a, b];
        got.sort();
        assert_eq!(got, [Ok(2), Ok(3)], "each IP's single token used once");
        let wait = r.next_ip().err().unwrap_or_default();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        clock.advance(wait);
        assert!(r.next_ip().is_ok());

        // An unlimited IP takes everything a limited one cannot.
        let mut r = IpRotation::with_clock([(ip(2), 1, Some(slow)), (ip(3), 1, None)], clock).expect("rotation");
        let picks: Vec<u8> = (0..10)
            .map(|_| r.next_ip().map(|s| last_octet(s.ip)).unwrap_or(0))
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 2).count(), 1, "{picks:?}");
        assert_eq!(picks.iter().filter(|&&p| p == 3).count(), 9, "{picks:?}");
    }
}
