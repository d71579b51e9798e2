//! [`BenchZone`]: the generated zone — `domains` recipient domains spread over `sites` MX sites.
//!
//! Under origin `bench.test` (the default), domain `i` is `d{i}.bench.test` with two MX records,
//! preference 10 and 20, naming the hosts of site `j = i % sites`:
//!
//! ```text
//! d{i}.bench.test.                 3600 IN MX 10 mx{j}a.sites.bench.test.
//! d{i}.bench.test.                 3600 IN MX 20 mx{j}b.sites.bench.test.
//! mx{j}a.sites.bench.test.         3600 IN A  mx_ips[j % mx_ips.len()]
//! mx{j}b.sites.bench.test.         3600 IN A  mx_ips[j % mx_ips.len()]
//! ```
//!
//! so domains `i` and `i + sites` share an MX site, and with one MX address every site lands on
//! the same sink. Names outside this pattern (or `d{i}` with `i >= domains`) are NXDOMAIN.

use std::net::{IpAddr, Ipv4Addr};

use hickory_server::authority::ZoneType;
use hickory_server::proto::rr::rdata::{A, MX, SOA};
use hickory_server::proto::rr::{Name, RData, Record};
use hickory_server::store::in_memory::InMemoryAuthority;

use super::DnsError;

/// The origin used unless the caller names another.
pub const DEFAULT_ORIGIN: &str = "bench.test";

/// TTL of every record, SOA included.
pub const TTL: u32 = 3600;

/// MX preference of a site's first host (`mx{j}a`).
pub const PRIMARY_PREFERENCE: u16 = 10;

/// MX preference of a site's second host (`mx{j}b`).
pub const SECONDARY_PREFERENCE: u16 = 20;

/// A generated zone of recipient domains and the MX sites that serve them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchZone {
    /// Number of recipient domains: `d0` .. `d{domains-1}` under the origin.
    pub domains: usize,
    /// Number of MX sites; domain `i` belongs to site `i % sites`.
    pub sites: usize,
    /// Addresses of the MX hosts, given to site `j` round-robin (`mx_ips[j % len]`). Loopback only.
    pub mx_ips: Vec<Ipv4Addr>,
    /// The zone's origin, without the trailing dot (default [`DEFAULT_ORIGIN`]).
    pub origin: String,
}

impl BenchZone {
    /// A zone under [`DEFAULT_ORIGIN`].
    pub fn new(domains: usize, sites: usize, mx_ips: Vec<Ipv4Addr>) -> BenchZone {
        BenchZone {
            domains,
            sites,
            mx_ips,
            origin: DEFAULT_ORIGIN.to_owned(),
        }
    }

    /// Checks the zone can be generated and keeps mail on the machine: at least one site and one
    /// MX address when there are domains, every MX address loopback, a valid origin.
    pub fn validate(&self) -> Result<(), DnsError> {
        if self.domains > 0 && self.sites == 0 {
            return Err(DnsError::NoSites { domains: self.domains });
        }
        if self.sites > 0 && self.mx_ips.is_empty() {
            return Err(DnsError::NoMxIps);
        }
        if let Some(ip) = self.mx_ips.iter().find(|ip| !ip.is_loopback()) {
            return Err(DnsError::MxIpNotLoopback { ip: IpAddr::V4(*ip) });
        }
        self.origin_name().map(drop)
    }

    /// Recipient domain `i`, e.g. `d7.bench.test` (no trailing dot).
    pub fn domain(&self, i: usize) -> String {
        format!("d{i}.{}", self.origin.trim_end_matches('.'))
    }

    /// The site domain `i` belongs to.
    pub fn site_of(&self, i: usize) -> usize {
        i % self.sites.max(1)
    }

    /// The two MX hosts of `site`, preference 10 then 20, e.g. `mx3a.sites.bench.test`.
    pub fn mx_hosts(&self, site: usize) -> [String; 2] {
        let origin = self.origin.trim_end_matches('.');
        [format!("mx{site}a.sites.{origin}"), format!("mx{site}b.sites.{origin}")]
    }

    /// The address both hosts of `site` resolve to, or `None` without MX addresses.
    pub fn mx_ip(&self, site: usize) -> Option<Ipv4Addr> {
        (!self.mx_ips.is_empty()).then(|| self.mx_ips[site % self.mx_ips.len()])
    }

