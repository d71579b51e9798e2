//! One uncached MX resolution: the MX query, then A and AAAA for every host, classified per
//! RFC 5321 §5.1 and RFC 7505, with the time the outcome may be cached. Every query goes through
//! [`Queries`], which bounds how many are in flight at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_resolver::lookup::{Ipv4Lookup, Ipv6Lookup, Lookup};
use hickory_resolver::proto::rr::RecordType;
use hickory_resolver::{Name, ResolveError, TokioResolver};
use tokio::sync::Semaphore;

use super::answer::{classify, DnsAnswer as Answer};
use super::cache::Outcome;
use super::{DnsConfig, MxAnswer, MxError, MxRecord, MxSite};

/// MX hosts whose addresses are looked up, in preference order; more is a misconfiguration or an
/// attack (each host costs two queries), and no client tries that many hosts anyway.
const MAX_MX_HOSTS: usize = 16;

/// The hickory resolver behind a limit on queries in flight (`dns.max_concurrent_queries`).
///
/// Hickory sends each UDP query from a fresh socket on a random port (source-port randomisation)
/// and starts its timeout when the query is handed over, so without a limit a campaign start
/// (one lookup per recipient domain, then A and AAAA per MX host) opens tens of thousands of
/// sockets at once: `Too many open files`, and a server backlog longer than the timeout, seen as
/// `request timed out`. A permit is taken before each query and released when it ends; waiting
/// for one does not count against the timeout.
pub(super) struct Queries {
    resolver: TokioResolver,
    in_flight: Semaphore,
}

impl Queries {
    /// `resolver` with at most `limit` queries in flight.
    pub(super) fn new(resolver: TokioResolver, limit: usize) -> Queries {
        Queries {
            resolver,
            in_flight: Semaphore::new(limit),
        }
    }

    async fn mx(&self, name: Name) -> Result<Lookup, ResolveError> {
        let _permit = self.in_flight.acquire().await;
        self.resolver.lookup(name, RecordType::MX).await
    }

    async fn ipv4(&self, name: Name) -> Result<Ipv4Lookup, ResolveError> {
        let _permit = self.in_flight.acquire().await;
        self.resolver.ipv4_lookup(name).await
    }

    async fn ipv6(&self, name: Name) -> Result<Ipv6Lookup, ResolveError> {
        let _permit = self.in_flight.acquire().await;
        self.resolver.ipv6_lookup(name).await
    }
}

/// Addresses of one host: A then AAAA (RFC 5321 §5.1 leaves the family order to the client; IPv4
/// first is what most receivers' reputation systems expect from bulk senders).
enum HostAddrs {
    Found(Vec<IpAddr>, Instant, bool),
    None,
    Failed(String),
}

async fn host_addrs(queries: &Queries, name: &Name) -> HostAddrs {
    let (v4, v6) = tokio::join!(queries.ipv4(name.clone()), queries.ipv6(name.clone()));
    let v4 = classify(v4, |l| l.valid_until());
    let v6 = classify(v6, |l| l.valid_until());
    let mut addrs = Vec::new();
    let mut until: Option<Instant> = None;
    let failure = match (&v4, &v6) {
        (Answer::Failed(reason), _) | (_, Answer::Failed(reason)) => Some(reason.clone()),
        _ => None,
    };
    if let Answer::Records(l, u) = &v4 {
        addrs.extend(l.iter().map(|a| IpAddr::V4(a.0)));
        until = Some(*u);
    }
    if let Answer::Records(l, u) = &v6 {
        addrs.extend(l.iter().map(|a| IpAddr::V6(a.0)));
        until = Some(until.map_or(*u, |t| t.min(*u)));
    }
    match (addrs.is_empty(), until, failure) {
        (false, Some(until), failure) => HostAddrs::Found(addrs, until, failure.is_some()),
        (_, _, Some(reason)) => HostAddrs::Failed(reason),
        _ => HostAddrs::None,
    }
}

fn host_text(name: &Name) -> Arc<str> {
    name.to_lowercase().to_ascii().trim_end_matches('.').into()
}

