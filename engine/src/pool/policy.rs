//! The connection settings of one destination, resolved by the caller (the scheduler's
//! `[[destination]]` blocks) and carried in the [`crate::route::RouteKey`]: a route with a
//! policy uses its values instead of the pool's `[smtp]` ones, so two destinations behind the
//! same MX host keep their own connections and limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::SmtpConfig;
use crate::mta_sts::StsRoute;
use crate::tls::TlsPolicy;

/// Per-destination connection settings, every value resolved (no "unset").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RoutePolicy {
    /// The destination's name (the most specific block that matched), for logs and reports.
    pub name: Arc<str>,
    /// Most connections open at once per (source IP, MX host): the ceiling of the learned
    /// limit (replaces `max_connections_per_host`).
    pub max_connections_per_ip: usize,
    /// Connections a route may open before any has delivered (replaces
    /// `initial_connections_per_host`).
    pub initial_connections: usize,
    /// Most connections open at once over every source IP and MX host of the destination.
    pub total: Option<TotalCap>,
    /// Messages per connection before it is replaced.
    pub max_messages_per_connection: usize,
    /// Most recipients in one transaction.
    pub max_recipients_per_transaction: usize,
    /// STARTTLS policy for the destination's connections.
    pub tls: TlsPolicy,
    /// How long an unused connection stays open.
    pub idle_timeout: Duration,
    /// The recipient domain's MTA-STS policy (`enforce` or `testing`), when it has one: its
    /// routes get connections of their own, checked against it.
    pub mta_sts: Option<Arc<StsRoute>>,
}

/// A cap on connections shared by every route whose policy names the same `owner` (the block
/// that set it), whatever their source IP and MX host.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TotalCap {
    /// The block that set the cap: routes of other destinations that fall back to it share it.
    pub owner: Arc<str>,
    /// Most connections open at once.
    pub max: usize,
}

impl RoutePolicy {
    /// The pool's own settings, as a policy named `name`.
    pub fn from_config(name: &str, config: &SmtpConfig) -> RoutePolicy {
        RoutePolicy {
            name: Arc::from(name),
            max_connections_per_ip: config.max_connections_per_host,
            initial_connections: config.initial_connections_per_host,
            total: None,
            max_messages_per_connection: config.max_messages_per_connection,
            max_recipients_per_transaction: config.max_recipients_per_transaction,
            tls: config.tls,
            idle_timeout: config.idle_timeout,
            mta_sts: None,
        }
    }
}

/// Places under a cap on open connections: the pool's `max_connections`, or one
/// [`TotalCap`] shared by the routes that count against it.
pub(crate) struct ConnectionCap {
    permits: Arc<Semaphore>,
    /// Workers waiting for a permit: while any wait, idle connections of the cap's routes
    /// close for them.
    waiting: AtomicU64,
}

impl ConnectionCap {
    pub fn new(max: usize) -> ConnectionCap {
        ConnectionCap {
            permits: Arc::new(Semaphore::new(max.max(1))),
            waiting: AtomicU64::new(0),
        }
    }

    /// Whether a connection of the cap could open now.
    pub fn is_full(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// Whether workers wait for a permit.
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// Waits for room under the cap; `None` when the pool is shutting down.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_settings_become_a_policy() {
        let config = SmtpConfig {
            max_connections_per_host: 7,
            initial_connections_per_host: 3,
            max_messages_per_connection: 11,
            max_recipients_per_transaction: 13,
            tls: TlsPolicy::Required,
            idle_timeout: Duration::from_secs(4),
            ..SmtpConfig::default()
        };
        let p = RoutePolicy::from_config("global", &config);
        assert_eq!(
            (
                p.max_connections_per_ip,
                p.initial_connections,
                p.max_messages_per_connection,
                p.max_recipients_per_transaction,
                p.tls,
                p.idle_timeout,
                p.total
            ),
            (7, 3, 11, 13, TlsPolicy::Required, Duration::from_secs(4), None)
        );
    }

    #[tokio::test]
    async fn a_shared_cap_counts_its_waiters() {
        let cap = Arc::new(ConnectionCap::new(1));
        let first = cap.acquire().await;
        assert!(first.is_some() && cap.is_full() && !cap.has_waiters());
        let waiter = tokio::spawn({
            let cap = cap.clone();
            async move { cap.acquire().await.is_some() }
        });
        while !cap.has_waiters() {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(waiter.await.ok(), Some(true));
        assert!(!cap.has_waiters());
    }
}
