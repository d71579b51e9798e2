//! A recipient file in the shared directory (`[cluster] shared_dir`), against a real
//! `redis-server` and two nodes (127.0.0.2 and 127.0.0.3) delivering to the in-process sink:
//! chunks carry byte ranges, not rows; each node reads the rows from its own mount of the
//! directory; a file changed after publishing, or a node without the directory, stops the node
//! with an error naming the file, the bytes and the lines.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use volley_bench::{RedisServer, Sink, SinkConfig, SinkHandle};
use volley_scheduler::cluster::publish::publish;
use volley_scheduler::cluster::work::{node_log, work};
use volley_scheduler::cluster::{ClusterConfig, ClusterError, Keys};
use volley_scheduler::config::SendConfig;

use crate::common::{route_all_to, source_ips};

const ID: &str = "shr";

/// Recipient rows written (besides a bad row and a repeated address).
const N: usize = 600;

fn cluster(redis: &RedisServer, node: u8, shared_dir: Option<PathBuf>) -> ClusterConfig {
    ClusterConfig {
        redis: redis.url(),
        node_id: format!("n{node}"),
        chunk_size: 100,
        max_outstanding: 64,
        lease: Duration::from_secs(3),
        chunks_in_flight: 2,
        parked_chunks: 256,
        keep: Duration::from_secs(3600),
        share_limits: true,
        shared_dir,
    }
}

/// `<dir>/shared/lists/r.csv`: `N` recipients (every 7th with a quoted name over two lines,
/// CRLF line ends from row 300), a bad row and a repeated address; and the campaign file.
/// Returns the campaign and the address of each line that is sent.
fn campaign(dir: &Path) -> (PathBuf, HashMap<u64, String>) {
    let lists = dir.join("shared").join("lists");
    std::fs::create_dir_all(&lists).expect("lists");
    let mut csv = String::from("email,name\n");
    let (mut line, mut sent) = (2u64, HashMap::new());
    for i in 0..N {
        let end = if i >= 300 { "\r\n" } else { "\n" };
        let address = format!("u{i}@d{}.test", i % 10);
        if i % 7 == 0 {
            csv.push_str(&format!("{address},\"N{i}{end}second line\"{end}"));
            sent.insert(line, address);
            line += 2;
        } else {
            csv.push_str(&format!("{address},N{i}{end}"));
            sent.insert(line, address);
            line += 1;
        }
        if i == 150 {
            csv.push_str("not-an-address,X\nu1@d1.test,again\n");
            line += 2;
        }
    }
    std::fs::write(lists.join("r.csv"), csv).expect("csv");
    let path = dir.join("c.toml");
    let recipients = lists.join("r.csv");
    std::fs::write(
        &path,
        format!(
            "id = \"{ID}\"\nfrom = \"N <n@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello {{{{name}}}}\"\n\
             recipients = \"{}\"\n",
            recipients.display()
        ),
    )
    .expect("campaign");
    (path, sent)
}

