//! `send::run` routing by MX through a real authoritative DNS server on loopback (the engine's
//! test zone `test.`), with sinks listening on the MX hosts' 127.0.0.x addresses.

#[path = "../../../engine/tests/dns/mod.rs"]
#[allow(dead_code)]
pub(crate) mod dns;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use volley_bench::{Sink, SinkConfig};
use volley_engine::mx::DnsConfig;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{SendConfig, SourceIpConfig};

async fn sink_on(ip: [u8; 4], port: u16) -> volley_bench::SinkHandle {
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
    Sink::start(SinkConfig {
        listen,
        ..SinkConfig::default()
    })
    .await
    .expect("sink")
}

fn config(dir: &std::path::Path, nameserver: SocketAddr, port: u16) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: vec![SourceIpConfig::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            "mta2.volley.test",
        )],
        routes: Default::default(),
        smtp: volley_engine::SmtpConfig::default(),
        max_in_flight: 100,
        retry: volley_scheduler::config::RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_millis(300),
            host_down: Duration::from_secs(60),
        },
        dns: Some(DnsConfig {
            nameservers: vec![nameserver],
            timeout: Duration::from_secs(2),
            ..DnsConfig::default()
        }),
        mx_port: port,
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

pub(crate) fn write_campaign(dir: &std::path::Path, rcpts: &[&str]) -> Campaign {
    let csv = std::iter::once("email".to_string())
        .chain(rcpts.iter().map(|r| r.to_string()))
        .collect::<Vec<_>>();
    std::fs::write(dir.join("r.csv"), csv.join("\n") + "\n").expect("csv");
    std::fs::write(
        dir.join("c.toml"),
        "id = \"mx\"\nfrom = \"n@sender.test\"\nsubject = \"s\"\ntext = \"t\"\nrecipients = \"r.csv\"\n",
    )
    .expect("toml");
    Campaign::load(&dir.join("c.toml")).expect("campaign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_are_routed_by_mx_and_dns_failures_get_their_outcome() {
    let auth = dns::AuthServer::start().await;
    // mx1.a.test = 127.0.0.10 (a.test, b.test, c.test); implicit.test has only A 127.0.0.12.
    let mx1 = sink_on([127, 0, 0, 10], 0).await;
    let port = mx1.local_addr().port();
    let implicit = sink_on([127, 0, 0, 12], port).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let rcpts = [
        "x@a.test",
        "y@b.test",
        "z@implicit.test",
        "n@nullmx.test",
        "m@missing.test",
        "d@deadmx.test",
    ];
    let csv = std::iter::once("email".to_string())
        .chain(rcpts.iter().map(|r| r.to_string()))
        .collect::<Vec<_>>();
    std::fs::write(dir.path().join("r.csv"), csv.join("\n") + "\n").expect("csv");
    std::fs::write(
        dir.path().join("c.toml"),
        "id = \"mx\"\nfrom = \"n@sender.test\"\nsubject = \"s\"\ntext = \"t\"\nrecipients = \"r.csv\"\n",
    )
    .expect("toml");
    let campaign = Campaign::load(&dir.path().join("c.toml")).expect("campaign");
    let config = config(dir.path(), auth.addr, port);
    let summary = volley_scheduler::send::run(&campaign, &config).await.expect("run");

    let log: HashMap<String, Value> = std::fs::read_to_string(&summary.accounting_log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .map(|v| (v["recipient"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    assert_eq!(log.len(), rcpts.len(), "{log:?}");
    let field = |r: &str, f: &str| log[r][f].as_str().unwrap_or_default().to_string();

    for r in ["x@a.test", "y@b.test"] {
        assert_eq!(field(r, "outcome"), "delivered", "{r}");
        assert_eq!(field(r, "mx"), "mx1.a.test", "{r}: lowest preference first");
        assert_eq!(mx1.accepted_for(r), 1, "{r}");
    }
    assert_eq!(field("z@implicit.test", "outcome"), "delivered");
    assert_eq!(
        implicit.accepted_for("z@implicit.test"),
        1,
        "implicit MX (RFC 5321 §5.1)"
    );
    assert_eq!(field("n@nullmx.test", "outcome"), "bounced");
    assert_eq!(field("n@nullmx.test", "enhanced"), "5.1.10", "RFC 7505");
    assert_eq!(field("n@nullmx.test", "category"), "bad-domain");
    assert_eq!(field("m@missing.test", "outcome"), "bounced");
    assert_eq!(field("m@missing.test", "category"), "bad-domain");
    assert_eq!(
        field("d@deadmx.test", "outcome"),
        "expired",
        "MX host without address: retried, then given up"
    );
    assert_eq!(
        field("d@deadmx.test", "category"),
        "message-expired",
        "expiry is its own bounce category"
    );
    assert_eq!(
        (summary.delivered, summary.bounced, summary.deferred, summary.expired),
        (3, 3, 0, 1)
    );
    // One MX query per domain even though two domains share the site.
    assert_eq!(auth.queries("a.test", hickory_server::proto::rr::RecordType::MX), 1);
    mx1.shutdown().await;
    implicit.shutdown().await;
    auth.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_preferred_mx_host_falls_back_to_the_next_one_within_the_attempt() {
    let auth = dns::AuthServer::start().await;
    // Only mx2.a.test (127.0.0.11, preference 20) listens; mx1 (127.0.0.10, preference 10)
    // refuses connections on this port.
    let mx2 = sink_on([127, 0, 0, 11], 0).await;
    let port = mx2.local_addr().port();
    let dir = tempfile::tempdir().expect("tempdir");
    let rcpts = ["x@a.test", "y@b.test", "z@a.test"];
    let campaign = write_campaign(dir.path(), &rcpts);
    let summary = volley_scheduler::send::run(&campaign, &config(dir.path(), auth.addr, port))
        .await
        .expect("run");
    let log: Vec<Value> = std::fs::read_to_string(&summary.accounting_log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .collect();
    for r in rcpts {
        let last = log.iter().rfind(|l| l["recipient"] == r).expect("a line per recipient");
        assert_eq!(last["outcome"], "delivered", "{r}: {last}");
        assert_eq!(last["mx"], "mx2.a.test", "{r}");
        assert_eq!(last["attempt"], 1, "{r}: fallback happens within the first attempt");
        assert_eq!(mx2.accepted_for(r), 1, "{r}");
    }
    let hops: Vec<&Value> = log.iter().filter(|l| l["outcome"] == "deferred").collect();
    assert!(!hops.is_empty(), "the dead host was tried first: {log:?}");
    for hop in &hops {
        assert_eq!(hop["mx"], "mx1.a.test");
        assert_eq!(hop["phase"], "connect");
        assert!(hop.get("next_attempt").is_none(), "a hop is not a retry: {hop}");
    }
    // Once marked down, mx1 is skipped: fewer hops than recipients is possible, never more.
    assert!(hops.len() <= rcpts.len());
    assert_eq!((summary.delivered, summary.retried, summary.deferred), (3, 0, 0));
    assert!(summary.complete);
    mx2.shutdown().await;
    auth.shutdown().await;
}
