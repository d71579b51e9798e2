//! Cluster mode against a real `redis-server`: the `[cluster]` table is validated, the
//! publisher holds at most `max_outstanding` chunks and resumes, a recipient's outcome is
//! counted once however many nodes report it, and a lease is renewed only by its owner.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use volley_bench::RedisServer;
use volley_scheduler::cluster::publish::publish;
use volley_scheduler::cluster::{ClusterConfig, ClusterError, Keys, Store};
use volley_scheduler::config::SendConfig;

fn cluster(redis: &RedisServer) -> ClusterConfig {
    ClusterConfig {
        redis: redis.url(),
        node_id: "n1".into(),
        chunk_size: 3,
        max_outstanding: 2,
        lease: Duration::from_secs(60),
        chunks_in_flight: 1,
        parked_chunks: 4,
        keep: Duration::from_secs(3600),
        share_limits: true,
        shared_dir: None,
    }
}

/// A campaign of 10 distinct recipients, plus one bad row and one repeated address.
fn campaign(dir: &std::path::Path, subject: &str) -> std::path::PathBuf {
    let mut csv = String::from("email,name\n");
    for i in 0..10 {
        csv.push_str(&format!("u{i}@d.test,N{i}\n"));
        if i == 4 {
            csv.push_str("not-an-address,X\nu1@d.test,again\n");
        }
    }
    std::fs::write(dir.join("r.csv"), csv).expect("csv");
    std::fs::write(dir.join("body.txt"), "Hello {{name}}").expect("body");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!(
            "id = \"pub\"\nfrom = \"N <n@sender.test>\"\nsubject = \"{subject}\"\n\
             text_file = \"body.txt\"\nrecipients = \"r.csv\"\n"
        ),
    )
    .expect("campaign");
    path
}

#[test]
fn cluster_settings_are_validated_with_field_and_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |cluster: &str| {
        let path = dir.path().join("v.toml");
        std::fs::write(
            &path,
            format!(
                "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"m.test\"\n\
                 [cluster]\nredis = \"redis://127.0.0.1:6379\"\nnode_id = \"n1\"\n{cluster}"
            ),
        )
        .expect("config");
        SendConfig::load(&path)
    };
    let ok = write("lease = \"90s\"\n").expect("valid");
    let c = ok.cluster.expect("[cluster]");
    assert_eq!(
        (c.chunk_size, c.max_outstanding, c.lease),
        (1000, 64, Duration::from_secs(90))
    );
    for (extra, field, value) in [
        ("chunk_size = 0\n", "cluster.chunk_size", "0"),
        ("max_outstanding = 0\n", "cluster.max_outstanding", "0"),
        ("lease = \"500ms\"\n", "cluster.lease", "500ms"),
        ("shared_dir = \"lists\"\n", "cluster.shared_dir", "absolute"),
        (
            "shared_dir = \"/nonexistent/lists\"\n",
            "cluster.shared_dir",
            "/nonexistent/lists",
        ),
    ] {
        let e = write(extra).expect_err(extra).to_string();
        assert!(e.contains(field) && e.contains(value), "{extra}: {e}");
    }
    let e = write("chunk = 5\n").expect_err("unknown field").to_string();
    assert!(e.contains("chunk"), "{e}");
}

type Publisher = std::thread::JoinHandle<Result<volley_scheduler::cluster::publish::Published, ClusterError>>;

/// The test campaign under `dir`, a publisher started on it, and a store once the publisher
/// holds two outstanding chunks (its `max_outstanding`).
fn publishing(
    redis: &RedisServer,
    dir: &std::path::Path,
) -> (std::path::PathBuf, ClusterConfig, Keys, Publisher, Store) {
    let path = campaign(dir, "Hi {{name}}");
    let cfg = cluster(redis);
    let keys = Keys::new("pub");
    let publisher = {
        let (path, cfg, state) = (path.clone(), cfg.clone(), dir.to_path_buf());
        std::thread::spawn(move || publish(&path, &[], &state, &cfg, &AtomicBool::new(false)))
    };
    let store = Store::for_campaign(&redis.url(), &keys).expect("store");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.outstanding(&keys).unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "nothing published");
        std::thread::sleep(Duration::from_millis(20));
    }
    (path, cfg, keys, publisher, store)
}

