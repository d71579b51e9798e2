//! [`LateSuppressions`]: what other processes suppressed through the control socket while this
//! process holds the embedded store.
//!
//! The producer checks rows against the store before rendering them, but rendered recipients
//! (up to `max_in_flight`) can wait for their turn for hours under warm-up caps. The
//! dispatcher asks this set right before handing each one to the engine, so an unsubscribe
//! added during the run (`volley suppress add`) stops mail that was checked but not yet sent.
//! Memory only; an empty set costs one atomic load per recipient.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::entry::normalise;
use super::{Entry, Update};

/// Entries kept at most; later additions still reach the store (and every row read after
/// them), they are only not re-checked before sending.
const MAX_LATE: usize = 100_000;

/// Suppressions (scope, address) added by other processes since the store was opened.
#[derive(Default)]
pub struct LateSuppressions {
    entries: Mutex<HashMap<(String, String), Entry>>,
    len: AtomicUsize,
}

impl LateSuppressions {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes note of updates another process applied: suppressions are added, removals
    /// forgotten. Soft bounces are the running send's own business.
    pub(crate) fn record(&self, updates: &[Update]) {
        let mut entries = self.entries();
        for update in updates {
            let key = (update.scope().to_owned(), normalise(update.address()));
            match update {
                Update::Suppress { entry, .. } => {
                    if entries.len() < MAX_LATE || entries.contains_key(&key) {
                        entries.insert(key, entry.clone());
                    } else {
                        tracing::warn!(
                            "more than {MAX_LATE} suppressions added during the run: {} is honoured for \
                             rows not yet read, not re-checked before sending",
                            key.1
                        );
                    }
                }
                Update::Remove { .. } => {
                    entries.remove(&key);
                }
                Update::SoftBounce { .. } | Update::ForgetSoft { .. } => {}
            }
        }
        self.len.store(entries.len(), Ordering::Release);
    }

    /// The first of `scopes` in which `address` was suppressed late, and its entry.
    pub fn hit(&self, scopes: &[String], address: &str) -> Option<(String, Entry)> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let entries = self.entries();
        let address = normalise(address);
        scopes.iter().find_map(|scope| {
            entries
                .get(&(scope.clone(), address.clone()))
                .map(|e| (scope.clone(), e.clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppressions_are_found_in_their_scope_until_removed() {
        let late = LateSuppressions::default();
        let scopes = ["global".to_string(), "news".to_string()];
        assert!(late.hit(&scopes, "a@x.test").is_none());
        late.record(&[
            Update::suppress("news", "A@X.test", Entry::new("unsubscribed", "manual", 1)),
            Update::suppress("other", "b@x.test", Entry::new("unsubscribed", "manual", 1)),
        ]);
        let (scope, entry) = late.hit(&scopes, "a@x.test").expect("hit");
        assert_eq!((scope.as_str(), entry.reason.as_str()), ("news", "unsubscribed"));
        assert!(late.hit(&scopes, "b@x.test").is_none(), "another list");
        late.record(&[Update::remove("news", "a@x.test")]);
        assert!(late.hit(&scopes, "a@x.test").is_none());
    }
}
