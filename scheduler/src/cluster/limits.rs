//! Connection limits learned together by the nodes that send from the same source IP.
//!
//! A receiver caps connections per client address. When several nodes send from one source IP
//! (the same egress address behind NAT, an address moved between machines), each node's pool
//! learns only its own part of that cap, and each probes above it on its own. So every node
//! publishes, once per [`SHARE_EVERY`], how many connections it has open per (source IP, MX
//! host) — the most it had open since it last published, sampled every [`SAMPLE_EVERY`]. When
//! its pool sees a new refusal, the node records the receiver's cap as what all nodes had open
//! then: its own count at the refusal, plus what each other node published on both sides of
//! it (so the cap is decided one round later; a count published before the refusal misses a
//! node that was still opening connections). Every node sets its pool's ceiling for that route
//! to its share of the cap: an even share, or what the others leave unused if that is more. A
//! cap is kept for [`CAP_FOR`], then lifted, and learned again if the receiver still refuses.
//!
//! Keys, hash-tagged per source IP: `volley:{ip:<ip>}:open` (hash `<mx>\t<node>` → `<open>
//! <unix ms>[ w]`) and `volley:{ip:<ip>}:cap` (hash `<mx>` → `<cap> <unix ms>`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use volley_engine::pool::RouteConcurrency;

use super::{ClusterError, Store};

/// How often a node publishes its open connections and applies the shared caps.
pub const SHARE_EVERY: Duration = Duration::from_secs(1);

/// How often a node samples its pool's open connections between two publications.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A node's published open count older than this is stale (the node stopped or died).
pub const FRESH: Duration = Duration::from_secs(5);

/// How long a learned cap holds before it is lifted (and learned again on the next refusal).
pub const CAP_FOR: Duration = Duration::from_secs(600);

/// The keys of source IP `ip`.
fn keys(ip: IpAddr) -> (String, String) {
    (format!("volley:{{ip:{ip}}}:open"), format!("volley:{{ip:{ip}}}:cap"))
}

/// One node's share of `cap` when the other nodes on the IP have `others_open` connections
/// open and `nodes` nodes (this one included) use it: the even share, or what the others
/// leave unused if that is more; at least 1.
pub fn share(cap: usize, nodes: usize, others_open: usize) -> usize {
    (cap / nodes.max(1)).max(cap.saturating_sub(others_open)).max(1)
}

/// What one node saw of one (source IP, MX host) route at a tick.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// The most open since the last tick.
    open: usize,
    refusals: u64,
    /// Open when the route was last refused (routes never refused: open now).
    open_at_refusal: usize,
}

/// A refusal whose cap is decided at the next tick: this node's count at the refusal, and
/// the most each other node had published around it.
#[derive(Debug, Default)]
struct Pending {
    own: usize,
    others: HashMap<String, usize>,
}

type Route = (IpAddr, String);

/// A node's part in sharing: its id, the stores of its source IPs, what it saw and applied.
pub struct LimitShare {
    node: String,
    stores: Vec<(IpAddr, Store)>,
    refusals: HashMap<Route, u64>,
    /// The most connections open per route since the last tick (from [`LimitShare::sample`]).
    peaks: HashMap<Route, usize>,
    pending: HashMap<Route, Pending>,
    applied: BTreeMap<Route, usize>,
}