#[test]
fn the_publisher_waits_at_max_outstanding_and_resumes_after_its_last_line() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, cfg, keys, publisher, store) = publishing(&redis, dir.path());
    // The publisher stops at two outstanding chunks…
    let deadline = Instant::now() + Duration::from_secs(10);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(store.status("pub", &keys).expect("status").progress["published"], 2);
    // …and goes on as chunks are acknowledged.
    let mut lines = Vec::new();
    while !store.complete(&keys).expect("complete") {
        assert!(Instant::now() < deadline, "publisher stuck");
        let Some(entry) = store.read_new(&keys, "n1").expect("read") else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let rows: serde_json::Value = serde_json::from_str(entry.rows.as_deref().expect("rows")).expect("json");
        let chunk: Vec<u64> = rows["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .filter_map(|l| l.as_u64())
            .collect();
        let finals: Vec<(u64, String)> = chunk.iter().map(|l| (*l, "delivered".to_owned())).collect();
        assert!(store.finish(&keys, "n1", &entry.id, &finals, 0).expect("finish"));
        lines.extend(chunk);
    }
    let published = publisher.join().expect("join").expect("publish");
    assert_eq!((published.chunks, published.rows), (4, 10));
    assert_eq!((published.rejected, published.duplicates), (1, 1));
    // The refused row is in the publisher's rejects file, named by file, line and value.
    let rejects = std::fs::read_to_string(&published.rejects_file).expect("rejects file");
    assert_eq!(published.rejects_file, dir.path().join("cluster/pub/rejects.jsonl"));
    let reject: serde_json::Value = serde_json::from_str(rejects.trim()).expect("one JSON line");
    assert_eq!(
        (&reject["line"], &reject["field"], &reject["value"]),
        (
            &serde_json::json!(7),
            &serde_json::json!("email"),
            &serde_json::json!("not-an-address")
        ),
        "{rejects}"
    );
    assert!(
        reject["file"].as_str().is_some_and(|f| f.ends_with("r.csv")),
        "{rejects}"
    );
    // Original line numbers, the bad row and the repeat left out.
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 9, 10, 11, 12, 13]);
    let status = store.status("pub", &keys).expect("status");
    assert!(status.complete);
    assert_eq!(status.counts["delivered"], 10);

    // The same definition again: nothing left to publish. A different one: refused.
    let again = publish(&path, &[], dir.path(), &cfg, &AtomicBool::new(false)).expect("again");
    assert_eq!((again.chunks, again.resumed_after), (0, 13));
    // A rerun reads the whole file again: the rejects file holds the row once.
    assert_eq!(
        std::fs::read_to_string(&again.rejects_file)
            .expect("rejects")
            .lines()
            .count(),
        1
    );
    campaign(dir.path(), "Changed {{name}}");
    let e = publish(&path, &[], dir.path(), &cfg, &AtomicBool::new(false)).expect_err("changed");
    assert!(matches!(e, ClusterError::Republished(ref id) if id == "pub"), "{e}");
}

#[test]
fn an_outcome_is_counted_once_and_only_the_owner_acknowledges_or_renews() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = campaign(dir.path(), "Hi");
    let mut cfg = cluster(&redis);
    cfg.chunk_size = 100;
    publish(&path, &[], dir.path(), &cfg, &AtomicBool::new(false)).expect("publish");
    let keys = Keys::new("pub");
    let store = Store::for_campaign(&redis.url(), &keys).expect("store");
    let entry = store.read_new(&keys, "n1").expect("read").expect("a chunk");
    // n1 owns the chunk: n2 cannot renew it, n1 can.
    assert_eq!(
        store
            .renew(&keys, "n2", std::slice::from_ref(&entry.id))
            .expect("renew"),
        vec![entry.id.clone()]
    );
    assert!(store
        .renew(&keys, "n1", std::slice::from_ref(&entry.id))
        .expect("renew")
        .is_empty());
    // n2 reports line 2 (it sent it too): counted, not acknowledged.
    let line2 = vec![(2, "delivered".to_owned())];
    assert!(!store.finish(&keys, "n2", &entry.id, &line2, 1).expect("finish n2"));
    assert_eq!(store.done(&keys, &[2, 3]).expect("done"), vec![true, false]);
    // n1 finishes the chunk, line 2 included: counted once, acknowledged.
    let all: Vec<(u64, String)> = [2, 3, 4, 5, 6, 9, 10, 11, 12, 13]
        .iter()
        .map(|l| (*l, "delivered".to_owned()))
        .collect();
    assert!(store.finish(&keys, "n1", &entry.id, &all, 0).expect("finish n1"));
    let status = store.status("pub", &keys).expect("status");
    assert_eq!(status.counts["delivered"], 10);
    assert_eq!(status.counts["duplicate_finals"], 1);
    assert_eq!(status.counts["resent_after_restart"], 1);
    assert!(status.complete, "{status:?}");
    // Done bits read in one range, across byte edges, out of order, past the bitmap's end.
    let asked = [13, 1, 9, 8, 7, 2, 14, 100_000];
    assert_eq!(
        store.done(&keys, &asked).expect("done"),
        vec![true, false, true, false, false, true, false, false]
    );
    assert_eq!(store.done(&keys, &[]).expect("none asked"), Vec::<bool>::new());
}

