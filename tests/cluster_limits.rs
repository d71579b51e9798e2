//! `volley cluster` nodes sending from one source IP to a receiver that caps connections per
//! client address: our sink, and a private Postfix `smtpd` (`smtpd_client_connection_count_limit`)
//! — the cap learned together in Redis and split (`share_limits`).

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{RedisServer, SinkConfig};

mod common;

use common::cluster::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_source_ip_share_the_receiver_s_connection_cap() {
    let n = 2000;
    let redis = RedisServer::start();
    // The receiver takes 4 connections per client address; both nodes send from 127.0.0.2
    // and would each open up to 8.
    let capped = SinkConfig {
        max_connections_per_client: Some(4),
        latency: Duration::from_millis(5),
        ..SinkConfig::default()
    };
    let tuning = Tuning {
        chunk_size: 250,
        one_ip: true,
        max_connections_per_host: 8,
        ..TUNING
    };
    let (sink, tmp) = setup(n, capped, &tuning, |_| redis.url()).await;
    let dir = tmp.path().to_path_buf();
    let (dir, status) = two_nodes(dir, Duration::from_secs(120)).await;
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["counts"]["delivered"], n as u64, "{status}");
    assert!(
        sink.stats().connections_refused > 0,
        "the receiver never refused a connection: nothing to learn"
    );
    // The cap both learned: what they had open together when one was refused.
    let cap = shared_cap(&redis);
    // Open counts are published once a second, so the sum may lag the moment of the refusal
    // by a connection.
    eprintln!(
        "shared cap {cap}; the sink refused {} connections",
        sink.stats().connections_refused
    );
    assert!((3..=5).contains(&cap), "learned cap {cap}, the receiver allows 4");
    for node in 1..=2 {
        let r = report(&dir, node, "first");
        let shared = r["shared_limits"].as_array().cloned().unwrap_or_default();
        assert!(
            shared
                .iter()
                .any(|l| l["source_ip"] == "127.0.0.2"
                    && l["ceiling"].as_u64().is_some_and(|c| c >= 1 && c as usize <= cap)),
            "node {node} applied no share of the cap {cap}: {r}"
        );
    }
    sink.shutdown().await;
}

/// Publishes the campaign and runs nodes 1 and 2 in `dir` to the end (within `limit`);
/// returns `dir` and the cluster status.
async fn two_nodes(dir: PathBuf, limit: Duration) -> (PathBuf, Value) {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + limit;
        let mut publisher = spawn_publisher(&dir);
        let mut nodes: Vec<Child> = (1..=2).map(|node| spawn_node(&dir, node, "first")).collect();
        assert!(
            wait_exit(&mut publisher, "publisher", deadline).success(),
            "publisher failed"
        );
        wait_nodes(nodes.iter_mut().enumerate(), deadline);
        let status = cluster_status(&dir, 1);
        (dir, status)
    })
    .await
    .expect("join")
}

/// The connection cap the nodes on 127.0.0.2 learned together, from Redis.
fn shared_cap(redis: &RedisServer) -> usize {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &redis.url(), "HGETALL", "volley:{ip:127.0.0.2}:cap"])
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no shared cap in Redis: {text:?}"))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// The receiver is real software: a private Postfix `smtpd` allowing 4 connections per client
/// address (`smtpd_client_connection_count_limit`, enforced by its `anvil`, a 421 at the
/// banner beyond it). Two nodes send from 127.0.0.2, each allowed 8 connections, and learn
/// the cap together in Redis and split it (`share_limits`): everything delivered, ~16 s for
/// 20,000 messages here. The figures (refusals in Postfix's log, time) are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_source_ip_share_a_real_postfix_s_client_connection_limit() {
    against_a_real_postfix(true).await;
}

/// The same without `share_limits`: each node learns the cap alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known defect (see README, Cluster): without share_limits the node that opened first keeps Postfix's 4 slots while it has work; the other's deliveries are deferred every ~10 s, and in about half the runs the run passes 180 s; run with --ignored to reproduce"]
async fn two_nodes_on_one_source_ip_against_a_real_postfix_without_sharing_limits() {
    against_a_real_postfix(false).await;
}

async fn against_a_real_postfix(share_limits: bool) {
    if !is_root() {
        eprintln!("skipped: a private Postfix instance needs root (CI runs as root)");
        return;
    }
    let n = 20000;
    let redis = RedisServer::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let postfix = volley_bench::postfix_smtpd::PostfixSmtpd::start(
        &tmp.path().join("postfix"),
        &[("smtpd_client_connection_count_limit", "4")],
    )
    .expect("a private postfix");
    let tuning = Tuning {
        chunk_size: 250,
        one_ip: true,
        max_connections_per_host: 8,
        share_limits,
        ..TUNING
    };
    write_setup(tmp.path(), n, &postfix.local_addr().to_string(), &tuning, |_| {
        redis.url()
    });
    let dir = tmp.path().to_path_buf();
    let started = Instant::now();
    let (dir, status) = two_nodes(dir, Duration::from_secs(180)).await;
    let elapsed = started.elapsed();
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["counts"]["delivered"], n as u64, "{status}");
    let log = postfix.log();
    let refused = log.matches("Connection concurrency limit exceeded").count();
    assert!(refused > 0, "Postfix never enforced its limit: nothing learned");
    let deferred = status["counts"]["deferred"].as_u64().unwrap_or(0);
    let ceilings: Vec<Value> = (1..=2)
        .map(|node| report(&dir, node, "first")["shared_limits"].clone())
        .collect();
    eprintln!(
        "Postfix smtpd, limit 4 per client, 2 nodes on 127.0.0.2, {n} messages, share_limits = \
             {share_limits}: {elapsed:.1?}, {refused} connections refused, {deferred} deferrals; \
             shares applied: {ceilings:?}"
    );
    if share_limits {
        // The cap both learned (what they had open together when one was refused), and
        // each node's share of it.
        let cap = shared_cap(&redis);
        // What the nodes had open together when one was refused: Postfix's anvil may still
        // count a connection being closed, and open counts are published once a second.
        assert!((2..=5).contains(&cap), "learned cap {cap}, Postfix allows 4");
        for (node, shared) in ceilings.iter().enumerate() {
            let shared = shared.as_array().cloned().unwrap_or_default();
            assert!(
                shared.iter().any(|l| l["source_ip"] == "127.0.0.2"
                    && l["ceiling"].as_u64().is_some_and(|c| c >= 1 && c as usize <= cap)),
                "node {} applied no share of the cap {cap}: {shared:?}",
                node + 1
            );
        }
    }
}
