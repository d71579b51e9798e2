//! Campaign priority when several campaigns share one delivery pool (`volley send a.toml
//! b.toml …`): at a site where a higher-priority campaign has messages ready and room to send
//! them, lower-priority campaigns hold back, so the engine's connections to that site go to
//! the higher one first. Sites the higher campaign does not use are not affected, and a lower
//! campaign takes whatever capacity the higher one leaves idle. Campaigns of equal priority
//! share a site evenly: one with more deliveries in flight there than another that is waiting
//! lets that one go first. The chunks of one cluster campaign on a node are one campaign for
//! this: they never hold back for each other (taking turns, each waited for a recheck while
//! the engine's queue drained, and connections that found it empty sent their next message
//! alone instead of pipelined behind the last: benches/cluster.sh), and together they take
//! turns with other campaigns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How soon a campaign that held back (or found the pool full of others' work) looks again.
pub(crate) const RECHECK: Duration = Duration::from_millis(20);

/// One campaign's work at one site.
#[derive(Clone, Copy, Default)]
struct Load {
    ready: usize,
    in_flight: usize,
}

/// What every campaign of the run has waiting, per site.
pub(crate) struct PriorityGate {
    /// Index = campaign; campaigns join while others run ([`PriorityGate::join`]).
    members: RwLock<Vec<Member>>,
    /// Site -> the campaigns with work there (campaign index, its load): messages ready to
    /// send, deliveries in flight. Only campaigns not retired, so a long-running process that
    /// launched many campaigns (a cluster node's chunks under `volley serve`) looks at those
    /// running now, not at every one it ever ran.
    ready: Mutex<SiteLoads>,
}

/// A campaign at the gate.
struct Member {
    priority: u8,
    /// The cluster campaign of a chunk: the members of a group never hold back for each other.
    group: Option<Arc<str>>,
}

/// Site -> (campaign index, its load) of each campaign with work there.
type SiteLoads = HashMap<Arc<str>, Vec<(usize, Load)>>;

impl PriorityGate {
    /// A gate for campaigns with these priorities (index = campaign).
    pub fn new(priorities: Vec<u8>) -> PriorityGate {
        PriorityGate {
            members: RwLock::new(
                priorities
                    .into_iter()
                    .map(|priority| Member { priority, group: None })
                    .collect(),
            ),
            ready: Mutex::new(HashMap::new()),
        }
    }

    /// A campaign joins with `priority`, in `group` if it has one (a chunk, in its cluster
    /// campaign's: the members of a group never hold back for each other); returns its index.
    pub fn join(&self, priority: u8, group: Option<&str>) -> usize {
        let mut members = self.members.write().unwrap_or_else(|e| e.into_inner());
        members.push(Member {
            priority,
            group: group.map(Arc::from),
        });
        members.len() - 1
    }

    /// A campaign that finished or was cancelled no longer holds any site.
    pub fn retire(&self, campaign: usize) {
        let mut map = self.map();
        for loads in map.values_mut() {
            loads.retain(|(c, _)| *c != campaign);
        }
        map.retain(|_, loads| !loads.is_empty());
    }

    fn map(&self) -> std::sync::MutexGuard<'_, SiteLoads> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Campaign `campaign` has `ready` messages it could send at `site` now and `in_flight`
    /// deliveries there.
    pub fn publish(&self, campaign: usize, site: &Arc<str>, ready: usize, in_flight: usize) {
        let load = Load { ready, in_flight };
        let mut map = self.map();
        match map.get_mut(site) {
            Some(loads) => match loads.iter_mut().find(|(c, _)| *c == campaign) {
                Some((_, l)) => *l = load,
                None => loads.push((campaign, load)),
            },
            None if ready == 0 && in_flight == 0 => {}
            None => {
                map.insert(site.clone(), vec![(campaign, load)]);
            }
        }
    }

    /// Whether `campaign` should leave `site` to another campaign now: one of higher priority
    /// has messages ready there, or one of equal priority and another group (or none) has
    /// messages ready and fewer deliveries in flight.
    pub fn outranked(&self, campaign: usize, site: &str) -> bool {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        let Some(me) = members.get(campaign) else {
            return false;
        };
        let map = self.map();
        let Some(loads) = map.get(site) else { return false };
        let my_flight = loads
            .iter()
            .find(|(c, _)| *c == campaign)
            .map_or(0, |(_, l)| l.in_flight);
        loads.iter().any(|&(i, load)| {
            let Some(other) = members.get(i).filter(|_| i != campaign && load.ready > 0) else {
                return false;
            };
            let same_group = me.group.is_some() && other.group == me.group;
            other.priority > me.priority || (other.priority == me.priority && !same_group && load.in_flight < my_flight)
        })
    }
}