    /// Every record of the zone: the SOA, two MX per domain, one A per MX host.
    pub fn records(&self) -> Result<Vec<Record>, DnsError> {
        self.validate()?;
        let origin = self.origin_name()?;
        let sites_origin = child(&origin, "sites")?;
        let mut records = Vec::with_capacity(1 + 2 * self.domains + 2 * self.sites);
        let soa = SOA::new(
            child(&origin, "ns")?,
            child(&origin, "hostmaster")?,
            1,
            TTL as i32,
            600,
            86_400,
            TTL,
        );
        records.push(Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)));

        let mut hosts = Vec::with_capacity(self.sites);
        for site in 0..self.sites {
            let a = child(&sites_origin, &format!("mx{site}a"))?;
            let b = child(&sites_origin, &format!("mx{site}b"))?;
            if let Some(ip) = self.mx_ip(site) {
                records.push(Record::from_rdata(a.clone(), TTL, RData::A(A(ip))));
                records.push(Record::from_rdata(b.clone(), TTL, RData::A(A(ip))));
            }
            hosts.push((a, b));
        }
        for i in 0..self.domains {
            let domain = child(&origin, &format!("d{i}"))?;
            let (a, b) = &hosts[self.site_of(i)];
            let primary = RData::MX(MX::new(PRIMARY_PREFERENCE, a.clone()));
            let secondary = RData::MX(MX::new(SECONDARY_PREFERENCE, b.clone()));
            records.push(Record::from_rdata(domain.clone(), TTL, primary));
            records.push(Record::from_rdata(domain, TTL, secondary));
        }
        Ok(records)
    }

    /// The zone as a hickory authority, ready for a catalog.
    pub fn authority(&self) -> Result<InMemoryAuthority, DnsError> {
        authority_of(self.origin_name()?, self.records()?)
    }

    /// The origin as a fully-qualified name.
    pub(crate) fn origin_name(&self) -> Result<Name, DnsError> {
        origin_fqdn(&self.origin)
    }
}

/// A primary-zone authority for `origin` holding `records`.
pub(crate) fn authority_of(origin: Name, records: Vec<Record>) -> Result<InMemoryAuthority, DnsError> {
    let mut authority = InMemoryAuthority::empty(origin, ZoneType::Primary, false);
    for record in records {
        let shown = record.to_string();
        if !authority.upsert_mut(record, 1) {
            return Err(DnsError::RecordRefused { record: shown });
        }
    }
    Ok(authority)
}

/// `text` (with or without the trailing dot) as a fully-qualified name; not the root.
pub(crate) fn origin_fqdn(text: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        name: text.to_owned(),
        reason,
    };
    let trimmed = text.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(invalid("the origin must not be the root".into()));
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| invalid(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

/// `label.parent`.
fn child(parent: &Name, label: &str) -> Result<Name, DnsError> {
    parent.prepend_label(label).map_err(|e| DnsError::InvalidName {
        name: format!("{label}.{parent}"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(domains: usize, sites: usize) -> BenchZone {
        BenchZone::new(
            domains,
            sites,
            vec![Ipv4Addr::new(127, 0, 0, 10), Ipv4Addr::new(127, 0, 0, 11)],
        )
    }

    #[test]
    fn names_follow_the_recipient_generator() {
        let zone = zone(10, 3);
        assert_eq!(zone.domain(7), "d7.bench.test");
        assert_eq!(zone.site_of(7), 1);
        assert_eq!(zone.mx_hosts(1), ["mx1a.sites.bench.test", "mx1b.sites.bench.test"]);
        assert_eq!(zone.mx_ip(1), Some(Ipv4Addr::new(127, 0, 0, 11)));
        assert_eq!(zone.mx_ip(2), Some(Ipv4Addr::new(127, 0, 0, 10)));
    }

    #[test]
    fn records_are_one_soa_two_mx_per_domain_one_a_per_host() {
        let records = zone(10_000, 100).records().unwrap();
        assert_eq!(records.len(), 1 + 2 * 10_000 + 2 * 100);
        let mx_of_d42: Vec<String> = records
            .iter()
            .filter(|r| r.name().to_ascii() == "d42.bench.test.")
            .map(|r| r.data().to_string())
            .collect();
        assert_eq!(mx_of_d42, ["10 mx42a.sites.bench.test.", "20 mx42b.sites.bench.test."]);
        assert!(records.iter().all(|r| r.ttl() == TTL));
    }

    #[test]
    fn authority_takes_every_record() {
        let mut authority = zone(1_000, 7).authority().unwrap();
        // One record set per (owner, type): the SOA, one MX set per domain, one A per host.
        assert_eq!(authority.records_get_mut().len(), 1 + 1_000 + 2 * 7);
    }

    #[test]
    fn refuses_to_point_mx_hosts_off_loopback() {
        let zone = BenchZone::new(1, 1, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(matches!(zone.validate(), Err(DnsError::MxIpNotLoopback { .. })));
    }

    #[test]
    fn refuses_domains_without_sites_or_addresses() {
        assert!(matches!(
            BenchZone::new(5, 0, vec![]).validate(),
            Err(DnsError::NoSites { domains: 5 })
        ));
        assert!(matches!(
            BenchZone::new(5, 2, vec![]).validate(),
            Err(DnsError::NoMxIps)
        ));
        let mut bad = zone(1, 1);
        bad.origin = "bad..name".into();
        assert!(matches!(bad.validate(), Err(DnsError::InvalidName { .. })));
    }
}
