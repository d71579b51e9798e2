//! `volley cluster`: one campaign published to Redis and sent by three node processes on
//! loopback (source IPs 127.0.0.2/3/4), one of them killed with SIGKILL mid-run — never
//! restarted, or restarted. Every recipient ends with exactly one final outcome across the
//! nodes' accounting logs (save the documented exception: a chunk the killed node had logged
//! but not yet acknowledged), the sink received nobody twice beyond the counted
//! `resent_after_restart`, and the survivors finished the dead node's chunks. Also: a campaign
//! over a three-master Redis Cluster, and a cancel from the CLI. Nodes sharing a receiver's
//! connection cap: `tests/cluster_limits.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{RedisServer, SinkConfig};

mod common;

use common::cluster::*;
use common::volley;

/// Chunks of a node: (being sent, being merged into the node's log). A chunk being merged
/// may be acknowledged already, or not yet: a kill then leaves its recipients in the node's
/// log *and* to be sent again by the node taking over (see README "Cluster"). Being merged:
/// the node's merge marker (`merging`, beside its log) names the chunk, whose directory is
/// still there (it goes once the chunk is acknowledged).
fn chunk_states(dir: &Path, node: usize) -> (usize, usize) {
    // Each chunk's directory is its chunk campaign's state directory, `runs/<id>.c<n>`.
    let campaign = dir.join(format!("n{node}/state/cluster/{CAMPAIGN}"));
    let runs = campaign.join("runs");
    let prefix = format!("{CAMPAIGN}.c");
    let dirs: Vec<String> = std::fs::read_dir(runs).map_or(Vec::new(), |d| {
        d.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with(&prefix))
            .collect()
    });
    let marker = std::fs::read_to_string(campaign.join("merging")).unwrap_or_default();
    let marked = marker
        .lines()
        .next()
        .and_then(|l| l.splitn(3, ' ').nth(2))
        .map(str::trim_end);
    let merging = dirs.iter().filter(|d| Some(d.as_str()) == marked).count();
    (dirs.len() - merging, merging)
}

/// Final outcomes per recipient across the three nodes' logs.
fn finals(dir: &Path) -> HashMap<String, Vec<(usize, String)>> {
    let mut out: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for node in 1..=3 {
        let text = std::fs::read_to_string(node_log(dir, node)).unwrap_or_default();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("accounting line is JSON");
            assert_eq!(v["campaign"], CAMPAIGN, "{line}");
            let outcome = v["outcome"].as_str().expect("outcome").to_owned();
            if outcome != "deferred" {
                let rcpt = v["recipient"].as_str().expect("recipient").to_owned();
                out.entry(rcpt).or_default().push((node, outcome));
            }
        }
    }
    out
}

