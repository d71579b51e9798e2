//! `volley send` killed with SIGKILL at random points, then rerun until it completes: every
//! recipient ends with exactly one final outcome in the accounting log, and the only recipients
//! the sink received twice are those the summary counts as resent after a restart (they were
//! on the wire when the process died).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use volley_bench::{Sink, SinkConfig};

mod common;

use common::volley;

/// A pause between `lo` and `hi` milliseconds, from the clock's nanoseconds.
fn random_pause(lo: u64, hi: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(lo + nanos % (hi - lo))
}

fn setup(dir: &Path, sink: &str, n: usize) {
    common::write_news_campaign(dir, "kill", n);
    std::fs::write(
        dir.join("v.toml"),
        format!(
            "state_dir = \"state\"\nmax_in_flight = 300\nmax_in_flight_per_site = 100\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
             [routes]\n\"*\" = \"{sink}\"\n[retry]\nschedule = [\"100ms\"]\nmax_age = \"1m\"\n\
             [smtp]\nmax_connections_per_host = 4\n"
        ),
    )
    .expect("config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_resume_with_one_final_outcome_per_recipient() {
    let n = 3000;
    // 15 ms per reply batch: the run takes a few seconds, so the kills land mid-run.
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(15),
        tempfail_pct: 3.0,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path(), &sink.local_addr().to_string(), n);
    let work = dir.path().to_path_buf();
    let args = move |summary: &str| {
        let mut c = volley();
        c.current_dir(&work)
            .args(["send", "c.toml", "--config", "v.toml", "--summary-json", summary])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };

    let mut kills = 0;
    for round in 0..3 {
        let mut child = args("killed.json").spawn().expect("spawn volley send");
        tokio::time::sleep(random_pause(400, 1500)).await;
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("SIGKILL"); // SIGKILL on Unix
            kills += 1;
        }
        let _ = child.wait();
        eprintln!("round {round}: sink has {} messages", sink.stats().messages);
    }
    assert!(kills >= 1, "no run was killed mid-way; the test needs a slower sink");

    let status = tokio::task::spawn_blocking(move || args("final.json").status())
        .await
        .expect("join")
        .expect("final run");
    assert!(status.success(), "the resumed run completes");

    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("final.json")).expect("summary")).expect("json");
    let log = std::fs::read_to_string(dir.path().join("state/kill/accounting.jsonl")).expect("log");
    let mut finals: HashMap<String, u32> = HashMap::new();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).expect("every accounting line is whole JSON");
        if v["outcome"] != "deferred" {
            assert_eq!(v["outcome"], "delivered", "{v}");
            *finals
                .entry(v["recipient"].as_str().expect("recipient").to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(finals.len(), n, "every recipient has a final outcome");
    let twice: Vec<_> = finals.iter().filter(|(_, c)| **c != 1).collect();
    assert!(
        twice.is_empty(),
        "recipients with more than one final outcome: {twice:?}"
    );

    let mut resent_seen = 0u64;
    for i in 0..n {
        let r = format!("user{i}@d{}.kill.test", i % 40);
        let got = sink.accepted_for(&r);
        assert!(got >= 1, "{r} never arrived");
        resent_seen += got - 1;
    }
    let counted = summary["resent_after_restart"].as_u64().expect("resent_after_restart");
    eprintln!("kills {kills}, duplicates at the sink {resent_seen}, counted as resent {counted}");
    assert!(
        resent_seen <= counted,
        "{resent_seen} duplicates reached the sink but only {counted} were counted as in flight at a kill"
    );
    assert_eq!(summary["delivered"].as_u64(), Some(n as u64));
    assert_eq!(summary["complete"], true);
    sink.shutdown().await;
}
