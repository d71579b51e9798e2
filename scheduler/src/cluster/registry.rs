//! The cluster campaigns still to work: a Redis set the publisher adds a campaign to and a
//! node removes it from once it sees it complete or cancelled. `volley serve` nodes poll it
//! and work every campaign in it. Its key has a hash tag of its own ([`REGISTRY`]): with Redis
//! Cluster it lives in another slot than the campaigns' keys, so it has a [`Store`] of its own.

use super::keys::REGISTRY;
use super::{ClusterError, Store};

/// The set of active cluster campaigns.
pub struct Registry {
    store: Store,
}

impl Registry {
    /// The registry at `url` (with Redis Cluster, on the master holding its slot).
    pub fn open(url: &str) -> Result<Registry, ClusterError> {
        Ok(Registry {
            store: Store::for_key(url, REGISTRY)?,
        })
    }

    /// Adds campaign `id` (idempotent).
    pub fn add(&self, id: &str) -> Result<(), ClusterError> {
        self.store
            .with("SADD", |con| redis::cmd("SADD").arg(REGISTRY).arg(id).query::<i64>(con))?;
        Ok(())
    }

    /// Removes campaign `id` (idempotent).
    pub fn remove(&self, id: &str) -> Result<(), ClusterError> {
        self.store
            .with("SREM", |con| redis::cmd("SREM").arg(REGISTRY).arg(id).query::<i64>(con))?;
        Ok(())
    }

    /// The campaigns in it, sorted.
    pub fn list(&self) -> Result<Vec<String>, ClusterError> {
        let mut ids: Vec<String> = self
            .store
            .with("SMEMBERS", |con| redis::cmd("SMEMBERS").arg(REGISTRY).query(con))?;
        ids.sort();
        Ok(ids)
    }
}

/// Removes campaign `id` from the registry at `url`; a failure is logged (the next node to
/// see the campaign complete removes it).
pub(super) fn forget(url: &str, id: &str) {
    if let Err(e) = Registry::open(url).and_then(|r| r.remove(id)) {
        tracing::warn!(campaign = id, error = %e, "cannot remove the campaign from the cluster registry");
    }
}
