//! A queue as an operator sees it: its counts, its oldest recipient, its next attempt and the
//! connection limits of its routes; and the merge of every campaign's answer into one list.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::SystemTime;

use volley_engine::pool::RouteConcurrency;

use super::controls::Suspension;
use super::scope::{QueueScope, ScopeError};

/// How queues are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// By MX site (the site key: sorted MX host names, or `route:ip:port`).
    Site,
    /// By recipient domain.
    Domain,
    /// By the source IP of the last attempt (`-`: not tried yet).
    SourceIp,
    /// By provider group.
    Provider,
}

impl std::str::FromStr for GroupBy {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<GroupBy, ScopeError> {
        match s {
            "site" => Ok(GroupBy::Site),
            "domain" => Ok(GroupBy::Domain),
            "source_ip" | "ip" => Ok(GroupBy::SourceIp),
            "provider" => Ok(GroupBy::Provider),
            _ => Err(ScopeError {
                field: "by".into(),
                value: s.into(),
                reason: "expected site, domain, source_ip or provider".into(),
            }),
        }
    }
}

impl GroupBy {
    /// The key of a recipient of `domain` at `site` (group `provider`) last tried from
    /// `last_ip`.
    pub fn key(self, domain: &str, site: &str, provider: &str, last_ip: Option<IpAddr>) -> String {
        match self {
            GroupBy::Site => site.to_string(),
            GroupBy::Domain => domain.to_string(),
            GroupBy::Provider => provider.to_string(),
            GroupBy::SourceIp => last_ip.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        }
    }

    /// The scope a queue of this grouping with key `key` is (none for `-`, the untried).
    fn scope(self, key: &str) -> Option<QueueScope> {
        match self {
            GroupBy::Site => Some(QueueScope::Site { site: key.into() }),
            GroupBy::Domain => Some(QueueScope::Domain { domain: key.into() }),
            GroupBy::SourceIp => key.parse().ok().map(|source_ip| QueueScope::SourceIp { source_ip }),
            GroupBy::Provider => None,
        }
    }
}

/// One queue's counts in one campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rendered and waiting for their turn at the site.
    pub ready: u64,
    /// Handed to the engine (queued at a connection or on the wire).
    pub in_flight: u64,
    /// Waiting for room at a busy site, as rows to read again.
    pub parked: u64,
    /// Deferred, waiting for their next attempt.
    pub retrying: u64,
    /// Waiting because their domain or site is suspended.
    pub suspended: u64,
    /// When the oldest recipient was first tried (or read, when not tried yet).
    pub oldest: Option<SystemTime>,
    /// When the earliest retry is due.
    pub next_attempt: Option<SystemTime>,
    /// MX host names of the queue's sites (their connection limits are the queue's).
    pub mx_hosts: BTreeSet<String>,
}

fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Tally {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: Tally) {
        self.ready += other.ready;
        self.in_flight += other.in_flight;
        self.parked += other.parked;
        self.retrying += other.retrying;
        self.suspended += other.suspended;
        self.oldest = earliest(self.oldest, other.oldest);
        self.next_attempt = earliest(self.next_attempt, other.next_attempt);
        self.mx_hosts.extend(other.mx_hosts);
    }

    /// Notes a recipient first tried (or read) at `first_at`.
    pub fn saw(&mut self, first_at: SystemTime) {
        self.oldest = earliest(self.oldest, Some(first_at));
    }
}

/// A route's connection limit, as the queue view shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RouteLimit {
    pub source_ip: IpAddr,
    pub mx: String,
    /// Connections the route may have open now.
    pub limit: usize,
    /// Whether the limit was learned from the receiver's refusals.
    pub learned: bool,
}

/// One queue over every running campaign.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QueueView {
    /// The site, domain, source IP or provider group.
    pub key: String,
    pub ready: u64,
    pub in_flight: u64,
    pub parked: u64,
    pub retrying: u64,
    /// Waiting because their domain or site is suspended.
    pub suspended_recipients: u64,
    /// Whether this queue's own scope is suspended.
    pub suspended: bool,
    /// When the oldest recipient was first tried or read (RFC 3339), and its age in seconds.
    pub oldest: Option<String>,
    pub oldest_age_s: Option<u64>,
    /// When the earliest retry is due (RFC 3339).
    pub next_attempt: Option<String>,
    /// The connection limits of the queue's routes (its MX hosts, or its source IP).
    pub connection_limits: Vec<RouteLimit>,
    /// The campaigns with recipients here.
    pub campaigns: Vec<String>,
}

/// What an action did in one campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Affected {
    /// Rendered recipients waiting for their turn.
    pub ready: u64,
    /// Rows parked behind a busy site.
    pub parked: u64,
    /// Deferred recipients waiting for their next attempt.
    pub retrying: u64,
    /// Recipients waiting because their domain or site is suspended.
    pub suspended: u64,
    /// On the wire or queued at a connection: left alone.
    pub in_flight_untouched: u64,
}

impl Affected {
    /// Recipients the action changed.
    pub fn total(&self) -> u64 {
        self.ready + self.parked + self.retrying + self.suspended
    }

