//! MTA-STS (RFC 8461): recipient domains that publish a policy get their mail only over
//! verified TLS to the MX hosts the policy names (`enforce`), or as usual with the failures
//! reported (`testing`).
//!
//! - `mta_sts/policy.rs` — the TXT record, the policy file, MX patterns.
//! - `mta_sts/http.rs` — the HTTPS GET of a policy (sans-IO response parser, size cap).
//! - `mta_sts/fetch.rs` — [`PolicyFetcher`]: discovery and fetch, typed [`FetchError`]s.
//! - `mta_sts/cache.rs` — [`PolicyCache`]: policies in memory and in a file, expiry, id changes.
//! - `mta_sts/tls.rs` — [`StsTls`]: trust anchors, the verified connectors.
//!
//! [`MtaSts::policy`] is what a router asks per domain; the answer becomes an [`StsRoute`] in
//! the route's [`crate::RoutePolicy`], and the session enforces it ([`crate::smtp::session`]),
//! sending one [`SessionCheck`] per session for TLS reports (RFC 8460).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub mod cache;
pub mod fetch;
pub mod http;
pub mod policy;
pub mod tls;

pub use cache::{CachedPolicy, PolicyCache};
pub use fetch::{FetchError, PolicyFetcher, PostError, RecordLookup};
pub use policy::{MxPattern, PolicyBody, StsMode};
pub use tls::StsTls;

use crate::mx::DnsConfig;

/// After a failed fetch, how long the domain's policy (under the same record id) is not
/// fetched again: a routing decision waits for a fetch, and a broken policy host would
/// otherwise cost every lookup of the domain a timeout.
const FETCH_BACKOFF: Duration = Duration::from_secs(300);

/// Newly fetched policies are written to the cache file at most this often (and at
/// [`MtaSts::save`]): a campaign start fetching thousands of policies writes it a few times,
/// not once per policy.
const SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// The `[mta_sts]` table of `volley.toml`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaStsConfig {
    /// Honour recipient domains' MTA-STS policies (default true). Applies to mail routed by
    /// MX lookups (`[dns]`); routing overrides (`[routes]`) bypass it.
    pub enabled: bool,
    /// The whole policy fetch (address lookup, connection, TLS, response) must finish within
    /// this (default `10s`; the routing of the domain's mail waits for it).
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Largest policy file accepted, in octets (default 65536, RFC 8461 §3.3).
    pub max_policy_size: usize,
    /// Extra trust anchors (PEM) for policy hosts and for MX certificates under a policy, on
    /// top of the Mozilla roots: a private CA, or a test CA.
    pub ca_file: Option<PathBuf>,
    /// The port policy hosts are fetched from (default 443). For tests only: RFC 8461 §3.3
    /// fixes 443; a test serves policies from an unprivileged loopback port.
    pub policy_port: u16,
    /// `organization-name` of the TLS reports (RFC 8460 §4.3). Default `Volley`.
    pub report_organization: String,
    /// `contact-info` of the TLS reports. Default `postmaster@` the first source IP's EHLO
    /// name.
    pub report_contact: Option<String>,
    /// `From` and envelope sender of TLS reports mailed to `mailto:` `rua` addresses (RFC
    /// 8460 §5.3); its domain is the reports' submitter. Default `tlsrpt-noreply@` the domain
    /// of the first source IP's EHLO name (the name without its first label).
    pub report_from: Option<String>,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        MtaStsConfig {
            enabled: true,
            fetch_timeout: Duration::from_secs(10),
            max_policy_size: 64 * 1024,
            ca_file: None,
            policy_port: 443,
            report_organization: "Volley".into(),
            report_contact: None,
            report_from: None,
        }
    }
}

