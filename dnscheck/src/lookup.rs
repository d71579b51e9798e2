//! [`Dns`]: the queries the checks make (TXT, A+AAAA, MX, PTR), each classified as records,
//! NODATA, NXDOMAIN or failure ([`DnsAnswer`]), with names lowercased and without the trailing
//! dot. Asks the configured nameservers (`[dns]`) through the engine's resolver builder.

use std::net::IpAddr;
use std::time::Instant;

use hickory_resolver::{Name, TokioResolver};
use volley_engine::mx::{classify, DnsAnswer};

/// The resolver the checks ask.
pub(crate) struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    pub(crate) fn new(resolver: TokioResolver) -> Dns {
        Dns { resolver }
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
        let (v4, v6) = futures_util::join!(
            self.resolver.ipv4_lookup(fqdn.clone()),
            self.resolver.ipv6_lookup(fqdn)
        );
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
        let answer = classify(self.resolver.reverse_lookup(ip).await, |l| l.valid_until());
        map(answer, |lookup| lookup.iter().map(|ptr| name_text(&ptr.0)).collect())
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