/// The done bits go to Redis as one mask per outcome over the bytes the lines cover: a line
/// another node reported first counts once, and lines too far apart for one call (here
/// 600,000 lines) take two, the second acknowledging the chunk.
#[test]
fn a_finish_counts_each_line_once_also_when_its_lines_take_several_calls() {
    let redis = RedisServer::start();
    let (keys, store) = chunks_of_one_row(&redis, 1);
    let entry = store.read_new(&keys, "n1").expect("read").expect("a chunk");
    assert!(!store
        .finish(&keys, "n2", &entry.id, &[(7, "bounced".to_owned())], 0)
        .expect("n2 reports one line first"));
    let mut finals: Vec<(u64, String)> = (1..=1200)
        .map(|l| (l, if l % 3 == 0 { "bounced" } else { "delivered" }.to_owned()))
        .collect();
    finals.push((600_000, "failed".to_owned()));
    assert!(store.finish(&keys, "n1", &entry.id, &finals, 2).expect("finish"));
    let status = store.status("pub", &keys).expect("status");
    // 1..=1200: 400 multiples of 3 bounced, line 7 counted when n2 reported it (bounced).
    assert_eq!(status.counts["bounced"], 401, "{status:?}");
    assert_eq!(status.counts["delivered"], 799, "{status:?}");
    assert_eq!(status.counts["failed"], 1, "{status:?}");
    assert_eq!(status.counts["duplicate_finals"], 1, "line 7: {status:?}");
    assert_eq!(
        status.counts["resent_after_restart"], 2,
        "once, not per call: {status:?}"
    );
    assert!(status.complete, "acknowledged by the last call: {status:?}");
    let asked: Vec<u64> = (0..=1201).chain([599_999, 600_000, 600_001]).collect();
    let done = store.done(&keys, &asked).expect("done");
    assert!(!done[0] && !done[1201], "only the lines reported");
    assert!(done[1..=1200].iter().all(|d| *d));
    assert_eq!(&done[1202..], &[false, true, false]);
}

/// A campaign of `n` recipients published as chunks of one row each, all at once.
fn chunks_of_one_row(redis: &RedisServer, n: usize) -> (Keys, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = campaign(dir.path(), "Hi");
    let rows: String = (0..n).map(|i| format!("u{i}@d.test,N{i}\n")).collect();
    std::fs::write(dir.path().join("r.csv"), format!("email,name\n{rows}")).expect("csv");
    let mut cfg = cluster(redis);
    cfg.chunk_size = 1;
    cfg.max_outstanding = 100;
    publish(&path, &[], dir.path(), &cfg, &AtomicBool::new(false)).expect("publish");
    let keys = Keys::new("pub");
    let store = Store::for_campaign(&redis.url(), &keys).expect("store");
    (keys, store)
}

#[test]
fn an_idle_chunk_is_claimed_behind_many_that_are_not() {
    let redis = RedisServer::start();
    let (keys, store) = chunks_of_one_row(&redis, 15);
    // The first 14 chunks go to a live node, the 15th to one that dies.
    let live: Vec<String> = (0..14)
        .map(|_| store.read_new(&keys, "live").expect("read").expect("chunk").id)
        .collect();
    let dead = store.read_new(&keys, "dead").expect("read").expect("chunk");
    std::thread::sleep(Duration::from_millis(300));
    assert!(store.renew(&keys, "live", &live).expect("renew").is_empty());
    // One XAUTOCLAIM with COUNT 1 scans 10 pending entries; the idle one is the 15th.
    let claimed = store
        .claim_idle(&keys, "other", Duration::from_millis(200), &[])
        .expect("claim")
        .expect("the dead node's chunk");
    assert_eq!(claimed.id, dead.id);
    assert_eq!(claimed.seq, 15);
}

