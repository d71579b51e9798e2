//! One time source for the calendar (UTC days and hours) and for the governor limiters, so
//! tests can compress time: the clock shows whatever wall-clock time it was last told.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// The warm-up calendar of a run: wall-clock time in production; in a rehearsal, a clock
/// that starts at a chosen time and runs `speed` times faster than real time. Budgets see its
/// time; the scheduler turns the times budgets name back into real instants to sleep until.
#[derive(Clone, Copy, Debug)]
pub struct WarmupClock {
    real_origin: Instant,
    origin: SystemTime,
    speed: f64,
}

impl WarmupClock {
    /// A clock showing `start` (now when `None`) at this instant, running `speed` times real
    /// time (values that are not finite and positive mean 1).
    pub fn new(start: Option<SystemTime>, speed: f64) -> WarmupClock {
        WarmupClock::anchored(start, speed, None)
    }

    /// Like [`WarmupClock::new`], but the clock shows `start` at the wall-clock time `anchor`
    /// (not at this instant), so several processes rehearsing together share one clock.
    pub fn anchored(start: Option<SystemTime>, speed: f64, anchor: Option<SystemTime>) -> WarmupClock {
        let now = Instant::now();
        let real_origin = match anchor.map(|a| SystemTime::now().duration_since(a)) {
            Some(Ok(since)) => now.checked_sub(since).unwrap_or(now),
            Some(Err(ahead)) => now + ahead.duration(),
            None => now,
        };
        WarmupClock {
            real_origin,
            origin: start.unwrap_or_else(SystemTime::now),
            speed: if speed.is_finite() && speed > 0.0 { speed } else { 1.0 },
        }
    }

    /// Wall-clock time, at real speed.
    pub fn real() -> WarmupClock {
        WarmupClock::new(None, 1.0)
    }

    /// How many times faster than real time the clock runs.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The warm-up time at a real instant.
    pub fn at(&self, instant: Instant) -> SystemTime {
        match instant.checked_duration_since(self.real_origin) {
            Some(real) => self.origin + real.mul_f64(self.speed),
            None => self.origin - self.real_origin.duration_since(instant).mul_f64(self.speed),
        }
    }

    /// The warm-up time now.
    pub fn now(&self) -> SystemTime {
        self.at(Instant::now())
    }

    /// The real instant at which the clock shows `t` (now or later for a time already past).
    pub fn instant_of(&self, t: SystemTime) -> Instant {
        let ahead = t.duration_since(self.now()).unwrap_or_default();
        Instant::now() + self.real_duration(ahead)
    }

    /// The real time a warm-up duration takes.
    pub fn real_duration(&self, d: Duration) -> Duration {
        Duration::try_from_secs_f64(d.as_secs_f64() / self.speed).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rehearsal_clock_runs_fast_from_its_start() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = WarmupClock::new(Some(start), 3600.0);
        let at = Instant::now() + Duration::from_millis(500);
        let shown = clock.at(at).duration_since(start).unwrap_or_default();
        assert!(shown >= Duration::from_secs(1800), "{shown:?}");
        assert!(shown < Duration::from_secs(1800 + 3600), "{shown:?}");
        assert_eq!(clock.real_duration(Duration::from_secs(7200)), Duration::from_secs(2));
        let in_an_hour = clock.now() + Duration::from_secs(3600);
        let real = clock.instant_of(in_an_hour).saturating_duration_since(Instant::now());
        assert!(real <= Duration::from_secs(1), "{real:?}");
        assert!(clock.instant_of(start) <= Instant::now());
        assert!((WarmupClock::new(None, f64::NAN).speed() - 1.0).abs() < f64::EPSILON);

        // Two clocks anchored at the same wall-clock time agree, whenever they were made.
        let anchor = SystemTime::now() - Duration::from_secs(2);
        let a = WarmupClock::anchored(Some(start), 3600.0, Some(anchor));
        std::thread::sleep(Duration::from_millis(20));
        let b = WarmupClock::anchored(Some(start), 3600.0, Some(anchor));
        let at = Instant::now();
        let skew = a.at(at).duration_since(b.at(at)).unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(10), "{skew:?}");
        let shown = a.at(at).duration_since(start).unwrap_or_default();
        assert!(shown >= Duration::from_secs(7200), "{shown:?}");
    }
}
