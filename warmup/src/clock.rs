//! One time source for the calendar (UTC days and hours) and for the governor limiters, so
//! tests can compress time: the clock shows whatever wall-clock time it was last told.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A settable wall clock, shared by its clones. As a governor [`governor::clock::Clock`] it
/// reads as the time since the Unix epoch, and it never goes backwards.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock showing `t`.
    pub fn at(t: SystemTime) -> ManualClock {
        let clock = ManualClock::default();
        clock.set(t);
        clock
    }

    /// Moves the clock to `t`, unless it already shows a later time.
    pub fn set(&self, t: SystemTime) {
        let nanos = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.nanos_since_epoch.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.set(self.now_system() + by);
    }

    /// The time the clock shows.
    pub fn now_system(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::Acquire))
    }
}

impl governor::clock::Clock for ManualClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos_since_epoch.load(Ordering::Acquire))
    }
}
