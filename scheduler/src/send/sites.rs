//! Per-site ready queues served round robin, and the choice of MX host within a site.
//!
//! A site is the unit that shares queues and limits: the MX host set of a group of domains (or
//! a routing override's target). Each site has its own ready queue and an in-flight cap; the
//! ring holds the sites that have work and room, and each turn takes a small batch from one
//! site before moving to the next. A slow site fills its own cap and then simply stops being
//! in the ring, so it cannot take the others' turns or the run's in-flight budget. Work beyond
//! a site's ready cap is parked as a [`RowRef`] (line and offset, no message), so memory stays
//! bounded however lopsided the campaign is.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::job::{Job, RowRef};
use crate::routing::Destination;

/// One site's queues.
pub(crate) struct Site {
    pub dest: Destination,
    pub ready: VecDeque<Job>,
    pub parked: VecDeque<RowRef>,
    /// Domains of this site the producer parks unrendered while `parked` is not empty.
    pub congested: Vec<Box<str>>,
    /// Parked rows being read again right now.
    pub unparking: usize,
    pub in_flight: usize,
    /// The engine queue of the last route tried had no room; cleared by the next report.
    pub blocked: bool,
    /// The site's provider group (warm-up budgets), set when its first job is queued.
    pub provider: Option<Arc<str>>,
    /// The site's destination policy (`None`: the pool's settings), set with `provider`.
    pub policy: Option<Arc<volley_engine::RoutePolicy>>,
    /// Its rate per source IP and the block that set it.
    pub rate: Option<(Arc<str>, volley_warmup::Rate)>,
    /// No source IP has warm-up budget for this site's provider (or destination rate) until
    /// then.
    pub held_until: Option<Instant>,
    /// Whether that hold is for warm-up budget (not a destination rate).
    pub held_for_budget: bool,
    in_ring: bool,
    /// Round-robin position among equal-preference hosts.
    rr: usize,
}

/// All sites and the ring of those that can send.
#[derive(Default)]
pub(crate) struct Sites {
    map: HashMap<Arc<str>, Site>,
    ring: VecDeque<Arc<str>>,
    /// Held sites by the time their hold ends (earliest first).
    holds: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    /// Parked rows over all sites.
    pub parked: usize,
}

impl Sites {
    /// The site `dest` names, created on first use; its destination is refreshed (DNS answers
    /// change).
    pub fn site(&mut self, dest: &Destination) -> &mut Site {
        let site = self.map.entry(dest.site.clone()).or_insert_with(|| Site {
            dest: dest.clone(),
            ready: VecDeque::new(),
            parked: VecDeque::new(),
            congested: Vec::new(),
            unparking: 0,
            in_flight: 0,
            blocked: false,
            provider: None,
            policy: None,
            rate: None,
            held_until: None,
            held_for_budget: false,
            in_ring: false,
            rr: 0,
        });
        if site.dest.hosts != dest.hosts {
            site.dest = dest.clone();
        }
        if site.dest.sts != dest.sts {
            // A new MTA-STS policy (its id changed): the route policy is built again.
            site.dest = dest.clone();
            site.provider = None;
        }
        site
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Site> {
        self.map.get_mut(key)
    }

    pub fn get(&self, key: &str) -> Option<&Site> {
        self.map.get(key)
    }

    /// Every site (queue control walks them when an operator asks).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Site)> {
        self.map.iter()
    }

    /// Every site, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut Site)> {
        self.map.iter_mut()
    }

    /// Puts `key` in the ring if it has work, room under `cap` and is neither blocked nor held.
    pub fn wake(&mut self, key: &Arc<str>, cap: usize) {
        if let Some(site) = self.map.get_mut(key) {
            if !site.in_ring
                && !site.blocked
                && site.held_until.is_none()
                && site.in_flight < cap
                && !site.ready.is_empty()
            {
                site.in_ring = true;
                self.ring.push_back(key.clone());
            }
        }
    }

    /// Clears every site's `blocked` mark and puts every site that can send back in the ring
    /// (when other campaigns share the pool, room can free up without a report of ours).
    pub fn wake_all(&mut self, cap: usize) {
        let keys: Vec<Arc<str>> = self
            .map
            .iter_mut()
            .filter(|(_, s)| !s.ready.is_empty())
            .map(|(k, s)| {
                s.blocked = false;
                k.clone()
            })
            .collect();
        for key in keys {
            self.wake(&key, cap);
        }
    }

    /// Holds site `key` (out of the ring) until `until`: no IP has warm-up budget (`budget`)
    /// or destination rate for it before. For a warm-up hold its queued jobs are marked as
    /// waiting for budget from `now` (the summary's warm-up waits).
    pub fn hold(&mut self, key: &Arc<str>, until: Instant, now: Instant, budget: bool) {
        if let Some(site) = self.map.get_mut(key) {
            if site.held_until.is_none_or(|t| t < until) {
                site.held_until = Some(until);
                site.held_for_budget = budget;
                self.holds.push(Reverse((until, key.clone())));
            }
            if budget {
                for job in &mut site.ready {
                    job.held_since.get_or_insert(now);
                }
            }
        }
    }

    /// Ends the holds due by `now` and puts those sites back in the ring.
    pub fn release(&mut self, now: Instant, cap: usize) {
        while let Some(Reverse((until, _))) = self.holds.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, key))) = self.holds.pop() else {
                break;
            };
            if let Some(site) = self.map.get_mut(&key) {
                // A later hold of the same site has its own entry.
                if site.held_until == Some(until) {
                    site.held_until = None;
                    self.wake(&key, cap);
                }
            }
        }
    }

    /// When the earliest hold ends.
    pub fn next_release(&self) -> Option<Instant> {
        self.holds.peek().map(|Reverse((until, _))| *until)
    }

    /// The next site whose turn it is (taken out of the ring; [`Sites::wake`] puts it back).
    pub fn next_turn(&mut self) -> Option<Arc<str>> {
        let key = self.ring.pop_front()?;
        if let Some(site) = self.map.get_mut(&key) {
            site.in_ring = false;
        }
        Some(key)
    }

    /// Sites in the ring.
    pub fn ring_len(&self) -> usize {
        self.ring.len()
    }

    /// Drops all queued work (shutdown); returns how many rendered jobs were dropped.
    pub fn clear(&mut self) -> usize {
        self.ring.clear();
        self.parked = 0;
        let mut dropped = 0;
        for site in self.map.values_mut() {
            dropped += site.ready.len();
            site.ready.clear();
            site.parked.clear();
            site.in_ring = false;
        }
        dropped
    }
}

