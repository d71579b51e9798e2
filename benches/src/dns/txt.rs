//! [`TxtZone`]: a zone of TXT records only — DKIM keys (`<selector>._domainkey.<domain>`),
//! SPF or DMARC policies — for tests that verify what a real resolver reads over the wire, and
//! [`verifier_for`]: mail-auth's verifier asking such a server and nothing else.
//!
//! ```no_run
//! # async fn demo() -> Result<(), volley_bench::dns::DnsError> {
//! use volley_bench::dns::{BenchDns, TxtZone};
//! let mut zone = TxtZone::new("example.test");
//! zone.add("s1._domainkey.example.test", "v=DKIM1; k=ed25519; p=...");
//! let dns = BenchDns::start_txt("127.0.0.1:0".parse().unwrap(), &zone).await?;
//! # dns.shutdown().await; Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;

use hickory_server::proto::rr::Name;
use hickory_server::store::in_memory::InMemoryAuthority;
use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::MessageAuthenticator;

use super::zone::origin_fqdn;
use super::{DnsError, RecordZone, ZoneRecord};

/// TXT records under one origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxtZone {
    /// The zone's origin, without the trailing dot.
    pub origin: String,
    /// `(owner name, text)`; owner names are absolute (no trailing dot needed) and under `origin`.
    /// One owner may have several records.
    pub records: Vec<(String, String)>,
}

impl TxtZone {
    /// An empty zone for `origin`.
    pub fn new(origin: impl Into<String>) -> TxtZone {
        TxtZone {
            origin: origin.into(),
            records: Vec::new(),
        }
    }

    /// Adds a TXT record `text` at `name`; texts over 255 bytes are served as several
    /// character-strings of one record, which resolvers concatenate.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> &mut TxtZone {
        self.records.push((name.into(), text.into()));
        self
    }

    /// The zone as a hickory authority: an SOA plus the TXT records.
    pub fn authority(&self) -> Result<InMemoryAuthority, DnsError> {
        let mut zone = RecordZone::new(self.origin.clone());
        for (name, text) in &self.records {
            zone.add(name.clone(), ZoneRecord::Txt(text.clone()));
        }
        zone.authority()
    }

    /// The origin as a fully-qualified name.
    pub(crate) fn origin_name(&self) -> Result<Name, DnsError> {
        origin_fqdn(&self.origin)
    }
}

/// mail-auth's verifier (DKIM, SPF, DMARC) with `dns` — a [`super::BenchDns`] on loopback — as
/// its only name server, over UDP and TCP: what a receiver concludes from the records served.
/// Refuses a non-loopback address: tests never ask a real resolver.
pub fn verifier_for(dns: SocketAddr) -> io::Result<MessageAuthenticator> {
    if !dns.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{dns}: the test DNS server must be on loopback"),
        ));
    }
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = dns.port();
    let server = NameServerConfig::new(dns.ip(), true, vec![udp, tcp]);
    MessageAuthenticator::new(
        ResolverConfig::from_parts(None, vec![], vec![server]),
        ResolverOpts::default(),
    )
    .map_err(|e| io::Error::other(format!("mail-auth resolver for {dns}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_become_one_record_of_several_strings() {
        let mut zone = TxtZone::new("example.test");
        zone.add("s1._domainkey.example.test", "p=".to_owned() + &"A".repeat(400));
        let mut authority = zone.authority().unwrap();
        // The SOA and one TXT record set.
        assert_eq!(authority.records_get_mut().len(), 2);
    }

    #[test]
    fn refuses_names_outside_the_origin() {
        let mut zone = TxtZone::new("example.test");
        zone.add("s1._domainkey.other.test", "v=DKIM1");
        assert!(matches!(zone.authority(), Err(DnsError::InvalidName { .. })));
    }
}