/// A campaign's place at the gate.
#[derive(Clone)]
pub(crate) struct Seat {
    pub gate: Arc<PriorityGate>,
    pub campaign: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_higher_priority_with_ready_work_at_the_same_site_outranks() {
        let gate = PriorityGate::new(vec![1, 9, 5]);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("site-a"), Arc::from("site-b"));
        assert!(!gate.outranked(0, &a));
        gate.publish(1, &a, 10, 0);
        assert!(gate.outranked(0, &a), "9 outranks 1 at a");
        assert!(gate.outranked(2, &a), "9 outranks 5 at a");
        assert!(!gate.outranked(1, &a), "nobody outranks 9");
        assert!(!gate.outranked(0, &b), "other sites are not affected");
        gate.publish(1, &a, 0, 4);
        assert!(!gate.outranked(0, &a), "nothing ready: the rest of the site is free");
        gate.publish(2, &b, 3, 0);
        assert!(gate.outranked(0, &b) && !gate.outranked(1, &b));
    }

    #[test]
    fn equal_priorities_take_turns_by_deliveries_in_flight() {
        let gate = PriorityGate::new(vec![5, 5]);
        let s: Arc<str> = Arc::from("s");
        gate.publish(0, &s, 100, 8);
        gate.publish(1, &s, 100, 2);
        assert!(gate.outranked(0, &s), "0 has more on the wire: 1 goes first");
        assert!(!gate.outranked(1, &s));
        gate.publish(1, &s, 100, 8);
        assert!(!gate.outranked(0, &s) && !gate.outranked(1, &s), "even: both may send");
    }

    #[test]
    fn a_campaign_joining_later_outranks_and_a_retired_one_holds_nothing() {
        let gate = PriorityGate::new(vec![1]);
        let s: Arc<str> = Arc::from("s");
        gate.publish(0, &s, 10, 1);
        let urgent = gate.join(9, None);
        assert_eq!(urgent, 1);
        assert!(!gate.outranked(0, &s));
        gate.publish(urgent, &s, 5, 0);
        assert!(gate.outranked(0, &s));
        gate.retire(urgent);
        assert!(!gate.outranked(0, &s), "a cancelled campaign leaves the site free");
    }

    /// Regression (benches/cluster.sh): a node's chunks took turns by deliveries in flight,
    /// each waiting for a recheck while the engine's queue ran dry.
    #[test]
    fn the_chunks_of_one_cluster_campaign_never_hold_back_for_each_other() {
        let gate = PriorityGate::new(Vec::new());
        let s: Arc<str> = Arc::from("s");
        let (a, b) = (gate.join(5, Some("news")), gate.join(5, Some("news")));
        gate.publish(a, &s, 100, 8);
        gate.publish(b, &s, 100, 2);
        assert!(
            !gate.outranked(a, &s) && !gate.outranked(b, &s),
            "one campaign: no turns"
        );
        // Another campaign of equal priority still takes turns with them.
        let other = gate.join(5, Some("offers"));
        gate.publish(other, &s, 100, 1);
        assert!(gate.outranked(a, &s) && gate.outranked(b, &s));
        gate.publish(other, &s, 100, 9);
        assert!(gate.outranked(other, &s) && !gate.outranked(a, &s));
        // And a higher priority still goes first.
        let urgent = gate.join(9, Some("news"));
        gate.publish(urgent, &s, 1, 0);
        assert!(gate.outranked(a, &s) && gate.outranked(b, &s) && !gate.outranked(urgent, &s));
    }

    /// A process that runs campaign after campaign (a cluster node's chunks) keeps only the
    /// running ones at each site.
    #[test]
    fn retired_campaigns_leave_no_trace_at_a_site() {
        let gate = PriorityGate::new(Vec::new());
        let s: Arc<str> = Arc::from("s");
        for _ in 0..1000 {
            let c = gate.join(5, None);
            gate.publish(c, &s, 10, 1);
            gate.retire(c);
        }
        assert!(gate.map().is_empty(), "no site holds a retired campaign");
        let (a, b) = (gate.join(5, None), gate.join(5, None));
        gate.publish(a, &s, 10, 3);
        gate.publish(b, &s, 10, 1);
        assert!(gate.outranked(a, &s) && !gate.outranked(b, &s));
        assert_eq!(gate.map()[&s].len(), 2);
    }
}
