//! DNS blocklist (DNSBL) lookups of a source IP (RFC 5782): the query name, what an answer
//! means, and one lookup through a hickory resolver.
//!
//! An IPv4 address `a.b.c.d` is looked up as `d.c.b.a.<zone>`, an IPv6 address as its 32
//! nibbles reversed (RFC 5782 §2.4); a zone that needs a query key (Spamhaus DQS) gets it in
//! front of the zone (`d.c.b.a.<key>.<zone>`). A listing is an A record in 127.0.0.0/8 (§2.1).
//! Anything else is not a listing:
//! - NXDOMAIN or no A record: not listed;
//! - an address the zone documents as an error (Spamhaus answers 127.255.255.252 for a typo in
//!   the zone, .254 for a query through a public resolver, .255 for too many queries): the
//!   query was refused, which says nothing about the IP;
//! - an address outside 127.0.0.0/8: a resolver rewriting NXDOMAIN (an ISP's "search page"),
//!   not the zone's answer;
//! - a timeout or SERVFAIL: not known.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::ResolveError;
/// The resolver blocklist lookups go through ([`crate::mx::build_resolver`] builds one).
pub use hickory_resolver::TokioResolver;

/// A blocklist zone to check source IPs against.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocklistZone {
    /// The zone, e.g. `zen.spamhaus.org` (or `zen.dq.spamhaus.net` with a DQS `key`).
    pub zone: String,
    /// A query key placed before the zone (Spamhaus Data Query Service). Never printed.
    #[serde(default)]
    pub key: Option<String>,
    /// Answers that mean "query refused / rate limited / misconfigured" rather than a listing.
    /// Default: 127.255.255.252, 127.255.255.254 and 127.255.255.255 (Spamhaus's return codes
    /// for such errors; other zones do not use them for listings).
    #[serde(default = "default_refused")]
    pub refused: Vec<Ipv4Addr>,
}

impl fmt::Debug for BlocklistZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlocklistZone")
            .field("zone", &self.zone)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("refused", &self.refused)
            .finish()
    }
}

/// Spamhaus's error return codes (https://docs.spamhaus.com, "DNSBL return codes").
pub fn default_refused() -> Vec<Ipv4Addr> {
    vec![
        Ipv4Addr::new(127, 255, 255, 252),
        Ipv4Addr::new(127, 255, 255, 254),
        Ipv4Addr::new(127, 255, 255, 255),
    ]
}

impl BlocklistZone {
    /// A zone without key, with the default refusal codes.
    pub fn new(zone: &str) -> BlocklistZone {
        BlocklistZone {
            zone: zone.to_string(),
            key: None,
            refused: default_refused(),
        }
    }

    /// Why the zone cannot be used, if it cannot: a zone name of 1-253 characters, labels of
    /// letters, digits and hyphens; a key of letters and digits.
    pub fn problem(&self) -> Option<String> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        let zone = self.zone.trim_end_matches('.');
        if !name_ok(zone) {
            return Some("not a DNS zone name (letters, digits, '-' in dot-separated labels)".to_string());
        }
        if let Some(key) = &self.key {
            if key.is_empty() || key.len() > 63 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Some("key: 1-63 letters and digits".to_string());
            }
        }
        None
    }

    /// The fully qualified name to query for `ip`.
    pub fn query_name(&self, ip: IpAddr) -> String {
        let mut name = String::with_capacity(80);
        match ip {
            IpAddr::V4(v4) => {
                for octet in v4.octets().iter().rev() {
                    name.push_str(&octet.to_string());
                    name.push('.');
                }
            }
            IpAddr::V6(v6) => {
                for byte in v6.octets().iter().rev() {
                    for nibble in [byte & 0x0f, byte >> 4] {
                        name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                        name.push('.');
                    }
                }
            }
        }
        if let Some(key) = &self.key {
            name.push_str(key);
            name.push('.');
        }
        name.push_str(self.zone.trim_end_matches('.'));
        name.push('.');
        name
    }

    /// What the A records of an answer mean.
    pub fn interpret(&self, answers: &[Ipv4Addr]) -> ZoneAnswer {
        if answers.is_empty() {
            return ZoneAnswer::NotListed;
        }
        if let Some(code) = answers.iter().find(|a| self.refused.contains(a)) {
            return ZoneAnswer::Unknown(format!("the zone refused the query (answered {code})"));
        }
        if let Some(outside) = answers.iter().find(|a| a.octets()[0] != 127) {
            return ZoneAnswer::Unknown(format!(
                "answer {outside} is outside 127.0.0.0/8: not the zone's (a resolver rewriting NXDOMAIN?)"
            ));
        }
        let mut codes = answers.to_vec();
        codes.sort();
        codes.dedup();
        ZoneAnswer::Listed { codes }
    }
}

