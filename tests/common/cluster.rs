//! Running a cluster of `volley` processes for the tests: node configurations (node `k` in
//! `n<k>/` of a test directory), the publisher and nodes as child processes, what they wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{Sink, SinkConfig};

use super::volley;

pub const CAMPAIGN: &str = "big";

/// What differs between the tests' node configurations.
pub struct Tuning {
    pub retry: &'static str,
    pub chunk_size: usize,
    pub chunks_in_flight: usize,
    /// Every node sends from 127.0.0.2 (else node `k` from 127.0.0.`k+1`).
    pub one_ip: bool,
    pub max_connections_per_host: usize,
    /// `[cluster] share_limits`.
    pub share_limits: bool,
}

pub const TUNING: Tuning = Tuning {
    retry: "100ms",
    chunk_size: 500,
    chunks_in_flight: 2,
    one_ip: false,
    max_connections_per_host: 4,
    share_limits: true,
};

pub fn node_config(dir: &Path, node: usize, redis: &str, sink: &str, t: &Tuning) -> PathBuf {
    let node_dir = dir.join(format!("n{node}"));
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let path = node_dir.join("v.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\nmax_in_flight = 300\nmax_in_flight_per_site = 100\n\
             [[source_ips]]\naddress = \"127.0.0.{ip}\"\nehlo_name = \"mta{ip}.volley.test\"\n\
             [routes]\n\"*\" = \"{sink}\"\n[retry]\nschedule = [\"{retry}\"]\nmax_age = \"2m\"\n\
             [smtp]\nmax_connections_per_host = {max_connections}\n\
             [cluster]\nredis = \"{redis}\"\nnode_id = \"n{node}\"\nchunk_size = {chunk_size}\n\
             max_outstanding = 16\nlease = \"3s\"\nchunks_in_flight = {in_flight}\n\
             share_limits = {share}\n",
            ip = if t.one_ip { 2 } else { node + 1 },
            max_connections = t.max_connections_per_host,
            retry = t.retry,
            chunk_size = t.chunk_size,
            in_flight = t.chunks_in_flight,
            share = t.share_limits,
        ),
    )
    .expect("config");
    path
}

pub fn spawn_node(dir: &Path, node: usize, run: &str) -> Child {
    volley()
        .current_dir(dir.join(format!("n{node}")))
        .args(["cluster", "work", CAMPAIGN, "--config", "v.toml", "--summary-json"])
        .arg(format!("report-{run}.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn volley cluster work")
}

/// `volley cluster publish` of the test campaign, from node 1.
pub fn spawn_publisher(dir: &Path) -> Child {
    volley()
        .current_dir(dir)
        .args(["cluster", "publish", "c.toml", "--config", "n1/v.toml"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn publisher")
}

pub fn node_log(dir: &Path, node: usize) -> PathBuf {
    dir.join(format!("n{node}/state/cluster/{CAMPAIGN}/accounting.jsonl"))
}

pub fn log_lines(dir: &Path, node: usize) -> usize {
    std::fs::read_to_string(node_log(dir, node)).map_or(0, |t| t.lines().count())
}

pub fn report(dir: &Path, node: usize, run: &str) -> Value {
    let path = dir.join(format!("n{node}/report-{run}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("report JSON")
}

pub fn wait_exit(child: &mut Child, what: &str, deadline: Instant) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for each (index, node) to exit successfully.
pub fn wait_nodes<'a>(nodes: impl Iterator<Item = (usize, &'a mut Child)>, deadline: Instant) {
    for (i, node) in nodes {
        let status = wait_exit(node, &format!("node {}", i + 1), deadline);
        assert!(status.success(), "node {} failed: {status}", i + 1);
    }
}

/// `volley cluster status` as node `node` sees it.
pub fn cluster_status(dir: &Path, node: usize) -> Value {
    let status = volley()
        .current_dir(dir)
        .args(["cluster", "status", CAMPAIGN, "--config"])
        .arg(format!("n{node}/v.toml"))
        .output()
        .expect("status");
    assert!(status.status.success(), "status: {}", super::text(&status));
    serde_json::from_slice(&status.stdout).expect("status JSON")
}

/// A counting sink (`sink`), and a directory with the campaign of `n` recipients and the
/// configurations of nodes 1-3 (`redis(node)`: their Redis URL).
pub async fn setup(
    n: usize,
    sink: SinkConfig,
    tuning: &Tuning,
    redis: impl Fn(usize) -> String,
) -> (volley_bench::SinkHandle, tempfile::TempDir) {
    let sink = Sink::start(SinkConfig {
        count_addresses: true,
        ..sink
    })
    .await
    .expect("sink");
    let tmp = tempfile::tempdir().expect("tempdir");
    write_setup(tmp.path(), n, &sink.local_addr().to_string(), tuning, redis);
    (sink, tmp)
}

/// The campaign of `n` recipients and the configurations of nodes 1-3 in `dir`, sending to
/// `receiver`.
pub fn write_setup(dir: &Path, n: usize, receiver: &str, tuning: &Tuning, redis: impl Fn(usize) -> String) {
    super::write_news_campaign(dir, CAMPAIGN, n);
    for node in 1..=3 {
        node_config(dir, node, &redis(node), receiver, tuning);
    }
}
