//! Opening a route's connections: a place under the destination's cap and the pool's, then
//! the session; a refusal at the receiver's connection cap told from a failure of the host;
//! opportunistic TLS falling back to clear text.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{lock, Host, Inner};
use crate::error::SessionError;
use crate::outcome::RecipientStatus;
use crate::smtp::session::SmtpSession;
use crate::tls::TlsPolicy;

/// After a failed TLS handshake (opportunistic policy), how long a host is sent to in clear;
/// and with `tls = "required"`, how long a host that offered no STARTTLS is not connected to.
const TLS_FALLBACK: Duration = Duration::from_secs(3600);

/// The places an open connection holds under the caps it counts against; released by drop.
pub(super) struct Permits {
    _pool: tokio::sync::OwnedSemaphorePermit,
    _destination: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What opening a connection for a delivery came to.
pub(super) enum Opened {
    /// A session, holding its places under the caps.
    Session(Box<SmtpSession>, Permits),
    /// The receiver turned the connection away; the worker waits `pause` (still counted as
    /// running, so that no other worker takes its place at once), then gives up its place.
    /// Either a volume throttle at the greeting (see `SessionError::is_throttle_at_greeting`),
    /// which says nothing about its connection cap: the limit is kept, the pause is
    /// [`THROTTLE_PAUSE`]. Or its cap while others to it are open: the limit was lowered to
    /// them, and to those that ended just before, which it may still count (then the pause is
    /// [`ENDED_PAUSE`], for it to notice they ended).
    Refused { pause: Duration },
    /// No connection: the status every recipient of the delivery gets.
    Failed(RecipientStatus),
}

/// How long a route with no connection of its own waits, in total, for a receiver that refused
/// it while serving this pool's other source IPs (a cap shared by all clients), and the first
/// pause between tries (doubling).
const SHARED_CAP_WAIT: Duration = Duration::from_secs(10);
const SHARED_CAP_PAUSE: Duration = Duration::from_millis(250);

/// How long a route's worker waits after a volume throttle at the greeting before another
/// connection may take its place.
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// How long a route's worker waits after a refusal that counted connections of the route
/// which had just ended, before another connection may take its place: the receiver may not
/// have noticed they ended yet.
const ENDED_PAUSE: Duration = Duration::from_millis(250);

/// Takes a pool-wide permit and opens a session, telling a refusal (the receiver's cap while
/// other connections to it work) from a failure of the host.
pub(super) async fn open_connection<T>(inner: &Inner<T>, host: &Host<T>) -> Opened {
    let mx = host.key.mx.addr;
    if host.params.tls.policy() == TlsPolicy::Required {
        let until = lock(&inner.no_starttls).get(&mx).copied();
        if until.is_some_and(|until| Instant::now() < until) {
            return Opened::Failed(RecipientStatus::from_error(&SessionError::TlsNotOffered {
                mx: host.key.mx.name.to_string(),
            }));
        }
    }
    let started = Instant::now();
    let mut pause = SHARED_CAP_PAUSE;
    loop {
        let closing = || {
            Opened::Failed(RecipientStatus::from_error(&SessionError::Closed {
                phase: crate::phase::Phase::Connect,
            }))
        };
        // The destination's cap first: a worker waiting for it holds no pool-wide place.
        let destination = match &host.shared {
            Some(shared) => match shared.acquire().await {
                Some(p) => Some(p),
                None => return closing(),
            },
            None => None,
        };
        let Some(pool_permit) = inner.connections.acquire().await else {
            return closing();
        };
        let permit = Permits {
            _pool: pool_permit,
            _destination: destination,
        };
        host.opening.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        let result = connect(inner, host).await;
        host.opening.fetch_sub(1, Ordering::Relaxed);
        let e = match result {
            Ok(s) => return Opened::Session(Box::new(s), permit),
            Err(e) => e,
        };
        drop(permit);
        let now = Instant::now();
        if e.is_connection_refusal() && e.is_throttle_at_greeting() {
            // The receiver took the connection in (and counts it until it notices the close).
            lock(&host.closes).record(now);
            // This route's connections open or being opened, or any to the host: it is up.
            let open = host.open.load(Ordering::Relaxed) + host.opening.load(Ordering::Relaxed);
            if open > 0 || open_to(inner, mx) > 0 {
                // The receiver is up and serving: not its failure, and not its cap.
                inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    mx = %host.key.mx.name, source = %host.key.source.ip, open, error = %e,
                    "receiver throttled a new connection; connection limit kept"
                );
                return Opened::Refused { pause: THROTTLE_PAUSE };
            }
        }
        if e.is_connection_refusal() {
            // What the receiver counts for this client: the open connections, the others
            // being opened alongside this one, and those that ended so recently that it may
            // not have noticed yet.
            let open = host.open.load(Ordering::Relaxed) + host.opening.load(Ordering::Relaxed);
            let ended = lock(&host.closes).counted_at_refusal(began, now);
            if open > 0 {
                inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                lock(&host.concurrency).on_refusal(open + ended, now);
                tracing::info!(
                    mx = %host.key.mx.name, source = %host.key.source.ip, open, ended, error = %e,
                    "receiver refused another connection; connection limit lowered to what is open"
                );
                let pause = if ended > 0 { ENDED_PAUSE } else { Duration::ZERO };
                return Opened::Refused { pause };
            }
            // Nothing open from this source IP, but the host serves our other source IPs (a
            // cap shared by every client), or it names its cap on this client's connections
            // (held by another sender on this address: another node, a NAT; or our own that
            // just ended): wait for a slot rather than calling the host down.
            let capped = open_to(inner, mx) > 0 || e.is_connection_cap() || ended > 0;
            if capped && started.elapsed() + pause <= SHARED_CAP_WAIT {
                inner.counters.refused.fetch_add(1, Ordering::Relaxed);
                lock(&host.concurrency).on_refusal(ended, now);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(SHARED_CAP_WAIT / 4);
                continue;
            }
        }
        if matches!(e, SessionError::TlsNotOffered { .. }) {
            lock(&inner.no_starttls).insert(mx, Instant::now() + TLS_FALLBACK);
        }
        inner.counters.failed.fetch_add(1, Ordering::Relaxed);
        return Opened::Failed(RecipientStatus::from_error(&e));
    }
}

