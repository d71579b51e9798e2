//! Pause, resume and cancel of a cluster campaign from any node, against a real
//! `redis-server` and two nodes (`cluster::work::work` on 127.0.0.2 and 127.0.0.3) delivering
//! to the in-process sink: a pause stops every node's deliveries (a node restarted meanwhile
//! stays paused, no lease lapses), a resume finishes with one outcome per recipient; a cancel
//! makes every node and the publisher return, and is final. A node takes its next chunk as
//! soon as a chunk's recipients are all on the wire, not after their last reply.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use volley_bench::{RedisServer, Sink, SinkConfig, SinkHandle};
use volley_scheduler::cluster::publish::{publish, Published};
use volley_scheduler::cluster::work::{node_log, work, NodeReport};
use volley_scheduler::cluster::{control, CampaignState, ClusterConfig, ClusterError, Registry, CHECK_EVERY};
use volley_scheduler::config::SendConfig;

use crate::common::{route_all_to, source_ips, until};

const ID: &str = "ctl";

/// Recipients of the campaign.
const N: usize = 2000;

/// The campaign `ctl` of `n` recipients in `dir`.
fn campaign(dir: &Path, n: usize) -> PathBuf {
    let rows: String = (0..n).map(|i| format!("u{i}@d{}.test,N{i}\n", i % 20)).collect();
    std::fs::write(dir.join("r.csv"), format!("email,name\n{rows}")).expect("csv");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!(
            "id = \"{ID}\"\nfrom = \"N <n@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello {{{{name}}}}\"\n\
             recipients = \"r.csv\"\n"
        ),
    )
    .expect("campaign");
    path
}

fn cluster(redis: &RedisServer, node: u8, max_outstanding: usize) -> ClusterConfig {
    ClusterConfig {
        redis: redis.url(),
        node_id: format!("n{node}"),
        chunk_size: 100,
        max_outstanding,
        lease: Duration::from_secs(3),
        chunks_in_flight: 2,
        parked_chunks: 256,
        keep: Duration::from_secs(3600),
        share_limits: true,
        shared_dir: None,
    }
}