/// A setting of `[mta_sts]` that cannot work, or its files.
#[derive(Debug, thiserror::Error)]
pub enum MtaStsSetupError {
    /// A value out of range.
    #[error("mta_sts.{field} = {value}: {reason}")]
    Value {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The range.
        reason: &'static str,
    },
    /// The CA file.
    #[error("mta_sts.ca_file: {0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    /// The resolver.
    #[error("mta_sts: dns: {0}")]
    Dns(#[from] crate::mx::DnsSetupError),
    /// The cache file.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

impl MtaStsConfig {
    /// Every value that cannot work (the CA file is read by [`MtaSts::new`]).
    pub fn problems(&self) -> Vec<MtaStsSetupError> {
        let mut problems = Vec::new();
        let mut bad = |field, value: String, reason| problems.push(MtaStsSetupError::Value { field, value, reason });
        if self.fetch_timeout.is_zero() || self.fetch_timeout > Duration::from_secs(300) {
            let value = humantime::format_duration(self.fetch_timeout).to_string();
            bad("fetch_timeout", value, "must be longer than zero and at most 5m");
        }
        if !(1024..=1 << 20).contains(&self.max_policy_size) {
            let value = self.max_policy_size.to_string();
            bad("max_policy_size", value, "must be between 1024 and 1048576 octets");
        }
        if let Some(from) = self.report_from.as_deref().filter(|f| !is_address(f)) {
            bad("report_from", format!("{from:?}"), "must be an address, local@domain");
        }
        if self.policy_port == 0 {
            bad("policy_port", "0".into(), "must be a port number (443 outside tests)");
        }
        problems
    }
}

/// `local@domain` with a host-name domain, nothing that needs quoting.
pub fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:@\"".contains(&b))
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// What a route to a policy domain must satisfy, carried in its [`crate::RoutePolicy`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StsRoute {
    /// The policy domain (the recipient domain).
    pub domain: Arc<str>,
    /// `enforce` or `testing` (a `none` policy makes no route).
    pub mode: StsMode,
    /// The MX patterns.
    pub mx: Arc<[MxPattern]>,
    /// The policy file as served, for reports.
    pub text: Arc<str>,
}

impl StsRoute {
    /// The route a cached policy gives; `None` for mode `none`.
    pub fn from_policy(policy: &CachedPolicy) -> Option<StsRoute> {
        (policy.policy.mode != StsMode::None).then(|| StsRoute {
            domain: Arc::from(policy.domain.as_str()),
            mode: policy.policy.mode,
            mx: Arc::from(policy.policy.mx.as_slice()),
            text: Arc::from(policy.text.as_str()),
        })
    }

    /// Whether MX host `mx` is one the policy names.
    pub fn allows(&self, mx: &str) -> bool {
        policy::mx_allowed(&self.mx, mx)
    }

    /// The policy's `mx` patterns, comma-separated.
    pub fn mx_list(&self) -> String {
        let names: Vec<&str> = self.mx.iter().map(MxPattern::as_str).collect();
        names.join(", ")
    }

    /// The failure of an MX host the policy does not name.
    pub fn mx_failure(&self, mx: &str) -> StsFailure {
        StsFailure {
            kind: FailureKind::MxNotInPolicy,
            detail: format!("{mx} is not an MX host of the policy (mx: {})", self.mx_list()),
        }
    }
}

/// What went wrong with a session to a policy domain's MX host (RFC 8460 §4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsFailure {
    /// The kind.
    pub kind: FailureKind,
    /// What happened, naming the MX host.
    pub detail: String,
}

impl std::fmt::Display for StsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Kinds of failure of a session under a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No STARTTLS offered.
    StartTlsNotSupported,
    /// The certificate is not valid for the MX host name.
    CertificateHostMismatch,
    /// The certificate has expired.
    CertificateExpired,
    /// The chain does not lead to a trusted root.
    CertificateNotTrusted,
    /// Any other TLS or verification failure.
    ValidationFailure,
    /// The MX host is not one the policy names.
    MxNotInPolicy,
}

