//! Fairness between sites: a site that answers slowly must not lower the throughput of the
//! others. Whole runs of `send::run` against in-process sinks, timed from the accounting log.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use volley_bench::{Sink, SinkConfig, SinkHandle};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig, SourceIpConfig};

/// Fast sites (one sink each, so one `route:ip:port` site each).
const FAST_SITES: usize = 3;
/// Recipients per fast site.
const FAST_PER_SITE: usize = 1000;
/// Recipients of the slow site.
const SLOW: usize = 6000;
/// In each chunk of the slow run's file, this many slow rows come first...
const SLOW_PER_CHUNK: usize = 60;
/// ...then this many fast ones (so slow rows lead every chunk and dominate the file).
const FAST_PER_CHUNK: usize = SLOW_PER_CHUNK * FAST_SITES * FAST_PER_SITE / SLOW;
/// The slow sink waits this long before every reply batch.
const SLOW_LATENCY: Duration = Duration::from_millis(100);
/// The run's in-flight budget: small, so that a site holding it would show at once.
const MAX_IN_FLIGHT: usize = 500;
/// The per-site in-flight cap: the slow site keeps this many messages (connections) busy.
const PER_SITE: usize = 100;

fn config(dir: &Path, routes: &[(String, String)]) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: (2..=5)
            .map(|i| SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), format!("mta{i}.volley.test")))
            .collect(),
        routes: routes.iter().cloned().collect(),
        smtp: volley_engine::SmtpConfig {
            timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(10)),
            ..Default::default()
        },
        max_in_flight: MAX_IN_FLIGHT,
        max_in_flight_per_site: PER_SITE,
        retry: RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_secs(30),
            host_down: Duration::from_secs(60),
        },
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

fn write_campaign(dir: &Path, csv: &str) -> Campaign {
    std::fs::write(dir.join("recipients.csv"), csv).expect("write recipients.csv");
    std::fs::write(
        dir.join("campaign.toml"),
        "id = \"fair\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi {{name}}\"\ntext = \"Hello {{name}}\"\nrecipients = \"recipients.csv\"\n",
    )
    .expect("write campaign.toml");
    Campaign::load(&dir.join("campaign.toml")).expect("campaign loads")
}

fn fast_domain(site: usize) -> String {
    format!("fast{site}.test")
}

/// The `i`-th fast recipient (spread over the fast sites in turn).
fn fast_rcpt(i: usize) -> String {
    format!("f{i}@{}", fast_domain(i % FAST_SITES))
}

fn slow_rcpt(i: usize) -> String {
    format!("s{i}@slow.test")
}

fn csv(rows: impl IntoIterator<Item = String>) -> String {
    let mut csv = String::from("email,name\n");
    for (i, rcpt) in rows.into_iter().enumerate() {
        csv.push_str(&format!("{rcpt},N{i}\n"));
    }
    csv
}

/// Delivery times of one run, sorted, counted from its first accounting record (so the
/// duplicate-scan pass over the file before any sending is not counted).
struct Timing {
    fast: Vec<Duration>,
    slow: Vec<Duration>,
}

impl Timing {
    /// When the last fast-site recipient was delivered.
    fn fast_done(&self) -> Duration {
        self.fast.last().copied().unwrap_or_default()
    }
}

fn ts(line: &Value) -> SystemTime {
    let ts = line["ts"].as_str().expect("ts is a string");
    humantime::parse_rfc3339(ts).expect("ts is RFC 3339")
}

/// Reads the log, checks that every recipient in `expected` has exactly one final outcome,
/// `delivered`, and nobody else has one; returns the delivery times.
fn check_log(path: &Path, expected: &[String]) -> Timing {
    let text = std::fs::read_to_string(path).expect("read the accounting log");
    let log: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("accounting line is JSON"))
        .collect();
    let mut finals: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in &log {
        let outcome = line["outcome"].as_str().expect("outcome");
        if outcome != "deferred" {
            let rcpt = line["recipient"].as_str().expect("recipient");
            finals.entry(rcpt).or_default().push(outcome);
        }
    }
    for rcpt in expected {
        assert_eq!(
            finals.get(rcpt.as_str()).map(Vec::as_slice),
            Some(&["delivered"][..]),
            "{rcpt}: exactly one final outcome, delivered"
        );
    }
    assert_eq!(finals.len(), expected.len(), "no final outcome for anyone else");

    let start = log.iter().map(ts).min().expect("the log is not empty");
    let mut timing = Timing {
        fast: Vec::new(),
        slow: Vec::new(),
    };
    for line in log.iter().filter(|l| l["outcome"] == "delivered") {
        let at = ts(line).duration_since(start).unwrap_or_default();
        if line["domain"] == "slow.test" {
            timing.slow.push(at);
        } else {
            timing.fast.push(at);
        }
    }
    timing.fast.sort();
    timing.slow.sort();
    timing
}