/// Connections open from any source IP to the MX address `mx`.
fn open_to<T>(inner: &Inner<T>, mx: SocketAddr) -> usize {
    lock(&inner.hosts)
        .values()
        .filter(|h| h.key.mx.addr == mx)
        .map(|h| h.open.load(Ordering::Relaxed))
        .sum()
}

/// Opens a session; with opportunistic TLS, a failed handshake is retried at once in clear and
/// the host is sent to in clear for a while.
async fn connect<T>(inner: &Inner<T>, host: &Host<T>) -> Result<SmtpSession, SessionError> {
    let clear = lock(&host.tls_fallback_until).is_some_and(|until| Instant::now() < until);
    let key = &host.key;
    let mut result = SmtpSession::connect(&key.source, &key.mx, &host.params, clear).await;
    if let Err(e) = &result {
        // A handshake that stalls past the STARTTLS timeout is as failed as one that errs.
        if e.is_starttls_failure() && host.params.tls.policy() == TlsPolicy::Opportunistic && !clear {
            tracing::warn!(mx = %key.mx.name, "TLS handshake failed; falling back to clear text for this host");
            *lock(&host.tls_fallback_until) = Some(Instant::now() + TLS_FALLBACK);
            result = SmtpSession::connect(&key.source, &key.mx, &host.params, true).await;
        }
    }
    match &result {
        Ok(_) => {
            inner.counters.opened.fetch_add(1, Ordering::Relaxed);
            inner.counters.open.fetch_add(1, Ordering::Relaxed);
            host.open.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tracing::debug!(mx = %key.mx.name, source = %key.source.ip, error = %e, "connection failed"),
    }
    result
}