/// Which host of `site` a job goes to: among hosts it has not tried in this attempt and that
/// are not marked down, the lowest preference, rotating among equals (RFC 5321 §5.1). `None`
/// when every untried host is down.
pub(crate) fn pick_host(
    site: &mut Site,
    tried: u64,
    down: &HashMap<SocketAddr, Instant>,
    now: Instant,
) -> Option<usize> {
    let usable = |i: usize, addr: &SocketAddr| {
        i < 64 && tried & (1 << i) == 0 && down.get(addr).is_none_or(|until| *until <= now)
    };
    let best = site
        .dest
        .hosts
        .iter()
        .enumerate()
        .filter(|(i, (_, h))| usable(*i, &h.addr))
        .map(|(_, (pref, _))| *pref)
        .min()?;
    let group = site
        .dest
        .hosts
        .iter()
        .enumerate()
        .filter(|(i, (pref, h))| *pref == best && usable(*i, &h.addr))
        .count();
    let pick = site.rr % group;
    site.rr = site.rr.wrapping_add(1);
    site.dest
        .hosts
        .iter()
        .enumerate()
        .filter(|(i, (pref, h))| *pref == best && usable(*i, &h.addr))
        .nth(pick)
        .map(|(i, _)| i)
}

/// Whether `site` has a host the job has not tried yet (down or not).
pub(crate) fn has_untried(site: &Site, tried: u64) -> bool {
    (0..site.dest.hosts.len().min(64)).any(|i| tried & (1 << i) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_engine::MxHost;

    fn site(hosts: &[(u16, &str)]) -> Site {
        let hosts: Vec<(u16, MxHost)> = hosts
            .iter()
            .map(|(p, a)| {
                (
                    *p,
                    MxHost {
                        name: Arc::from(*a),
                        addr: a.parse().unwrap(),
                    },
                )
            })
            .collect();
        let mut sites = Sites::default();
        let dest = Destination {
            site: Arc::from("s"),
            hosts: Arc::from(hosts),
            sts: None,
        };
        sites.site(&dest);
        sites.map.remove("s").unwrap()
    }

    #[test]
    fn lowest_preference_first_rotating_among_equals_then_fallback() {
        let mut s = site(&[(10, "127.0.0.10:25"), (10, "127.0.0.11:25"), (20, "127.0.0.12:25")]);
        let now = Instant::now();
        let mut down = HashMap::new();
        let picks: Vec<_> = (0..4).map(|_| pick_host(&mut s, 0, &down, now)).collect();
        assert_eq!(picks, [Some(0), Some(1), Some(0), Some(1)]);
        // Host 0 tried: the other preference-10 host.
        assert_eq!(pick_host(&mut s, 0b001, &down, now), Some(1));
        // Both preference-10 hosts tried: the preference-20 one.
        assert_eq!(pick_host(&mut s, 0b011, &down, now), Some(2));
        // A host marked down is skipped until its time passes.
        down.insert(
            "127.0.0.10:25".parse().unwrap(),
            now + std::time::Duration::from_secs(60),
        );
        assert_eq!(pick_host(&mut s, 0b010, &down, now), Some(2));
        assert_eq!(pick_host(&mut s, 0b110, &down, now), None);
        assert!(has_untried(&s, 0b110));
        assert!(!has_untried(&s, 0b111));
        let later = now + std::time::Duration::from_secs(61);
        assert_eq!(pick_host(&mut s, 0b110, &down, later), Some(0));
    }
}