impl FailureKind {
    /// The RFC 8460 §4.3.2 result type.
    pub fn result_type(self) -> &'static str {
        match self {
            FailureKind::StartTlsNotSupported => "starttls-not-supported",
            FailureKind::CertificateHostMismatch => "certificate-host-mismatch",
            FailureKind::CertificateExpired => "certificate-expired",
            FailureKind::CertificateNotTrusted => "certificate-not-trusted",
            FailureKind::ValidationFailure | FailureKind::MxNotInPolicy => "validation-failure",
        }
    }
}

/// The MTA-STS verdict on one session (or connection attempt) to a policy domain's MX host.
#[derive(Clone, Debug)]
pub struct SessionCheck {
    /// The route's policy.
    pub route: Arc<StsRoute>,
    /// The MX host name.
    pub mx: Arc<str>,
    /// Its address.
    pub mx_ip: IpAddr,
    /// The source IP.
    pub source_ip: IpAddr,
    /// `None`: the session met the policy.
    pub failure: Option<StsFailure>,
}

/// The failure of an MX host that offers no STARTTLS (or refuses it).
pub fn no_starttls(mx: &str) -> StsFailure {
    StsFailure {
        kind: FailureKind::StartTlsNotSupported,
        detail: format!("{mx} does not offer STARTTLS"),
    }
}

/// The MTA-STS failure a session error stands for; `None` for an error before TLS was in
/// question (connection refused, greeting, EHLO), which says nothing about the policy.
pub fn failure_of(error: &crate::SessionError, mx: &str) -> Option<StsFailure> {
    use crate::SessionError;
    match error {
        SessionError::MtaSts { failure, .. } => Some(failure.clone()),
        SessionError::TlsNotOffered { .. } => Some(no_starttls(mx)),
        SessionError::Rejected {
            phase: crate::Phase::StartTls,
            ..
        } => Some(no_starttls(mx)),
        e if e.is_starttls_failure() => Some(StsFailure {
            kind: FailureKind::ValidationFailure,
            detail: format!("STARTTLS with {mx} failed: {e}"),
        }),
        _ => None,
    }
}

/// Where sessions send their [`SessionCheck`]s.
pub type CheckSender = tokio::sync::mpsc::UnboundedSender<SessionCheck>;

/// What [`MtaSts::policy`] found for a domain.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// The policy in effect (a cached one when a new one could not be had).
    pub policy: Option<Arc<CachedPolicy>>,
    /// Why discovery or the fetch failed this time (for reports), if it did.
    pub error: Option<FetchError>,
}

