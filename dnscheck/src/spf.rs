//! SPF evaluation (RFC 7208 §4 `check_host()`) on our resolver: records selected and counted
//! (§4.5), parsed with mail-auth's parser, mechanisms `ip4`, `ip6`, `a`, `mx`, `include`,
//! `exists`, `all` and the `redirect` modifier evaluated, with the limits of §4.6.4: at most 10
//! DNS-querying terms, at most 2 void lookups, at most 10 MX hosts per `mx`. Macros (§7) and the
//! `ptr` mechanism (§5.5, "SHOULD NOT be published") are not evaluated: reaching one ends the
//! evaluation with [`SpfVerdict::NotEvaluated`].

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf};
use volley_engine::mx::DnsAnswer;

use crate::lookup::Dns;

/// DNS-querying terms allowed in one evaluation (RFC 7208 §4.6.4).
pub const LOOKUP_LIMIT: usize = 10;

/// Void lookups (NXDOMAIN or no answer) allowed in one evaluation (RFC 7208 §4.6.4).
pub const VOID_LOOKUP_LIMIT: usize = 2;

/// MX hosts an `mx` mechanism may look up (RFC 7208 §4.6.4).
const MX_HOST_LIMIT: usize = 10;

/// The result of `check_host()` (RFC 7208 §2.6), plus "not evaluated".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpfVerdict {
    /// The IP is authorised.
    Pass,
    /// The IP is explicitly not authorised.
    Fail,
    /// Probably not authorised (`~`).
    SoftFail,
    /// No assertion (`?`, or nothing matched).
    Neutral,
    /// No SPF record.
    None,
    /// The records are broken: the reason.
    PermError(String),
    /// A permerror of its own kind: more DNS lookups (or void lookups) than RFC 7208 §4.6.4
    /// allows; the term that went over.
    LimitExceeded(String),
    /// A DNS failure: the reason.
    TempError(String),
    /// A macro or `ptr` was reached, which this evaluator does not expand: the reason.
    NotEvaluated(String),
}

/// A verdict and the term that decided it, e.g. `-all in example.test`, or through includes
/// `include:_spf.example.test in example.test > ip4:192.0.2.0/24 in _spf.example.test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfEvaluation {
    /// The verdict.
    pub verdict: SpfVerdict,
    /// The matching term and the domain whose record holds it; `None` when none matched.
    pub matched: Option<String>,
}

/// The SPF records among the TXT records of a domain: those that are `v=spf1` exactly or begin
/// with `v=spf1 ` (RFC 7208 §4.5, case-insensitive).
pub fn spf_records(txt: &[String]) -> Vec<&str> {
    txt.iter()
        .map(String::as_str)
        .filter(|t| {
            let lower = t.to_ascii_lowercase();
            lower == "v=spf1" || lower.starts_with("v=spf1 ")
        })
        .collect()
}

/// The one SPF record of a domain, parsed, or why there is none (RFC 7208 §4.5).
pub(crate) enum Published {
    /// Exactly one record; the text and the parsed record.
    One(String, Spf),
    /// No `v=spf1` record (NXDOMAIN, NODATA, or only other TXT records).
    None,
    /// Several records, or one that does not parse (permerror): the records, and why.
    Broken(Vec<String>, String),
    /// The query failed.
    Failed(String),
}

