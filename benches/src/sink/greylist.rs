//! Greylisting (`volley sink --greylist PCT`): a fixed share of recipients — chosen by a hash of
//! the address (`sink/share.rs`), so the same ones on every run and in every sink — gets `451 4.7.1` on its first
//! RCPT from a client network; every later RCPT of it from that network is accepted, however
//! soon it comes (a greylister with no minimum delay). The network is the client's /24 (IPv4)
//! or /64 (IPv6), as postgrey's default `--lookup-by-subnet` does, so a sender retrying from
//! another address of its block is not greylisted again.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

use super::share::in_bottom_share;

/// The reply to a greylisted RCPT.
pub(crate) const GREYLISTED: volley_smtp_server::Reply = volley_smtp_server::Reply::new(
    451,
    volley_smtp_server::EnhancedCode::new(4, 7, 1),
    "Greylisted, please try again later",
);

/// The greylist of one sink: the share and the (network, recipient) pairs already seen.
#[derive(Debug)]
pub(crate) struct Greylist {
    pct: f64,
    seen: Mutex<HashSet<(IpAddr, Box<str>)>>,
}

impl Greylist {
    /// A greylist for `pct` percent (0..=100) of recipients.
    pub(crate) fn new(pct: f64) -> Greylist {
        Greylist {
            pct,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the RCPT of `local@domain` from `peer` is greylisted now: the recipient is in the
    /// share and this is its first RCPT from `peer`'s network. Records the attempt.
    pub(crate) fn defers(&self, peer: IpAddr, local: &str, domain: &str) -> bool {
        let address = format!("{local}@{}", domain.to_ascii_lowercase());
        if !in_bottom_share(&address, self.pct) {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert((network(peer), address.into_boxed_str()))
    }
}

/// The client's /24 (IPv4) or /64 (IPv6).
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_attempt_per_network_is_deferred_then_accepted() {
        let grey = Greylist::new(100.0);
        let a: IpAddr = [127, 0, 0, 2].into();
        let same_block: IpAddr = [127, 0, 0, 3].into();
        let other_block: IpAddr = [127, 0, 1, 2].into();
        assert!(grey.defers(a, "u1", "Grey.test"));
        assert!(!grey.defers(a, "u1", "grey.test"), "the retry passes");
        assert!(!grey.defers(same_block, "u1", "grey.test"), "same /24 passes");
        assert!(
            grey.defers(other_block, "u1", "grey.test"),
            "another network is greylisted"
        );
        assert!(grey.defers(a, "u2", "grey.test"), "another recipient is greylisted");
    }

    #[test]
    fn the_share_is_stable_and_close_to_pct() {
        let grey = Greylist::new(0.0);
        assert!(!grey.defers([127, 0, 0, 2].into(), "u1", "grey.test"));
        let hits = (0..20_000)
            .filter(|i| in_bottom_share(&format!("u{i}@tail{i}.test"), 30.0))
            .count();
        assert!((5_600..6_400).contains(&hits), "{hits} of 20,000 at 30 %");
        assert_eq!(in_bottom_share("u7@a.test", 30.0), in_bottom_share("u7@a.test", 30.0));
        assert!((0..1000).all(|i| in_bottom_share(&format!("u{i}@a.test"), 100.0)));
    }
}