/// Regression (CI, a node under a loaded disk): a node stalled for longer than the lease
/// between renewing its chunks and looking for idle ones claimed its own running chunk, started
/// it again, and failed ("campaign id `big.c20` is already running").
#[test]
fn a_node_passes_over_its_own_running_chunks_when_their_lease_lapsed() {
    let redis = RedisServer::start();
    let (keys, store) = chunks_of_one_row(&redis, 3);
    // Node "a" sends the first two chunks; a third is left by a node that died.
    let first = store.read_new(&keys, "a").expect("read").expect("chunk");
    let second = store.read_new(&keys, "a").expect("read").expect("chunk");
    let dead = store.read_new(&keys, "dead").expect("read").expect("chunk");
    std::thread::sleep(Duration::from_millis(300));
    let lease = Duration::from_millis(200);
    let running = [first.id.as_str(), second.id.as_str()];
    // Every one is idle past the lease; "a" passes over its own and takes the dead node's.
    let claimed = store
        .claim_idle(&keys, "a", lease, &running)
        .expect("claim")
        .expect("the dead node's chunk");
    assert_eq!(claimed.id, dead.id);
    // Nothing else is idle: its own stay its own, and are not handed back to be started.
    assert!(store.claim_idle(&keys, "a", lease, &running).expect("claim").is_none());
    assert!(store
        .renew(&keys, "a", &[first.id.clone(), second.id.clone()])
        .expect("renew")
        .is_empty());
}

#[test]
fn a_parked_chunk_lets_the_publisher_go_on_and_a_complete_campaign_s_keys_expire() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, cfg, keys, publisher, store) = publishing(&redis, dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut read = Vec::new();
    while read.len() < 2 {
        assert!(Instant::now() < deadline, "nothing published");
        match store.read_new(&keys, "n1").expect("read") {
            Some(e) => read.push(e),
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    // Two chunks outstanding: the publisher waits…
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(store.status("pub", &keys).expect("status").progress["published"], 2);
    // …until one is parked (it waits only for retries): then it publishes the next.
    assert!(store.park(&keys, "n1", &read[0].id, &[], 0).expect("park"));
    assert!(store
        .park(&keys, "n1", &read[0].id, &[], 0)
        .expect("parking twice is parking once"));
    assert!(!store.park(&keys, "n2", &read[0].id, &[], 0).expect("not n2's to park"));
    while store.status("pub", &keys).expect("status").progress["published"] < 3 {
        assert!(Instant::now() < deadline, "a parked chunk still held the publisher");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = store.status("pub", &keys).expect("status");
    assert_eq!((status.progress["published"], status.progress["parked"]), (3, 1));
    // Finishing a parked chunk unparks it.
    let finals = [(2, "delivered".to_owned())];
    assert!(store.finish(&keys, "n1", &read[0].id, &finals, 0).expect("finish"));
    assert_eq!(store.status("pub", &keys).expect("status").progress["parked"], 0);
    // Finish everything; the keys then expire after `keep`.
    while !store.complete(&keys).expect("complete") {
        assert!(Instant::now() < deadline, "publisher stuck");
        if let Some(e) = store.read_new(&keys, "n1").expect("read") {
            read.push(e);
        }
        for e in read.drain(1..) {
            assert!(store.finish(&keys, "n1", &e.id, &[], 0).expect("finish"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    publisher.join().expect("join").expect("publish");
    let ttl = |key: &str| -> i64 {
        let out = std::process::Command::new("redis-cli")
            .args(["-u", &redis.url(), "PTTL", key])
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().parse().expect("PTTL")
    };
    assert_eq!(ttl(&keys.meta), -1, "no expiry before completion is seen");
    store.expire(&keys, cfg.keep).expect("expire");
    for key in [&keys.meta, &keys.chunks, &keys.done, &keys.counts] {
        let left = ttl(key);
        assert!(left > 3_500_000 && left <= 3_600_000, "{key}: PTTL {left}");
    }
}
