//! [`Dns`]: the queries the checks make (TXT, A+AAAA, MX, PTR), each classified as records,
//! NODATA, NXDOMAIN or failure ([`DnsAnswer`]), with names lowercased and without the trailing
//! dot. Asks the configured nameservers (`[dns]`) through the engine's resolver builder.
//!
//! PTR queries bypass hickory's resolver: it answers every name under `127.in-addr.arpa` with
//! `localhost` itself (RFC 6761 §6.3) without asking anyone, so they go to the same nameservers
//! through hickory's name-server pool. Production source IPs are never loopback, but the tests'
//! are (127.0.0.2, ...), and their reverse zone is served by the test's DNS server.

use std::net::IpAddr;
use std::time::Instant;

use futures_util::StreamExt;
use hickory_resolver::config::NameServerConfigGroup;
use hickory_resolver::name_server::{NameServerPool, TokioConnectionProvider};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions};
use hickory_resolver::{Name, ResolveError, TokioResolver};
use volley_engine::mx::{classify, DnsAnswer};

/// The resolver the checks ask.
pub(crate) struct Dns {
    resolver: TokioResolver,
    /// The same nameservers without the resolver's local answers, for PTR queries.
    servers: NameServerPool<TokioConnectionProvider>,
}

impl Dns {
    pub(crate) fn new(resolver: TokioResolver) -> Dns {
        let servers = NameServerPool::from_config(
            NameServerConfigGroup::from(resolver.config().name_servers().to_vec()),
            resolver.options().clone(),
            TokioConnectionProvider::default(),
        );
        Dns { resolver, servers }
    }

    /// TXT records at `name`, each one's character-strings joined (RFC 7208 §3.3, RFC 6376
    /// §3.6.2.2), invalid UTF-8 replaced.
    pub(crate) async fn txt(&self, name: &str) -> DnsAnswer<Vec<String>> {
        let Some(fqdn) = fqdn(name) else {
            return invalid(name);
        };
        let answer = classify(self.resolver.txt_lookup(fqdn).await, |l| l.valid_until());
        map(answer, |lookup| {
            lookup
                .iter()
                .map(|txt| {
                    let bytes: Vec<u8> = txt.txt_data().iter().flat_map(|s| s.iter().copied()).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                })
                .collect()
        })
    }

    /// A then AAAA addresses of `name`. Records when either has some; a failure of either
    /// without records is a failure; NXDOMAIN when both say so; NODATA otherwise.
    pub(crate) async fn addrs(&self, name: &str) -> DnsAnswer<Vec<IpAddr>> {
        let Some(fqdn) = fqdn(name) else {
            return invalid(name);
        };
        let (v4, v6) = futures_util::join!(self.resolver.ipv4_lookup(fqdn.clone()), self.resolver.ipv6_lookup(fqdn));
        let v4 = classify(v4, |l| l.valid_until());
        let v6 = classify(v6, |l| l.valid_until());
        let mut addrs = Vec::new();
        if let DnsAnswer::Records(l, _) = &v4 {
            addrs.extend(l.iter().map(|a| IpAddr::V4(a.0)));
        }
        if let DnsAnswer::Records(l, _) = &v6 {
            addrs.extend(l.iter().map(|a| IpAddr::V6(a.0)));
        }
        match (v4, v6) {
            _ if !addrs.is_empty() => DnsAnswer::Records(addrs, Instant::now()),
            (DnsAnswer::Failed(reason), _) | (_, DnsAnswer::Failed(reason)) => DnsAnswer::Failed(reason),
            (DnsAnswer::NxDomain, DnsAnswer::NxDomain) => DnsAnswer::NxDomain,
            _ => DnsAnswer::NoData,
        }
    }

    /// MX records of `name`: `(preference, host)`, lowest preference first; a null MX
    /// (RFC 7505) is host `""`.
    pub(crate) async fn mx(&self, name: &str) -> DnsAnswer<Vec<(u16, String)>> {
        let Some(fqdn) = fqdn(name) else {
            return invalid(name);
        };
        let answer = classify(self.resolver.mx_lookup(fqdn).await, |l| l.valid_until());
        map(answer, |lookup| {
            let mut hosts: Vec<(u16, String)> = lookup
                .iter()
                .map(|mx| (mx.preference(), name_text(mx.exchange())))
                .collect();
            hosts.sort();
            hosts
        })
    }

    /// PTR names of `ip` (its `in-addr.arpa` / `ip6.arpa` name).
    pub(crate) async fn ptr(&self, ip: IpAddr) -> DnsAnswer<Vec<String>> {
        let query = Query::query(Name::from(ip), RecordType::PTR);
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = true;
        let response = match self.servers.lookup(query, options).next().await {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                return map(
                    classify(Err::<(), _>(ResolveError::from(e)), |_| Instant::now()),
                    |()| Vec::new(),
                )
            }
            None => return DnsAnswer::Failed("no response".into()),
        };
        let names: Vec<String> = response
            .answers()
            .iter()
            .filter_map(|record| match record.data() {
                RData::PTR(ptr) => Some(name_text(&ptr.0)),
                _ => None,
            })
            .collect();
        match response.response_code() {
            ResponseCode::NoError if names.is_empty() => DnsAnswer::NoData,
            ResponseCode::NoError => DnsAnswer::Records(names, Instant::now()),
            ResponseCode::NXDomain => DnsAnswer::NxDomain,
            other => DnsAnswer::Failed(other.to_string()),
        }
    }
}

/// The reverse-DNS name of `ip`, e.g. `2.0.0.127.in-addr.arpa` (RFC 1035 §3.5, RFC 3596 §2.5).
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    name_text(&Name::from(ip))
}

/// `name` lowercase, without the trailing dot.
fn name_text(name: &Name) -> String {
    name.to_lowercase().to_ascii().trim_end_matches('.').to_owned()
}

fn fqdn(name: &str) -> Option<Name> {
    let mut parsed = Name::from_utf8(name.trim_end_matches('.')).ok()?;
    parsed.set_fqdn(true);
    Some(parsed)
}

fn invalid<T>(name: &str) -> DnsAnswer<T> {
    DnsAnswer::Failed(format!("{name:?} is not a valid domain name"))
}

fn map<T, U>(answer: DnsAnswer<T>, f: impl FnOnce(T) -> U) -> DnsAnswer<U> {
    match answer {
        DnsAnswer::Records(found, until) => DnsAnswer::Records(f(found), until),
        DnsAnswer::NoData => DnsAnswer::NoData,
        DnsAnswer::NxDomain => DnsAnswer::NxDomain,
        DnsAnswer::Failed(reason) => DnsAnswer::Failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("127.0.0.2".parse().unwrap()), "2.0.0.127.in-addr.arpa");
        assert!(reverse_name("::1".parse().unwrap()).ends_with(".ip6.arpa"));
    }
}
