//! How many connections one (source IP, MX host) route may have open: a limit learned from what
//! the receiver allows, sans-IO (the caller passes the clock).
//!
//! In the spirit of Postfix's destination concurrency feedback (`qmgr`'s window, grown by one
//! per window's worth of deliveries) but keyed by source IP, because receivers cap connections
//! per client address:
//! - a route starts at `initial` connections and grows by one after `limit` successful
//!   deliveries, only while every allowed connection is busy (demand-limited), up to `cap`;
//! - a new connection refused (421 at the banner, "too many connections", a reset at the
//!   greeting) while others to the host are open means the receiver's cap is reached: the
//!   limit drops to what is open and holds there; from then on it probes one connection
//!   higher once per `probe_interval` of successful sending;
//! - connections follow the queue: another is opened only when the backlog per open connection
//!   is at least [`BACKLOG_PER_CONNECTION`] deliveries, so a destination with a few queued
//!   messages gets one or two connections, reused.

use std::time::{Duration, Instant};

/// Queued deliveries per connection already running before another connection is opened.
pub const BACKLOG_PER_CONNECTION: usize = 10;

/// The learned connection limit of one route and how it got there.
#[derive(Clone, Debug)]
pub(crate) struct Concurrency {
    limit: usize,
    cap: usize,
    probe_interval: Duration,
    /// Successful deliveries since the limit last changed (while demand-limited).
    successes: usize,
    /// Set by a refusal: the limit was learned from the receiver; growth waits until then.
    held_until: Option<Instant>,
    refusals: u64,
    /// Connections open when the last refusal came.
    open_at_refusal: usize,
    /// A ceiling set from outside the process: this node's share of a receiver's limit that
    /// several nodes sending from the same source IP learned together.
    outside: Option<usize>,
}

impl Concurrency {
    /// A route that may open `initial` connections, at most `cap` ever.
    pub fn new(initial: usize, cap: usize, probe_interval: Duration) -> Concurrency {
        let cap = cap.max(1);
        Concurrency {
            limit: initial.clamp(1, cap),
            cap,
            probe_interval,
            successes: 0,
            held_until: None,
            refusals: 0,
            open_at_refusal: 0,
            outside: None,
        }
    }

    /// Connections the route may have open now.
    pub fn limit(&self) -> usize {
        self.limit.min(self.ceiling())
    }

    /// The configured ceiling, lowered by an outside one.
    fn ceiling(&self) -> usize {
        self.outside.map_or(self.cap, |o| o.clamp(1, self.cap))
    }

    /// Sets (or clears) the ceiling given from outside (a cluster's share of the receiver's
    /// limit for this source IP).
    pub fn set_outside(&mut self, cap: Option<usize>) {
        self.outside = cap;
    }

    /// The ceiling given from outside, if any.
    pub fn outside(&self) -> Option<usize> {
        self.outside
    }

    /// The configured (or warm-up) ceiling.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Refused connections seen on the route.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// Connections that were open when the last refusal came (0 before any).
    pub fn open_at_refusal(&self) -> usize {
        self.open_at_refusal
    }

    /// Whether the limit was learned from a refusal (the receiver's cap), not only grown.
    pub fn learned(&self) -> bool {
        self.held_until.is_some()
    }

