//! The bounded MX cache: one slot per lowercase domain, either a finished outcome with its
//! expiry or a lookup in flight that later callers wait on (request coalescing).
//!
//! Plain data behind a `std::sync::Mutex`; callers lock it only between `.await`s.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{MxAnswer, MxError};

/// A finished lookup, shared by every caller: an answer or a (cached) error.
pub(super) type Outcome = Result<Arc<MxAnswer>, MxError>;

/// The channel a lookup in flight publishes its outcome on; `None` until it is done.
pub(super) type Pending = watch::Receiver<Option<Outcome>>;

/// What a caller must do for a domain.
pub(super) enum Probe {
    /// A fresh cached outcome.
    Hit(Outcome),
    /// Another caller's lookup is in flight; wait on it.
    Wait(Pending),
    /// Nothing usable is cached: this caller runs the lookup and publishes on the sender.
    Lead(watch::Sender<Option<Outcome>>),
}

enum Slot {
    Ready {
        outcome: Outcome,
        expires: Instant,
        seq: u64,
    },
    InFlight(Pending),
}

/// Bounded cache; the oldest finished entries are evicted first.
pub(super) struct MxCache {
    slots: HashMap<Arc<str>, Slot>,
    /// Finished entries in insertion order; `(key, seq)` pairs whose seq no longer matches the
    /// slot are stale and skipped (an entry was refreshed or removed).
    order: VecDeque<(Arc<str>, u64)>,
    ready: usize,
    next_seq: u64,
    capacity: usize,
}

impl MxCache {
    pub(super) fn new(capacity: usize) -> MxCache {
        MxCache {
            slots: HashMap::new(),
            order: VecDeque::new(),
            ready: 0,
            next_seq: 0,
            capacity,
        }
    }

    /// Slots held, finished or in flight.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Looks `key` up at `now`. On a miss or an expired entry, marks the lookup in flight and
    /// makes the caller its leader.
    pub(super) fn probe(&mut self, key: &Arc<str>, now: Instant) -> Probe {
        match self.slots.get(key) {
            Some(Slot::Ready { outcome, expires, .. }) if *expires > now => return Probe::Hit(outcome.clone()),
            Some(Slot::InFlight(rx)) => return Probe::Wait(rx.clone()),
            Some(Slot::Ready { .. }) => self.ready -= 1,
            None => {}
        }
        let (tx, rx) = watch::channel(None);
        self.slots.insert(Arc::clone(key), Slot::InFlight(rx));
        Probe::Lead(tx)
    }

    /// Stores the outcome of a finished lookup for `ttl`, evicting the oldest entries beyond
    /// capacity.
    pub(super) fn complete(&mut self, key: &Arc<str>, outcome: Outcome, ttl: Duration, now: Instant) {
        if self.capacity == 0 {
            if matches!(self.slots.get(key), Some(Slot::InFlight(_))) {
                self.slots.remove(key);
            }
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let expires = now + ttl;
        if let Some(Slot::Ready { .. }) = self
            .slots
            .insert(Arc::clone(key), Slot::Ready { outcome, expires, seq })
        {
            self.ready -= 1;
        }
        self.ready += 1;
        self.order.push_back((Arc::clone(key), seq));
        while self.ready > self.capacity {
            let Some((old, old_seq)) = self.order.pop_front() else {
                break;
            };
            if matches!(self.slots.get(&old), Some(Slot::Ready { seq, .. }) if *seq == old_seq) {
                self.slots.remove(&old);
                self.ready -= 1;
            }
        }
        if self.order.len() > 2 * self.capacity + 64 {
            let slots = &self.slots;
            self.order
                .retain(|(k, s)| matches!(slots.get(k), Some(Slot::Ready { seq, .. }) if seq == s));
        }
    }

    /// Forgets a lookup whose leader vanished without an outcome, if `rx` is still the one in
    /// flight, so that the next caller starts a new lookup.
    pub(super) fn abandon(&mut self, key: &Arc<str>, rx: &Pending) {
        if matches!(self.slots.get(key), Some(Slot::InFlight(current)) if current.same_channel(rx)) {
            self.slots.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Outcome {
        Ok(Arc::new(MxAnswer::NullMx))
    }

    fn lead(cache: &mut MxCache, key: &Arc<str>, now: Instant) -> watch::Sender<Option<Outcome>> {
        match cache.probe(key, now) {
            Probe::Lead(tx) => tx,
            _ => panic!("expected a miss for {key}"),
        }
    }

    #[test]
    fn miss_then_wait_then_hit_then_expiry() {
        let mut cache = MxCache::new(10);
        let key: Arc<str> = "a.test".into();
        let t0 = Instant::now();
        let _tx = lead(&mut cache, &key, t0);
        assert!(matches!(cache.probe(&key, t0), Probe::Wait(_)));
        cache.complete(&key, answer(), Duration::from_secs(5), t0);
        assert!(matches!(
            cache.probe(&key, t0 + Duration::from_secs(4)),
            Probe::Hit(Ok(_))
        ));
        assert!(matches!(cache.probe(&key, t0 + Duration::from_secs(5)), Probe::Lead(_)));
    }

    #[test]
    fn evicts_oldest_beyond_capacity() {
        let mut cache = MxCache::new(2);
        let now = Instant::now();
        let keys: Vec<Arc<str>> = ["a", "b", "c"].into_iter().map(Arc::from).collect();
        for key in &keys {
            let _tx = lead(&mut cache, key, now);
            cache.complete(key, answer(), Duration::from_secs(60), now);
        }
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.probe(&keys[0], now), Probe::Lead(_)));
        assert!(matches!(cache.probe(&keys[2], now), Probe::Hit(_)));
    }

    #[test]
    fn refreshing_one_key_does_not_grow_the_order_queue_unboundedly() {
        let mut cache = MxCache::new(1);
        let key: Arc<str> = "a".into();
        let mut now = Instant::now();
        for _ in 0..1000 {
            let _tx = lead(&mut cache, &key, now);
            cache.complete(&key, answer(), Duration::from_secs(1), now);
            now += Duration::from_secs(2);
        }
        assert_eq!(cache.len(), 1);
        assert!(cache.order.len() <= 2 + 64, "stale order entries are compacted");
    }

    #[test]
    fn zero_capacity_caches_nothing_and_abandon_clears_in_flight() {
        let mut cache = MxCache::new(0);
        let key: Arc<str> = "a".into();
        let now = Instant::now();
        let _tx = lead(&mut cache, &key, now);
        cache.complete(&key, answer(), Duration::from_secs(60), now);
        assert_eq!(cache.len(), 0);
        let tx = lead(&mut cache, &key, now);
        cache.abandon(&key, &tx.subscribe());
        assert_eq!(cache.len(), 0);
    }
}
