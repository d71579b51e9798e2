//! The sender DNS both loopback servers serve (ours and dnsmasq): good and broken SPF, DKIM,
//! DMARC and PTR records over several domains, the plan that checks them, and the verdicts
//! expected of every check.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use volley_bench::dns::{RecordZone, ZoneRecord};
use volley_dnscheck::{Check, CheckKind, CheckPlan, SourceIpName, Status};
use volley_engine::dkim::{generate, DkimKeyConfig, KeyAlgorithm};
use volley_engine::mx::DnsConfig;

/// Records, the plan checking them, and the key files (kept until dropped).
pub struct World {
    pub records: Vec<(String, ZoneRecord)>,
    pub plan: CheckPlan,
    _keys: tempfile::TempDir,
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn txt(records: &mut Vec<(String, ZoneRecord)>, name: &str, text: &str) {
    records.push((name.to_owned(), ZoneRecord::Txt(text.to_owned())));
}

fn key(dir: &Path, algorithm: KeyAlgorithm, domain: &str, selector: &str) -> (DkimKeyConfig, String) {
    let generated = generate(algorithm, domain, selector).unwrap();
    let path = dir.join(format!("{selector}.{domain}.pem"));
    std::fs::write(&path, &generated.private_pem).unwrap();
    let config: DkimKeyConfig = toml::from_str(&format!(
        "domain = {domain:?}\nselector = {selector:?}\nkey = {:?}",
        path.display().to_string()
    ))
    .unwrap();
    (config, generated.txt_record)
}

/// The source IPs: 127.0.0.2 to 127.0.0.6.
pub const SOURCE_IPS: [u8; 5] = [2, 3, 4, 5, 6];

/// good.test — everything right (SPF through two includes, an Ed25519 and an RSA key, p=reject);
/// partial.test — SPF leaves out 127.0.0.4, DKIM record of another key, DMARC p=none;
/// deep.test — SPF needing 11 lookups, no DKIM record, no DMARC record;
/// mxauth.test — SPF by `mx` (127.0.0.2) and `a:` (127.0.0.3) only;
/// order.test — a DMARC record with `v=DMARC1` not first;
/// void.test — SPF naming three hosts that do not exist (void lookups);
/// revoked.test — no SPF record, a revoked DKIM key (empty p=); twice.test — two SPF records; shop.test — a campaign From domain without a key of its own,
/// strict alignment and a foreign envelope domain. Reverse DNS: .2 and .6 right, .3 without a
/// PTR, .4 confirmed but not its EHLO name, .5 naming a host that resolves elsewhere.
pub fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let mut records = Vec::new();
    let mut plan = CheckPlan::default();
    let r = &mut records;

    txt(r, "good.test", "v=spf1 include:_spf.good.test -all");
    txt(r, "good.test", "google-site-verification=not-spf");
    txt(r, "_spf.good.test", "v=spf1 include:_net.good.test ~all");
    txt(r, "_net.good.test", "v=spf1 ip4:127.0.0.0/29 -all");
    let (good_ed, good_ed_record) = key(dir.path(), KeyAlgorithm::Ed25519, "good.test", "e1");
    txt(r, "e1._domainkey.good.test", &good_ed_record);
    let (good_rsa, good_rsa_record) = key(dir.path(), KeyAlgorithm::Rsa { bits: 2048 }, "good.test", "r1");
    txt(r, "r1._domainkey.good.test", &good_rsa_record);
    txt(r, "_dmarc.good.test", "v=DMARC1; p=reject; rua=mailto:dmarc@good.test");

    txt(
        r,
        "partial.test",
        "v=spf1 ip4:127.0.0.2 ip4:127.0.0.3 ip4:127.0.0.5 ip4:127.0.0.6 -all",
    );
    let (partial, _) = key(dir.path(), KeyAlgorithm::Ed25519, "partial.test", "s1");
    let (_, stranger_record) = key(dir.path(), KeyAlgorithm::Ed25519, "partial.test", "old");
    txt(r, "s1._domainkey.partial.test", &stranger_record);
    txt(r, "_dmarc.partial.test", "v=DMARC1; p=none");

    let includes: Vec<String> = (1..=11).map(|i| format!("include:i{i}.deep.test")).collect();
    txt(r, "deep.test", &format!("v=spf1 {} -all", includes.join(" ")));
    for i in 1..=11 {
        txt(r, &format!("i{i}.deep.test"), &format!("v=spf1 ip4:127.0.1.{i} -all"));
    }
    let (deep, _) = key(dir.path(), KeyAlgorithm::Ed25519, "deep.test", "s1");

    let (revoked, _) = key(dir.path(), KeyAlgorithm::Ed25519, "revoked.test", "s1");
    txt(r, "s1._domainkey.revoked.test", "v=DKIM1; k=ed25519; p=");

    txt(
        r,
        "void.test",
        "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test ip4:127.0.0.0/24 -all",
    );

