//! MX resolution (RFC 5321 §5.1, RFC 7505) with our own cache in front of hickory.
//!
//! [`MxResolver::resolve`] turns a recipient domain into an [`MxAnswer`]: the MX hosts to try,
//! lowest preference first, each with its A and AAAA addresses (IPv4 first), plus the
//! [`MxSite`] that groups domains served by the same MX hosts. Answers and errors are cached per
//! lowercase domain (`mx/cache.rs`); concurrent lookups of one domain share a single query.
//! At most `dns.max_concurrent_queries` domains are being looked up, and as many queries are in
//! flight, at any time (`mx/lookup.rs`); a campaign start asking for every domain at once queues
//! behind those permits instead of opening a socket per query.
//!
//! Decisions (RFC 5321 §5.1 leaves them to the client):
//! - No MX records: the domain's own A/AAAA is an implicit MX of preference 0
//!   (`implicit: true`); no MX and no A/AAAA is [`MxError::NoAddresses`], permanent.
//! - MX records whose hosts all authoritatively have no address: [`MxError::MxHostsUnresolvable`],
//!   *transient* — it is the receiver's DNS that is broken, typically mid-change, and the retry
//!   schedule's age limit turns a lasting fault into a bounce. Hosts without addresses are left
//!   out of [`MxAnswer::Hosts::hosts`] but stay part of the [`MxSite`].
//! - MX hosts whose names are IP literals (`MX 10 192.0.2.1.`): the MX RDATA is a domain name
//!   (RFC 5321 §5.1, RFC 1035 §3.3.9), so such hosts are treated as having no address and are
//!   never queried, like Exim's default `allow_mx_to_ip = false`: an MX naming an address must not
//!   steer mail there.
//! - A null MX (RFC 7505 §3, the single record `0 .`) is [`MxAnswer::NullMx`]. A `.` mixed with
//!   real MX records is dropped and the real ones are used (RFC 7505 §3 forbids the mix).
//! - Names are always queried fully qualified, so resolv.conf `search` lists never apply.
//!
//! [`build_resolver`] (the hickory resolver for a `[dns]` table) and [`DnsAnswer`] (a query's
//! outcome, negative answers told apart from failures; `mx/answer.rs`) are public for the
//! sender's DNS checks (`volley check-dns`), which ask the same nameservers.

mod answer;
mod cache;
mod lookup;

pub use answer::{classify, DnsAnswer};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, TokioResolver};
use tokio::sync::Semaphore;

use cache::{MxCache, Probe};
use lookup::Queries;

/// Entries hickory's own cache keeps; ours sits in front, this one mostly serves the addresses of
/// MX hosts shared by many domains (one provider's hosts behind thousands of customer domains).
const HICKORY_CACHE_SIZE: usize = 4096;

/// Upper bound of `dns.max_concurrent_queries`: every query in flight holds a UDP socket on a
/// random source port from 1024-65535, and hickory gives up after a few ports found taken.
const MAX_CONCURRENT_QUERIES: usize = 32_768;

/// One MX host with its preference and resolved addresses (A then AAAA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxRecord {
    /// MX preference; lower is tried first (RFC 5321 §5.1). 0 for an implicit MX.
    pub preference: u16,
    /// Lowercase host name without the trailing dot.
    pub host: Arc<str>,
    /// Addresses of `host`: every A record, then every AAAA record. Never empty.
    pub addrs: Vec<IpAddr>,
}

/// What a domain's DNS says about where its mail goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxAnswer {
    /// Hosts to try, lowest preference first; equal preferences are ordered by host name so the
    /// order is deterministic (RFC 5321 §5.1 allows any order among equals). `implicit` when the
    /// domain has no MX and its own A/AAAA is used (RFC 5321 §5.1 "implicit MX").
    Hosts {
        /// The set of MX host names; domains with the same site share queues and limits.
        site: MxSite,
        /// The hosts that have addresses, in the order to try them.
        hosts: Vec<MxRecord>,
        /// True when there was no MX record and `hosts` is the domain itself.
        implicit: bool,
    },
    /// RFC 7505 null MX (`MX 0 .`): the domain accepts no mail; deliveries fail permanently.
    NullMx,
}