/// A ceiling to set (`Some`) or lift (`None`) on the routes from a source IP to an MX host.
pub type Ceiling = (IpAddr, String, Option<usize>);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `<value> <unix ms>` as stored.
fn parse_stamped(text: &str) -> Option<(usize, u64)> {
    let mut parts = text.split(' ');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A node's use of an MX as published: open connections, when, and whether it was refused
/// since its last look (it wants connections it cannot get: `w` after the time).
fn parse_use(text: &str) -> Option<(usize, u64, bool)> {
    let (open, at) = parse_stamped(text)?;
    Some((open, at, text.split(' ').nth(2) == Some("w")))
}

/// What the other nodes use of a cap `cap` shared by `others.len() + 1` nodes: their open
/// connections, and at least its even share for one refused while it had fewer open (it
/// waits for them).
fn others_use(cap: usize, others: &[(usize, bool)]) -> usize {
    let even = cap / (others.len() + 1).max(1);
    others
        .iter()
        .map(|&(open, wants)| if wants { open.max(even) } else { open })
        .sum()
}

impl LimitShare {
    /// Sharing for `node` over `source_ips`, through the Redis at `url`.
    pub fn open(url: &str, node: &str, source_ips: &[IpAddr]) -> Result<LimitShare, ClusterError> {
        let stores = source_ips
            .iter()
            .map(|ip| Ok((*ip, Store::for_key(url, &keys(*ip).0)?)))
            .collect::<Result<_, ClusterError>>()?;
        Ok(LimitShare {
            node: node.to_owned(),
            stores,
            refusals: HashMap::new(),
            peaks: HashMap::new(),
            pending: HashMap::new(),
            applied: BTreeMap::new(),
        })
    }

    /// The ceilings this node applies now, by (source IP, MX host).
    pub fn applied(&self) -> &BTreeMap<(IpAddr, String), usize> {
        &self.applied
    }

    /// Notes the open connections of `routes` (its pool's view) between two ticks, so the
    /// next tick publishes the most this node had open, not only what is open at that instant.
    pub fn sample(&mut self, routes: &[RouteConcurrency]) {
        for (route, open) in open_by_route(routes) {
            let peak = self.peaks.entry(route).or_default();
            *peak = (*peak).max(open);
        }
    }

    /// One round: publishes this node's open connections per route (`routes`, its pool's
    /// view, and the peaks sampled since the last round), records a cap for each route
    /// refused in the previous round, notes the routes refused since then, and returns the
    /// ceilings that changed. `now` is the wall clock in unix milliseconds (shared between
    /// nodes).
    pub fn tick(&mut self, routes: &[RouteConcurrency], now: u64) -> Result<Vec<Ceiling>, ClusterError> {
        let mut seen: HashMap<Route, Seen> = HashMap::new();
        for r in routes {
            let s = seen.entry((r.source_ip, r.mx.clone())).or_default();
            s.open += r.open;
            s.refusals += r.refusals;
            s.open_at_refusal += if r.refusals > 0 { r.open_at_refusal } else { r.open };
        }
        for (route, peak) in self.peaks.drain() {
            let s = seen.entry(route).or_default();
            s.open = s.open.max(peak);
        }
        let mut changes = Vec::new();
        for (ip, store) in &self.stores {
            let (open_key, cap_key) = keys(*ip);
            let mine: Vec<(&String, &Seen)> = seen
                .iter()
                .filter(|((i, _), _)| i == ip)
                .map(|((_, mx), s)| (mx, s))
                .collect();
            // Refused since the last look: this node wants connections it cannot get.
            let wants =
                |mx: &String, s: &Seen| s.refusals > self.refusals.get(&(*ip, mx.clone())).copied().unwrap_or(0);
            let (others, caps): (HashMap<String, String>, HashMap<String, String>) = store.with("limits", |con| {
                let mut pipe = redis::pipe();
                for (mx, s) in &mine {
                    let flag = if wants(mx, s) { " w" } else { "" };
                    pipe.cmd("HSET")
                        .arg(&open_key)
                        .arg(format!("{mx}\t{}", self.node))
                        .arg(format!("{} {now}{flag}", s.open))
                        .ignore();
                }
                pipe.cmd("PEXPIRE")
                    .arg(&open_key)
                    .arg(FRESH.as_millis() as u64 * 12)
                    .ignore();
                pipe.cmd("HGETALL").arg(&open_key).cmd("HGETALL").arg(&cap_key);
                pipe.query(con)
            })?;
            // Per MX host, the other nodes using it: their open connections, and whether they
            // were refused (they want some).
            let fresh = |at: u64| now.saturating_sub(at) <= FRESH.as_millis() as u64;
            let mut by_mx: HashMap<&str, Vec<(&str, usize, bool)>> = HashMap::new();
            for (field, value) in &others {
                let Some((mx, node)) = field.split_once('\t') else {
                    continue;
                };
                let Some((open, at, wants)) = parse_use(value) else {
                    continue;
                };
                if node != self.node && (open > 0 || wants) && fresh(at) {
                    by_mx.entry(mx).or_default().push((node, open, wants));
                }
            }
            let mut caps: HashMap<String, (usize, u64)> = caps
                .iter()
                .filter_map(|(mx, v)| Some((mx.clone(), parse_stamped(v)?)))
                .filter(|(_, (_, at))| now.saturating_sub(*at) <= CAP_FOR.as_millis() as u64)
                .collect();
            // A refusal of the previous round: the receiver's cap is what every node had open
            // then — this node's count at the refusal, each other's most on either side of it.
            let due: Vec<Route> = self.pending.keys().filter(|(i, _)| i == ip).cloned().collect();
            let decided: Vec<(String, Pending)> = due
                .into_iter()
                .filter_map(|route| Some((route.1.clone(), self.pending.remove(&route)?)))
                .collect();
            for (mx, mut pending) in decided {
                for &(node, open, _) in by_mx.get(mx.as_str()).map_or(&[][..], Vec::as_slice) {
                    let most = pending.others.entry(node.to_owned()).or_default();
                    *most = (*most).max(open);
                }
                let cap = (pending.own + pending.others.values().sum::<usize>()).max(1);
                // Refused with nothing open here: the others' count may lag the receiver's
                // (connections closing); it establishes a cap, it does not lower one.
                if pending.own == 0 && caps.get(mx.as_str()).is_some_and(|(known, _)| cap < *known) {
                    continue;
                }
                store.with("HSET", |con| {
                    redis::pipe()
                        .cmd("HSET")
                        .arg(&cap_key)
                        .arg(mx.as_str())
                        .arg(format!("{cap} {now}"))
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(&cap_key)
                        .arg(CAP_FOR.as_millis() as u64)
                        .ignore()
                        .query::<()>(con)
                })?;
                tracing::info!(source_ip = %ip, mx = mx.as_str(), cap, "receiver's connection cap learned for every node on this source IP");
                caps.insert(mx, (cap, now));
            }
            // A new refusal: noted with what the others published before it, decided next round.
            for (mx, s) in &mine {
                let before = self.refusals.insert((*ip, (*mx).clone()), s.refusals).unwrap_or(0);
                if s.refusals > before {
                    let others = by_mx
                        .get(mx.as_str())
                        .map_or(&[][..], Vec::as_slice)
                        .iter()
                        .map(|&(node, open, _)| (node.to_owned(), open))
                        .collect();
                    self.pending.insert(
                        (*ip, (*mx).clone()),
                        Pending {
                            own: s.open_at_refusal,
                            others,
                        },
                    );
                }
            }
            // This node's share of each known cap (routes it has not opened yet included).
            for (mx, (cap, _)) in &caps {
                let others: Vec<(usize, bool)> = by_mx
                    .get(mx.as_str())
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|&(_, open, wants)| (open, wants))
                    .collect();
                let ceiling = share(*cap, others.len() + 1, others_use(*cap, &others));
                let key = (*ip, mx.clone());
                if self.applied.insert(key, ceiling) != Some(ceiling) {
                    changes.push((*ip, mx.clone(), Some(ceiling)));
                }
            }
            let lifted: Vec<Route> = self
                .applied
                .keys()
                .filter(|(i, mx)| i == ip && !caps.contains_key(mx))
                .cloned()
                .collect();
            for key in lifted {
                self.applied.remove(&key);
                changes.push((key.0, key.1, None));
            }
        }
        Ok(changes)
    }
}

