//! Exponential backoff (100 ms doubling to 5 s) and a sleep that a stop flag can cut short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// First delay after a failure.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);

/// The delay before the next attempt: 100 ms, 200 ms, ... up to 5 s; [`Backoff::reset`] on success.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { next: MIN_DELAY }
    }

    /// The delay to wait now; doubles the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = MIN_DELAY;
    }
}

/// Sleeps for `delay` in steps of at most 20 ms; returns false early if `stop` is set.
pub(crate) fn sleep_unless(stop: &AtomicBool, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), MIN_DELAY);
    }
}
