//! Connections per client address, capped the way real receivers cap them (Postfix's
//! `smtpd_client_connection_count_limit`, Exim's `smtp_accept_max_per_host`): a client at its
//! cap gets `421 4.7.0` at the banner. A connection may go on counting for a while after it
//! closed (`lag`), as with a receiver that learns of disconnects late.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Open connections per client address under a cap.
#[derive(Debug)]
pub(crate) struct ClientLimit {
    cap: usize,
    lag: Duration,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One client's connection slot; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    limit: Arc<ClientLimit>,
    ip: IpAddr,
}

impl ClientLimit {
    /// `cap` connections per client; a closed one counts `lag` longer.
    pub(crate) fn new(cap: usize, lag: Duration) -> Arc<ClientLimit> {
        Arc::new(ClientLimit {
            cap,
            lag,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip` and how many that client now has open, or `None`
    /// when it is at the cap.
    pub(crate) fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<(ClientSlot, usize)> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        let slot = ClientSlot {
            limit: Arc::clone(self),
            ip,
        };
        Some((slot, *n))
    }

    /// One connection of `ip` stops counting.
    fn release(&self, ip: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let lag = self.limit.lag;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !lag.is_zero() => {
                let (limit, ip) = (Arc::clone(&self.limit), self.ip);
                runtime.spawn(async move {
                    tokio::time::sleep(lag).await;
                    limit.release(ip);
                });
            }
            _ => self.limit.release(self.ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_cap_and_slots_come_back() {
        let limit = ClientLimit::new(2, Duration::ZERO);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let (a1, n) = limit.try_take(a).expect("first");
        assert_eq!(n, 1);
        let (_a2, n) = limit.try_take(a).expect("second");
        assert_eq!(n, 2);
        assert!(limit.try_take(a).is_none(), "third from the same client is refused");
        let (_b1, n) = limit.try_take(b).expect("another client is not affected");
        assert_eq!(n, 1);
        drop(a1);
        assert!(limit.try_take(a).is_some(), "a closed connection frees its slot");
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_lag_a_closed_connection_counts_until_it_has_passed() {
        let limit = ClientLimit::new(1, Duration::from_millis(200));
        let a: IpAddr = [127, 0, 0, 2].into();
        let (slot, _) = limit.try_take(a).expect("first");
        drop(slot);
        assert!(limit.try_take(a).is_none(), "still counted right after the close");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(limit.try_take(a).is_none(), "still counted within the lag");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(limit.try_take(a).is_some(), "free once the lag has passed");
    }
}
