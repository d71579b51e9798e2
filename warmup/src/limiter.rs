//! A GCRA rate limiter (governor) built from a [`Rate`]: it answers "send now" or "wait this
//! long", and leaves the waiting to the caller's runtime (so tests can use paused time).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::rate::Rate;

/// Limits one sender (a source IP, later a (source IP, provider) pair) to a rate.
pub struct SendLimiter<C: Clock = DefaultClock> {
    rate: Rate,
    clock: C,
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> std::fmt::Debug for SendLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendLimiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl SendLimiter<DefaultClock> {
    /// A limiter on the system's monotonic clock. The burst is one second's worth of the rate
    /// (at least 1), so a slow rate is not sent in a lump at start.
    pub fn new(rate: Rate) -> SendLimiter<DefaultClock> {
        SendLimiter::with_clock(rate, DefaultClock::default())
    }
}

impl<C: Clock + Clone> SendLimiter<C> {
    /// A limiter on a given clock (tests use governor's fake clock).
    pub fn with_clock(rate: Rate, clock: C) -> SendLimiter<C> {
        let burst = NonZeroU32::new(rate.per_second().floor().max(1.0) as u32).unwrap_or(NonZeroU32::MIN);
        SendLimiter::with_burst(rate, burst, clock)
    }

    /// A limiter on a given clock that lets `burst` messages through at once after an idle
    /// period, then one per [`Rate::interval`].
    pub fn with_burst(rate: Rate, burst: NonZeroU32, clock: C) -> SendLimiter<C> {
        let quota = Quota::with_period(rate.interval().max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
        SendLimiter { rate, clock, limiter }
    }

    /// Takes one message's worth of the budget if available now; otherwise says how long to
    /// wait before asking again.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn delivers_the_configured_rate_over_simulated_time() {
        let clock = FakeRelativeClock::default();
        let limiter = SendLimiter::with_clock("100/s".parse().expect("rate"), clock.clone());
        // Simulate 60 s in 1 ms steps, sending whenever allowed.
        let mut sent = 0u32;
        for _ in 0..60_000 {
            while limiter.try_acquire().is_ok() {
                sent += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        // 100/s for 60 s plus the initial burst of 100.
        let expected = 100.0 * 60.0 + 100.0;
        assert!((f64::from(sent) - expected).abs() / expected < 0.02, "sent {sent}");
    }

    #[test]
    fn slow_rates_do_not_burst_and_say_how_long_to_wait() {
        let clock = FakeRelativeClock::default();
        let limiter = SendLimiter::with_clock("60/m".parse().expect("rate"), clock.clone());
        assert!(limiter.try_acquire().is_ok());
        let wait = limiter.try_acquire().err().unwrap_or_default();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        clock.advance(wait);
        assert!(limiter.try_acquire().is_ok());
    }
}