async fn fast_sinks() -> Vec<SinkHandle> {
    let mut sinks = Vec::new();
    for _ in 0..FAST_SITES {
        sinks.push(Sink::start(SinkConfig::default()).await.expect("fast sink starts"));
    }
    sinks
}

fn routes(fast: &[SinkHandle], slow: Option<&SinkHandle>) -> Vec<(String, String)> {
    let mut routes: Vec<(String, String)> = fast
        .iter()
        .enumerate()
        .map(|(i, s)| (fast_domain(i), s.local_addr().to_string()))
        .collect();
    if let Some(slow) = slow {
        routes.push(("slow.test".into(), slow.local_addr().to_string()));
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_site_does_not_slow_down_the_other_sites() {
    let n_fast = FAST_SITES * FAST_PER_SITE;
    let fast: Vec<String> = (0..n_fast).map(fast_rcpt).collect();
    let slow: Vec<String> = (0..SLOW).map(slow_rcpt).collect();

    // Baseline: the fast recipients alone.
    let sinks = fast_sinks().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let campaign = write_campaign(dir.path(), &csv(fast.iter().cloned()));
    let summary = volley_scheduler::send::run(&campaign, &config(dir.path(), &routes(&sinks, None)))
        .await
        .expect("baseline run");
    assert!(summary.complete && summary.delivered == n_fast as u64, "{summary:?}");
    let baseline = check_log(&summary.accounting_log, &fast);
    for sink in sinks {
        assert_eq!(sink.stats().messages, FAST_PER_SITE as u64);
        sink.shutdown().await;
    }

    // The same fast recipients behind a slow site that leads every chunk of the file.
    let sinks = fast_sinks().await;
    let slow_sink = Sink::start(SinkConfig {
        latency: SLOW_LATENCY,
        ..SinkConfig::default()
    })
    .await
    .expect("slow sink starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = slow
        .chunks(SLOW_PER_CHUNK)
        .zip(fast.chunks(FAST_PER_CHUNK))
        .flat_map(|(s, f)| s.iter().chain(f).cloned());
    let campaign = write_campaign(dir.path(), &csv(rows));
    let summary = volley_scheduler::send::run(&campaign, &config(dir.path(), &routes(&sinks, Some(&slow_sink))))
        .await
        .expect("run with a slow site");
    assert!(
        summary.complete && summary.delivered == (n_fast + SLOW) as u64,
        "{summary:?}"
    );
    let all: Vec<String> = fast.iter().chain(&slow).cloned().collect();
    let mixed = check_log(&summary.accounting_log, &all);
    for sink in sinks {
        assert_eq!(sink.stats().messages, FAST_PER_SITE as u64);
        sink.shutdown().await;
    }
    assert_eq!(slow_sink.stats().messages, SLOW as u64);
    for rcpt in &all {
        assert_eq!(
            u64::from(rcpt.ends_with("@slow.test")),
            slow_sink.accepted_for(rcpt),
            "{rcpt}"
        );
    }
    slow_sink.shutdown().await;

    // A design where the slow site held up the others (a FIFO whose head waits for the slow
    // site's cap, or a reader that stops while the next row's site is full) could read the
    // file's last fast chunk only once every slow row before it had been taken, i.e. once the
    // slow site had delivered all of them but at most the run's in-flight budget: the time of
    // that slow delivery is a lower bound for such a design. At 2 reply batches x 100 ms per
    // message on 100 connections the slow site delivers ~500/s, so that is about
    // (6000 - 60 - 500) / 500 ~ 11 s, against ~1.5 s for the fast sites alone: the bound
    // below (1.5 x baseline + 1 s, slack for a loaded 2-core machine) sits far under it.
    let blocked_at = mixed.slow[SLOW - SLOW_PER_CHUNK - MAX_IN_FLIGHT];
    let slow_before = mixed.slow.partition_point(|t| *t < mixed.fast_done());
    eprintln!(
        "fast sites done: alone {:?}, behind the slow site {:?} ({slow_before} of {SLOW} slow delivered by \
         then); a blocking design: >= {blocked_at:?}; slow site done {:?}",
        baseline.fast_done(),
        mixed.fast_done(),
        mixed.slow.last(),
    );
    let bound = baseline.fast_done().mul_f64(1.5) + Duration::from_secs(1);
    assert!(
        bound < blocked_at,
        "the test cannot tell: bound {bound:?}, a blocking design {blocked_at:?}"
    );
    assert!(
        mixed.fast_done() <= bound,
        "the slow site held up the others: fast sites done in {:?} behind it, {:?} alone (bound {bound:?})",
        mixed.fast_done(),
        baseline.fast_done()
    );
}
