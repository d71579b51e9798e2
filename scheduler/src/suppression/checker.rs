//! [`Checker`]: the producer thread's gate in front of [`SuppressionStore::check`].
//!
//! With `on_unavailable = "pause"` (fail closed) a store error pauses the caller: it warns once,
//! retries with backoff (100 ms .. 5 s) until the store answers or the stop flag is set, and
//! counts the paused time. With `"send"` (fail open) it warns and reports the batch as not
//! suppressed, counting the unchecked addresses.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::{sleep_unless, Backoff};
use super::entry::GLOBAL;
use super::{Entry, OnUnavailable, SuppressionStore};

/// The stop flag was set while the store was unreachable; the batch was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped while the suppression store was unreachable")]
pub struct Stopped;

/// Batched suppression checks for one campaign (scopes `global` and its list scope).
pub struct Checker {
    store: Arc<dyn SuppressionStore>,
    scopes: Vec<String>,
    on_unavailable: OnUnavailable,
    stop: Arc<AtomicBool>,
    paused_nanos: AtomicU64,
    unchecked: AtomicU64,
    outage: AtomicBool,
}

impl Checker {
    /// A checker consulting `global` and, when given, `list_scope`. `stop` ends a pause.
    pub fn new(
        store: Arc<dyn SuppressionStore>,
        list_scope: Option<&str>,
        on_unavailable: OnUnavailable,
        stop: Arc<AtomicBool>,
    ) -> Checker {
        let mut scopes = vec![GLOBAL.to_owned()];
        scopes.extend(list_scope.filter(|s| *s != GLOBAL).map(str::to_owned));
        Checker {
            store,
            scopes,
            on_unavailable,
            stop,
            paused_nanos: AtomicU64::new(0),
            unchecked: AtomicU64::new(0),
            outage: AtomicBool::new(false),
        }
    }

    /// The scopes consulted, in order.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// For each address, the scope and entry that suppress it, or `None`. Blocks while the
    /// store is unreachable (fail closed) until it answers or the stop flag is set.
    pub fn check_batch(&self, addresses: &[&str]) -> Result<Vec<Option<(String, Entry)>>, Stopped> {
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let mut backoff = Backoff::new();
        let mut paused_since: Option<Instant> = None;
        let result = loop {
            match self.store.check(&scopes, addresses) {
                Ok(hits) => break Ok(hits),
                Err(e) => {
                    let first = !self.outage.swap(true, Ordering::Relaxed);
                    match self.on_unavailable {
                        OnUnavailable::Send => {
                            if first {
                                tracing::warn!(
                                    "suppression store unreachable: {e}; sending WITHOUT suppression checks \
                                     (on_unavailable = \"send\")"
                                );
                            }
                            self.unchecked.fetch_add(addresses.len() as u64, Ordering::Relaxed);
                            break Ok(vec![None; addresses.len()]);
                        }
                        OnUnavailable::Pause => {
                            if first {
                                tracing::warn!("suppression store unreachable: {e}; sending paused");
                            }
                            paused_since.get_or_insert_with(Instant::now);
                            if !sleep_unless(&self.stop, backoff.next_delay()) {
                                break Err(Stopped);
                            }
                        }
                    }
                    continue;
                }
            }
        };
        if let Some(since) = paused_since {
            let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.paused_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
        if result.is_ok() && self.outage.swap(false, Ordering::Relaxed) {
            tracing::info!("suppression store {} reachable again", self.store.describe());
        }
        result
    }

    /// The scope and entry suppressing `address` if another process added it during the run
    /// (see [`LateSuppressions`](super::LateSuppressions)); memory only, never blocks.
    pub fn late_hit(&self, address: &str) -> Option<(String, Entry)> {
        self.store.late()?.hit(&self.scopes, address)
    }

    /// Total time spent paused waiting for the store (for the summary).
    pub fn paused_for(&self) -> Duration {
        Duration::from_nanos(self.paused_nanos.load(Ordering::Relaxed))
    }

    /// Addresses let through unchecked because the store was unreachable (fail open only).
    pub fn unchecked(&self) -> u64 {
        self.unchecked.load(Ordering::Relaxed)
    }
}
