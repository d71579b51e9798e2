//! Source-IP rotation: smooth weighted round robin (each IP gets its weight's share, spread
//! evenly rather than in bursts), with an optional rate per IP. An IP at its rate is skipped
//! for the next one in rotation that has budget; when none has, the caller is told how long to
//! wait.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use volley_engine::SourceIp;
use volley_warmup::{Rate, SendLimiter, WeightedTurns};

struct Slot<C: Clock> {
    ip: SourceIp,
    limiter: Option<SendLimiter<C>>,
}

/// Why no IP could take a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused<E> {
    /// Every IP is at its rate: the shortest wait.
    Rate(Duration),
    /// At least one IP refused for another reason (the earliest of those refusals), others
    /// possibly for their rate (the shortest of those waits).
    Other {
        /// The shortest rate wait, if any IP was at its rate.
        rate: Option<Duration>,
        /// The earliest refusal.
        earliest: E,
    },
}

/// Picks source IPs in proportion to their weights, within their rates.
pub struct IpRotation<C: Clock = DefaultClock> {
    slots: Vec<Slot<C>>,
    turns: WeightedTurns,
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
        let mut weights = Vec::new();
        let slots: Vec<_> = ips
            .into_iter()
            .filter(|(_, w, _)| *w > 0)
            .map(|(ip, w, rate)| {
                weights.push(w);
                Slot {
                    ip,
                    limiter: rate.map(|r| SendLimiter::with_clock(r, clock.clone())),
                }
            })
            .collect();
        if slots.is_empty() {
            None
        } else {
            Some(IpRotation {
                slots,
                turns: WeightedTurns::new(weights),
            })
        }
    }

    /// How many IPs rotate.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no IP rotates (never: a rotation is built with at least one).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The next source IP with budget, or how long until one has.
    pub fn next_ip(&mut self) -> Result<&SourceIp, Duration> {
        self.next_ip_with(|_| Ok::<(), Duration>(()))
            .map_err(|refused| match refused {
                Refused::Rate(wait) | Refused::Other { rate: Some(wait), .. } => wait,
                Refused::Other { rate: None, .. } => Duration::MAX,
            })
    }

    /// The next source IP within its rate that `accept` takes (e.g. one with warm-up budget
    /// for the message's provider). The IP whose turn it is comes first; when it cannot take
    /// the message, every other IP is tried in order (overflow).
    pub fn next_ip_with<E: Ord>(
        &mut self,
        mut accept: impl FnMut(&SourceIp) -> Result<(), E>,
    ) -> Result<&SourceIp, Refused<E>> {
        let first = self.turns.next_turn();
        let n = self.slots.len();
        let mut rate_wait: Option<Duration> = None;
        let mut refused: Option<E> = None;
        for k in 0..n {
            let i = (first + k) % n;
            let slot = &self.slots[i];
            // The IP's own rate first: a token spent on an IP whose budget then refuses is only
            // a little unused rate, while budget taken is counted against the day.
            if let Err(w) = slot.limiter.as_ref().map_or(Ok(()), SendLimiter::try_acquire) {
                rate_wait = Some(rate_wait.map_or(w, |r| r.min(w)));
                continue;
            }
            match accept(&slot.ip) {
                Ok(()) => return Ok(&self.slots[i].ip),
                Err(e) => {
                    refused = Some(match refused {
                        Some(r) if r <= e => r,
                        _ => e,
                    })
                }
            }
        }
        Err(match refused {
            None => Refused::Rate(rate_wait.unwrap_or(Duration::MAX)),
            Some(earliest) => Refused::Other {
                rate: rate_wait,
                earliest,
            },
        })
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

    #[test]
    fn a_refusing_ip_overflows_to_every_other_ip_and_the_earliest_refusal_is_named() {
        let mut r = IpRotation::new([(ip(2), 1, None), (ip(3), 5, None), (ip(4), 1, None)]).expect("rotation");
        // Only .4 accepts: it is found whoever's turn it is (weights would rarely pick it).
        for _ in 0..10 {
            let got = r.next_ip_with(|s| {
                if last_octet(s.ip) == 4 {
                    Ok(())
                } else {
                    Err(last_octet(s.ip))
                }
            });
            assert_eq!(got.map(|s| last_octet(s.ip)), Ok(4));
        }
        let none = r.next_ip_with(|s| Err(10 - last_octet(s.ip)));
        assert_eq!(
            none.err(),
            Some(Refused::Other {
                rate: None,
                earliest: 6
            })
        );

        let clock = FakeRelativeClock::default();
        let slow: Rate = "1/s".parse().expect("rate");
        let mut r = IpRotation::with_clock([(ip(2), 1, Some(slow)), (ip(3), 1, None)], clock).expect("rotation");
        assert!(r.next_ip_with(|_| Ok::<(), u8>(())).is_ok());
        assert!(r.next_ip_with(|_| Ok::<(), u8>(())).is_ok());
        // .2 is at its rate, .3 refuses: both reasons come back.
        match r.next_ip_with(|s| if last_octet(s.ip) == 3 { Err(1u8) } else { Ok(()) }) {
            Err(Refused::Other {
                rate: Some(w),
                earliest: 1,
            }) => assert!(w <= Duration::from_secs(1)),
            other => panic!("{:?}", other.map(|s| s.ip)),
        }
    }
}
