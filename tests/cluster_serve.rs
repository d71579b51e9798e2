//! Cluster campaigns through `volley serve`: two serve nodes (source IPs 127.0.0.2 and
//! 127.0.0.3, own state directories and API ports), one Redis, one sink. A campaign POSTed to
//! node A is worked by both nodes, paused through node B (node A's deliveries stop too),
//! resumed, and its status read from node B shows it complete with one outcome per recipient.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{RedisServer, Sink, SinkConfig, SinkHandle};

mod common;

use common::api::{start_serve, Api};
use common::{free_port, write, write_news_campaign};

const TOKEN: &str = "test-token-0123456789abcdef";
const ID: &str = "served";

/// Serve node `ip` (127.0.0.`ip`): its configuration in `dir/n<ip>`, campaigns from
/// `dir/campaigns`; returns the configuration and its API address.
fn node_config(dir: &Path, ip: u8, redis: &str, sink: &str) -> (PathBuf, String) {
    let node_dir = dir.join(format!("n{ip}"));
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        &node_dir,
        "volley.toml",
        &format!(
            "state_dir = \"state\"\nmax_in_flight = 20\n\
             [[source_ips]]\naddress = \"127.0.0.{ip}\"\nehlo_name = \"mta{ip}.volley.test\"\n\
             [routes]\n\"*\" = \"{sink}\"\n\
             [smtp]\nmax_connections_per_host = 4\nqueue_per_host = 4\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\ncampaigns_dir = \"{}\"\n\
             [cluster]\nredis = \"{redis}\"\nnode_id = \"n{ip}\"\nchunk_size = 100\n\
             max_outstanding = 8\nlease = \"3s\"\nchunks_in_flight = 2\n",
            dir.join("campaigns").display()
        ),
    );
    (config, listen)
}

fn logged(dir: &Path, ip: u8) -> usize {
    let log = dir.join(format!("n{ip}/state/cluster/{ID}/accounting.jsonl"));
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that the sink accepts nothing for two seconds.
fn still(sink: &SinkHandle, what: &str) -> u64 {
    let before = sink.stats().messages;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.stats().messages, before, "{what}: deliveries went on");
    before
}

