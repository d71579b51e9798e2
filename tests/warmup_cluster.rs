//! Two `volley send` processes sharing one warming source IP through a real Redis
//! (`[warmup] counters = "redis"`, the URL taken from `[suppression] redis`) never exceed the
//! IP's cap together.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use volley_bench::{RedisServer, Sink, SinkConfig};

/// gmail: 30 a day (and an hour) from this IP on day 1.
const CURVE: &str = "name = \"tiny\"\nlast_day = 5\n[[day]]\nday = 1\n\
    gmail = { daily = 30, hourly = 30 }\nmicrosoft = { daily = 1000, hourly = 1000 }\n\
    yahoo = { daily = 1000, hourly = 1000 }\nother = { daily = 1000, hourly = 1000 }\n";

fn setup(dir: &Path, sink: &str, redis: &str) {
    // Both processes' warm-up clocks show 04:00 at the same wall-clock time.
    let anchor = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    std::fs::create_dir_all(dir.join("curves")).expect("curves dir");
    std::fs::write(dir.join("curves/tiny.toml"), CURVE).expect("curve");
    // A warm-up hour per real second: day 1 lasts 20 s from 04:00, past the test's end.
    let config = format!(
        "state_dir = \"state\"\n\
         [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
         warmup = \"tiny\"\nwarmup_start = \"2026-11-01\"\n\
         [routes]\n\"*\" = \"{sink}\"\n\
         [suppression]\nredis = \"{redis}\"\n\
         [warmup]\ncurves_dir = \"curves\"\ncounters = \"redis\"\n\
         speed = 3600\nclock_start = \"2026-11-01T04:00:00Z\"\nclock_anchor = \"{anchor}\"\n"
    );
    std::fs::write(dir.join("v.toml"), config).expect("config");
    for id in ["one", "two"] {
        let csv: String = std::iter::once("email".to_string())
            .chain((0..40).map(|i| format!("{id}{i}@gmail.com")))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
        let campaign = format!(
            "id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n"
        );
        std::fs::write(dir.join(format!("{id}.toml")), campaign).expect("campaign");
    }
}

fn send(dir: &Path, id: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_volley"))
        .current_dir(dir)
        .args(["send", &format!("{id}.toml"), "--config", "v.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn volley send")
}

fn delivered(dir: &Path, id: &str) -> usize {
    let log = dir.join(format!("state/{id}/accounting.jsonl"));
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["outcome"] == "delivered" && v["provider"] == "gmail")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_an_ip_through_redis_never_exceed_its_cap_together() {
    let redis = RedisServer::start();
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path(), &sink.local_addr().to_string(), &redis.url());

    let mut children = [send(dir.path(), "one"), send(dir.path(), "two")];
    // 30 paced over a warm-up hour is about a second; then both wait for day 2 (20 s away).
    tokio::time::sleep(Duration::from_secs(5)).await;
    for child in &mut children {
        let pid = child.id().to_string();
        let stopped = Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
        assert!(stopped.success());
    }
    for child in &mut children {
        let out = tokio::task::block_in_place(|| child.wait_with_output_ref());
        assert!(out.0.success() || out.0.code() == Some(1), "{}", out.1);
        // The pool warms up: the run starts with the planner's estimate per provider group.
        assert!(
            out.1
                .contains("gmail 40 recipient(s), warm-up estimate: done 2026-11-0"),
            "{}",
            out.1
        );
    }
    let (one, two) = (delivered(dir.path(), "one"), delivered(dir.path(), "two"));
    assert_eq!(one + two, 30, "together exactly the IP's gmail cap: {one} + {two}");
    assert!(one > 0 && two > 0, "both processes sent: {one} + {two}");
    assert_eq!(sink.stats().messages, 30);
}

/// `Child::wait_with_output` takes the child by value; this waits and reads stderr in place.
trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitRef for Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        let mut stderr = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let status = self.wait().expect("wait");
        (status, stderr)
    }
}
