//! Accepting TCP connections under a cap, for Volley's HTTP listeners (the API's HTTPS, the
//! unsubscribe endpoint): a permit is taken *before* accepting (the mini-redis habit) and
//! travels with the connection, and an accept error (out of file descriptors and the like)
//! waits a moment rather than spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long an accept error waits before the next accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The next connection on `listener` with a permit of `permits`; `None` once the semaphore
/// is closed. `who` names the listener in the log.
pub async fn accept_permitted(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    who: &str,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = permits.clone().acquire_owned().await.ok()?;
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => return Some((permit, tcp, peer)),
            Err(e) => {
                tracing::warn!("{who}: accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}
