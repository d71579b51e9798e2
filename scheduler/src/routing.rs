//! Where a recipient domain's mail goes: routing overrides first (exact domain, then `*`), then
//! the domain's MX hosts (RFC 5321 §5.1) when `[dns]` is configured, narrowed to those its
//! MTA-STS policy names when the policy is `enforce` (RFC 8461 §4.1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use volley_engine::mta_sts::{MtaSts, StsMode, StsRoute};
use volley_engine::mx::{MxAnswer, MxError, MxResolver};
use volley_engine::smtp::reply::EnhancedCode;
use volley_engine::{Disposition, MxHost, Phase, RecipientStatus};

use crate::tls_reports::TlsReports;

/// Parses a route target `ip:port` (IPv6 as `[::1]:25`).
pub fn parse_target(target: &str) -> Result<SocketAddr, String> {
    target
        .parse::<SocketAddr>()
        .map_err(|_| "expected ip:port, e.g. 127.0.0.1:2525 or [::1]:25".to_string())
}

/// Where a domain's mail goes: the site (the unit that shares queues and limits) and its
/// hosts in the order to try them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The MX site (sorted MX host names) or, for a routing override, `route:ip:port`.
    pub site: Arc<str>,
    /// (preference, host) per address of every MX host, lowest preference first. Never empty.
    pub hosts: Arc<[(u16, MxHost)]>,
    /// The domain's MTA-STS policy (`enforce` or `testing`): the site is the domain's own.
    pub sts: Option<Arc<StsRoute>>,
}

impl Destination {
    fn single(host: MxHost) -> Destination {
        Destination {
            site: Arc::from(format!("route:{}", host.addr)),
            hosts: Arc::from([(0, host)]),
            sts: None,
        }
    }
}

/// The routing overrides from the config's `[routes]`.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    exact: HashMap<String, Destination>,
    fallback: Option<Destination>,
}

impl Routes {
    /// Builds the table; targets must already be validated (see [`parse_target`]).
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<Routes, String> {
        let mut table = Routes::default();
        for (domain, target) in routes {
            let addr = parse_target(target).map_err(|e| format!("route {domain:?} = {target:?}: {e}"))?;
            let host = Destination::single(MxHost {
                name: Arc::from(target.as_str()),
                addr,
            });
            if domain == "*" {
                table.fallback = Some(host);
            } else {
                table.exact.insert(domain.to_ascii_lowercase(), host);
            }
        }
        Ok(table)
    }

    /// The destination for a (lower-case) domain, if any route covers it.
    pub fn lookup(&self, domain: &str) -> Option<&Destination> {
        self.exact.get(domain).or(self.fallback.as_ref())
    }
}

/// Routing overrides plus MX resolution (and MTA-STS policies of MX-routed domains).
#[derive(Clone, Debug)]
pub struct Router {
    routes: Routes,
    resolver: Option<MxResolver>,
    mx_port: u16,
    mta_sts: Option<Arc<MtaSts>>,
    tls_reports: Option<TlsReports>,
}

impl Router {
    /// A router; without a resolver, domains no route covers are deferred.
    pub fn new(routes: Routes, resolver: Option<MxResolver>, mx_port: u16) -> Router {
        Router {
            routes,
            resolver,
            mx_port,
            mta_sts: None,
            tls_reports: None,
        }
    }

    /// The same router honouring MTA-STS policies of domains routed by MX, policy fetch
    /// failures counted in `reports`.
    pub fn with_mta_sts(mut self, mta_sts: Arc<MtaSts>, reports: Option<TlsReports>) -> Router {
        self.mta_sts = Some(mta_sts);
        self.tls_reports = reports;
        self
    }

    /// The override for `domain`, decided without waiting.
    pub fn route_override(&self, domain: &str) -> Option<&Destination> {
        self.routes.lookup(domain)
    }