fn node(dir: &Path, node: u8, redis: &RedisServer, sink: &SinkHandle, shared_dir: Option<PathBuf>) -> SendConfig {
    SendConfig {
        state_dir: dir.join(format!("n{node}")),
        source_ips: source_ips(node, node),
        routes: route_all_to(sink.local_addr()),
        cluster: Some(cluster(redis, node, shared_dir)),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

async fn run_node(config: &SendConfig) -> Result<volley_scheduler::cluster::work::NodeReport, ClusterError> {
    // The nodes return when the campaign is complete (or on an error).
    tokio::time::timeout(Duration::from_secs(60), work(ID, config, None, std::future::pending()))
        .await
        .expect("the node returns")
}

fn publish_all(path: &Path, cluster: &ClusterConfig) -> volley_scheduler::cluster::publish::Published {
    let state = path.with_file_name("publisher");
    publish(path, &[], &state, cluster, &AtomicBool::new(false)).expect("published")
}

/// The `rows` field of every chunk in the stream.
fn chunk_rows(redis: &RedisServer) -> Vec<serde_json::Value> {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut con = client.get_connection().expect("connection");
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(Keys::new(ID).chunks)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    entries
        .iter()
        .map(|(_, fields)| {
            let at = fields.iter().position(|f| f == "rows").expect("rows field");
            serde_json::from_str(&fields[at + 1]).expect("rows JSON")
        })
        .collect()
}

/// Each node log's final outcomes: line -> count over both logs.
fn finals(configs: &[&SendConfig]) -> HashMap<u64, u32> {
    let mut out = HashMap::new();
    for c in configs {
        let text = std::fs::read_to_string(node_log(&c.state_dir, ID)).unwrap_or_default();
        for record in text.lines() {
            let v: serde_json::Value = serde_json::from_str(record).expect("record");
            if v["outcome"] != "deferred" {
                *out.entry(v["line"].as_u64().expect("line")).or_default() += 1;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_the_shared_dir_is_published_as_byte_ranges_and_each_node_reads_it_from_its_own_mount() {
    let redis = RedisServer::start();
    let sink = Sink::start(SinkConfig {
        count_addresses: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, sent) = campaign(dir.path());
    let shared = dir.path().join("shared");
    // Node 3 mounts the directory elsewhere.
    let mount = dir.path().join("mnt-n3");
    std::os::unix::fs::symlink(&shared, &mount).expect("symlink");
    let published = tokio::task::block_in_place(|| publish_all(&path, &cluster(&redis, 2, Some(shared.clone()))));
    assert_eq!(
        (
            published.rows,
            published.rejected,
            published.duplicates,
            published.chunks
        ),
        (N as u64, 1, 1, 6)
    );
    let rows = tokio::task::block_in_place(|| chunk_rows(&redis));
    assert_eq!(rows.len(), 6);
    let mut lines = BTreeSet::new();
    for r in &rows {
        assert!(r.get("values").is_none(), "a chunk carries no values: {r}");
        assert_eq!(r["shared"]["file"], "lists/r.csv");
        let n = r["lines"].as_array().expect("lines").len();
        assert_eq!(r["shared"]["offsets"].as_array().expect("offsets").len(), n);
        // Lines and offsets (~11 bytes a row here) instead of the values.
        let size = r.to_string().len();
        assert!(size < 20 * n + 200, "{size} bytes for {n} rows");
        lines.extend(
            r["lines"]
                .as_array()
                .expect("lines")
                .iter()
                .map(|l| l.as_u64().expect("line")),
        );
    }
    assert_eq!(lines, sent.keys().copied().collect::<BTreeSet<_>>());

    let a = node(dir.path(), 2, &redis, &sink, Some(shared.clone()));
    let b = node(dir.path(), 3, &redis, &sink, Some(mount));
    let (ra, rb) = tokio::join!(run_node(&a), run_node(&b));
    let (ra, rb) = (ra.expect("node 2"), rb.expect("node 3"));
    assert_eq!(ra.chunks + rb.chunks, 6, "{ra:?} {rb:?}");
    assert!(ra.chunks > 0 && rb.chunks > 0, "both nodes read chunks: {ra:?} {rb:?}");
    // Every line once, delivered to the address on that line.
    let finals = finals(&[&a, &b]);
    assert_eq!(finals.len(), N);
    assert!(finals.values().all(|n| *n == 1), "a line twice");
    let counts = sink.address_counts();
    assert_eq!(counts.len(), N, "addresses at the sink");
    for (line, address) in &sent {
        assert_eq!(counts.get(address), Some(&1), "line {line}: {address}");
    }
    for c in [&a, &b] {
        let text = std::fs::read_to_string(node_log(&c.state_dir, ID)).expect("log");
        for record in text.lines() {
            let v: serde_json::Value = serde_json::from_str(record).expect("record");
            let line = v["line"].as_u64().expect("line");
            assert_eq!(
                v["recipient"].as_str(),
                sent.get(&line).map(String::as_str),
                "line {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_shared_file_or_a_node_without_the_directory_stops_with_the_file_bytes_and_lines() {
    let redis = RedisServer::start();
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = campaign(dir.path());
    let shared = dir.path().join("shared");
    tokio::task::block_in_place(|| publish_all(&path, &cluster(&redis, 2, Some(shared.clone()))));

    // The same length, one address changed in the first chunk: another recipient would go
    // under its line.
    let file = shared.join("lists").join("r.csv");
    let text = std::fs::read_to_string(&file).expect("csv");
    std::fs::write(&file, text.replacen("u3@d3.test", "x3@d3.test", 1)).expect("csv");
    let changed = node(dir.path(), 3, &redis, &sink, Some(shared));
    let e = run_node(&changed).await.expect_err("a changed file").to_string();
    assert!(
        e.contains("lists/r.csv") && e.contains("bytes ") && e.contains("lines 2-") && e.contains("differ"),
        "{e}"
    );
    assert_eq!(sink.stats().messages, 0, "nothing was sent from a changed file");

    let without = node(dir.path(), 2, &redis, &sink, None);
    let e = run_node(&without).await.expect_err("no shared_dir").to_string();
    assert!(
        e.contains("lists/r.csv") && e.contains("lines ") && e.contains("no [cluster] shared_dir"),
        "{e}"
    );
    assert_eq!(sink.stats().messages, 0, "nothing was sent without the directory");
}