impl MxAnswer {
    /// The site, or `None` for a null MX.
    pub fn site(&self) -> Option<&MxSite> {
        match self {
            MxAnswer::Hosts { site, .. } => Some(site),
            MxAnswer::NullMx => None,
        }
    }
}

/// An MX *site*: the sorted set of a domain's MX host names (lowercase, no trailing dot, joined by
/// `,`). Domains with equal sites are delivered by the same servers and share queues and limits.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct MxSite(Arc<str>);

impl MxSite {
    /// Builds a site from host names: lowercased, trailing dots stripped, sorted, deduplicated.
    pub fn from_hosts<I, S>(hosts: I) -> MxSite
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut names: Vec<String> = hosts
            .into_iter()
            .map(|h| h.as_ref().trim_end_matches('.').to_ascii_lowercase())
            .collect();
        names.sort_unstable();
        names.dedup();
        MxSite(names.join(",").into())
    }

    /// The canonical text, e.g. `mx1.example.com,mx2.example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MxSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a domain has no usable MX answer. Cloneable because errors are cached too.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// The recipient domain is not a valid DNS name (permanent).
    #[error("{domain:?} is not a valid domain name: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: Arc<str>,
        /// What the parser objected to.
        reason: Arc<str>,
    },
    /// The domain does not exist: NXDOMAIN (permanent, RFC 5321 §5.1).
    #[error("{domain}: domain does not exist (NXDOMAIN)")]
    NxDomain {
        /// The lowercase domain.
        domain: Arc<str>,
    },
    /// The domain exists but has neither MX nor A/AAAA records, so not even an implicit MX
    /// (permanent, RFC 5321 §5.1).
    #[error("{domain}: no MX and no A/AAAA records")]
    NoAddresses {
        /// The lowercase domain.
        domain: Arc<str>,
    },
    /// MX records exist but no MX host has an address (authoritative NXDOMAIN/NODATA for each, or
    /// IP-literal host names). RFC 5321 §5.1 requires an error; we defer (transient) since the
    /// receiver's DNS is broken rather than the address wrong.
    #[error("{domain}: no MX host has an address ({site})")]
    MxHostsUnresolvable {
        /// The lowercase domain.
        domain: Arc<str>,
        /// The MX host names that did not resolve.
        site: MxSite,
    },
    /// SERVFAIL, REFUSED, timeout or I/O error: try again later.
    #[error("{domain}: DNS lookup failed: {reason}")]
    Transient {
        /// The lowercase domain.
        domain: Arc<str>,
        /// What went wrong, from the resolver.
        reason: Arc<str>,
    },
}

impl MxError {
    /// True when retrying cannot help: the recipients of this domain should bounce.
    pub fn is_permanent(&self) -> bool {
        match self {
            MxError::InvalidDomain { .. } | MxError::NxDomain { .. } | MxError::NoAddresses { .. } => true,
            MxError::MxHostsUnresolvable { .. } | MxError::Transient { .. } => false,
        }
    }

    /// True when the delivery should be deferred and retried; `!is_permanent()`.
    pub fn is_transient(&self) -> bool {
        !self.is_permanent()
    }

    /// The domain the error is about.
    pub fn domain(&self) -> &str {
        match self {
            MxError::InvalidDomain { domain, .. }
            | MxError::NxDomain { domain }
            | MxError::NoAddresses { domain }
            | MxError::MxHostsUnresolvable { domain, .. }
            | MxError::Transient { domain, .. } => domain,
        }
    }
}

/// A resolver that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum DnsSetupError {
    /// `/etc/resolv.conf` could not be read or parsed.
    #[error("reading the system DNS configuration (/etc/resolv.conf): {0}")]
    SystemConfig(String),
    /// A `[dns]` setting is out of range.
    #[error("dns.{field} = {value}: {reason}")]
    InvalidConfig {
        /// The field name.
        field: &'static str,
        /// The offending value, printed.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
}

