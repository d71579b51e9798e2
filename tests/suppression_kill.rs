//! Hard bounces survive a Redis outage followed by a kill of `volley send` (issue 17, item 1):
//! Redis (persisting every write) is killed with SIGKILL mid-run, so the writer holds the next
//! bounces in memory; then volley itself is killed with SIGKILL. After Redis comes back, the
//! rerun replays from the accounting log what was never written: every hard bounce of the
//! campaign is in the store, each exactly once.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{RedisServer, Sink, SinkConfig};
use volley_scheduler::suppression::{open_store, SuppressionConfig, GLOBAL};

mod common;

use common::volley;

fn setup(dir: &Path, sink: &str, redis: &str, n: usize) {
    common::write_news_campaign(dir, "outage", n);
    std::fs::write(
        dir.join("v.toml"),
        format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
             [routes]\n\"*\" = \"{sink}\"\n[smtp]\nmax_connections_per_host = 4\n\
             [suppression]\nredis = \"{redis}\"\n\
             # 5 % bounces by design: the guard would hold the campaign mid-run.\n\
             [reputation]\nenabled = false\n"
        ),
    )
    .expect("config");
}

/// The accounting log's lines (whole ones only).
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn bounced(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["outcome"] == "bounced")
        .map(|l| l["recipient"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until the log holds at least `n` bounces.
fn wait_for_bounces(log: &Path, n: usize, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while bounced(&log_lines(log)).len() < n {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "volley send ended before {n} bounces; the test needs a slower sink"
        );
        assert!(Instant::now() < deadline, "timed out waiting for {n} bounces");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_bounces_held_in_memory_when_volley_is_killed_are_written_by_the_rerun() {
    let n = 3000;
    let mut redis = RedisServer::start_durable();
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(15),
        permfail_pct: 5.0,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path(), &sink.local_addr().to_string(), &redis.url(), n);
    let work = dir.path().to_path_buf();
    let send = move || {
        let mut c = volley();
        c.current_dir(&work)
            .args(["send", "c.toml", "--config", "v.toml", "--progress", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let log = dir.path().join("state/outage/accounting.jsonl");

    let mut child = send().spawn().expect("spawn volley send");
    wait_for_bounces(&log, 15, &mut child);
    redis.stop(); // SIGKILL
    let before_outage = bounced(&log_lines(&log)).len();
    wait_for_bounces(&log, before_outage + 15, &mut child);
    child.kill().expect("SIGKILL volley");
    let _ = child.wait();
    let at_kill = bounced(&log_lines(&log)).len();
    eprintln!("bounces: {before_outage} before the outage, {at_kill} at the kill");

    redis.restart();
    let status = tokio::task::spawn_blocking(move || send().status())
        .await
        .expect("join")
        .expect("rerun");
    assert!(status.success(), "the rerun completes");

    let lines = log_lines(&log);
    let hard = bounced(&lines);
    assert!(hard.len() >= at_kill, "{} < {at_kill}", hard.len());
    let finals = lines.iter().filter(|l| l["outcome"] != "deferred").count();
    assert_eq!(finals, n, "every recipient has one final outcome");
    let store = open_store(
        &SuppressionConfig {
            redis: Some(redis.url()),
            ..SuppressionConfig::default()
        },
        dir.path(),
    )
    .expect("store");
    let addresses: Vec<&str> = hard.iter().map(String::as_str).collect();
    let hits = store.check(&[GLOBAL], &addresses).expect("check");
    let missing: Vec<&str> = addresses
        .iter()
        .zip(&hits)
        .filter(|(_, h)| h.is_none())
        .map(|(a, _)| *a)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} hard bounces never reached the store: {:?}",
        missing.len(),
        hard.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<_> = addresses
        .iter()
        .zip(&hits)
        .filter_map(|(a, h)| h.as_ref().filter(|(_, e)| e.count != 1).map(|(_, e)| (*a, e.count)))
        .collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    sink.shutdown().await;
}
