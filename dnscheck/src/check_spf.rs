//! The `spf` check of one domain: exactly one record, it parses, and `check_host()` passes for
//! every source IP. pass -> pass; neutral, softfail, temperror, not evaluated -> warn;
//! fail, permerror (lookup limits included) -> fail.

use std::net::IpAddr;

use crate::lookup::Dns;
use crate::report::{quoted, Check, CheckKind, Status};
use crate::spf::{check_host, published, Published, SpfVerdict};

pub(crate) async fn check(dns: &Dns, domain: &str, ips: &[IpAddr]) -> Check {
    let new = |status, message: String| Check::new(CheckKind::Spf, domain, status, message);
    let record = match published(dns, domain).await {
        Published::One(text, _) => text,
        Published::None => {
            return new(Status::Fail, format!("no SPF record (TXT \"v=spf1 ...\") at {domain}"))
                .advice(txt_line(domain, &suggested(None, ips)));
        }
        Published::Broken(records, reason) => {
            return new(Status::Fail, format!("permerror: {reason}"))
                .record(records.join(" | "))
                .advice(format!("one record only: {}", txt_line(domain, &suggested(None, ips))));
        }
        Published::Failed(reason) => return Check::unchecked(CheckKind::Spf, domain, "SPF", &reason),
    };
    if ips.is_empty() {
        return new(
            Status::Pass,
            format!("{} parses; no source IP configured to check", quoted(&record)),
        )
        .record(record);
    }
    let mut status = Status::Pass;
    let mut results = Vec::with_capacity(ips.len());
    let mut unauthorised = Vec::new();
    let mut limit_exceeded = false;
    for &ip in ips {
        let evaluation = check_host(dns, ip, domain).await;
        let (ip_status, word) = match &evaluation.verdict {
            SpfVerdict::Pass => (Status::Pass, "pass".to_owned()),
            SpfVerdict::Neutral => (Status::Warn, "neutral".to_owned()),
            SpfVerdict::SoftFail => (Status::Warn, "softfail".to_owned()),
            SpfVerdict::Fail => (Status::Fail, "fail".to_owned()),
            SpfVerdict::None => (Status::Fail, "none".to_owned()),
            SpfVerdict::PermError(reason) => (Status::Fail, format!("permerror: {reason}")),
            SpfVerdict::LimitExceeded(reason) => {
                limit_exceeded = true;
                (Status::Fail, format!("permerror: {reason}"))
            }
            SpfVerdict::TempError(reason) => (Status::Warn, format!("temperror, could not check: {reason}")),
            SpfVerdict::NotEvaluated(reason) => (Status::Warn, format!("not evaluated: {reason}")),
        };
        if matches!(
            evaluation.verdict,
            SpfVerdict::Neutral | SpfVerdict::SoftFail | SpfVerdict::Fail
        ) {
            unauthorised.push(ip);
        }
        let via = evaluation.matched.map(|m| format!(" via {m}")).unwrap_or_default();
        results.push(format!("{ip} {word}{via}"));
        status = status.max(ip_status);
    }
    let verb = if status == Status::Pass {
        "authorises every source IP"
    } else {
        "does not authorise every source IP"
    };
    let mut out = new(status, format!("{} {verb}: {}", quoted(&record), results.join(", "))).record(record.clone());
    if limit_exceeded {
        out = out.advice(format!(
            "at most 10 DNS-querying terms (include, a, mx, exists, redirect) in all: replace includes by the ip4:/ip6: ranges they list, e.g. {}",
            txt_line(domain, &suggested(None, ips))
        ));
    } else if !unauthorised.is_empty() {
        out = out.advice(txt_line(domain, &suggested(Some(&record), &unauthorised)));
    }
    out
}

/// A record authorising `ips`: `record` with `ip4:`/`ip6:` terms added after `v=spf1`, or a
/// new record ending in `-all`.
fn suggested(record: Option<&str>, ips: &[IpAddr]) -> String {
    let terms: Vec<String> = ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("ip4:{v4}"),
            IpAddr::V6(v6) => format!("ip6:{v6}"),
        })
        .collect();
    match record {
        Some(record) => {
            let rest = record.get(6..).unwrap_or("").trim_start();
            format!("v=spf1 {} {rest}", terms.join(" ")).trim_end().to_owned()
        }
        None => format!("v=spf1 {} -all", terms.join(" ")),
    }
}

/// A zone-file line: `domain. TXT "text"`.
pub(crate) fn txt_line(name: &str, text: &str) -> String {
    format!("{name}. TXT {}", quoted(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_add_the_missing_ips() {
        let ips: Vec<IpAddr> = vec!["127.0.0.3".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(
            suggested(Some("v=spf1 ip4:127.0.0.2 -all"), &ips),
            "v=spf1 ip4:127.0.0.3 ip6:::1 ip4:127.0.0.2 -all"
        );
        assert_eq!(suggested(None, &ips[..1]), "v=spf1 ip4:127.0.0.3 -all");
    }
}