    /// Adds `other`'s counts (another campaign's).
    pub fn add(&mut self, other: &Affected) {
        self.ready += other.ready;
        self.parked += other.parked;
        self.retrying += other.retrying;
        self.suspended += other.suspended;
        self.in_flight_untouched += other.in_flight_untouched;
    }
}

/// Merges the campaigns' answers (`(campaign, [(key, tally)])`) into queues sorted by key.
pub(crate) fn merge(
    by: GroupBy,
    answers: Vec<(String, Vec<(String, Tally)>)>,
    limits: &[RouteConcurrency],
    suspended: &[Suspension],
) -> Vec<QueueView> {
    let mut queues: BTreeMap<String, (Tally, BTreeSet<String>)> = BTreeMap::new();
    for (campaign, tallies) in answers {
        for (key, tally) in tallies {
            let q = queues.entry(key).or_default();
            q.0.add(tally);
            q.1.insert(campaign.clone());
        }
    }
    // A suspended scope shows even with nothing queued.
    for s in suspended {
        let key = match (&s.scope, by) {
            (QueueScope::Domain { domain }, GroupBy::Domain) => domain.clone(),
            (QueueScope::Site { site }, GroupBy::Site) => site.clone(),
            (QueueScope::SourceIp { source_ip }, GroupBy::SourceIp) => source_ip.to_string(),
            _ => continue,
        };
        queues.entry(key).or_default();
    }
    let now = SystemTime::now();
    let stamp = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    queues
        .into_iter()
        .map(|(key, (t, campaigns))| {
            let connection_limits = limits
                .iter()
                .filter(|r| match by {
                    GroupBy::SourceIp => r.source_ip.to_string() == key,
                    _ => t.mx_hosts.contains(&r.mx),
                })
                .map(|r| RouteLimit {
                    source_ip: r.source_ip,
                    mx: r.mx.clone(),
                    limit: r.limit,
                    learned: r.learned,
                })
                .collect();
            let scope = by.scope(&key);
            QueueView {
                suspended: scope
                    .as_ref()
                    .is_some_and(|sc| suspended.iter().any(|s| &s.scope == sc)),
                ready: t.ready,
                in_flight: t.in_flight,
                parked: t.parked,
                retrying: t.retrying,
                suspended_recipients: t.suspended,
                oldest: t.oldest.map(stamp),
                oldest_age_s: t.oldest.map(|o| now.duration_since(o).unwrap_or_default().as_secs()),
                next_attempt: t.next_attempt.map(stamp),
                connection_limits,
                campaigns: campaigns.into_iter().collect(),
                key,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn campaigns_merge_per_key_with_their_limits_and_suspensions() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let tally = |ready, oldest: u64, host: &str| Tally {
            ready,
            retrying: 1,
            oldest: Some(t0 + Duration::from_secs(oldest)),
            next_attempt: Some(t0 + Duration::from_secs(100 + oldest)),
            mx_hosts: [host.to_string()].into(),
            ..Tally::default()
        };
        let answers = vec![
            ("a".to_string(), vec![("x.test".to_string(), tally(2, 10, "mx1"))]),
            (
                "b".to_string(),
                vec![
                    ("x.test".to_string(), tally(3, 5, "mx1")),
                    ("y.test".to_string(), tally(1, 0, "mx2")),
                ],
            ),
        ];
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let limits = vec![RouteConcurrency {
            source_ip: ip,
            mx: "mx1".into(),
            mx_addr: "127.0.0.1:25".parse().unwrap(),
            limit: 3,
            cap: 10,
            learned: true,
            open: 1,
            refusals: 2,
            open_at_refusal: 3,
            destination: None,
            outside_cap: None,
        }];
        let suspended = vec![Suspension {
            scope: QueueScope::Domain {
                domain: "z.test".into(),
            },
            since: "2026-12-04T12:00:00Z".into(),
        }];
        let v = merge(GroupBy::Domain, answers, &limits, &suspended);
        let keys: Vec<&str> = v.iter().map(|q| q.key.as_str()).collect();
        assert_eq!(keys, ["x.test", "y.test", "z.test"]);
        assert_eq!((v[0].ready, v[0].retrying), (5, 2));
        assert_eq!(v[0].campaigns, ["a", "b"]);
        assert_eq!(v[0].oldest.as_deref(), Some("2027-01-15T08:00:05Z"));
        assert_eq!(v[0].next_attempt.as_deref(), Some("2027-01-15T08:01:45Z"));
        assert_eq!(v[0].connection_limits.len(), 1);
        assert!(v[0].connection_limits[0].learned && v[0].connection_limits[0].limit == 3);
        assert!(v[1].connection_limits.is_empty());
        assert!(v[2].suspended && !v[0].suspended);
        assert_eq!(v[2].ready, 0);
        assert_eq!("ip".parse::<GroupBy>(), Ok(GroupBy::SourceIp));
        let e = "mx".parse::<GroupBy>().unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("by", "mx"));
    }
}
