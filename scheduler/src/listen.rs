//! Accepting TCP connections under caps, for Volley's listeners.
//!
//! - [`accept_permitted`] — the HTTP listeners (the API's HTTPS, the unsubscribe endpoint):
//!   a permit is taken *before* accepting (the mini-redis habit) and travels with the
//!   connection, so a full listener stops accepting.
//! - [`serve_capped`] — the SMTP listeners (inbound, submission): every connection is
//!   accepted, and one beyond the caps in total or per client address gets a reply (a 421)
//!   and is closed at once, so a client learns why instead of waiting in the backlog.
//!
//! An accept error (out of file descriptors and the like) waits a moment rather than spinning.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The SMTP reply to a connection beyond the caps (RFC 5321 §3.8: 421, then close).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"421 4.7.0 Too many connections, try again later\r\n";

/// How long an accept error waits before the next accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The next connection on `listener`, waiting out accept errors. `who` names the listener
/// in the log.
async fn accept(listener: &TcpListener, who: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(connection) => return connection,
            Err(e) => {
                tracing::warn!("{who}: accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// The next connection on `listener` with a permit of `permits`; `None` once the semaphore
/// is closed. `who` names the listener in the log.
pub async fn accept_permitted(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    who: &str,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = permits.clone().acquire_owned().await.ok()?;
    let (tcp, peer) = accept(listener, who).await;
    Some((permit, tcp, peer))
}

/// Caps on the connections served at once: in total and per client address.
#[derive(Clone)]
pub struct ConnectionCaps {
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    max_per_ip: usize,
}

/// Counts connections per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// A connection within the caps; its place is given back when this is dropped.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut map = self.per_ip.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl ConnectionCaps {
    /// At most `max` connections at once, `max_per_ip` of them from one client address.
    pub fn new(max: usize, max_per_ip: usize) -> ConnectionCaps {
        ConnectionCaps {
            slots: Arc::new(Semaphore::new(max)),
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    /// A place for a connection from `ip`, or `None` when either cap is reached.
    pub fn admit(&self, ip: IpAddr) -> Option<Admitted> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let mut map = self.per_ip.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(Admitted {
            _slot: slot,
            per_ip: self.per_ip.clone(),
            ip,
        })
    }
}

/// Accepts on `listener` forever: a connection within `caps` is served by `serve` on its own
/// task (its place held until that ends); one beyond them gets `refusal` (e.g. `421 4.7.0 Too
/// many connections` CRLF) and is closed. `who` names the listener in the log.
pub async fn serve_capped<F, Fut>(
    listener: TcpListener,
    caps: ConnectionCaps,
    refusal: &'static [u8],
    who: &'static str,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (mut stream, peer) = accept(&listener, who).await;
        let Some(admitted) = caps.admit(peer.ip()) else {
            tracing::debug!("{who}: {peer} refused: too many connections");
            tokio::spawn(async move {
                let _ = stream.write_all(refusal).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let connection = serve(stream, peer);
        tokio::spawn(async move {
            connection.await;
            drop(admitted);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_total_and_per_address_and_free_their_place_on_drop() {
        let caps = ConnectionCaps::new(3, 2);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let a1 = caps.admit(a).expect("first from a");
        let _a2 = caps.admit(a).expect("second from a");
        assert!(caps.admit(a).is_none(), "a third from one address");
        let _b1 = caps.admit(b).expect("first from b");
        assert!(caps.admit(b).is_none(), "over the total");
        drop(a1);
        assert!(caps.admit(a).is_some(), "a's place is free again");
    }
}