/// Recipients of the campaign posted inline.
const INLINE: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_posted_to_one_serve_node_is_sent_by_both_and_controlled_from_the_other() {
    let n = 2000;
    let redis = RedisServer::start();
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(5),
        count_addresses: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let campaigns = dir.join("campaigns");
    std::fs::create_dir_all(&campaigns).expect("campaigns");
    write_news_campaign(&campaigns, ID, n);
    let inline: String = (0..INLINE).map(|i| format!("inline{i}@inline.test\n")).collect();
    write(&campaigns, "inline.csv", &format!("email\n{inline}"));
    let sink_addr = sink.local_addr().to_string();
    let (config_a, listen_a) = node_config(&dir, 2, &redis.url(), &sink_addr);
    let (config_b, listen_b) = node_config(&dir, 3, &redis.url(), &sink_addr);

    let sink = tokio::task::spawn_blocking(move || {
        let _a = start_serve(&config_a, &listen_a);
        let _b = start_serve(&config_b, &listen_b);
        let (a, b) = (Api::new(listen_a, TOKEN), Api::new(listen_b, TOKEN));

        // Published through node A: 202 with its status; again: 202 (it goes on); another
        // definition under the same id: 409; inline TOML: published too (its relative paths
        // resolve in the campaigns directory), a broken one refused naming the field.
        let (code, status) = a.ok("POST", "/cluster/campaigns", Some(r#"{"path": "c.toml"}"#));
        assert_eq!(code, 202, "{status}");
        assert_eq!(
            (status["campaign"].as_str(), status["state"].as_str()),
            (Some(ID), Some("running"))
        );
        let (code, again) = a.ok("POST", "/cluster/campaigns", Some(r#"{"path": "c.toml"}"#));
        assert_eq!(code, 202, "{again}");
        let other = std::fs::read_to_string(campaigns.join("c.toml"))
            .expect("campaign")
            .replace("Hi", "Other");
        write(&campaigns, "other.toml", &other);
        let (code, refused) = a.ok("POST", "/cluster/campaigns", Some(r#"{"path": "other.toml"}"#));
        assert_eq!(code, 409, "{refused}");
        let (code, refused) = a.ok("POST", "/cluster/campaigns", Some(r#"{"toml": "id = \"x\""}"#));
        assert_eq!((code, refused["field"].as_str()), (400, Some("toml")), "{refused}");
        let inline = serde_json::json!({
            "toml": "id = \"inline\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Inline\"\n\
                     text = \"Hello\"\nrecipients = \"inline.csv\"\n"
        });
        let (code, posted) = b.ok("POST", "/cluster/campaigns", Some(&inline.to_string()));
        assert_eq!((code, posted["campaign"].as_str()), (202, Some("inline")), "{posted}");
        assert_eq!(b.ok("GET", "/cluster/campaigns/nope", None).0, 404);

        // Both nodes work it.
        wait_until("both nodes finished a chunk", || {
            logged(&dir, 2) > 0 && logged(&dir, 3) > 0
        });

        // Paused through node B: node A stops too.
        let (code, paused) = b.ok("POST", &format!("/cluster/campaigns/{ID}/pause"), None);
        assert_eq!((code, paused["state"].as_str()), (200, Some("paused")), "{paused}");
        // Both nodes see it within a second; what is on the wire or queued at a connection
        // lands (longer on a loaded machine); then nothing moves.
        std::thread::sleep(Duration::from_secs(1));
        wait_until("deliveries settle after the pause", || {
            let before = sink.stats().messages;
            std::thread::sleep(Duration::from_millis(500));
            sink.stats().messages == before
        });
        let at_pause = still(&sink, "paused through node B");
        assert!(at_pause < n as u64, "finished before the pause: {at_pause}");
        let (code, list) = a.ok("GET", "/cluster/campaigns", None);
        assert_eq!(code, 200, "{list}");
        assert_eq!(list[0]["campaign"].as_str(), Some(ID), "{list}");
        assert_eq!(list[0]["state"].as_str(), Some("paused"), "{list}");

        let (code, resumed) = a.ok("POST", &format!("/cluster/campaigns/{ID}/resume"), None);
        assert_eq!((code, resumed["state"].as_str()), (200, Some("running")), "{resumed}");
        let mut status = Value::Null;
        wait_until("the campaign is complete (seen from node B)", || {
            let (code, s) = b.ok("GET", &format!("/cluster/campaigns/{ID}"), None);
            assert_eq!(code, 200, "{s}");
            status = s;
            status["complete"] == true
        });
        assert_eq!(status["counts"]["delivered"], n as u64, "{status}");
        wait_until("the inline campaign is complete", || {
            let (_, s) = a.ok("GET", "/cluster/campaigns/inline", None);
            s["complete"] == true && s["counts"]["delivered"] == INLINE as u64
        });
        assert_eq!(logged(&dir, 2) + logged(&dir, 3), n, "one final outcome per recipient");
        // The chunks went out on each serve node's own send service (their state beside its
        // other campaigns', not a service of their own), and finished ones leave the metrics.
        for ip in [2, 3] {
            assert!(!dir.join(format!("n{ip}/state/cluster/{ID}/runs")).exists());
        }
        let (code, metrics) = a.ok("GET", "/metrics", None);
        let metrics = metrics.as_str().unwrap_or_default().to_owned();
        assert!(code == 200 && metrics.contains("volley_"), "{code}: {metrics}");
        assert!(
            !metrics.contains(&format!("{ID}.c")),
            "finished chunk campaigns linger in the metrics: {}",
            metrics
                .lines()
                .filter(|l| l.contains(&format!("{ID}.c")))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
        // Nothing left to control; the nodes forget it.
        let (code, late) = b.ok("POST", &format!("/cluster/campaigns/{ID}/cancel"), None);
        assert_eq!(code, 409, "{late}");
        wait_until("the registry forgets the campaign", || {
            a.ok("GET", "/cluster/campaigns", None).1 == Value::Array(Vec::new())
        });
        sink
    })
    .await
    .expect("join");
    let counts = sink.address_counts();
    assert_eq!(counts.len(), n + INLINE, "every recipient reached the sink");
    assert!(counts.values().all(|c| *c == 1), "a recipient delivered twice");
    sink.shutdown().await;
}