    txt(r, "_dmarc.order.test", "p=reject; v=DMARC1");

    txt(r, "twice.test", "v=spf1 ip4:127.0.0.0/24 -all");
    txt(r, "twice.test", "v=spf1 include:_spf.good.test -all");
    txt(r, "_dmarc.twice.test", "v=DMARC1; p=quarantine");

    txt(r, "shop.test", "v=spf1 ip4:127.0.0.0/24 -all");
    txt(r, "bounces.other.test", "v=spf1 ip4:127.0.0.0/24 -all");
    txt(r, "_dmarc.shop.test", "v=DMARC1; p=reject; adkim=s; aspf=s");

    let ptr = |last: u8| format!("{last}.0.0.127.in-addr.arpa");
    r.push((ptr(2), ZoneRecord::Ptr("mail.good.test".into())));
    r.push(("mail.good.test".into(), ZoneRecord::A(ip(2))));
    r.push((ptr(4), ZoneRecord::Ptr("other.good.test".into())));
    r.push(("other.good.test".into(), ZoneRecord::A(ip(4))));
    r.push((ptr(5), ZoneRecord::Ptr("mail5.good.test".into())));
    r.push(("mail5.good.test".into(), ZoneRecord::A(ip(9))));
    r.push((ptr(6), ZoneRecord::Ptr("mail6.good.test".into())));
    r.push(("mail6.good.test".into(), ZoneRecord::A(ip(6))));
    r.push(("bounce.good.test".into(), ZoneRecord::Mx(10, "mx.good.test".into())));
    r.push(("mx.good.test".into(), ZoneRecord::A(ip(25))));

    plan.dkim = vec![good_ed, good_rsa, partial, deep, revoked];
    for key in &plan.dkim.clone() {
        plan.add_domain(&key.domain, None);
    }
    plan.add_domain("twice.test", None);
    plan.add_domain("void.test", None);
    plan.add_domain("mxauth.test", None);
    plan.add_domain("order.test", None);
    plan.add_domain("shop.test", Some("bounces.other.test"));
    let ehlo = [
        "mail.good.test",
        "mail3.good.test",
        "mail4.good.test",
        "mail5.good.test",
        "mail6.good.test",
    ];
    plan.source_ips = SOURCE_IPS
        .iter()
        .zip(ehlo)
        .map(|(&last, name)| SourceIpName {
            ip: IpAddr::V4(ip(last)),
            ehlo_name: name.to_owned(),
        })
        .collect();
    plan.bounce_domain = Some("bounce.good.test".into());
    World {
        records,
        plan,
        _keys: dir,
    }
}

/// The records as the two zones our server serves: `test` and `127.in-addr.arpa`.
pub fn zones(records: &[(String, ZoneRecord)]) -> Vec<RecordZone> {
    let mut forward = RecordZone::new("test");
    let mut reverse = RecordZone::new("127.in-addr.arpa");
    for (name, record) in records {
        let zone = if name.ends_with(".in-addr.arpa") {
            &mut reverse
        } else {
            &mut forward
        };
        zone.add(name.clone(), record.clone());
    }
    vec![forward, reverse]
}

/// Asking only `server`, quickly.
pub fn dns_config(server: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![server],
        timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    }
}

/// The one check of `kind` about `subject`.
pub fn find<'a>(checks: &'a [Check], kind: CheckKind, subject: &str) -> &'a Check {
    let found: Vec<&Check> = checks
        .iter()
        .filter(|c| c.check == kind && c.subject == subject)
        .collect();
    assert_eq!(found.len(), 1, "one {kind:?} check of {subject} in {checks:#?}");
    found[0]
}

/// Asserts `check` has `status` and its message contains every one of `parts`.
pub fn expect(checks: &[Check], kind: CheckKind, subject: &str, status: Status, parts: &[&str]) {
    let check = find(checks, kind, subject);
    assert_eq!(check.status, status, "{check}");
    for part in parts {
        assert!(check.message.contains(part), "{part:?} missing from: {check}");
    }
}