/// Policies of recipient domains: discovered, fetched, cached.
#[derive(Debug)]
pub struct MtaSts {
    fetcher: PolicyFetcher,
    cache: Mutex<PolicyCache>,
    /// Failed fetches: (domain, record id) -> when to try again.
    failed: Mutex<HashMap<(String, String), Instant>>,
    /// Domains being looked up at once (`dns.max_concurrent_queries`): a campaign start
    /// asks about every domain together.
    lookups: tokio::sync::Semaphore,
    /// When the cache file was last written.
    saved: Mutex<Instant>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl MtaSts {
    /// Policies fetched through `dns`'s nameservers, verified with `tls`, cached in
    /// `cache_file` (read back when it exists).
    pub fn new(
        config: &MtaStsConfig,
        dns: &DnsConfig,
        tls: &StsTls,
        cache_file: Option<&Path>,
    ) -> Result<MtaSts, MtaStsSetupError> {
        if let Some(first) = config.problems().into_iter().next() {
            return Err(first);
        }
        let resolver = crate::mx::build_resolver(dns)?;
        let fetcher = PolicyFetcher::new(
            resolver,
            tls.https(),
            config.fetch_timeout,
            config.max_policy_size,
            config.policy_port,
        );
        Ok(MtaSts {
            fetcher,
            cache: Mutex::new(PolicyCache::open(cache_file, unix_now())?),
            failed: Mutex::new(HashMap::new()),
            lookups: tokio::sync::Semaphore::new(dns.max_concurrent_queries.max(1)),
            saved: Mutex::new(Instant::now()),
        })
    }

    /// The policy of `domain` (lower case) per RFC 8461 §5.1: the TXT record first; a cached,
    /// unexpired policy under the same id is used as is; otherwise the policy is fetched, and
    /// when that fails the cached one (if unexpired) stays in effect.
    pub async fn policy(&self, domain: &str) -> Lookup {
        // An internationalised domain is asked for (and its policy host named) in A-labels.
        let Ok(name) = hickory_resolver::Name::from_utf8(domain) else {
            return Lookup::default();
        };
        let ascii = name.to_lowercase().to_ascii();
        let domain = ascii.trim_end_matches('.');
        // The semaphore is never closed; were it, the lookup would go ahead unbounded.
        let _permit = self.lookups.acquire().await;
        let record = self.fetcher.record(domain).await;
        let now = unix_now();
        let cached = lock(&self.cache).fresh(domain, now);
        let id = match record {
            Ok(RecordLookup::Id(id)) => id,
            Ok(RecordLookup::Absent) => {
                return Lookup {
                    policy: cached,
                    error: None,
                }
            }
            Err(error) => {
                return Lookup {
                    policy: cached,
                    error: Some(error),
                }
            }
        };
        if !lock(&self.cache).needs_fetch(domain, &id, now) {
            return Lookup {
                policy: cached,
                error: None,
            };
        }
        let key = (domain.to_string(), id.clone());
        if lock(&self.failed)
            .get(&key)
            .is_some_and(|until| Instant::now() < *until)
        {
            return Lookup {
                policy: cached,
                error: None,
            };
        }
        match self.fetcher.fetch(domain).await {
            Ok((body, text)) => {
                lock(&self.failed).remove(&key);
                let policy = lock(&self.cache).store(CachedPolicy::new(domain, &id, body, text, now), now);
                let due = {
                    let mut saved = lock(&self.saved);
                    let due = saved.elapsed() >= SAVE_INTERVAL;
                    if due {
                        *saved = Instant::now();
                    }
                    due
                };
                if due {
                    self.save();
                }
                Lookup {
                    policy: Some(policy),
                    error: None,
                }
            }
            Err(error) => {
                tracing::warn!(%domain, %error, "MTA-STS policy fetch failed");
                let mut failed = lock(&self.failed);
                failed.retain(|_, until| Instant::now() < *until);
                failed.insert(key, Instant::now() + FETCH_BACKOFF);
                Lookup {
                    policy: cached,
                    error: Some(error),
                }
            }
        }
    }
}

impl MtaSts {
    /// Writes the policies fetched since the cache file was last written (errors are logged:
    /// the policies stay in memory).
    pub fn save(&self) {
        if let Err(e) = lock(&self.cache).save() {
            tracing::warn!(error = %e, "MTA-STS policies not saved; kept in memory");
        }
    }

    /// The TLS-RPT report addresses of `domain` (RFC 8460 §3).
    pub async fn tls_rpt_rua(&self, domain: &str) -> Result<Vec<String>, FetchError> {
        self.fetcher.tls_rpt_rua(domain).await
    }

    /// POSTs a report to an `https:` `rua` (see [`PolicyFetcher::post`]).
    pub async fn post_report(&self, uri: &str, content_type: &str, body: &[u8]) -> Result<(), PostError> {
        self.fetcher.post(uri, content_type, body).await
    }
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_from_must_be_a_plain_address() {
        let with = |from: &str| MtaStsConfig {
            report_from: Some(from.into()),
            ..MtaStsConfig::default()
        };
        assert!(with("tlsrpt@volley.example").problems().is_empty());
        for bad in [
            "volley.example",
            "@volley.example",
            "a b@volley.example",
            "<a@volley.example>",
            "a@localhost",
            "a@x..y!",
        ] {
            let problems = with(bad).problems();
            assert!(
                matches!(
                    problems.as_slice(),
                    [MtaStsSetupError::Value {
                        field: "report_from",
                        ..
                    }]
                ),
                "{bad}: {problems:?}"
            );
        }
    }
}
