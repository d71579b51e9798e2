//! Connections per client address, capped the way real receivers cap them (Postfix's
//! `smtpd_client_connection_count_limit`, Exim's `smtp_accept_max_per_host`): a client at its
//! cap gets `421 4.7.0` at the banner.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client address under a cap.
#[derive(Debug)]
pub(crate) struct ClientLimit {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One client's connection slot; gives it back when dropped.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    limit: Arc<ClientLimit>,
    ip: IpAddr,
}

impl ClientLimit {
    pub(crate) fn new(cap: usize) -> Arc<ClientLimit> {
        Arc::new(ClientLimit {
            cap,
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
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.limit.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_cap_and_slots_come_back() {
        let limit = ClientLimit::new(2);
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
}
