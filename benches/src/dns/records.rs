//! [`RecordZone`]: a zone of hand-written records of any common type (TXT, A, AAAA, MX, PTR),
//! for tests that need a sender's whole DNS — SPF, DKIM and DMARC policies, the reverse zone of
//! the source IPs, a bounce domain's MX — served by [`super::BenchDns::start_zones`]. Several
//! zones (e.g. `test` and `127.in-addr.arpa`) can be served by one server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), volley_bench::dns::DnsError> {
//! use volley_bench::dns::{BenchDns, RecordZone, ZoneRecord};
//! let mut forward = RecordZone::new("test");
//! forward.add("example.test", ZoneRecord::Txt("v=spf1 ip4:127.0.0.2 -all".into()));
//! let mut reverse = RecordZone::new("127.in-addr.arpa");
//! reverse.add("2.0.0.127.in-addr.arpa", ZoneRecord::Ptr("mail.example.test".into()));
//! let dns = BenchDns::start_zones("127.0.0.1:0".parse().unwrap(), &[forward, reverse]).await?;
//! # dns.shutdown().await; Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_server::proto::rr::rdata::{A, AAAA, MX, PTR, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record};
use hickory_server::store::in_memory::InMemoryAuthority;

use super::zone::{authority_of, origin_fqdn};
use super::{DnsError, TTL};

/// Longest character-string in a TXT record (RFC 1035 §3.3); longer texts are split.
const TXT_STRING_MAX: usize = 255;

/// One record's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneRecord {
    /// A TXT record; texts over 255 bytes become several character-strings of one record.
    Txt(String),
    /// An IPv4 address (loopback only: names in test zones never point off the machine).
    A(Ipv4Addr),
    /// An IPv6 address (loopback only).
    Aaaa(Ipv6Addr),
    /// A mail exchanger: preference and host name (`.` for a null MX).
    Mx(u16, String),
    /// A pointer (reverse DNS): the host name.
    Ptr(String),
}

/// Records under one origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordZone {
    /// The zone's origin, without the trailing dot.
    pub origin: String,
    /// `(owner name, data)`; owner names are absolute and under `origin`.
    pub records: Vec<(String, ZoneRecord)>,
}

impl RecordZone {
    /// An empty zone for `origin`.
    pub fn new(origin: impl Into<String>) -> RecordZone {
        RecordZone {
            origin: origin.into(),
            records: Vec::new(),
        }
    }

    /// Adds `record` at `name`. One owner may have several records of one type.
    pub fn add(&mut self, name: impl Into<String>, record: ZoneRecord) -> &mut RecordZone {
        self.records.push((name.into(), record));
        self
    }

    /// The zone as a hickory authority: an SOA plus the records.
    pub fn authority(&self) -> Result<InMemoryAuthority, DnsError> {
        let origin = self.origin_name()?;
        let soa = SOA::new(origin.clone(), origin.clone(), 1, TTL as i32, 600, 86_400, TTL);
        let mut records = vec![Record::from_rdata(origin.clone(), TTL, RData::SOA(soa))];
        for (name, record) in &self.records {
            let owner = origin_fqdn(name)?;
            if !origin.zone_of(&owner) {
                return Err(DnsError::InvalidName {
                    name: name.clone(),
                    reason: format!("not under the zone origin {origin}"),
                });
            }
            records.push(Record::from_rdata(owner, TTL, rdata(name, record)?));
        }
        authority_of(origin, records)
    }

    /// The origin as a fully-qualified name.
    pub(crate) fn origin_name(&self) -> Result<Name, DnsError> {
        origin_fqdn(&self.origin)
    }
}

fn rdata(name: &str, record: &ZoneRecord) -> Result<RData, DnsError> {
    Ok(match record {
        ZoneRecord::Txt(text) => RData::TXT(TXT::new(
            text.as_bytes()
                .chunks(TXT_STRING_MAX)
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect(),
        )),
        ZoneRecord::A(ip) if ip.is_loopback() => RData::A(A(*ip)),
        ZoneRecord::Aaaa(ip) if ip.is_loopback() => RData::AAAA(AAAA(*ip)),
        ZoneRecord::A(ip) => return Err(not_loopback(name, IpAddr::V4(*ip))),
        ZoneRecord::Aaaa(ip) => return Err(not_loopback(name, IpAddr::V6(*ip))),
        // `.` is the null MX (RFC 7505).
        ZoneRecord::Mx(preference, host) if host == "." => RData::MX(MX::new(*preference, Name::root())),
        ZoneRecord::Mx(preference, host) => RData::MX(MX::new(*preference, origin_fqdn(host)?)),
        ZoneRecord::Ptr(host) => RData::PTR(PTR(origin_fqdn(host)?)),
    })
}

fn not_loopback(name: &str, ip: IpAddr) -> DnsError {
    DnsError::AddressNotLoopback {
        name: name.to_owned(),
        ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_every_type_and_groups_record_sets() {
        let mut zone = RecordZone::new("test");
        zone.add("a.test", ZoneRecord::Txt("v=spf1 -all".into()))
            .add("a.test", ZoneRecord::Txt("other".into()))
            .add("a.test", ZoneRecord::Mx(10, "mx.a.test".into()))
            .add("mx.a.test", ZoneRecord::A(Ipv4Addr::new(127, 0, 0, 9)))
            .add("mx.a.test", ZoneRecord::Aaaa(Ipv6Addr::LOCALHOST));
        let mut authority = zone.authority().unwrap();
        // SOA; TXT and MX sets of a.test; A and AAAA sets of mx.a.test.
        assert_eq!(authority.records_get_mut().len(), 5);
    }

    #[test]
    fn refuses_addresses_off_loopback_and_names_outside_the_origin() {
        let mut zone = RecordZone::new("test");
        zone.add("a.test", ZoneRecord::A(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(matches!(zone.authority(), Err(DnsError::AddressNotLoopback { .. })));
        let mut zone = RecordZone::new("test");
        zone.add("a.example", ZoneRecord::Ptr("a.test".into()));
        assert!(matches!(zone.authority(), Err(DnsError::InvalidName { .. })));
    }
}
