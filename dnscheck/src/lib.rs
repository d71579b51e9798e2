//! # volley-dnscheck
//!
//! What receivers will conclude from a sender's DNS, checked before sending (`volley
//! check-dns`): for every sending domain, DKIM selector and source IP of a configuration, the
//! records are read from live DNS through the configured nameservers (`[dns]`) and judged the
//! way Gmail, Yahoo and other large receivers judge them. No mail is sent; no printing here:
//! each check is a typed [`Check`] (pass, warn or fail, the record found verbatim, a message
//! quoting it, and the record to publish instead).
//!
//! A DNS failure (timeout, SERVFAIL) is a `warn` — "could not check" — never a pass.
//!
//! ## Layout
//! - [`plan`] — [`CheckPlan`]: the domains, keys, source IPs and bounce domain to check.
//! - [`report`] — [`Check`], [`CheckKind`], [`Status`]; one line per check.
//! - `lookup` — the queries (TXT, A+AAAA, MX, PTR) on the engine's resolver, classified.
//! - [`spf`] — RFC 7208 `check_host()` with the lookup limits of §4.6.4.
//! - `check_spf`, `check_dkim`, `check_dmarc` (DMARC record and alignment), `check_ptr`
//!   (FCrDNS and the bounce domain's MX) — one check each.
//!
//! Depends on the engine (its `[dns]` resolver and DKIM key loading), never on the scheduler.

mod check_dkim;
mod check_dmarc;
mod check_ptr;
mod check_spf;
mod lookup;
pub mod plan;
pub mod report;
pub mod spf;

use std::net::IpAddr;

use futures_util::future::join_all;
use volley_engine::mx::{build_resolver, DnsConfig, DnsSetupError};

pub use check_dmarc::aligned;
pub use plan::{CheckPlan, SendingDomain, SourceIpName};
pub use report::{worst, Check, CheckKind, Status};

/// Why the checks could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DnsCheckError {
    /// The resolver could not be built from `[dns]`.
    #[error("DNS resolver: {0}")]
    Resolver(#[from] DnsSetupError),
}

/// Runs every check of `plan` against the nameservers of `dns` (each query waits at most
/// `dns.timeout`, `dns.attempts` times). Results in a fixed order: per sending domain its SPF,
/// then the SPF of envelope domains, DKIM per key, DMARC and alignment per From domain, PTR per
/// source IP, the bounce domain's MX.
pub async fn run(plan: &CheckPlan, dns: &DnsConfig) -> Result<Vec<Check>, DnsCheckError> {
    let resolver = lookup::Dns::new(build_resolver(dns)?);
    let resolver = &resolver;
    let ips: Vec<IpAddr> = plan.source_ips.iter().map(|s| s.ip).collect();
    let ips = &ips;
    let spf = join_all(
        plan.spf_domains()
            .into_iter()
            .map(|domain| check_spf::check(resolver, domain, ips)),
    );
    let dkim = join_all(plan.dkim.iter().map(|key| check_dkim::check(resolver, key)));
    let dmarc = join_all(plan.domains.iter().map(|domain| async move {
        let (check, applied) = check_dmarc::check(resolver, &domain.from_domain).await;
        let alignment = check_dmarc::alignment(domain, &plan.dkim, applied.as_ref());
        [check, alignment]
    }));
    let ptr = join_all(plan.source_ips.iter().map(|source| check_ptr::check(resolver, source)));
    let bounce = async {
        match &plan.bounce_domain {
            Some(domain) => Some(check_ptr::bounce_mx(resolver, &plan::normalize(domain)).await),
            None => None,
        }
    };
    let (spf, dkim, dmarc, ptr, bounce) = futures_util::join!(spf, dkim, dmarc, ptr, bounce);
    let mut out = spf;
    out.extend(dkim);
    out.extend(dmarc.into_iter().flatten());
    out.extend(ptr);
    out.extend(bounce);
    Ok(out)
}