    /// A new ceiling (warm-up limits, configuration); the learned limit never exceeds it.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
    }

    /// A delivery went through on one of `running` connections. Returns whether the limit grew
    /// (the caller may then open another connection).
    pub fn on_success(&mut self, running: usize, now: Instant) -> bool {
        if running < self.limit() || self.limit() >= self.ceiling() {
            // Not every allowed connection is needed: the limit is not what holds us back.
            self.successes = 0;
            return false;
        }
        self.successes += 1;
        let grow = match self.held_until {
            // After a refusal: one step per probe interval, the receiver has said where it ends.
            Some(until) => now >= until,
            None => self.successes >= self.limit,
        };
        if grow {
            self.limit += 1;
            self.successes = 0;
            if self.held_until.is_some() {
                self.held_until = Some(now + self.probe_interval);
            }
        }
        grow
    }

    /// A new connection was refused while `open` others to the host were open and working:
    /// the receiver's cap for this client is `open`. Holds the limit there.
    pub fn on_refusal(&mut self, open: usize, now: Instant) {
        self.refusals += 1;
        self.open_at_refusal = open;
        self.limit = open.clamp(1, self.ceiling());
        self.successes = 0;
        self.held_until = Some(now + self.probe_interval);
    }

    /// Whether one more connection should be opened for `queued` deliveries waiting, with
    /// `running` connection workers of which `idle` wait for work.
    pub fn wants_another(&self, running: usize, idle: usize, queued: usize) -> bool {
        if queued <= idle || running >= self.limit() {
            return false;
        }
        running == 0 || queued >= running * BACKLOG_PER_CONNECTION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outside_ceiling_bounds_the_limit_and_growth_until_it_is_lifted() {
        let t = Instant::now();
        let mut c = Concurrency::new(4, 10, PROBE);
        c.set_outside(Some(2));
        assert_eq!(c.limit(), 2);
        // At the outside ceiling the limit does not creep up behind it.
        for _ in 0..50 {
            assert!(!c.on_success(2, t));
        }
        c.set_outside(None);
        assert_eq!(c.limit(), 4, "lifted: the route's own limit again");
        c.set_outside(Some(50));
        assert_eq!(c.limit(), 4, "an outside ceiling never raises the configured cap");
        assert_eq!(c.outside(), Some(50));
    }

    const PROBE: Duration = Duration::from_secs(60);

    #[test]
    fn starts_at_the_initial_limit_within_the_cap() {
        assert_eq!(Concurrency::new(2, 32, PROBE).limit(), 2);
        assert_eq!(Concurrency::new(50, 8, PROBE).limit(), 8);
        assert_eq!(Concurrency::new(0, 8, PROBE).limit(), 1);
    }

    #[test]
    fn grows_by_one_per_window_of_successes_only_while_demand_limited() {
        let now = Instant::now();
        let mut c = Concurrency::new(2, 5, PROBE);
        // One of two connections busy: the limit is not the bottleneck.
        for _ in 0..10 {
            assert!(!c.on_success(1, now));
        }
        assert_eq!(c.limit(), 2);
        assert!(!c.on_success(2, now));
        assert!(c.on_success(2, now), "two successes at limit 2 grow it");
        assert_eq!(c.limit(), 3);
        assert!(!c.on_success(3, now));
        assert!(!c.on_success(3, now));
        assert!(c.on_success(3, now));
        assert_eq!(c.limit(), 4);
        for _ in 0..20 {
            c.on_success(c.limit(), now);
        }
        assert_eq!(c.limit(), 5, "never above the cap");
    }

    #[test]
    fn a_refusal_holds_the_limit_at_what_is_open_then_probes_slowly() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(2, 32, PROBE);
        for _ in 0..100 {
            c.on_success(c.limit(), t0);
        }
        assert!(c.limit() > 10);
        c.on_refusal(10, t0);
        assert_eq!(c.limit(), 10);
        assert!(c.learned());
        assert_eq!(c.refusals(), 1);
        assert_eq!(c.open_at_refusal(), 10);
        for _ in 0..1000 {
            assert!(!c.on_success(10, t0 + Duration::from_secs(59)));
        }
        assert_eq!(c.limit(), 10, "held for the probe interval");
        assert!(c.on_success(10, t0 + PROBE), "one probe after the interval");
        assert_eq!(c.limit(), 11);
        assert!(
            !c.on_success(11, t0 + PROBE + Duration::from_secs(1)),
            "next probe waits again"
        );
        c.on_refusal(10, t0 + PROBE + Duration::from_secs(2));
        assert_eq!(c.limit(), 10);
    }

    #[test]
    fn a_refusal_with_nothing_open_keeps_one_connection() {
        let mut c = Concurrency::new(4, 32, PROBE);
        c.on_refusal(0, Instant::now());
        assert_eq!(c.limit(), 1);
    }

    #[test]
    fn connections_follow_the_queue() {
        let c = Concurrency::new(32, 32, PROBE);
        assert!(c.wants_another(0, 0, 1), "the first connection for any work");
        assert!(!c.wants_another(1, 1, 1), "an idle worker takes it");
        assert!(!c.wants_another(1, 0, 5), "a short queue stays on one connection");
        assert!(c.wants_another(1, 0, BACKLOG_PER_CONNECTION));
        assert!(!c.wants_another(2, 0, 2 * BACKLOG_PER_CONNECTION - 1));
        assert!(c.wants_another(2, 0, 2 * BACKLOG_PER_CONNECTION));
        let capped = Concurrency::new(2, 32, PROBE);
        assert!(!capped.wants_another(2, 0, 1000), "never above the limit");
    }

    #[test]
    fn a_lower_cap_bounds_the_learned_limit() {
        let mut c = Concurrency::new(8, 32, PROBE);
        c.set_cap(3);
        assert_eq!(c.limit(), 3);
        c.set_cap(32);
        assert_eq!(c.limit(), 8);
    }
}
