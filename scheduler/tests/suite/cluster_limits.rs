//! Connection limits shared by the nodes sending from one source IP, against a real
//! `redis-server`: two nodes' pools (their route views given by the test) publish their open
//! connections; a refusal seen by one records the receiver's cap as what both had open (its own
//! count at the refusal, the other's on both sides of it); each node's ceiling is its share; a
//! third node gets the cap for a route it has not opened yet; a stale node stops counting; a
//! cap lapses after `CAP_FOR`.

use std::net::IpAddr;

use volley_bench::RedisServer;
use volley_engine::pool::RouteConcurrency;
use volley_scheduler::cluster::limits::{LimitShare, CAP_FOR, FRESH};

const MX: &str = "mx1.big.test";

fn ip() -> IpAddr {
    "127.0.0.2".parse().expect("ip")
}

/// A pool's view of its route to `MX` from 127.0.0.2.
fn route(open: usize, refusals: u64) -> RouteConcurrency {
    refused(open, refusals, if refusals > 0 { open } else { 0 })
}

/// The same, refused last with `open_at_refusal` open.
fn refused(open: usize, refusals: u64, open_at_refusal: usize) -> RouteConcurrency {
    RouteConcurrency {
        source_ip: ip(),
        mx: MX.into(),
        mx_addr: "127.0.0.1:25".parse().expect("addr"),
        limit: open.max(1),
        cap: 20,
        learned: refusals > 0,
        open,
        refusals,
        open_at_refusal,
        destination: None,
        outside_cap: None,
    }
}

fn ceiling(changes: &[(IpAddr, String, Option<usize>)]) -> Option<Option<usize>> {
    changes.iter().find(|(i, mx, _)| *i == ip() && mx == MX).map(|c| c.2)
}

#[test]
fn nodes_on_one_source_ip_learn_the_receiver_s_cap_together_and_split_it() {
    let redis = RedisServer::start();
    let open = |node: &str| LimitShare::open(&redis.url(), node, &[ip()]).expect("open");
    let (mut a, mut b, mut c) = (open("a"), open("b"), open("c"));
    let t = 1_800_000_000_000u64;

    // Both send; no refusal yet: nothing to apply.
    assert!(a.tick(&[route(3, 0)], t).expect("tick").is_empty());
    assert!(b.tick(&[route(2, 0)], t).expect("tick").is_empty());
    // A's pool sees a refusal with 3 open, while B has 2: the receiver allows 5 from this IP.
    // Decided a round later, when B has published again.
    assert!(a.tick(&[route(3, 1)], t + 1000).expect("tick").is_empty());
    assert!(b.tick(&[route(2, 0)], t + 1000).expect("tick").is_empty());
    let changes = a.tick(&[route(3, 1)], t + 2000).expect("tick");
    // A's share: even (2) or what B leaves (5 - 2 = 3): 3.
    assert_eq!(ceiling(&changes), Some(Some(3)), "{changes:?}");
    let changes = b.tick(&[route(2, 0)], t + 2000).expect("tick");
    assert_eq!(ceiling(&changes), Some(Some(2)), "B: 5 - 3 open at A");
    // Nothing changed: nothing to apply again.
    assert!(b.tick(&[route(2, 0)], t + 3000).expect("tick").is_empty());

    // C has not sent to the MX yet: it gets its share for when it does.
    let changes = c.tick(&[], t + 3000).expect("tick");
    assert_eq!(ceiling(&changes), Some(Some(1)), "5 / 3 nodes, the others use all 5");
    assert_eq!(c.applied().get(&(ip(), MX.to_owned())), Some(&1));

    // A stops publishing (it died): after FRESH it no longer counts; B may use the whole cap.
    let later = t + 2000 + FRESH.as_millis() as u64 + 1000;
    let changes = b.tick(&[route(2, 0)], later).expect("tick");
    assert_eq!(ceiling(&changes), Some(Some(5)), "{changes:?}");

    // The cap lapses after CAP_FOR: the ceiling is lifted, each node learns on its own again.
    let lapsed = t + 2000 + CAP_FOR.as_millis() as u64 + 1000;
    let changes = b.tick(&[route(2, 0)], lapsed).expect("tick");
    assert_eq!(ceiling(&changes), Some(None), "{changes:?}");
    assert!(b.applied().is_empty());
}

/// Regression (CI, our sink allowing 4 per client, two nodes starting together): the cap was
/// learned as 2 — the refused node's count taken a moment after the refusal, plus the other
/// node's count published before it, while that node was still opening connections.
#[test]
fn a_cap_counts_the_refused_node_at_the_refusal_and_the_others_on_both_sides_of_it() {
    let redis = RedisServer::start();
    let open = |node: &str| LimitShare::open(&redis.url(), node, &[ip()]).expect("open");
    let (mut a, mut b) = (open("a"), open("b"));
    let t = 1_800_000_000_000u64;
    assert!(a.tick(&[route(1, 0)], t).expect("tick").is_empty());
    assert!(b.tick(&[route(1, 0)], t + 100).expect("tick").is_empty());
    // B opens two more: 1 at A and 3 at B are the receiver's 4. A asks for a second and is
    // refused with 1 open. Then B closes one.
    b.sample(&[route(3, 0)]);
    b.sample(&[route(2, 0)]);
    // A's round after the refusal: its connection has closed since (the chunk ended). B's
    // count on record is from before the refusal.
    assert!(a.tick(&[refused(0, 1, 1)], t + 1000).expect("tick").is_empty());
    // B publishes the most it had open since its last round.
    assert!(b.tick(&[route(2, 0)], t + 1100).expect("tick").is_empty());
    let changes = a.tick(&[refused(0, 1, 1)], t + 2000).expect("tick");
    // The cap is 1 (A at the refusal) + 3 (the most B had around it) = 4, not 0 + 1.
    // A's share: even (2), or what B leaves of 4 after its 3 (1): 2.
    assert_eq!(ceiling(&changes), Some(Some(2)), "{changes:?}");
    let changes = b.tick(&[route(2, 0)], t + 2100).expect("tick");
    assert_eq!(ceiling(&changes), Some(Some(4)), "B: A has nothing open: {changes:?}");
}
