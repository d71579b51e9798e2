//! A `[[destination]]` block in a whole run: the domain it matches gets its connections per
//! source IP, its messages per connection and its rate, while another domain on the same run
//! keeps the `[smtp]` settings and is not slowed. Against two sinks on loopback.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use volley_bench::{Sink, SinkConfig};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;

use super::common::source_ips;

const PER_DOMAIN: usize = 100;

/// When the last recipient of `domain` was delivered, from the accounting log.
fn last_delivered(log: &str, domain: &str) -> SystemTime {
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|l| l["domain"] == domain && l["outcome"] == "delivered")
        .map(|l| humantime::parse_rfc3339(l["ts"].as_str().unwrap_or_default()).expect("RFC 3339 ts"))
        .max()
        .expect("a delivered line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_blocks_cap_connections_messages_and_rate_of_their_domains_only() {
    // One sink per domain, so that each domain's connections are counted apart.
    let mut sinks = BTreeMap::new();
    for domain in ["one.test", "five.test", "slow.test", "free.test"] {
        let sink = Sink::start(SinkConfig {
            latency: Duration::from_millis(5),
            // Never refuses; set so that the sink counts connections per client address.
            max_connections_per_client: Some(100),
            ..SinkConfig::default()
        })
        .await
        .expect("sink");
        sinks.insert(domain, sink);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csv = String::from("email\n");
    for i in 0..PER_DOMAIN {
        for domain in sinks.keys() {
            csv.push_str(&format!("u{i}@{domain}\n"));
        }
    }
    std::fs::write(dir.path().join("recipients.csv"), csv).expect("csv");
    std::fs::write(
        dir.path().join("campaign.toml"),
        "id = \"dest\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"recipients.csv\"\n",
    )
    .expect("toml");
    let volley_toml = "[[destination]]\nname = \"one\"\ndomains = [\"one.test\"]\nmax_connections_per_ip = 1\n\
         [[destination]]\nname = \"five\"\ndomains = [\"five.test\"]\nmax_connections_per_ip = 1\n\
         max_messages_per_connection = 5\ntls = \"disabled\"\n\
         [[destination]]\nname = \"slow\"\ndomains = [\"slow.test\"]\nrate = \"20/s\"\n";
    let parsed = SendConfig::parse(
        &format!("{volley_toml}[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"a.test\"\n"),
        &dir.path().join("volley.toml"),
    )
    .expect("config");
    let config = SendConfig {
        state_dir: dir.path().join("state"),
        source_ips: source_ips(2, 3),
        routes: sinks
            .iter()
            .map(|(domain, sink)| (domain.to_string(), sink.local_addr().to_string()))
            .collect(),
        ..parsed
    };
    let campaign = Campaign::load(&dir.path().join("campaign.toml")).expect("campaign");
    let summary = volley_scheduler::send::run(&campaign, &config).await.expect("run");
    assert_eq!(summary.delivered, 4 * PER_DOMAIN as u64, "{summary:?}");
    let stats = |domain: &str| sinks[domain].stats();
    assert!(sinks.keys().all(|d| stats(d).messages == PER_DOMAIN as u64));

    let one = stats("one.test");
    assert_eq!(
        one.peak_connections_per_client, 1,
        "max_connections_per_ip = 1: {one:?}"
    );
    let five = stats("five.test");
    // At most 5 messages per connection (at least 20 connections), and 5 on every one but the
    // last of each source IP (the rotation may split the domain 51/49).
    assert!(
        (20..=22).contains(&five.connections),
        "5 messages per connection: {five:?}"
    );
    assert_eq!(five.tls_handshakes, 0, "tls = disabled: {five:?}");
    let free = stats("free.test");
    assert!(free.peak_connections_per_client >= 2, "[smtp] grows past one: {free:?}");
    assert!(
        free.connections < (PER_DOMAIN / 5) as u64,
        "[smtp] reuses connections: {free:?}"
    );
    assert!(free.tls_handshakes >= 1, "[smtp] tls = opportunistic: {free:?}");

    // 20/s per source IP over 2 IPs, a burst of 20 each: the 60 messages after the bursts
    // take 1.5 s. The other domains are not held behind that rate.
    let log = std::fs::read_to_string(&summary.accounting_log).expect("log");
    let first = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| l["ts"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()))
        .min()
        .expect("a first line");
    let took = |domain: &str| last_delivered(&log, domain).duration_since(first).unwrap_or_default();
    let (slow_took, free_took) = (took("slow.test"), took("free.test"));
    assert!(
        slow_took >= Duration::from_millis(1300),
        "rate 20/s per IP: slow.test took {slow_took:?}"
    );
    assert!(
        free_took + Duration::from_millis(700) < slow_took,
        "free.test ({free_took:?}) is not held by slow.test's rate ({slow_took:?})"
    );
    // Waiting for a destination's rate is not waiting for warm-up budget.
    assert_eq!(summary.warmup_waited, 0, "{summary:?}");
    for sink in sinks.into_values() {
        sink.shutdown().await;
    }
}