/// How MX lookups are made and cached: the `[dns]` table of `volley.toml`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// DNS servers to ask (`ip:port`), each over UDP with TCP only for truncated answers
    /// (RFC 7766 §5); a loopback server is asked from a loopback source address. Empty: the
    /// nameservers of `/etc/resolv.conf` (production only; tests always name loopback servers).
    pub nameservers: Vec<SocketAddr>,
    /// Time to wait for one answer before retrying.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per query (at least 1).
    pub attempts: usize,
    /// Most queries in flight at once, and most domains being looked up at once (1 to 32768).
    /// Each query in flight holds one UDP socket; lookups beyond the limit wait for a permit,
    /// and the wait does not count against `timeout`. Without a bound, the start of a campaign
    /// over 10,000 domains opened a socket per query and deferred thousands of recipients with
    /// `request timed out` and `Too many open files`.
    pub max_concurrent_queries: usize,
    /// Most domains kept in the cache; the oldest entries are evicted beyond it. 0 disables
    /// caching (concurrent lookups are still coalesced).
    pub cache_size: usize,
    /// How long NXDOMAIN, null MX, "no addresses" and unresolvable-MX answers are cached.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How long SERVFAIL/timeouts are cached, so a million recipients of one broken domain do not
    /// send a million queries.
    #[serde(with = "humantime_serde")]
    pub transient_ttl: Duration,
    /// Cap on the record TTL of a positive answer.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// Floor on the record TTL of a positive answer.
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            max_concurrent_queries: 256,
            cache_size: 100_000,
            negative_ttl: Duration::from_secs(300),
            transient_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(30),
        }
    }
}

impl DnsConfig {
    /// Rejects settings the resolver cannot honour, naming the field.
    pub fn validate(&self) -> Result<(), DnsSetupError> {
        let invalid = |field, value: String, reason| Err(DnsSetupError::InvalidConfig { field, value, reason });
        if self.attempts == 0 {
            return invalid("attempts", "0".into(), "must be at least 1");
        }
        if !(1..=MAX_CONCURRENT_QUERIES).contains(&self.max_concurrent_queries) {
            let value = self.max_concurrent_queries.to_string();
            return invalid("max_concurrent_queries", value, "must be between 1 and 32768");
        }
        if self.timeout.is_zero() {
            return invalid("timeout", "0s".into(), "must be positive");
        }
        if self.min_ttl > self.max_ttl {
            return invalid("min_ttl", format!("{:?}", self.min_ttl), "must not exceed max_ttl");
        }
        Ok(())
    }
}

/// Resolves and caches MX answers. Cheap to clone: clones share the cache and the connections.
#[derive(Clone)]
pub struct MxResolver {
    inner: Arc<Inner>,
}

struct Inner {
    queries: Queries,
    /// Domains being looked up (`dns.max_concurrent_queries`): a lookup holds a permit from its
    /// first query to its last, so the queries of a started lookup do not queue behind the MX
    /// queries of every domain asked for later.
    lookups: Semaphore,
    config: DnsConfig,
    cache: Mutex<MxCache>,
}

