//! The `ptr` check of a source IP — forward-confirmed reverse DNS: the IP's PTR names a host
//! whose A/AAAA records contain the IP, and that host is the IP's `ehlo_name` — and the
//! `bounce_mx` check of the bounce domain.

use volley_engine::mx::DnsAnswer;

use crate::lookup::{reverse_name, Dns};
use crate::plan::{normalize, SourceIpName};
use crate::report::{Check, CheckKind, Status};

pub(crate) async fn check(dns: &Dns, source: &SourceIpName) -> Check {
    let ip = source.ip;
    let ehlo = normalize(&source.ehlo_name);
    let reverse = reverse_name(ip);
    let family = if ip.is_ipv4() { "A" } else { "AAAA" };
    let publish = format!("{reverse}. PTR {ehlo}. and {ehlo}. {family} {ip}");
    let new = |status, message: String| Check::new(CheckKind::Ptr, ip.to_string(), status, message);
    let names = match dns.ptr(ip).await {
        DnsAnswer::Records(names, _) => names,
        DnsAnswer::NoData | DnsAnswer::NxDomain => {
            return new(Status::Fail, format!("no PTR record at {reverse}")).advice(publish);
        }
        DnsAnswer::Failed(reason) => {
            return Check::unchecked(CheckKind::Ptr, ip.to_string(), &format!("PTR {reverse}"), &reason)
        }
    };
    let record = names.join(" | ");
    let mut confirmed = Vec::new();
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        match dns.addrs(name).await {
            DnsAnswer::Records(addrs, _) if addrs.contains(&ip) => confirmed.push(name.as_str()),
            DnsAnswer::Records(addrs, _) => {
                let list = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                seen.push(format!("{name} resolves to {list}"));
            }
            DnsAnswer::NoData | DnsAnswer::NxDomain => seen.push(format!("{name} has no A/AAAA record")),
            DnsAnswer::Failed(reason) => failures.push(format!("{name}: {reason}")),
        }
    }
    let ptr = format!("PTR {record}");
    if confirmed.contains(&ehlo.as_str()) {
        return new(
            Status::Pass,
            format!("{ptr} -> {ip} (FCrDNS), matches ehlo_name {ehlo}"),
        )
        .record(record);
    }
    if let Some(name) = confirmed.first() {
        return new(Status::Warn, format!("{ptr} -> {ip} (FCrDNS), but ehlo_name is {ehlo}"))
            .record(record)
            .advice(format!("ehlo_name = \"{name}\", or {publish}"));
    }
    if !failures.is_empty() {
        return Check::unchecked(CheckKind::Ptr, ip.to_string(), &ptr, &failures.join("; "));
    }
    new(Status::Fail, format!("{ptr}, but {}: FCrDNS fails", seen.join("; ")))
        .record(record)
        .advice(publish)
}

/// The bounce domain has an MX (not a null MX), so DSNs reach the inbound listener.
pub(crate) async fn bounce_mx(dns: &Dns, domain: &str) -> Check {
    let new = |status, message: String| Check::new(CheckKind::BounceMx, domain, status, message);
    let advice = format!("{domain}. MX 10 <the host running Volley's inbound listener>.");
    match dns.mx(domain).await {
        DnsAnswer::Records(hosts, _) => {
            let record = hosts
                .iter()
                .map(|(preference, host)| format!("MX {preference} {}", if host.is_empty() { "." } else { host }))
                .collect::<Vec<_>>()
                .join(" | ");
            if hosts.iter().all(|(_, host)| host.is_empty()) {
                new(
                    Status::Fail,
                    format!("{record}: a null MX (RFC 7505), the domain accepts no mail"),
                )
                .record(record)
                .advice(advice)
            } else {
                new(Status::Pass, format!("{record}: bounces have somewhere to go")).record(record)
            }
        }
        DnsAnswer::NoData | DnsAnswer::NxDomain => {
            new(Status::Fail, format!("no MX record at {domain}")).advice(advice)
        }
        DnsAnswer::Failed(reason) => Check::unchecked(CheckKind::BounceMx, domain, &format!("MX {domain}"), &reason),
    }
}