/// Open connections per (source IP, MX host) in a pool's view.
fn open_by_route(routes: &[RouteConcurrency]) -> HashMap<Route, usize> {
    let mut open: HashMap<Route, usize> = HashMap::new();
    for r in routes {
        *open.entry((r.source_ip, r.mx.clone())).or_default() += r.open;
    }
    open
}

/// Shares the limits of `pool_view`'s routes every [`SHARE_EVERY`] (sampling them every
/// [`SAMPLE_EVERY`] in between) until `stop`, applying the ceilings with `apply`. A Redis error
/// is logged and the round skipped (limits stay as they are; each node still learns on its
/// own).
pub async fn run(
    mut share: LimitShare,
    pool_view: impl Fn() -> Vec<RouteConcurrency>,
    apply: impl Fn(IpAddr, &str, Option<usize>),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> LimitShare {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_share: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return share,
        }
        let routes = pool_view();
        if last_share.is_some_and(|at| at.elapsed() + SAMPLE_EVERY / 2 < SHARE_EVERY) {
            share.sample(&routes);
            continue;
        }
        last_share = Some(tokio::time::Instant::now());
        match tokio::task::block_in_place(|| share.tick(&routes, now_ms())) {
            Ok(changes) => {
                for (ip, mx, ceiling) in changes {
                    tracing::debug!(source_ip = %ip, mx, ?ceiling, "shared connection ceiling");
                    apply(ip, &mx, ceiling);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot share connection limits this round"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (a real Postfix, 4 connections per client, two nodes on one IP): the node
    /// that opened first kept all 4 — the other, refused with none open, was not counted —
    /// and the other's deliveries waited until the first ran out of work.
    #[test]
    fn a_node_refused_with_nothing_open_counts_for_its_even_share() {
        assert_eq!(others_use(4, &[(0, true)]), 2, "refused, none open: its half");
        assert_eq!(share(4, 2, others_use(4, &[(0, true)])), 2);
        assert_eq!(others_use(4, &[(3, true)]), 3, "refused with more than its half open");
        assert_eq!(others_use(4, &[(1, false)]), 1, "not refused: what it has open");
        assert_eq!(share(4, 2, others_use(4, &[(1, false)])), 3);
        assert_eq!(others_use(6, &[(0, true), (0, true)]), 4);
        assert_eq!(parse_use("3 1700 w"), Some((3, 1700, true)));
        assert_eq!(
            parse_use("3 1700"),
            Some((3, 1700, false)),
            "as earlier versions publish"
        );
    }

    #[test]
    fn a_share_is_even_or_what_the_others_leave_and_never_zero() {
        assert_eq!(share(4, 2, 2), 2);
        assert_eq!(share(4, 2, 1), 3, "the other node uses less than its half");
        assert_eq!(share(4, 1, 0), 4);
        assert_eq!(share(5, 2, 4), 2, "even share, rounded down");
        assert_eq!(share(2, 4, 6), 1, "more nodes than the cap: one each");
        assert_eq!(share(0, 0, 0), 1);
    }

    #[test]
    fn stamped_values_parse_or_are_ignored() {
        assert_eq!(parse_stamped("4 1700000000000"), Some((4, 1_700_000_000_000)));
        assert_eq!(parse_stamped("x 1"), None);
        assert_eq!(parse_stamped("4"), None);
    }
}