impl fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MxResolver")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MxResolver {
    /// Builds a resolver asking `config.nameservers` (or, when empty, the nameservers of
    /// `/etc/resolv.conf`). The hosts file and resolv.conf `search` domains are never used.
    pub fn new(config: &DnsConfig) -> Result<MxResolver, DnsSetupError> {
        let resolver = build_resolver(config)?;
        Ok(MxResolver {
            inner: Arc::new(Inner {
                queries: Queries::new(resolver, config.max_concurrent_queries),
                lookups: Semaphore::new(config.max_concurrent_queries),
                cache: Mutex::new(MxCache::new(config.cache_size)),
                config: config.clone(),
            }),
        })
    }

    /// A resolver with default settings asking the nameservers of `/etc/resolv.conf`. For
    /// production; tests name loopback servers through [`MxResolver::new`].
    pub fn from_system() -> Result<MxResolver, DnsSetupError> {
        MxResolver::new(&DnsConfig::default())
    }

    /// The configuration this resolver was built from.
    pub fn config(&self) -> &DnsConfig {
        &self.inner.config
    }

    /// Domains currently cached (answers and errors, expired or not).
    pub fn cached_domains(&self) -> usize {
        self.lock_cache().len()
    }

    /// The MX answer for `domain` (case-insensitive, trailing dot optional, IDNs accepted), from
    /// the cache when fresh. Concurrent calls for one domain share one lookup, which runs on its
    /// own task so that dropping a caller does not cancel it for the others.
    pub async fn resolve(&self, domain: &str) -> Result<Arc<MxAnswer>, MxError> {
        let (key, name) = normalize(domain)?;
        let probe = self.lock_cache().probe(&key, Instant::now());
        let mut rx = match probe {
            Probe::Hit(outcome) => return outcome,
            Probe::Wait(rx) => rx,
            Probe::Lead(tx) => {
                let rx = tx.subscribe();
                let inner = Arc::clone(&self.inner);
                let key = Arc::clone(&key);
                tokio::spawn(async move {
                    // The semaphore is never closed; were it, the lookup would go ahead unbounded.
                    let permit = inner.lookups.acquire().await;
                    let (outcome, ttl) = lookup::resolve_uncached(&inner.queries, &inner.config, &key, name).await;
                    drop(permit);
                    inner.cache.lock().unwrap_or_else(|e| e.into_inner()).complete(
                        &key,
                        outcome.clone(),
                        ttl,
                        Instant::now(),
                    );
                    tx.send_replace(Some(outcome));
                });
                rx
            }
        };
        let waited = rx.wait_for(Option::is_some).await.map(|outcome| outcome.clone());
        match waited {
            Ok(Some(outcome)) => outcome,
            // The lookup task ended without an answer (panic or runtime shutdown).
            Ok(None) | Err(_) => {
                self.lock_cache().abandon(&key, &rx);
                Err(MxError::Transient {
                    domain: key,
                    reason: "MX lookup task ended without a result".into(),
                })
            }
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, MxCache> {
        // The cache holds plain data; a panic elsewhere cannot leave it half-updated in a way
        // that matters more than losing it, so a poisoned lock is simply reused.
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A hickory resolver asking `config.nameservers` (or, when empty, the nameservers of
/// `/etc/resolv.conf`) with `config`'s timeout and attempts; negative answers of those servers
/// are final, a loopback server is asked from a loopback address, the hosts file is never read.
/// [`MxResolver`] puts its cache and limits in front of it; `volley check-dns` asks it directly.
pub fn build_resolver(config: &DnsConfig) -> Result<TokioResolver, DnsSetupError> {
    config.validate()?;
    let servers: NameServerConfigGroup = if config.nameservers.is_empty() {
        let (system, _) = hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsSetupError::SystemConfig(e.to_string()))?;
        system.name_servers().to_vec().into()
    } else {
        let mut group = NameServerConfigGroup::with_capacity(config.nameservers.len() * 2);
        for &addr in &config.nameservers {
            // Hickory asks the TCP entry only when the UDP answer is truncated (TC bit) or
            // no UDP connection exists; timeouts are retried over UDP (`attempts`).
            group.push(NameServerConfig::new(addr, Protocol::Udp));
            group.push(NameServerConfig::new(addr, Protocol::Tcp));
        }
        group
    };
    let mut servers = servers.into_inner();
    for server in &mut servers {
        // An NXDOMAIN from the configured server is final (RFC 5321 §5.1: permanent).
        server.trust_negative_responses = true;
        server.bind_addr = loopback_source(server.socket_addr);
    }
    let mut opts = ResolverOpts::default();
    opts.timeout = config.timeout;
    opts.attempts = config.attempts;
    opts.cache_size = HICKORY_CACHE_SIZE.min(config.cache_size.max(1));
    opts.use_hosts_file = ResolveHosts::Never;
    opts.positive_max_ttl = Some(config.max_ttl);
    // Hickory's default (2) sends every query to two servers at once when several are
    // configured: twice the sockets per permit. One at a time, the next after a failure.
    opts.num_concurrent_reqs = 1;
    Ok(TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), servers),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build())
}

/// The source address for asking `server`: loopback for a loopback server (port chosen at
/// random by hickory), so that queries to a local server never leave 127.0.0.0/8 or ::1; `None`
/// (any address) otherwise.
fn loopback_source(server: SocketAddr) -> Option<SocketAddr> {
    match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
        IpAddr::V6(ip) if ip.is_loopback() => Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0)),
        _ => None,
    }
}