/// What a zone says of one IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneAnswer {
    /// Not listed (NXDOMAIN, or no A record).
    NotListed,
    /// Listed, with the zone's return codes (their meaning is the zone's: e.g. Spamhaus
    /// 127.0.0.2 SBL, 127.0.0.4 XBL).
    Listed { codes: Vec<Ipv4Addr> },
    /// The zone's answer cannot be read as either (refused, rate limited, rewritten, timed
    /// out); the IP's state is kept as it was.
    Unknown(String),
}

/// Looks `ip` up in `zone`.
pub async fn check(resolver: &TokioResolver, zone: &BlocklistZone, ip: IpAddr) -> ZoneAnswer {
    match resolver.ipv4_lookup(zone.query_name(ip)).await {
        Ok(found) => {
            let answers: Vec<Ipv4Addr> = found.iter().map(|a| a.0).collect();
            zone.interpret(&answers)
        }
        Err(e) => negative(&e),
    }
}

fn negative(e: &ResolveError) -> ZoneAnswer {
    match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. })
            if matches!(*response_code, ResponseCode::NXDomain | ResponseCode::NoError) =>
        {
            ZoneAnswer::NotListed
        }
        _ => ZoneAnswer::Unknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_reverse_the_address_and_carry_the_key() {
        let z = BlocklistZone::new("zen.spamhaus.org");
        assert_eq!(
            z.query_name("192.0.2.10".parse().unwrap()),
            "10.2.0.192.zen.spamhaus.org."
        );
        let dqs = BlocklistZone {
            key: Some("abc123".into()),
            ..BlocklistZone::new("zen.dq.spamhaus.net.")
        };
        assert_eq!(
            dqs.query_name("127.0.0.2".parse().unwrap()),
            "2.0.0.127.abc123.zen.dq.spamhaus.net."
        );
        // RFC 5782 §2.4's example address.
        let v6 = z.query_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap());
        assert_eq!(
            v6,
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org."
        );
    }

    #[test]
    fn only_loopback_answers_that_are_not_error_codes_are_listings() {
        let z = BlocklistZone::new("zen.spamhaus.org");
        assert_eq!(z.interpret(&[]), ZoneAnswer::NotListed);
        assert_eq!(
            z.interpret(&[Ipv4Addr::new(127, 0, 0, 4), Ipv4Addr::new(127, 0, 0, 2)]),
            ZoneAnswer::Listed {
                codes: vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 4)]
            }
        );
        for refused in [[127, 255, 255, 254], [127, 255, 255, 255], [127, 255, 255, 252]] {
            match z.interpret(&[Ipv4Addr::from(refused)]) {
                ZoneAnswer::Unknown(why) => assert!(why.contains("refused"), "{why}"),
                other => panic!("{refused:?}: {other:?}"),
            }
        }
        match z.interpret(&[Ipv4Addr::new(198, 51, 100, 7)]) {
            ZoneAnswer::Unknown(why) => assert!(why.contains("outside 127.0.0.0/8"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zone_problems_and_a_redacted_key() {
        assert_eq!(BlocklistZone::new("bl.spamcop.net").problem(), None);
        assert!(BlocklistZone::new("bad zone").problem().is_some());
        assert!(BlocklistZone::new("").problem().is_some());
        let keyed = BlocklistZone {
            key: Some("secret-key!".into()),
            ..BlocklistZone::new("zen.dq.spamhaus.net")
        };
        assert!(keyed.problem().is_some_and(|p| p.starts_with("key")));
        assert!(!format!("{keyed:?}").contains("secret"));
    }
}