pub(crate) async fn published(dns: &Dns, domain: &str) -> Published {
    let txt = match dns.txt(domain).await {
        DnsAnswer::Records(txt, _) => txt,
        DnsAnswer::NoData | DnsAnswer::NxDomain => return Published::None,
        DnsAnswer::Failed(reason) => return Published::Failed(format!("TXT {domain}: {reason}")),
    };
    match spf_records(&txt)[..] {
        [] => Published::None,
        [one] => match Spf::parse(one.as_bytes()) {
            Ok(spf) => Published::One(one.to_owned(), spf),
            Err(e) => Published::Broken(vec![one.to_owned()], format!("{one:?} does not parse: {e}")),
        },
        ref several => Published::Broken(
            several.iter().map(|r| r.to_string()).collect(),
            format!(
                "{} SPF records ({}): more than one is a permerror (RFC 7208 §4.5)",
                several.len(),
                several.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

/// `check_host(ip, domain)`: whether `domain`'s SPF authorises `ip`.
pub(crate) async fn check_host(dns: &Dns, ip: IpAddr, domain: &str) -> SpfEvaluation {
    let mut evaluation = Evaluation {
        dns,
        ip,
        lookups: 0,
        voids: 0,
        included: None,
    };
    evaluation.check(domain.to_owned()).await
}

struct Evaluation<'a> {
    dns: &'a Dns,
    ip: IpAddr,
    lookups: usize,
    voids: usize,
    /// The term that matched inside the last `include` that passed.
    included: Option<String>,
}

type Boxed<'b> = Pin<Box<dyn Future<Output = SpfEvaluation> + Send + 'b>>;

fn verdict(verdict: SpfVerdict) -> SpfEvaluation {
    SpfEvaluation { verdict, matched: None }
}

impl Evaluation<'_> {
    fn check(&mut self, domain: String) -> Boxed<'_> {
        Box::pin(async move {
            let spf = match published(self.dns, &domain).await {
                Published::One(_, spf) => spf,
                Published::None => return verdict(SpfVerdict::None),
                Published::Broken(_, reason) => return verdict(SpfVerdict::PermError(format!("{domain}: {reason}"))),
                Published::Failed(reason) => return verdict(SpfVerdict::TempError(reason)),
            };
            for directive in spf.directives.iter() {
                match self.matches(&directive.mechanism, &domain).await {
                    Ok(false) => continue,
                    Ok(true) => {
                        let (prefix, result) = match directive.qualifier {
                            Qualifier::Pass => ("", SpfVerdict::Pass),
                            Qualifier::Fail => ("-", SpfVerdict::Fail),
                            Qualifier::SoftFail => ("~", SpfVerdict::SoftFail),
                            Qualifier::Neutral => ("?", SpfVerdict::Neutral),
                        };
                        let mut matched = format!("{prefix}{} in {domain}", describe(&directive.mechanism));
                        if let (Mechanism::Include { .. }, Some(inner)) = (&directive.mechanism, self.included.take()) {
                            matched = format!("{matched} > {inner}");
                        }
                        return SpfEvaluation {
                            verdict: result,
                            matched: Some(matched),
                        };
                    }
                    Err(ended) => return ended,
                }
            }
            if let Some(redirect) = &spf.redirect {
                let target = match target(redirect, &domain) {
                    Ok(target) => target,
                    Err(ended) => return ended,
                };
                if let Err(ended) = self.count_lookup(&format!("redirect={target}")) {
                    return ended;
                }
                let result = self.check(target.clone()).await;
                if result.verdict == SpfVerdict::None {
                    return verdict(SpfVerdict::PermError(format!(
                        "redirect={target} in {domain}: {target} has no SPF record"
                    )));
                }
                return result;
            }
            verdict(SpfVerdict::Neutral)
        })
    }

    /// Whether `mechanism` of `domain`'s record matches; `Err` ends the evaluation.
    async fn matches(&mut self, mechanism: &Mechanism, domain: &str) -> Result<bool, SpfEvaluation> {
        match mechanism {
            Mechanism::All => Ok(true),
            // The other family's mask is never used: an address only matches its own family.
            Mechanism::Ip4 { addr, mask } => Ok(self.in_range(IpAddr::V4(*addr), *mask, 0)),
            Mechanism::Ip6 { addr, mask } => Ok(self.in_range(IpAddr::V6(*addr), 0, *mask)),
            Mechanism::A {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                let target = target(macro_string, domain)?;
                self.count_lookup(&format!("a:{target}"))?;
                match self.addrs_of(&target).await? {
                    Some(addrs) => Ok(addrs.iter().any(|a| self.in_range(*a, *ip4_mask, *ip6_mask))),
                    None => Ok(false),
                }
            }
            Mechanism::Mx {
                macro_string,
                ip4_mask,
                ip6_mask,
            } => {
                let target = target(macro_string, domain)?;
                self.count_lookup(&format!("mx:{target}"))?;
                let hosts = match self.dns.mx(&target).await {
                    DnsAnswer::Records(hosts, _) => hosts,
                    DnsAnswer::NoData | DnsAnswer::NxDomain => {
                        self.count_void(&format!("mx:{target}"))?;
                        return Ok(false);
                    }
                    DnsAnswer::Failed(reason) => {
                        return Err(verdict(SpfVerdict::TempError(format!("MX {target}: {reason}"))))
                    }
                };
                if hosts.len() > MX_HOST_LIMIT {
                    return Err(verdict(SpfVerdict::PermError(format!(
                        "mx:{target} has {} MX hosts, more than {MX_HOST_LIMIT} (RFC 7208 §4.6.4)",
                        hosts.len()
                    ))));
                }
                for (_, host) in hosts.iter().filter(|(_, h)| !h.is_empty()) {
                    if let DnsAnswer::Records(addrs, _) = self.dns.addrs(host).await {
                        if addrs.iter().any(|a| self.in_range(*a, *ip4_mask, *ip6_mask)) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            Mechanism::Include { macro_string } => {
                let target = target(macro_string, domain)?;
                self.count_lookup(&format!("include:{target}"))?;
                let inner = self.check(target.clone()).await;
                match inner.verdict {
                    SpfVerdict::Pass => {
                        self.included = inner.matched;
                        Ok(true)
                    }
                    SpfVerdict::Fail | SpfVerdict::SoftFail | SpfVerdict::Neutral => Ok(false),
                    // RFC 7208 §5.2: an included domain without a record is a permerror.
                    SpfVerdict::None => Err(verdict(SpfVerdict::PermError(format!(
                        "include:{target} in {domain}: {target} has no SPF record"
                    )))),
                    SpfVerdict::PermError(_)
                    | SpfVerdict::LimitExceeded(_)
                    | SpfVerdict::TempError(_)
                    | SpfVerdict::NotEvaluated(_) => Err(inner),
                }
            }
            Mechanism::Exists { macro_string } => {
                let target = target(macro_string, domain)?;
                self.count_lookup(&format!("exists:{target}"))?;
                Ok(self
                    .addrs_of(&target)
                    .await?
                    .is_some_and(|addrs| addrs.iter().any(IpAddr::is_ipv4)))
            }
            Mechanism::Ptr { .. } => Err(verdict(SpfVerdict::NotEvaluated(format!(
                "ptr in {domain} not evaluated (RFC 7208 §5.5: do not publish ptr)"
            )))),
        }
    }

    /// Addresses of `name`; `None` (counted as a void lookup) when it has none.
    async fn addrs_of(&mut self, name: &str) -> Result<Option<Vec<IpAddr>>, SpfEvaluation> {
        match self.dns.addrs(name).await {
            DnsAnswer::Records(addrs, _) => Ok(Some(addrs)),
            DnsAnswer::NoData | DnsAnswer::NxDomain => {
                self.count_void(name)?;
                Ok(None)
            }
            DnsAnswer::Failed(reason) => Err(verdict(SpfVerdict::TempError(format!("A/AAAA {name}: {reason}")))),
        }
    }

    fn in_range(&self, addr: IpAddr, ip4_mask: u32, ip6_mask: u128) -> bool {
        match (self.ip, addr) {
            (IpAddr::V4(ip), IpAddr::V4(a)) => u32::from(ip) & ip4_mask == u32::from(a) & ip4_mask,
            (IpAddr::V6(ip), IpAddr::V6(a)) => u128::from(ip) & ip6_mask == u128::from(a) & ip6_mask,
            _ => false,
        }
    }

    fn count_lookup(&mut self, term: &str) -> Result<(), SpfEvaluation> {
        self.lookups += 1;
        over_limit(term, self.lookups, LOOKUP_LIMIT, "DNS lookup")
    }

    fn count_void(&mut self, term: &str) -> Result<(), SpfEvaluation> {
        self.voids += 1;
        over_limit(term, self.voids, VOID_LOOKUP_LIMIT, "void lookup")
    }
}

/// A permerror when `count` (the count of `what`s after `term`) is over `limit`.
fn over_limit(term: &str, count: usize, limit: usize, what: &str) -> Result<(), SpfEvaluation> {
    if count > limit {
        return Err(verdict(SpfVerdict::LimitExceeded(format!(
            "{term} is {what} {count}: more than {limit} {what}s (RFC 7208 §4.6.4)"
        ))));
    }
    Ok(())
}

/// The domain a mechanism names: the current domain when it names none, the literal when it
/// is one; a macro ends the evaluation.
fn target(macro_string: &Macro, domain: &str) -> Result<String, SpfEvaluation> {
    match macro_string {
        Macro::None => Ok(domain.to_owned()),
        Macro::Literal(bytes) => Ok(String::from_utf8_lossy(bytes)
            .trim_end_matches('.')
            .to_ascii_lowercase()),
        Macro::Variable { .. } | Macro::List(_) => Err(verdict(SpfVerdict::NotEvaluated(format!(
            "macros not evaluated (in {domain}'s record)"
        )))),
    }
}

/// A mechanism as text, for messages (`ip4:127.0.0.0/24`, `include:_spf.example.test`).
fn describe(mechanism: &Mechanism) -> String {
    let name = |m: &Macro| match m {
        Macro::None => String::new(),
        Macro::Literal(bytes) => format!(":{}", String::from_utf8_lossy(bytes)),
        Macro::Variable { .. } | Macro::List(_) => ":<macro>".to_owned(),
    };
    match mechanism {
        Mechanism::All => "all".to_owned(),
        Mechanism::Ip4 { addr, mask } => format!("ip4:{addr}/{}", mask.count_ones()),
        Mechanism::Ip6 { addr, mask } => format!("ip6:{addr}/{}", mask.count_ones()),
        Mechanism::A { macro_string, .. } => format!("a{}", name(macro_string)),
        Mechanism::Mx { macro_string, .. } => format!("mx{}", name(macro_string)),
        Mechanism::Include { macro_string } => format!("include{}", name(macro_string)),
        Mechanism::Exists { macro_string } => format!("exists{}", name(macro_string)),
        Mechanism::Ptr { macro_string } => format!("ptr{}", name(macro_string)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_spf_records_only() {
        let txt = vec![
            "v=spf1 -all".to_owned(),
            "google-site-verification=x".to_owned(),
            "V=SPF1 ip4:127.0.0.2".to_owned(),
            "v=spf10 -all".to_owned(),
            "v=spf1".to_owned(),
        ];
        assert_eq!(spf_records(&txt), ["v=spf1 -all", "V=SPF1 ip4:127.0.0.2", "v=spf1"]);
    }

    #[test]
    fn describes_mechanisms() {
        let spf = Spf::parse(b"v=spf1 ip4:127.0.0.0/24 ip6:::1 a mx:mx.test include:_spf.test -all").unwrap();
        let described: Vec<String> = spf.directives.iter().map(|d| describe(&d.mechanism)).collect();
        assert_eq!(
            described,
            [
                "ip4:127.0.0.0/24",
                "ip6:::1/128",
                "a",
                "mx:mx.test",
                "include:_spf.test",
                "all"
            ]
        );
    }
}
