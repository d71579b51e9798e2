//! `volley check-dns`'s checks against the project's loopback DNS server (`BenchDns` serving
//! `RecordZone`s): every good and broken case of `common::world`, a DNS timeout, and a missing
//! bounce MX.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use volley_bench::dns::{BenchDns, RecordZone, ZoneRecord};
use volley_dnscheck::{run, CheckKind, CheckPlan, SourceIpName, Status};

#[tokio::test]
async fn good_and_broken_records_get_their_verdicts() {
    let world = common::world();
    let dns = BenchDns::start_zones("127.0.0.1:0".parse().unwrap(), &common::zones(&world.records))
        .await
        .unwrap();
    let checks = run(&world.plan, &common::dns_config(dns.local_addr())).await.unwrap();
    common::assert_world(&checks);
    dns.shutdown().await;
}

#[tokio::test]
async fn missing_and_null_bounce_mx_fail() {
    let mut zone = RecordZone::new("test");
    zone.add("null.test", ZoneRecord::Mx(0, ".".into()));
    zone.add("other.test", ZoneRecord::Txt("v=spf1 -all".into()));
    let dns = BenchDns::start_zones("127.0.0.1:0".parse().unwrap(), &[zone])
        .await
        .unwrap();
    for (domain, part) in [("nomx.test", "no MX record at nomx.test"), ("null.test", "null MX")] {
        let plan = CheckPlan {
            bounce_domain: Some(domain.into()),
            ..CheckPlan::default()
        };
        let checks = run(&plan, &common::dns_config(dns.local_addr())).await.unwrap();
        common::expect(&checks, CheckKind::BounceMx, domain, Status::Fail, &[part]);
        assert!(checks[0]
            .advice
            .as_deref()
            .unwrap()
            .starts_with(&format!("{domain}. MX 10")));
    }
    dns.shutdown().await;
}

/// A server that never answers: every check is a warning ("could not check"), none a pass,
/// and the run ends within the configured timeout.
#[tokio::test]
async fn a_silent_server_gives_warnings_not_passes() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut plan = CheckPlan::default();
    plan.add_domain("good.test", None);
    plan.source_ips = vec![SourceIpName {
        ip: "127.0.0.2".parse().unwrap(),
        ehlo_name: "mail.good.test".into(),
    }];
    let mut config = common::dns_config(silent.local_addr().unwrap());
    config.timeout = Duration::from_millis(300);
    config.attempts = 1;
    let started = Instant::now();
    let checks = run(&plan, &config).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let kinds: Vec<CheckKind> = checks.iter().map(|c| c.check).collect();
    assert_eq!(
        kinds,
        [CheckKind::Spf, CheckKind::Dmarc, CheckKind::Alignment, CheckKind::Ptr]
    );
    for check in checks.iter().filter(|c| c.check != CheckKind::Alignment) {
        assert_eq!(check.status, Status::Warn, "{check}");
        assert!(check.message.starts_with("could not check"), "{check}");
    }
}
