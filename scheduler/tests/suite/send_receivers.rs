//! Whole runs against receivers that defend themselves: a connection cap shared by every
//! client and one per client address (Postfix's `smtpd_client_connection_count_limit`), with
//! latency. The learned limits, the deferrals (none for a refused connection) and the
//! completion time against the ideal computed from the cap.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{Sink, SinkConfig, SinkHandle};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig};
use volley_scheduler::summary::Summary;

use super::common::{route_all_to, source_ips};

const MESSAGES: usize = 2000;
const LATENCY: Duration = Duration::from_millis(20);

/// 2,000 recipients over 20 domains, sent from 127.0.0.2-5 to `sink`, retries after 5 s.
async fn run(sink: &SinkHandle, dir: &Path) -> (Summary, Duration) {
    let mut csv = String::from("email\n");
    for i in 0..MESSAGES {
        csv.push_str(&format!("u{i}@d{}.test\n", i % 20));
    }
    std::fs::write(dir.join("recipients.csv"), csv).expect("csv");
    std::fs::write(
        dir.join("campaign.toml"),
        "id = \"caps\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"recipients.csv\"\n",
    )
    .expect("toml");
    let campaign = Campaign::load(&dir.join("campaign.toml")).expect("campaign loads");
    let config = SendConfig {
        state_dir: dir.join("state"),
        source_ips: source_ips(2, 5),
        routes: route_all_to(sink.local_addr()),
        smtp: volley_engine::SmtpConfig {
            timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(5)),
            ..Default::default()
        },
        max_in_flight: 4000,
        retry: RetryConfig {
            schedule: vec![Duration::from_secs(5).into()],
            max_age: Duration::from_secs(120),
            host_down: Duration::from_secs(3),
        },
        ..SendConfig::new(Default::default(), Vec::new())
    };
    let started = Instant::now();
    let summary = volley_scheduler::send::run(&campaign, &config).await.expect("run");
    let elapsed = started.elapsed();
    eprintln!(
        "{MESSAGES} messages in {elapsed:?}: refused {} connections, opened {}, limits {:?}",
        summary.connections_refused,
        summary.connections_opened,
        summary.connection_limits.iter().map(|r| r.limit).collect::<Vec<_>>()
    );
    (summary, elapsed)
}

fn deferred_lines(summary: &Summary) -> Vec<Value> {
    std::fs::read_to_string(&summary.accounting_log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|l| l["outcome"] == "deferred")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_connection_cap_completes_near_the_ideal_without_deferrals() {
    let sink = Sink::start(SinkConfig {
        max_connections: Some(10),
        latency: LATENCY,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (summary, elapsed) = run(&sink, dir.path()).await;
    assert_eq!(summary.delivered, MESSAGES as u64, "{summary:?}");
    assert_eq!(sink.stats().messages, MESSAGES as u64);
    assert!(sink.stats().connections_refused >= 1, "the cap was reached");
    let deferred = deferred_lines(&summary);
    // At most the first refusal per (source IP, MX host) may defer; none should.
    assert!(
        deferred.len() <= 4,
        "{} deferrals, first {:?}",
        deferred.len(),
        deferred.first()
    );
    // Ideal: 10 connections, 2 round trips of 20 ms per message = 250 msg/s: 8 s.
    assert!(elapsed < Duration::from_secs(16), "took {elapsed:?}; the ideal is 8 s");
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_client_cap_is_learned_for_every_source_ip() {
    let sink = Sink::start(SinkConfig {
        max_connections_per_client: Some(4),
        latency: LATENCY,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (summary, elapsed) = run(&sink, dir.path()).await;
    assert_eq!(summary.delivered, MESSAGES as u64, "{summary:?}");
    assert!(
        deferred_lines(&summary).is_empty(),
        "a refused connection is not a deferral"
    );
    assert_eq!(sink.stats().peak_connections_per_client, 4);
    assert_eq!(summary.connection_limits.len(), 4, "{:?}", summary.connection_limits);
    for route in &summary.connection_limits {
        assert_eq!(route.limit, 4, "the sink's cap per source address: {route:?}");
        assert!(route.learned);
    }
    assert!(summary.connections_refused >= 4);
    // Ideal: 4 IPs x 4 connections at 25 msg/s each = 400 msg/s: 5 s.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}; the ideal is 5 s");
    sink.shutdown().await;
}
