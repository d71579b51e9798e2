//! A sliding window of delivery, hard-bounce and complaint counts over a fixed span of time,
//! kept in [`BUCKETS`] buckets so that old counts fall out in steps of `span / BUCKETS`.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Buckets per window: counts leave the window in steps of 1/48 of its span (30 minutes of a
/// day), close enough to a true sliding window for a rate guard.
pub const BUCKETS: u32 = 48;

/// What happened to one message, as far as reputation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Accepted by the receiver.
    Delivered,
    /// A final 5xx (in the conversation, or an asynchronous bounce later).
    HardBounce,
    /// The recipient reported it as spam (an ARF `abuse` or `fraud` report).
    Complaint,
}

/// Counts inside the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub delivered: u64,
    pub hard_bounced: u64,
    pub complained: u64,
}

impl Counts {
    fn add(&mut self, signal: Signal) {
        match signal {
            Signal::Delivered => self.delivered += 1,
            Signal::HardBounce => self.hard_bounced += 1,
            Signal::Complaint => self.complained += 1,
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.delivered += other.delivered;
        self.hard_bounced += other.hard_bounced;
        self.complained += other.complained;
    }

    /// Hard bounces per message that reached a final answer, in percent, and that sample
    /// (deliveries + hard bounces).
    pub fn hard_bounce_rate(&self) -> (f64, u64) {
        let sample = self.delivered + self.hard_bounced;
        (percent(self.hard_bounced, sample), sample)
    }

    /// Complaints per delivered message, in percent, and that sample (deliveries). This is
    /// how Gmail's Postmaster Tools and Yahoo's feedback loop state a spam rate.
    pub fn complaint_rate(&self) -> (f64, u64) {
        (percent(self.complained, self.delivered), self.delivered)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The sliding window.
#[derive(Clone, Debug)]
pub struct Window {
    /// Width of a bucket in milliseconds (at least 1).
    width_ms: u64,
    /// Buckets, oldest first, each with its index (time / width).
    buckets: VecDeque<(u64, Counts)>,
}

impl Window {
    /// An empty window over `span`.
    pub fn new(span: Duration) -> Window {
        let span_ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
        Window {
            width_ms: (span_ms / u64::from(BUCKETS)).max(1),
            buckets: VecDeque::new(),
        }
    }

    fn index(&self, at: SystemTime) -> u64 {
        let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        u64::try_from(ms).unwrap_or(u64::MAX) / self.width_ms
    }

    /// Drops the buckets that have left the window at `now`.
    fn expire(&mut self, now: u64) {
        let oldest = now.saturating_sub(u64::from(BUCKETS) - 1);
        while self.buckets.front().is_some_and(|(i, _)| *i < oldest) {
            self.buckets.pop_front();
        }
    }

    /// Counts one signal at `at`.
    pub fn add(&mut self, signal: Signal, at: SystemTime) {
        let i = self.index(at);
        self.expire(i);
        match self.buckets.back_mut() {
            Some((last, counts)) if *last >= i => counts.add(signal),
            _ => {
                let mut counts = Counts::default();
                counts.add(signal);
                self.buckets.push_back((i, counts));
            }
        }
    }

    /// The counts inside the window at `now`.
    pub fn counts(&mut self, now: SystemTime) -> Counts {
        let i = self.index(now);
        self.expire(i);
        let mut total = Counts::default();
        for (_, c) in &self.buckets {
            total.merge(c);
        }
        total
    }

    /// Forgets everything (an operator resumed what the guard held).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn counts_and_rates_inside_the_window() {
        let mut w = Window::new(Duration::from_secs(4800));
        for _ in 0..990 {
            w.add(Signal::Delivered, at(0));
        }
        for _ in 0..10 {
            w.add(Signal::HardBounce, at(50));
        }
        for _ in 0..4 {
            w.add(Signal::Complaint, at(99));
        }
        let c = w.counts(at(100));
        assert_eq!((c.delivered, c.hard_bounced, c.complained), (990, 10, 4));
        assert_eq!(c.hard_bounce_rate(), (1.0, 1000));
        let (rate, sample) = c.complaint_rate();
        assert_eq!(sample, 990);
        assert!((rate - 0.40404).abs() < 1e-4, "{rate}");
    }

    #[test]
    fn old_buckets_leave_the_window() {
        // 48 buckets of 100 s.
        let mut w = Window::new(Duration::from_secs(4800));
        w.add(Signal::HardBounce, at(0));
        w.add(Signal::Delivered, at(2500));
        assert_eq!(
            w.counts(at(4799)).hard_bounced,
            1,
            "still inside at the end of the span"
        );
        let c = w.counts(at(4900));
        assert_eq!((c.hard_bounced, c.delivered), (0, 1), "the first bucket has left");
        assert_eq!(w.counts(at(7400)), Counts::default(), "everything has left");
    }

    #[test]
    fn a_late_signal_joins_the_newest_bucket_and_clear_forgets() {
        let mut w = Window::new(Duration::from_secs(4800));
        w.add(Signal::Delivered, at(1000));
        // The clock went back a little (another thread's timestamp): counted, not lost.
        w.add(Signal::Delivered, at(900));
        assert_eq!(w.counts(at(1000)).delivered, 2);
        w.clear();
        assert_eq!(w.counts(at(1000)), Counts::default());
    }

    #[test]
    fn rates_of_an_empty_window_are_zero() {
        let c = Counts::default();
        assert_eq!(c.hard_bounce_rate(), (0.0, 0));
        assert_eq!(c.complaint_rate(), (0.0, 0));
    }
}