/// `n` recipients; node 2 killed mid-run, then `restart`ed or never.
async fn kill_one_node(n: usize, restart: bool) {
    let redis = RedisServer::start();
    // A little latency per reply batch: the run lasts long enough for the kill to land mid-way.
    let latency = SinkConfig {
        latency: Duration::from_millis(5),
        ..SinkConfig::default()
    };
    let (sink, tmp) = setup(n, latency, &TUNING, |_| redis.url()).await;
    let dir = tmp.path().to_path_buf();
    let counts = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(480);
        let mut publisher = spawn_publisher(&dir);
        let mut nodes: Vec<Child> = (1..=3).map(|node| spawn_node(&dir, node, "first")).collect();
        // Kill node 2 once it has finished a chunk and the cluster is well under way.
        // …and is sending two chunks, neither being merged, so that it dies holding work.
        while log_lines(&dir, 2) == 0
            || (1..=3).map(|i| log_lines(&dir, i)).sum::<usize>() < n / 4
            || chunk_states(&dir, 2) != (2, 0)
        {
            assert!(Instant::now() < deadline, "no progress");
            assert!(
                nodes[1].try_wait().expect("try_wait").is_none(),
                "node 2 ended before the kill"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nodes[1].kill().expect("SIGKILL node 2");
        let _ = nodes[1].wait();
        let at_kill = log_lines(&dir, 2);
        let held = chunk_states(&dir, 2);
        assert!(held.0 > 0, "node 2 held no chunk when killed: {held:?}");
        if restart {
            std::thread::sleep(Duration::from_millis(500));
            nodes[1] = spawn_node(&dir, 2, "second");
        }
        assert!(
            wait_exit(&mut publisher, "publisher", deadline).success(),
            "publisher failed"
        );
        let alive = nodes.iter_mut().enumerate().filter(|(i, _)| restart || *i != 1);
        wait_nodes(alive, deadline);
        let status = cluster_status(&dir, 1);
        (dir, at_kill, status)
    })
    .await
    .expect("join");
    let (dir, at_kill, status) = counts;

    // Every recipient: exactly one final outcome across the three logs.
    let finals = finals(&dir);
    assert_eq!(finals.len(), n, "recipients with a final outcome");
    // The one exception (README "Cluster"): a chunk node 2 had appended to its log but not
    // yet acknowledged when killed — the state may change between the test's look and the
    // kill. Its recipients were sent again by a survivor: two outcomes, node 2's and one other.
    let twice: Vec<_> = finals.iter().filter(|(_, f)| f.len() != 1).collect();
    eprintln!("restart={restart}: {} recipients with two final outcomes", twice.len());
    assert!(
        twice
            .iter()
            .all(|(_, f)| f.len() == 2 && f.iter().filter(|(node, _)| *node == 2).count() == 1),
        "recipients with several final outcomes: {:?}",
        twice.iter().take(5).collect::<Vec<_>>()
    );
    assert!(twice.len() <= 500, "more than one chunk logged twice: {}", twice.len());
    if restart {
        // Restarted before its lease ran out, node 2 took its chunks back: nothing twice.
        assert!(
            twice.is_empty(),
            "recipients with several final outcomes: {:?}",
            &twice[..twice.len().min(5)]
        );
    }
    assert!(finals.values().all(|f| f[0].1 == "delivered"));

    // `volley report` reads the three logs as one.
    let out = volley()
        .current_dir(&dir)
        .args(["report", "--out", "report.html"])
        .args((1..=3).map(|i| node_log(&dir, i)))
        .output()
        .expect("volley report");
    assert!(out.status.success(), "report: {}", common::text(&out));
    assert!(
        common::text(&out).contains(&format!(", {n} final outcomes")),
        "{}",
        common::text(&out)
    );

    // The status in Redis agrees, each recipient counted once.
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["counts"]["delivered"], n as u64, "{status}");
    assert_eq!(status["progress"]["rows"], n as u64, "{status}");

    // Duplicates at the sink: only what the nodes counted as resent.
    let runs: Vec<Value> = if restart {
        vec![
            report(&dir, 1, "first"),
            report(&dir, 2, "second"),
            report(&dir, 3, "first"),
        ]
    } else {
        vec![report(&dir, 1, "first"), report(&dir, 3, "first")]
    };
    let resent: u64 = runs
        .iter()
        .map(|r| r["resent_after_restart"].as_u64().expect("resent"))
        .sum();
    assert_eq!(
        status["counts"]["resent_after_restart"].as_u64().unwrap_or(0),
        resent,
        "{status}"
    );
    let received = sink.address_counts();
    assert_eq!(received.len(), n, "every recipient reached the sink");
    let duplicates: u64 = received.values().map(|c| c.saturating_sub(1)).sum();
    eprintln!(
        "restart={restart}: node 2 had logged {at_kill} lines when killed; sink duplicates {duplicates}, counted resent {resent}; reports {runs:?}"
    );
    assert!(
        duplicates <= resent,
        "sink duplicates {duplicates} > counted resent {resent}"
    );
    assert!(
        twice.len() as u64 <= resent,
        "logged twice {} > counted resent {resent}",
        twice.len()
    );

    // The dead node's chunks were finished by the others (or by itself, restarted).
    let node2 = finals.values().filter(|f| f[0].0 == 2).count();
    assert!(node2 < n && node2 > 0, "node 2 finished {node2}");
    if restart {
        let again = &runs[1];
        assert!(
            again["resumed"].as_u64().unwrap_or(0)
                + runs[0]["reclaimed"].as_u64().unwrap_or(0)
                + runs[2]["reclaimed"].as_u64().unwrap_or(0)
                >= 1,
            "node 2's pending chunks were neither resumed nor reclaimed: {runs:?}"
        );
    } else {
        let reclaimed: u64 = runs.iter().map(|r| r["reclaimed"].as_u64().unwrap_or(0)).sum();
        assert!(
            reclaimed >= 1,
            "the survivors took over none of node 2's chunks: {runs:?}"
        );
    }
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_chunks_are_finished_by_the_others() {
    // The figure: 100,000 recipients, one node of three killed and never restarted.
    kill_one_node(100_000, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_restarted_resumes_without_resending_finished_work() {
    kill_one_node(20_000, true).await;
}

/// Three Redis masters in cluster mode on loopback ports, killed on drop.
struct RedisCluster {
    ports: Vec<u16>,
    _nodes: Vec<common::Killed>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let child = std::process::Command::new("redis-server")
                    .args([
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        &port.to_string(),
                        "--cluster-enabled",
                        "yes",
                    ])
                    .args([
                        "--cluster-config-file",
                        &format!("nodes-{port}.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .arg("--dir")
                    .arg(dir.path())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server (Debian package redis-server)");
                common::Killed(child)
            })
            .collect();
        for port in &ports {
            common::wait_listening(&format!("127.0.0.1:{port}"), "redis-server");
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(created.status.success(), "cluster create: {}", common::text(&created));
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &ports {
            loop {
                let info = std::process::Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli cluster info");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster {
            ports,
            _nodes: nodes,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_over_a_three_master_redis_cluster() {
    let n = 3000;
    let cluster = tokio::task::spawn_blocking(RedisCluster::start).await.expect("join");
    // Each node talks to a different master: the campaign's slot is on one of them, so at
    // least two nodes are redirected (MOVED) to it.
    let ports = cluster.ports.clone();
    let (sink, tmp) = setup(n, SinkConfig::default(), &TUNING, |node| {
        format!("redis://127.0.0.1:{}", ports[node - 1])
    })
    .await;
    let dir = tmp.path().to_path_buf();
    let (dir, status) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let publish = volley()
            .current_dir(&dir)
            .args(["cluster", "publish", "c.toml", "--config", "n2/v.toml"])
            .output()
            .expect("publish");
        assert!(publish.status.success(), "publish: {}", common::text(&publish));
        let mut nodes: Vec<Child> = (1..=3).map(|node| spawn_node(&dir, node, "first")).collect();
        wait_nodes(nodes.iter_mut().enumerate(), deadline);
        let status = cluster_status(&dir, 3);
        (dir, status)
    })
    .await
    .expect("join");
    let finals = finals(&dir);
    assert_eq!(finals.len(), n);
    assert!(finals.values().all(|f| f.len() == 1 && f[0].1 == "delivered"));
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["counts"]["delivered"], n as u64, "{status}");
    assert_eq!(sink.address_counts().len(), n);
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_recipients_wait_parked_and_a_dead_node_s_retries_are_taken_over() {
    let n = 1000;
    let redis = RedisServer::start();
    // A fifth of the recipients greylisted: 451 on the first attempt, accepted on the next.
    let greylisting = SinkConfig {
        greylist_pct: 20.0,
        ..SinkConfig::default()
    };
    // One chunk in flight and retries after 40 s: a chunk that held its slot until its
    // greylisted rows are retried would let one chunk through per 40 s.
    let tuning = Tuning {
        retry: "40s",
        chunk_size: 50,
        chunks_in_flight: 1,
        ..TUNING
    };
    let (sink, tmp) = setup(n, greylisting, &tuning, |_| redis.url()).await;
    let dir = tmp.path().to_path_buf();
    let counter = sink.clone();
    let counted = move || counter.stats().recipients as usize;
    let (dir, status, report2) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut publisher = spawn_publisher(&dir);
        let started = Instant::now();
        let mut node1 = spawn_node(&dir, 1, "first");
        // Every chunk's first attempts go out long before the first retry is due.
        while counted() < n * 7 / 10 {
            assert!(
                started.elapsed() < Duration::from_secs(35),
                "deferred rows held their chunk's slot: {} delivered",
                counted()
            );
            assert!(node1.try_wait().expect("try_wait").is_none(), "node 1 ended early");
            std::thread::sleep(Duration::from_millis(50));
        }
        let parked = cluster_status(&dir, 1)["progress"]["parked"].as_u64().unwrap_or(0);
        assert!(parked >= 2, "chunks parked: {parked}");
        // Node 1 dies holding parked chunks; node 2 takes them over and retries their
        // deferred rows, not the rows node 1 finished.
        node1.kill().expect("SIGKILL node 1");
        let _ = node1.wait();
        let mut node2 = spawn_node(&dir, 2, "first");
        assert!(
            wait_exit(&mut publisher, "publisher", deadline).success(),
            "publisher failed"
        );
        assert!(wait_exit(&mut node2, "node 2", deadline).success(), "node 2 failed");
        let status = cluster_status(&dir, 2);
        let report2 = report(&dir, 2, "first");
        (dir, status, report2)
    })
    .await
    .expect("join");
    let finals = finals(&dir);
    assert_eq!(finals.len(), n, "recipients with a final outcome");
    let twice = finals.values().filter(|f| f.len() != 1).count();
    // The documented exception: node 1 killed between a merge and its record in Redis.
    assert!(twice <= 50, "more than one chunk logged twice: {twice}");
    assert!(finals.values().all(|f| f[0].1 == "delivered"));
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["counts"]["delivered"], n as u64, "{status}");
    let node1 = finals.values().filter(|f| f[0].0 == 1).count();
    // Killed at 70 % accepted: what it had merged by then (on a loaded machine, a few chunks
    // behind what the sink accepted; once under 60 % in a parallel run here).
    assert!(node1 >= n / 2, "node 1 logged {node1} finals before it died");
    assert!(report2["reclaimed"].as_u64().unwrap_or(0) >= 2, "{report2}");
    // Node 2 resent only rows that were not final: the deferred ones (about a fifth) and at
    // most one chunk cut short — not the rows node 1 had delivered.
    let resent = status["counts"]["resent_after_restart"].as_u64().unwrap_or(0);
    assert!(resent <= (n as u64) * 3 / 10 + 50, "resent {resent}: {status}");
    let received = sink.address_counts();
    assert_eq!(received.len(), n, "every recipient reached the sink");
    let duplicates: u64 = received.values().map(|c| c.saturating_sub(1)).sum();
    assert!(
        duplicates <= resent,
        "sink duplicates {duplicates} > counted resent {resent}"
    );
    sink.shutdown().await;
}

/// `volley cluster …` in `dir` with node 1's configuration.
fn cluster_cmd(dir: &Path, args: &[&str]) -> std::process::Output {
    volley()
        .current_dir(dir)
        .arg("cluster")
        .args(args)
        .args(["--config", "n1/v.toml"])
        .output()
        .expect("volley cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_cli_is_final_and_ends_nodes_and_publisher_with_success() {
    let redis = RedisServer::start();
    let (sink, tmp) = setup(300, SinkConfig::default(), &TUNING, |_| redis.url()).await;
    let dir = tmp.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let json = |out: &std::process::Output| -> Value {
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(out)))
        };
        // Nothing published yet: a clear error, exit 2.
        let out = cluster_cmd(&dir, &["pause", CAMPAIGN]);
        assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
        assert!(common::text(&out).contains("not published"), "{}", common::text(&out));
        // Published (its chunks wait: no node runs), paused, cancelled.
        let out = cluster_cmd(&dir, &["publish", "c.toml"]);
        assert!(out.status.success(), "{}", common::text(&out));
        let out = cluster_cmd(&dir, &["pause", CAMPAIGN]);
        assert!(out.status.success(), "{}", common::text(&out));
        assert_eq!(json(&out)["state"], "paused");
        let out = cluster_cmd(&dir, &["cancel", CAMPAIGN]);
        assert!(out.status.success(), "{}", common::text(&out));
        assert_eq!(json(&out)["state"], "cancelled");
        // Final: resume refused (exit 2, says why); status shows it.
        let out = cluster_cmd(&dir, &["resume", CAMPAIGN]);
        assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
        assert!(common::text(&out).contains("cancel is final"), "{}", common::text(&out));
        let out = cluster_cmd(&dir, &["status", CAMPAIGN]);
        assert_eq!(json(&out)["state"], "cancelled");
        let out = cluster_cmd(&dir, &["publish", "c.toml"]);
        assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
        assert!(common::text(&out).contains("cancel is final"), "{}", common::text(&out));
        // A node started on it returns at once, exit 0, reporting `cancelled`.
        let out = volley()
            .current_dir(dir.join("n1"))
            .args(["cluster", "work", CAMPAIGN, "--config", "v.toml"])
            .output()
            .expect("work");
        assert!(out.status.success(), "{}", common::text(&out));
        let report = json(&out);
        assert_eq!(
            (report["cancelled"].as_bool(), report["chunks"].as_u64()),
            (Some(true), Some(0)),
            "{report}"
        );
    })
    .await
    .expect("join");
    assert_eq!(sink.stats().messages, 0, "a cancelled campaign sent nothing");
    sink.shutdown().await;
}
