//! When a route's connections ended, sans-IO: a receiver counts a connection against its cap
//! until it notices the close (Postfix's `anvil` hears of it when the `smtpd` process reports
//! the disconnect; a loaded server later still), so a new connection refused right after one
//! of ours ended may have been refused for that one. Counting the recent ends keeps such a
//! refusal from teaching a limit below the receiver's cap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Ends older than this are forgotten (no connection attempt takes that long to be refused).
const KEEP: Duration = Duration::from_secs(30);
/// At least how long before a refused attempt began an end may still have been counted.
pub(crate) const NOTICE: Duration = Duration::from_millis(500);
/// Most ends remembered; a route closing connections faster than this is not at a cap anyway.
const MAX: usize = 256;

/// The instants at which a route's connections ended, oldest first.
#[derive(Debug, Default)]
pub(crate) struct RecentCloses {
    at: VecDeque<Instant>,
}

impl RecentCloses {
    /// A connection of the route ended at `now`.
    pub fn record(&mut self, now: Instant) {
        while self
            .at
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > KEEP)
        {
            self.at.pop_front();
        }
        if self.at.len() == MAX {
            self.at.pop_front();
        }
        self.at.push_back(now);
    }

    /// Connections that ended at `since` or later.
    pub fn since(&self, since: Instant) -> usize {
        self.at.iter().filter(|t| **t >= since).count()
    }

    /// The ends a receiver may still count when it refused a connection attempt that began
    /// at `began` and was refused at `now`: those during the attempt, and those within as long
    /// again before it, or within [`NOTICE`] when that is longer. A receiver notices an end
    /// about one trip after it (the attempt took at least one trip); a busy one, or one that
    /// hears of it from another process, later.
    pub fn counted_at_refusal(&self, began: Instant, now: Instant) -> usize {
        let back = now.saturating_duration_since(began).max(NOTICE);
        self.since(began.checked_sub(back).unwrap_or(began))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_counts_the_ends_during_the_attempt_and_shortly_before_it() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut closes = RecentCloses::default();
        for at in [0, 900, 1450, 1520] {
            closes.record(t0 + ms(at));
        }
        // An attempt from 1,500 ms to 1,530 ms: the ends from 1,000 ms on count.
        let began = t0 + ms(1500);
        assert_eq!(closes.counted_at_refusal(began, began + ms(30)), 2);
        // A slow attempt (700 ms) reaches back as far as it took.
        assert_eq!(closes.counted_at_refusal(began, began + ms(700)), 3);
        // Long after: none.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(closes.counted_at_refusal(later, later + ms(30)), 0);
    }

    #[test]
    fn old_ends_are_forgotten_and_the_memory_is_bounded() {
        let t0 = Instant::now();
        let mut closes = RecentCloses::default();
        for i in 0..1000u64 {
            closes.record(t0 + Duration::from_millis(i));
        }
        assert_eq!(closes.at.len(), MAX);
        closes.record(t0 + KEEP + Duration::from_secs(2));
        assert_eq!(closes.at.len(), 1, "ends older than KEEP are dropped");
    }
}