/// Lowercase cache key (no trailing dot, IDNA-encoded) and the fully-qualified name to query.
fn normalize(domain: &str) -> Result<(Arc<str>, Name), MxError> {
    let trimmed = domain.trim().trim_end_matches('.');
    let invalid = |reason: String| MxError::InvalidDomain {
        domain: domain.into(),
        reason: reason.into(),
    };
    if trimmed.is_empty() {
        return Err(invalid("empty".into()));
    }
    if trimmed.parse::<IpAddr>().is_ok() || trimmed.starts_with('[') {
        return Err(invalid("an address literal has no MX (RFC 5321 §4.1.3)".into()));
    }
    let mut name = Name::from_utf8(trimmed)
        .map_err(|e| invalid(e.to_string()))?
        .to_lowercase();
    name.set_fqdn(true);
    let key = name.to_ascii();
    let key = key.trim_end_matches('.');
    Ok((key.into(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_is_sorted_lowercase_and_deduplicated() {
        let site = MxSite::from_hosts(["MX2.example.com.", "mx1.example.com", "mx2.example.com"]);
        assert_eq!(site.as_str(), "mx1.example.com,mx2.example.com");
        assert_eq!(site.to_string(), site.as_str());
    }

    #[test]
    fn normalize_lowercases_strips_dot_and_encodes_idn() {
        let (key, name) = normalize("Example.COM.").unwrap();
        assert_eq!(&*key, "example.com");
        assert!(name.is_fqdn());
        assert_eq!(&*normalize("bücher.example").unwrap().0, "xn--bcher-kva.example");
        assert!(normalize("").unwrap_err().is_permanent());
        assert!(matches!(normalize("127.0.0.1"), Err(MxError::InvalidDomain { .. })));
    }

    #[test]
    fn classification() {
        let d: Arc<str> = "x.test".into();
        assert!(MxError::NxDomain { domain: d.clone() }.is_permanent());
        assert!(MxError::NoAddresses { domain: d.clone() }.is_permanent());
        let site = MxSite::from_hosts(["nowhere.test"]);
        assert!(MxError::MxHostsUnresolvable {
            domain: d.clone(),
            site
        }
        .is_transient());
        assert!(MxError::Transient {
            domain: d,
            reason: "SERVFAIL".into()
        }
        .is_transient());
    }

    #[test]
    fn config_rejects_zero_attempts_and_inverted_ttls() {
        let config = DnsConfig {
            attempts: 0,
            ..DnsConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("dns.attempts = 0"));
        let config = DnsConfig {
            min_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(1),
            ..DnsConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn config_bounds_max_concurrent_queries() {
        for bad in [0, MAX_CONCURRENT_QUERIES + 1] {
            let config = DnsConfig {
                max_concurrent_queries: bad,
                ..DnsConfig::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("dns.max_concurrent_queries = {bad}:")),
                "{err}"
            );
        }
        let config = DnsConfig {
            max_concurrent_queries: 1,
            ..DnsConfig::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn loopback_servers_are_asked_from_loopback() {
        let source = |server: &str| loopback_source(server.parse().unwrap());
        assert_eq!(source("127.0.0.53:53"), Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(source("[::1]:53"), Some("[::1]:0".parse().unwrap()));
        assert_eq!(source("192.0.2.1:53"), None);
    }
}