    /// Where to deliver `domain`'s mail, or the final status when there is nowhere: null MX
    /// and nonexistent domains bounce (RFC 7505 §3: 5.1.10; RFC 3463: 5.1.2), DNS trouble
    /// defers (4.4.3), and with neither route nor `[dns]` the recipient is deferred.
    pub async fn destination(&self, domain: &str) -> Result<Destination, RecipientStatus> {
        if let Some(host) = self.routes.lookup(domain) {
            return Ok(host.clone());
        }
        let Some(resolver) = &self.resolver else {
            let text = format!("no route for domain {domain} and no [dns] configured for MX lookups");
            return Err(local(Disposition::Deferred, (4, 4, 0), text));
        };
        match resolver.resolve(domain).await {
            Ok(answer) => match &*answer {
                MxAnswer::NullMx => Err(local(
                    Disposition::Bounced,
                    (5, 1, 10),
                    format!("{domain} accepts no mail (null MX, RFC 7505)"),
                )),
                MxAnswer::Hosts { site, hosts, .. } => {
                    let hosts: Vec<(u16, MxHost)> = hosts
                        .iter()
                        .flat_map(|h| {
                            h.addrs.iter().map(|ip| {
                                let host = MxHost {
                                    name: h.host.clone(),
                                    addr: SocketAddr::new(*ip, self.mx_port),
                                };
                                (h.preference, host)
                            })
                        })
                        .collect();
                    if hosts.is_empty() {
                        let text = format!("no address for any MX host of {domain}");
                        return Err(local(Disposition::Deferred, (4, 4, 3), text));
                    }
                    let dest = Destination {
                        site: Arc::from(site.as_str()),
                        hosts: Arc::from(hosts),
                        sts: None,
                    };
                    self.under_mta_sts(domain, dest).await
                }
            },
            Err(e) => Err(dns_failure(&e)),
        }
    }

    /// `dest` under `domain`'s MTA-STS policy, if it has one: a site of its own, and under
    /// `enforce` only the MX hosts the policy names (none: deferred, RFC 8461 §5.1).
    async fn under_mta_sts(&self, domain: &str, dest: Destination) -> Result<Destination, RecipientStatus> {
        let Some(mta_sts) = &self.mta_sts else {
            return Ok(dest);
        };
        let lookup = mta_sts.policy(domain).await;
        if let (Some(error), Some(reports)) = (&lookup.error, &self.tls_reports) {
            reports.fetch_failed(domain, error);
        }
        let Some(route) = lookup.policy.as_deref().and_then(StsRoute::from_policy) else {
            return Ok(dest);
        };
        let hosts: Vec<(u16, MxHost)> = match route.mode {
            StsMode::Enforce => dest
                .hosts
                .iter()
                .filter(|(_, h)| route.allows(&h.name))
                .cloned()
                .collect(),
            _ => dest.hosts.to_vec(),
        };
        if hosts.is_empty() {
            let mut names: Vec<&str> = dest.hosts.iter().map(|(_, h)| &*h.name).collect();
            names.dedup();
            let text = format!(
                "MTA-STS enforce for {domain}: no MX host ({}) is in the policy (mx: {})",
                names.join(", "),
                route.mx_list()
            );
            return Err(local(Disposition::Deferred, (4, 7, 5), text));
        }
        Ok(Destination {
            site: Arc::from(format!("{}!sts:{domain}", dest.site)),
            hosts: Arc::from(hosts),
            sts: Some(Arc::new(route)),
        })
    }
}

fn dns_failure(e: &MxError) -> RecipientStatus {
    if e.is_permanent() {
        local(Disposition::Bounced, (5, 1, 2), e.to_string())
    } else {
        local(Disposition::Deferred, (4, 4, 3), e.to_string())
    }
}

/// A status decided locally (no server reply), with an RFC 3463 enhanced code.
pub(crate) fn local(
    disposition: Disposition,
    (class, subject, detail): (u8, u16, u16),
    text: String,
) -> RecipientStatus {
    RecipientStatus {
        disposition,
        phase: Phase::Connect,
        code: None,
        enhanced: Some(EnhancedCode { class, subject, detail }),
        text: Arc::from(text),
        maybe_delivered: false,
        sender_fault: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_wins_over_wildcard() {
        let routes = [
            ("*".to_string(), "127.0.0.1:25".to_string()),
            ("a.test".to_string(), "127.0.0.9:26".to_string()),
        ];
        let r = Routes::new(routes.iter().map(|(a, b)| (a, b))).unwrap_or_default();
        assert_eq!(r.lookup("a.test").map(|d| d.hosts[0].1.addr.port()), Some(26));
        assert_eq!(r.lookup("b.test").map(|d| &*d.site), Some("route:127.0.0.1:25"));
        assert!(Routes::default().lookup("a.test").is_none());
        assert!(parse_target("localhost:25").is_err());
        assert!(parse_target("[::1]:25").is_ok());
    }

    #[tokio::test]
    async fn without_dns_an_unrouted_domain_is_deferred() {
        let router = Router::new(Routes::default(), None, 25);
        let status = router
            .destination("x.test")
            .await
            .err()
            .map(|s| (s.disposition, s.text.to_string()));
        assert!(
            matches!(status, Some((Disposition::Deferred, ref t)) if t.contains("no route")),
            "{status:?}"
        );
    }
}
