//! The retry queue: deferred recipients ordered by when their next attempt is due. Entries are
//! [`RowRef`]s (no message in memory); the row is read again when it is due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, SystemTime};

use super::job::RowRef;
use crate::config::RetryConfig;

/// When a deferred recipient is tried again, or that it is given up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again at this time.
    RetryAt(SystemTime),
    /// The retry period (`max_age`) is over.
    Expire,
}

/// Decides what follows a deferral of attempt `attempt` first made at `first_at`: the wait from
/// the schedule, but never past `first_at + max_age` (one last attempt is made at the limit);
/// after the limit, expiry.
pub(crate) fn next_step(policy: &RetryConfig, attempt: u32, first_at: SystemTime, now: SystemTime) -> Next {
    let deadline = first_at + policy.max_age;
    if now >= deadline {
        return Next::Expire;
    }
    let at = now + policy.delay_before(attempt + 1);
    Next::RetryAt(at.min(deadline))
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    due: SystemTime,
    r: RowRef,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.r.line).cmp(&(other.due, other.r.line))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Deferred recipients by due time.
#[derive(Default)]
pub(crate) struct RetryQueue {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl RetryQueue {
    pub fn push(&mut self, due: SystemTime, r: RowRef) {
        self.heap.push(Reverse(Entry { due, r }));
    }

    /// The next entry that is due at `now`.
    pub fn pop_due(&mut self, now: SystemTime) -> Option<RowRef> {
        if self.heap.peek()?.0.due <= now {
            return self.heap.pop().map(|e| e.0.r);
        }
        None
    }

    /// How long until the earliest entry is due (zero when one is), `None` when empty.
    pub fn wait(&self, now: SystemTime) -> Option<Duration> {
        let due = self.heap.peek()?.0.due;
        Some(due.duration_since(now).unwrap_or(Duration::ZERO))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Takes out the entries `pick` selects (rebuilds the heap: for an operator's command,
    /// never per message).
    pub fn take_where(&mut self, mut pick: impl FnMut(&RowRef) -> bool) -> Vec<RowRef> {
        let mut taken = Vec::new();
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_iter()
            .filter(|Reverse(e)| {
                let take = pick(&e.r);
                if take {
                    taken.push(e.r);
                }
                !take
            })
            .collect();
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &[u64], max_age: u64) -> RetryConfig {
        RetryConfig {
            schedule: schedule.iter().map(|s| Duration::from_secs(*s).into()).collect(),
            max_age: Duration::from_secs(max_age),
            host_down: Duration::from_secs(60),
        }
    }

    #[test]
    fn schedule_steps_then_repeats_its_last_wait_and_stops_at_max_age() {
        let p = policy(&[60, 120], 1000);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = |d: u64| t0 + Duration::from_secs(d);
        assert_eq!(next_step(&p, 1, t0, t0), Next::RetryAt(s(60)));
        assert_eq!(next_step(&p, 2, t0, s(60)), Next::RetryAt(s(180)));
        assert_eq!(next_step(&p, 3, t0, s(180)), Next::RetryAt(s(300)));
        // Capped at the deadline: one last attempt at first_at + max_age.
        assert_eq!(next_step(&p, 9, t0, s(950)), Next::RetryAt(s(1000)));
        assert_eq!(next_step(&p, 10, t0, s(1000)), Next::Expire);
    }

    #[test]
    fn rfc5321_default_waits_at_least_30_minutes_and_keeps_trying_for_days() {
        let p = RetryConfig::default();
        assert!(p.schedule.iter().all(|d| **d >= Duration::from_secs(1800)));
        assert!(p.max_age >= Duration::from_secs(4 * 24 * 3600));
    }

    #[test]
    fn queue_pops_in_due_order() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let r = |line| RowRef {
            line,
            offset: 0,
            attempt: 2,
            first_at: t0,
        };
        let mut q = RetryQueue::default();
        q.push(t0 + Duration::from_secs(5), r(1));
        q.push(t0 + Duration::from_secs(1), r(2));
        assert_eq!(q.wait(t0), Some(Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(q.pop_due(later).map(|r| r.line), Some(2));
        assert_eq!(q.pop_due(later).map(|r| r.line), Some(1));
        assert!(q.is_empty() && q.wait(later).is_none());
        q.push(t0 + Duration::from_secs(5), r(1));
        q.push(t0 + Duration::from_secs(6), r(2));
        q.push(t0 + Duration::from_secs(7), r(3));
        let taken = q.take_where(|r| r.line != 2);
        assert_eq!(taken.iter().map(|r| r.line).collect::<Vec<_>>().len(), 2);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(later).map(|r| r.line), Some(2));
    }
}
