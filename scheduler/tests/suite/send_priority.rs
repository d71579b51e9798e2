//! Campaign priority: two campaigns sent together over one pool to one site whose capacity is
//! the bottleneck. The higher priority takes the site first; with equal priorities they share
//! it (the control, so the test can fail).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use volley_bench::{Sink, SinkConfig};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig, SourceIpConfig};
use volley_scheduler::summary::Summary;

const BULK: usize = 1500;
const URGENT: usize = 400;

fn config(dir: &Path, sink: std::net::SocketAddr) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: vec![SourceIpConfig::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            "mta2.volley.test",
        )],
        routes: [("*".to_string(), sink.to_string())].into_iter().collect(),
        // Four connections and a short engine queue: the site's capacity is what they share.
        smtp: volley_engine::SmtpConfig {
            max_connections_per_host: 4,
            queue_per_host: 8,
            timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(10)),
            ..Default::default()
        },
        max_in_flight: 1000,
        // A deferral here is a bug (see below); retried at once so it shows instead of waiting.
        retry: RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_secs(30),
            host_down: Duration::from_secs(60),
        },
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

fn campaign(dir: &Path, id: &str, priority: u8, n: usize) -> Campaign {
    let csv: String = std::iter::once("email".to_string())
        .chain((0..n).map(|i| format!("{id}{i}@site.test")))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
    let toml = format!(
        "id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\npriority = {priority}\n"
    );
    std::fs::write(dir.join(format!("{id}.toml")), toml).expect("toml");
    Campaign::load(&dir.join(format!("{id}.toml"))).expect("campaign loads")
}

/// Delivery times (RFC 3339, sortable as text) from an accounting log.
fn delivered_at(summary: &Summary) -> Vec<String> {
    let mut ts: Vec<String> = std::fs::read_to_string(&summary.accounting_log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["outcome"] == "delivered")
        .map(|v| v["ts"].as_str().unwrap_or_default().to_string())
        .collect();
    ts.sort();
    ts
}

/// Bulk deliveries made before the urgent campaign's last one.
async fn bulk_during_urgent(bulk_priority: u8, urgent_priority: u8) -> (usize, Vec<Summary>) {
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(5),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), sink.local_addr());
    // The bulk campaign is first in line.
    let bulk = campaign(dir.path(), "bulk", bulk_priority, BULK);
    let urgent = campaign(dir.path(), "urgent", urgent_priority, URGENT);
    let summaries = volley_scheduler::send::run_many(&[&bulk, &urgent], &cfg, std::future::pending())
        .await
        .expect("run");
    sink.shutdown().await;
    // Regression: two dispatchers racing for the room of one route made the loser's submit
    // fail, which was recorded as a deferral ("the delivery pool is closing") and retried 30
    // minutes later. A full queue now only puts the job back in line.
    for s in &summaries {
        assert_eq!(
            s.deferrals, 0,
            "{}: nothing may be deferred by a full pool queue",
            s.campaign
        );
    }
    let urgent_done = delivered_at(&summaries[1]).pop().unwrap_or_default();
    let during = delivered_at(&summaries[0])
        .iter()
        .filter(|t| **t <= urgent_done)
        .count();
    eprintln!("priorities bulk {bulk_priority} / urgent {urgent_priority}: bulk delivered {during} while urgent delivered {URGENT}");
    (during, summaries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_higher_priority_campaign_takes_the_shared_site_first() {
    let (during, summaries) = bulk_during_urgent(1, 9).await;
    assert!(summaries.iter().all(|s| s.complete));
    assert_eq!(
        (summaries[0].delivered, summaries[1].delivered),
        (BULK as u64, URGENT as u64)
    );
    assert_eq!(summaries[0].campaign, "bulk");
    // Strict priority: only what the bulk campaign had on the wire or queued in the engine
    // before the urgent messages arrived goes out meanwhile.
    assert!(
        during <= URGENT / 4,
        "bulk delivered {during} while the urgent campaign ({URGENT}) was sending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_priorities_share_the_site() {
    let (during, summaries) = bulk_during_urgent(5, 5).await;
    assert!(summaries.iter().all(|s| s.complete));
    assert!(
        during >= URGENT / 2,
        "with equal priorities bulk keeps sending: only {during} while urgent sent {URGENT}"
    );
}

#[test]
fn priority_is_checked_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.csv"), "email\na@b.test\n").expect("csv");
    std::fs::write(
        dir.path().join("c.toml"),
        "id = \"c\"\nfrom = \"a@b.test\"\nsubject = \"s\"\ntext = \"t\"\nrecipients = \"r.csv\"\npriority = 12\n",
    )
    .expect("toml");
    let e = Campaign::load(&dir.path().join("c.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("c.toml") && e.contains("priority") && e.contains("12") && e.contains(":6"),
        "{e}"
    );
}