/// The verdicts every server serving [`world`] must produce.
pub fn assert_world(checks: &[Check]) {
    use CheckKind::*;
    use Status::*;
    let line = checks.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    eprintln!("{line}");

    expect(checks, Spf, "good.test", Pass, &["\"v=spf1 include:_spf.good.test -all\"", "127.0.0.4 pass via include:_spf.good.test in good.test > include:_net.good.test in _spf.good.test > ip4:127.0.0.0/29 in _net.good.test"]);
    expect(
        checks,
        Spf,
        "partial.test",
        Fail,
        &[
            "\"v=spf1 ip4:127.0.0.2 ip4:127.0.0.3 ip4:127.0.0.5 ip4:127.0.0.6 -all\"",
            "127.0.0.4 fail via -all in partial.test",
            "127.0.0.2 pass",
        ],
    );
    let partial = find(checks, Spf, "partial.test");
    assert!(
        partial
            .advice
            .as_deref()
            .unwrap()
            .contains("v=spf1 ip4:127.0.0.4 ip4:127.0.0.2"),
        "{partial}"
    );
    expect(
        checks,
        Spf,
        "deep.test",
        Fail,
        &["include:i1.deep.test", "more than 10 DNS lookups (RFC 7208 §4.6.4)"],
    );
    expect(
        checks,
        Spf,
        "twice.test",
        Fail,
        &["2 SPF records", "\"v=spf1 ip4:127.0.0.0/24 -all\"", "permerror"],
    );
    expect(
        checks,
        Spf,
        "revoked.test",
        Fail,
        &["no SPF record (TXT \"v=spf1 ...\") at revoked.test"],
    );
    let twice = find(checks, Spf, "twice.test");
    // Both records, in the server's order (a record set has none).
    let mut found: Vec<&str> = twice.record.as_deref().unwrap().split(" | ").collect();
    found.sort_unstable();
    assert_eq!(
        found,
        ["v=spf1 include:_spf.good.test -all", "v=spf1 ip4:127.0.0.0/24 -all"]
    );
    expect(
        checks,
        Spf,
        "bounces.other.test",
        Pass,
        &["\"v=spf1 ip4:127.0.0.0/24 -all\""],
    );

    expect(
        checks,
        Dkim,
        "e1._domainkey.good.test",
        Pass,
        &["v=DKIM1; k=ed25519; p=", "matches the private key"],
    );
    expect(
        checks,
        Dkim,
        "r1._domainkey.good.test",
        Pass,
        &["v=DKIM1; k=rsa; p=MII", "matches the private key"],
    );
    let mismatch = find(checks, Dkim, "s1._domainkey.partial.test");
    assert_eq!(mismatch.status, Fail, "{mismatch}");
    let published = mismatch.record.as_deref().unwrap();
    assert!(
        mismatch.message.contains(published) && mismatch.message.contains("not the public half"),
        "{mismatch}"
    );
    assert_ne!(mismatch.advice.as_deref().unwrap(), published);
    expect(
        checks,
        Dkim,
        "s1._domainkey.revoked.test",
        Fail,
        &["\"v=DKIM1; k=ed25519; p=\"", "revoked (empty p=)"],
    );
    expect(
        checks,
        Dkim,
        "s1._domainkey.deep.test",
        Fail,
        &["no TXT record at s1._domainkey.deep.test"],
    );

    expect(
        checks,
        Dmarc,
        "good.test",
        Pass,
        &["\"v=DMARC1; p=reject; rua=mailto:dmarc@good.test\"", "p=reject"],
    );
    expect(
        checks,
        Dmarc,
        "partial.test",
        Warn,
        &["\"v=DMARC1; p=none\"", "monitoring only"],
    );
    expect(
        checks,
        Dmarc,
        "deep.test",
        Fail,
        &["no DMARC record at _dmarc.deep.test"],
    );
    expect(
        checks,
        Dmarc,
        "order.test",
        Fail,
        &["\"p=reject; v=DMARC1\" at _dmarc.order.test: v=DMARC1 must be the first tag"],
    );
    expect(
        checks,
        Dmarc,
        "shop.test",
        Pass,
        &["\"v=DMARC1; p=reject; adkim=s; aspf=s\""],
    );
    expect(
        checks,
        Alignment,
        "good.test",
        Pass,
        &["DKIM d=good.test s=e1, d=good.test s=r1 aligns"],
    );
    expect(
        checks,
        Alignment,
        "shop.test",
        Fail,
        &[
            "no [[dkim]] key has domain = shop.test",
            "d=good.test does not align (adkim=s)",
            "envelope domain bounces.other.test does not align for SPF (aspf=s)",
        ],
    );

    expect(
        checks,
        Ptr,
        "127.0.0.2",
        Pass,
        &["PTR mail.good.test -> 127.0.0.2", "matches ehlo_name mail.good.test"],
    );
    expect(
        checks,
        Ptr,
        "127.0.0.3",
        Fail,
        &["no PTR record at 3.0.0.127.in-addr.arpa"],
    );
    expect(
        checks,
        Ptr,
        "127.0.0.4",
        Warn,
        &["PTR other.good.test -> 127.0.0.4", "ehlo_name is mail4.good.test"],
    );
    expect(
        checks,
        Ptr,
        "127.0.0.5",
        Fail,
        &[
            "PTR mail5.good.test",
            "mail5.good.test resolves to 127.0.0.9",
            "FCrDNS fails",
        ],
    );
    expect(checks, Ptr, "127.0.0.6", Pass, &["PTR mail6.good.test"]);

    expect(checks, BounceMx, "bounce.good.test", Pass, &["MX 10 mx.good.test"]);
}