/// Node `node` (source IP 127.0.0.`node`, its own state directory).
fn node(dir: &Path, node: u8, redis: &RedisServer, sink: &SinkHandle, max_outstanding: usize) -> SendConfig {
    SendConfig {
        state_dir: dir.join(format!("n{node}")),
        source_ips: source_ips(node, node),
        routes: route_all_to(sink.local_addr()),
        // Few messages past the pause point: a paused chunk holds most of its rows.
        max_in_flight: 20,
        smtp: volley_engine::SmtpConfig {
            max_connections_per_host: 4,
            queue_per_host: 4,
            ..Default::default()
        },
        cluster: Some(cluster(redis, node, max_outstanding)),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

/// A running node and the switch that stops it.
struct Node {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<NodeReport, ClusterError>>,
}

fn start(config: &SendConfig) -> Node {
    let (stop, mut stopped) = watch::channel(false);
    let config = config.clone();
    let task = tokio::spawn(async move {
        work(ID, &config, None, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
    });
    Node { stop, task }
}

async fn ended(node: Node) -> NodeReport {
    tokio::time::timeout(Duration::from_secs(60), node.task)
        .await
        .expect("the node returns")
        .expect("join")
        .expect("the node's run")
}

fn start_publisher(path: PathBuf, cluster: ClusterConfig) -> JoinHandle<Result<Published, ClusterError>> {
    let state = path.with_file_name("publisher");
    tokio::task::spawn_blocking(move || publish(&path, &[], &state, &cluster, &AtomicBool::new(false)))
}

fn logged(config: &SendConfig) -> usize {
    std::fs::read_to_string(node_log(&config.state_dir, ID)).map_or(0, |t| t.lines().count())
}

async fn sink() -> SinkHandle {
    Sink::start(SinkConfig {
        latency: Duration::from_millis(5),
        count_addresses: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink")
}

/// Waits (at most 20 s) until the sink has accepted nothing for half a second.
async fn settled(sink: &SinkHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = sink.stats().messages;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sink.stats().messages;
        if now == last || tokio::time::Instant::now() > deadline {
            return;
        }
        last = now;
    }
}

/// Asserts that the sink accepts nothing for `quiet`; returns its count.
async fn still(sink: &SinkHandle, quiet: Duration, what: &str) -> u64 {
    let before = sink.stats().messages;
    tokio::time::sleep(quiet).await;
    let after = sink.stats().messages;
    assert_eq!(before, after, "{what}: deliveries went on");
    after
}

/// Where a campaign of [`N`] recipients is sent: Redis, the sink, nodes A and B.
struct Env {
    redis: RedisServer,
    sink: SinkHandle,
    dir: tempfile::TempDir,
    a: SendConfig,
    b: SendConfig,
}

/// Publishes the campaign (`max_outstanding` chunks at most) and starts nodes A and B; returns
/// once each has finished a chunk.
async fn running(max_outstanding: usize) -> (Env, JoinHandle<Result<Published, ClusterError>>, Node, Node) {
    let redis = RedisServer::start();
    let sink = sink().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = campaign(dir.path(), N);
    let a = node(dir.path(), 2, &redis, &sink, max_outstanding);
    let b = node(dir.path(), 3, &redis, &sink, max_outstanding);
    let publisher = start_publisher(path, cluster(&redis, 2, max_outstanding));
    let (node_a, node_b) = (start(&a), start(&b));
    until("both nodes finished a chunk", || logged(&a) > 0 && logged(&b) > 0).await;
    (Env { redis, sink, dir, a, b }, publisher, node_a, node_b)
}

fn registry(redis: &RedisServer) -> Vec<String> {
    tokio::task::block_in_place(|| Registry::open(&redis.url()).and_then(|r| r.list())).expect("registry")
}

fn set(redis: &RedisServer, to: CampaignState) -> Result<volley_scheduler::cluster::ClusterStatus, ClusterError> {
    tokio::task::block_in_place(|| control::set(&redis.url(), ID, to))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_stops_every_node_and_survives_a_restart_and_a_resume_sends_each_recipient_once() {
    let (env, publisher, node_a, node_b) = running(8).await;

    let status = set(&env.redis, CampaignState::Paused).expect("pause");
    assert_eq!(status.state, CampaignState::Paused);
    // Every node sees it within CHECK_EVERY; what was on the wire or queued at a connection
    // lands (longer on a loaded machine); then nothing moves.
    tokio::time::sleep(CHECK_EVERY).await;
    settled(&env.sink).await;
    let paused_at = still(&env.sink, Duration::from_secs(2), "paused").await;
    assert!(
        paused_at < N as u64,
        "the campaign finished before the pause: {paused_at}"
    );

    // Node A restarted while paused: it takes back its chunks and stays paused.
    node_a.stop.send(true).expect("stop node A");
    let first = ended(node_a).await;
    assert!(!first.complete && !first.cancelled, "{first:?}");
    let node_a = start(&env.a);
    still(&env.sink, Duration::from_secs(2), "paused, node A restarted").await;
    // What is left waits: in chunks the nodes hold (their leases renewed), or in chunks not
    // taken yet (a node's chunks may all have finished from what was already on the wire).
    let status = set(&env.redis, CampaignState::Paused).expect("status");
    let held: i64 = status.pending.values().sum();
    let unread = status.progress["published"] - status.progress["acked"] - held;
    assert!(
        !status.complete && held + unread > 0,
        "paused with nothing left to send: {status:?}"
    );

    set(&env.redis, CampaignState::Running).expect("resume");
    let (ra, rb) = (ended(node_a).await, ended(node_b).await);
    let published = publisher.await.expect("join").expect("publish");
    assert!(published.complete && !published.cancelled, "{published:?}");
    for r in [&ra, &rb] {
        assert!(r.complete && !r.cancelled, "{r:?}");
        // Leases were renewed while paused: no chunk was taken over.
        assert_eq!((r.reclaimed, r.lost), (0, 0), "{r:?}");
    }
    let counts = env.sink.address_counts();
    assert_eq!(counts.len(), N, "every recipient reached the sink");
    assert!(counts.values().all(|c| *c == 1), "a recipient delivered twice");
    assert_eq!(
        logged(&env.a) + logged(&env.b),
        N,
        "one final outcome per recipient across the logs"
    );
    let status = tokio::task::block_in_place(|| {
        let keys = volley_scheduler::cluster::Keys::new(ID);
        volley_scheduler::cluster::Store::for_campaign(&env.redis.url(), &keys)
            .and_then(|s| s.status(ID, &keys))
            .expect("status")
    });
    assert!(status.complete, "{status:?}");
    assert_eq!(status.counts["delivered"], N as i64);
    assert_eq!(status.state, CampaignState::Running);
    // Nothing left to control; the registry forgot it.
    let e = set(&env.redis, CampaignState::Paused).expect_err("complete");
    assert!(matches!(e, ClusterError::Complete(_)), "{e}");
    let listed = registry(&env.redis);
    assert!(listed.is_empty(), "{listed:?}");
    env.sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_every_node_and_the_publisher_and_is_final() {
    // Four chunks outstanding at most: the publisher waits on the nodes.
    let (env, publisher, node_a, node_b) = running(4).await;
    let listed = registry(&env.redis);
    assert_eq!(listed, vec![ID.to_owned()]);

    let cancelled_at = Instant::now();
    let status = set(&env.redis, CampaignState::Cancelled).expect("cancel");
    assert_eq!(status.state, CampaignState::Cancelled);
    for r in [ended(node_a).await, ended(node_b).await] {
        assert!(r.cancelled && !r.complete, "{r:?}");
    }
    let published = publisher.await.expect("join").expect("publish");
    assert!(published.cancelled && !published.complete, "{published:?}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(15),
        "{:?}",
        cancelled_at.elapsed()
    );
    let delivered = still(&env.sink, Duration::from_secs(1), "cancelled").await;
    assert!(delivered < N as u64, "{delivered}");

    // Final: neither pause nor resume; a second cancel is harmless.
    for to in [CampaignState::Running, CampaignState::Paused] {
        let e = set(&env.redis, to).expect_err("cancel is final");
        assert!(matches!(e, ClusterError::Cancelled(_)), "{e}");
        assert!(e.to_string().contains("cancel is final"), "{e}");
    }
    let status = set(&env.redis, CampaignState::Cancelled).expect("cancel again");
    assert_eq!(status.state, CampaignState::Cancelled);
    assert!(!status.complete, "{status:?}");
    // A node started on a cancelled campaign returns at once, having taken nothing.
    let late = ended(start(&node(env.dir.path(), 4, &env.redis, &env.sink, 4))).await;
    assert!(late.cancelled && late.chunks == 0, "{late:?}");
    let listed = registry(&env.redis);
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(env.sink.stats().messages, delivered, "the late node sent nothing");
    env.sink.shutdown().await;
}

/// Regression (benches/cluster.sh: a node needed 1.8 times a plain send's wall time): a chunk
/// held its `chunks_in_flight` slot until its last reply, so a node's connections ran dry
/// between chunks. Now a chunk whose recipients are all on the wire frees its slot: with one
/// chunk in flight and slow replies, a node holds two chunks at once.
/// Redis, a sink that waits `latency` before each reply batch (and counts addresses), the
/// campaign of 60 recipients and node 2's configuration.
async fn one_node(latency: Duration) -> (RedisServer, SinkHandle, tempfile::TempDir, PathBuf, SendConfig) {
    let redis = RedisServer::start();
    let sink = Sink::start(SinkConfig {
        latency,
        count_addresses: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = campaign(dir.path(), 60);
    let config = node(dir.path(), 2, &redis, &sink, 64);
    (redis, sink, dir, path, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_the_next_chunk_while_the_last_one_s_replies_are_on_the_wire() {
    // Every reply batch waits: a transaction spans several of them.
    let (redis, sink, _dir, path, mut config) = one_node(Duration::from_millis(150)).await;
    // Connections enough for two chunks from the start: the receiver is not the limit.
    config.smtp.max_connections_per_host = 20;
    config.smtp.initial_connections_per_host = 20;
    config.smtp.queue_per_host = 20;
    config.max_in_flight = 1000;
    let cluster = config.cluster.as_mut().expect("[cluster]");
    cluster.chunk_size = 10;
    cluster.chunks_in_flight = 1;
    let publisher = start_publisher(path, cluster.clone());
    let node = start(&config);
    let keys = volley_scheduler::cluster::Keys::new(ID);
    let store = tokio::task::block_in_place(|| volley_scheduler::cluster::Store::for_campaign(&redis.url(), &keys))
        .expect("store");
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.task.is_finished() {
        assert!(Instant::now() < deadline, "the node did not finish");
        // Unknown until the publisher has published it.
        if let Ok(status) = tokio::task::block_in_place(|| store.status(ID, &keys)) {
            most = most.max(status.pending.values().sum::<i64>());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = ended(node).await;
    assert!(report.complete && report.chunks == 6, "{report:?}");
    assert!(publisher.await.expect("join").expect("publish").complete);
    assert_eq!(most, 2, "chunks held at once with chunks_in_flight = 1");
    assert_eq!(logged(&config), 60);
    sink.shutdown().await;
}

/// The directories of the chunks a node is sending: `runs/<id>.c<n>`.
fn chunk_dirs(config: &SendConfig) -> Vec<(u64, PathBuf)> {
    let runs = config.state_dir.join("cluster").join(ID).join("runs");
    let prefix = format!("{ID}.c");
    std::fs::read_dir(runs).map_or(Vec::new(), |d| {
        d.filter_map(Result::ok)
            .filter_map(|e| {
                let seq = e.file_name().to_str()?.strip_prefix(&prefix)?.parse().ok()?;
                Some((seq, e.path()))
            })
            .collect()
    })
}

/// A node restarted over the chunk directories of the earlier layout (`chunks/c<n>` with the
/// rows and `lines.json`, beside the chunk campaign's state under `runs/`) starts those chunks
/// over: each recipient has one final outcome in its log, what it sends again is counted,
/// and the old directories are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_over_the_earlier_chunk_layout_starts_those_chunks_over() {
    // Slow replies: the node is stopped while its chunks are on the wire.
    let (redis, sink, _dir, path, mut config) = one_node(Duration::from_millis(300)).await;
    let cluster = config.cluster.as_mut().expect("[cluster]");
    cluster.chunk_size = 10;
    cluster.chunks_in_flight = 1;
    let publisher = start_publisher(path, cluster.clone());
    let first = start(&config);
    until("a chunk is being sent", || !chunk_dirs(&config).is_empty()).await;
    first.stop.send(true).expect("stop");
    let stopped = ended(first).await;
    assert!(!stopped.complete, "{stopped:?}");

    // What an earlier version left: the rows and their original lines in `chunks/c<n>`.
    let keys = volley_scheduler::cluster::Keys::new(ID);
    let store = tokio::task::block_in_place(|| volley_scheduler::cluster::Store::for_campaign(&redis.url(), &keys))
        .expect("store");
    let own = tokio::task::block_in_place(|| store.own_pending(&keys, "n2")).expect("own pending");
    let mut rewritten = 0;
    for (seq, run) in chunk_dirs(&config) {
        let entry = own.iter().find(|e| e.seq == seq).expect("a pending chunk of the node");
        let rows: serde_json::Value = serde_json::from_str(entry.rows.as_deref().expect("rows")).expect("rows JSON");
        let legacy = config
            .state_dir
            .join("cluster")
            .join(ID)
            .join("chunks")
            .join(format!("c{seq}"));
        std::fs::create_dir_all(&legacy).expect("legacy dir");
        // Its rows as that version wrote them (one JSON object per row, the CSV's columns).
        let jsonl: String = rows["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|v| format!("{}\n", serde_json::json!({"email": v[0], "name": v[1]})))
            .collect();
        std::fs::write(legacy.join("rows.jsonl"), jsonl).expect("rows.jsonl");
        assert!(run.is_dir());
        std::fs::write(legacy.join("lines.json"), rows["lines"].to_string()).expect("lines.json");
        rewritten += 1;
    }
    assert!(rewritten > 0);

    let report = ended(start(&config)).await;
    assert!(report.complete && report.resumed >= rewritten, "{report:?}");
    assert!(publisher.await.expect("join").expect("publish").complete);
    assert!(
        !config.state_dir.join("cluster").join(ID).join("chunks").exists(),
        "the earlier layout's directory is removed"
    );
    // One final outcome per original line (2..=61) across both runs' merges.
    let log = std::fs::read_to_string(node_log(&config.state_dir, ID)).expect("node log");
    let mut lines: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["outcome"] != "deferred")
        .map(|v| v["line"].as_u64().expect("line"))
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, (2..=61).collect::<Vec<u64>>());
    // Sent again only what the restarted chunks held, and counted.
    let counts = sink.address_counts();
    assert_eq!(counts.len(), 60, "every recipient reached the sink");
    let again: u64 = counts.values().map(|c| c - 1).sum();
    assert!(
        again <= report.resent_after_restart && report.resent_after_restart <= 10 * rewritten,
        "{again} sent again, {report:?}"
    );
    sink.shutdown().await;
}