/// Resolves `domain` (lowercase key) / `name` (FQDN) without any cache of ours, returning the
/// outcome and how long it may be cached.
pub(super) async fn resolve_uncached(
    queries: &Queries,
    config: &DnsConfig,
    domain: &Arc<str>,
    name: Name,
) -> (Outcome, Duration) {
    let now = Instant::now();
    let positive = |until: Instant| {
        until
            .saturating_duration_since(now)
            .clamp(config.min_ttl, config.max_ttl)
    };
    let transient = |reason: String| {
        (
            Err(MxError::Transient {
                domain: domain.clone(),
                reason: reason.into(),
            }),
            config.transient_ttl,
        )
    };
    let mx = queries.mx(name.clone()).await;
    let (mut records, mx_until) = match classify(mx, |l| l.valid_until()) {
        Answer::Records(lookup, until) => {
            let mut records: Vec<(u16, Name)> = lookup
                .iter()
                .filter_map(|rdata| rdata.as_mx().map(|mx| (mx.preference(), mx.exchange().to_lowercase())))
                .collect();
            records.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            (records, until)
        }
        Answer::NxDomain => return (Err(MxError::NxDomain { domain: domain.clone() }), config.negative_ttl),
        Answer::NoData => (Vec::new(), now),
        Answer::Failed(reason) => return transient(format!("MX query: {reason}")),
    };
    if records.is_empty() {
        return implicit_mx(queries, config, domain, &name).await;
    }
    // RFC 7505 §3: a single "0 ." record is a null MX; "." mixed with real hosts is ignored.
    if records.iter().all(|(_, host)| host.is_root()) {
        return (Ok(Arc::new(MxAnswer::NullMx)), config.negative_ttl);
    }
    records.retain(|(_, host)| !host.is_root());
    // The same host listed twice keeps its lowest preference (records are sorted).
    let mut seen = std::collections::HashSet::new();
    records.retain(|(_, host)| seen.insert(host.clone()));
    let site = MxSite::from_hosts(records.iter().map(|(_, host)| host_text(host)));
    records.truncate(MAX_MX_HOSTS);

    let lookups = records.iter().map(|(_, host)| async move {
        if host_text(host).parse::<IpAddr>().is_ok() {
            return HostAddrs::None; // IP literal as MX host: not a name, not used (see module docs)
        }
        host_addrs(queries, host).await
    });
    let resolved = join_all(lookups).await;

    let mut hosts = Vec::with_capacity(records.len());
    let mut until = mx_until;
    let mut failure = None;
    let mut partial = false;
    for ((preference, host), addrs) in records.iter().zip(resolved) {
        match addrs {
            HostAddrs::Found(addrs, valid_until, failed) => {
                until = until.min(valid_until);
                partial |= failed;
                hosts.push(MxRecord {
                    preference: *preference,
                    host: host_text(host),
                    addrs,
                });
            }
            HostAddrs::None => {}
            HostAddrs::Failed(reason) => {
                partial = true;
                failure = Some(format!("address of MX host {}: {reason}", host_text(host)));
            }
        }
    }
    if hosts.is_empty() {
        return match failure {
            Some(reason) => transient(reason),
            None => (
                Err(MxError::MxHostsUnresolvable {
                    domain: domain.clone(),
                    site,
                }),
                config.negative_ttl,
            ),
        };
    }
    let mut ttl = positive(until);
    if partial {
        // Some host's addresses are missing for now: look again soon rather than for a full TTL.
        ttl = ttl.min(config.transient_ttl);
    }
    (
        Ok(Arc::new(MxAnswer::Hosts {
            site,
            hosts,
            implicit: false,
        })),
        ttl,
    )
}

/// RFC 5321 §5.1: no MX records, so the domain itself is the only host, at preference 0.
async fn implicit_mx(queries: &Queries, config: &DnsConfig, domain: &Arc<str>, name: &Name) -> (Outcome, Duration) {
    match host_addrs(queries, name).await {
        HostAddrs::Found(addrs, until, partial) => {
            let mut ttl = until
                .saturating_duration_since(Instant::now())
                .clamp(config.min_ttl, config.max_ttl);
            if partial {
                ttl = ttl.min(config.transient_ttl);
            }
            let host = MxRecord {
                preference: 0,
                host: domain.clone(),
                addrs,
            };
            let answer = MxAnswer::Hosts {
                site: MxSite::from_hosts([&**domain]),
                hosts: vec![host],
                implicit: true,
            };
            (Ok(Arc::new(answer)), ttl)
        }
        HostAddrs::None => (
            Err(MxError::NoAddresses { domain: domain.clone() }),
            config.negative_ttl,
        ),
        HostAddrs::Failed(reason) => (
            Err(MxError::Transient {
                domain: domain.clone(),
                reason: format!("address query: {reason}").into(),
            }),
            config.transient_ttl,
        ),
    }
}
