//! The suppression store when Redis goes away: the buffered writer keeps accepting updates and
//! writes them all once Redis is back (or spills them to disk and replays them next start), the
//! fail-closed checker pauses until Redis answers, and fail-open lets mail through unchecked.
//! Every wait is bounded so that a regression fails instead of hanging.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_bench::RedisServer;
use volley_scheduler::suppression::{
    open_store, Checker, Entry, OnUnavailable, SuppressionConfig, SuppressionStore, SuppressionWriter, Update, GLOBAL,
    SPILL_FILE,
};

fn config(server: &RedisServer) -> SuppressionConfig {
    SuppressionConfig {
        redis: Some(server.url()),
        max_buffered_updates: 150,
        ..SuppressionConfig::default()
    }
}

fn store(config: &SuppressionConfig) -> Arc<dyn SuppressionStore> {
    open_store(config, Path::new("/nonexistent")).unwrap()
}

fn bounce(scope: &str, i: usize) -> Update {
    Update::suppress(
        scope,
        format!("user{i}@x.test"),
        Entry::new("550 5.1.1 unknown", "bounce:c1", 1_700_000_000),
    )
}

/// Polls `cond` every 20 ms for at most `limit`.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn writer_buffers_through_an_outage_and_loses_nothing() {
    let mut server = RedisServer::start();
    let config = config(&server);
    let store = store(&config);
    let dir = tempfile::tempdir().unwrap();
    let writer = SuppressionWriter::start(Arc::clone(&store), dir.path(), &config).unwrap();

    for i in 0..100 {
        writer.push(bounce(GLOBAL, i));
    }
    wait_until(Duration::from_secs(10), "the first 100 updates", || {
        writer.backlog() == 0
    });
    server.save();
    server.stop();

    let started = Instant::now();
    for i in 0..200 {
        writer.push(bounce("newsletter", i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "push blocked during the outage"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(writer.backlog(), 200);
    assert!(writer.over_bound(), "backlog 200 > max_buffered_updates 150");
    assert_eq!(writer.written(), 100);

    server.restart();
    wait_until(Duration::from_secs(20), "the buffered updates after restart", || {
        writer.backlog() == 0
    });
    assert!(!writer.over_bound());
    assert_eq!(store.len(GLOBAL).unwrap(), 100);
    assert_eq!(store.len("newsletter").unwrap(), 200);
    let report = writer.close(Duration::from_secs(5));
    assert_eq!((report.written, report.spilled, report.unsaved), (300, 0, 0));
}

#[test]
fn close_while_down_spills_and_next_start_replays() {
    let mut server = RedisServer::start();
    let config = config(&server);
    let store = store(&config);
    let dir = tempfile::tempdir().unwrap();
    server.stop();

    let writer = SuppressionWriter::start(Arc::clone(&store), dir.path(), &config).unwrap();
    for i in 0..50 {
        writer.push(bounce(GLOBAL, i));
    }
    writer.push(Update::remove(GLOBAL, "user7@x.test"));
    let started = Instant::now();
    let report = writer.close(Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5), "close overran its deadline");
    assert_eq!((report.written, report.spilled, report.unsaved), (0, 51, 0));
    let spill = dir.path().join(SPILL_FILE);
    let text = std::fs::read_to_string(&spill).unwrap();
    assert_eq!(text.lines().count(), 51);
    assert!(text.lines().last().unwrap().contains(r#""op":"remove""#));

    server.restart();
    let writer = SuppressionWriter::start(Arc::clone(&store), dir.path(), &config).unwrap();
    assert_eq!(writer.backlog(), 51);
    writer.push(bounce(GLOBAL, 1000));
    wait_until(Duration::from_secs(10), "the replay", || writer.backlog() == 0);
    // Replayed in order: user7 was added, then removed.
    assert_eq!(store.len(GLOBAL).unwrap(), 50);
    assert_eq!(store.get(GLOBAL, "user7@x.test").unwrap(), None);
    assert_eq!(std::fs::read_to_string(&spill).unwrap(), "");
    let report = writer.close(Duration::from_secs(5));
    assert_eq!((report.written, report.spilled), (52, 0));
}

#[test]
fn spill_survives_two_failed_runs() {
    let mut server = RedisServer::start();
    let config = config(&server);
    let store = store(&config);
    let dir = tempfile::tempdir().unwrap();
    server.stop();
    for run in 0..2 {
        let writer = SuppressionWriter::start(Arc::clone(&store), dir.path(), &config).unwrap();
        writer.push(bounce(GLOBAL, run));
        let report = writer.close(Duration::from_millis(200));
        assert_eq!(report.spilled, run as u64 + 1);
    }
    server.restart();
    let writer = SuppressionWriter::start(Arc::clone(&store), dir.path(), &config).unwrap();
    wait_until(Duration::from_secs(10), "the replay", || writer.backlog() == 0);
    assert_eq!(store.len(GLOBAL).unwrap(), 2);
    assert_eq!(writer.close(Duration::from_secs(5)).written, 2);
}

#[test]
fn checker_pauses_while_down_and_answers_once_back() {
    let mut server = RedisServer::start();
    let config = config(&server);
    let store = store(&config);
    store.apply(&[bounce(GLOBAL, 1), bounce("newsletter", 2)]).unwrap();
    server.save();
    server.stop();

    let stop = Arc::new(AtomicBool::new(false));
    let checker = Arc::new(Checker::new(
        Arc::clone(&store),
        Some("newsletter"),
        OnUnavailable::Pause,
        Arc::clone(&stop),
    ));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let worker = {
        let checker = Arc::clone(&checker);
        std::thread::spawn(move || {
            let result = checker.check_batch(&["user1@x.test", "user2@x.test", "user3@x.test"]);
            let _ = tx.send(result);
        })
    };
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "check returned while the store was down"
    );
    server.restart();
    let hits = match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(result) => result.unwrap(),
        Err(_) => {
            stop.store(true, Ordering::Relaxed);
            panic!("check did not resume after the store came back");
        }
    };
    worker.join().unwrap();
    let scopes: Vec<Option<&str>> = hits.iter().map(|h| h.as_ref().map(|(s, _)| s.as_str())).collect();
    assert_eq!(scopes, [Some(GLOBAL), Some("newsletter"), None]);
    assert!(
        checker.paused_for() >= Duration::from_millis(500),
        "{:?}",
        checker.paused_for()
    );
    assert_eq!(checker.unchecked(), 0);
}

#[test]
fn checker_pause_ends_when_stopped() {
    let mut server = RedisServer::start();
    let store = store(&config(&server));
    server.stop();
    let stop = Arc::new(AtomicBool::new(false));
    let checker = Checker::new(store, None, OnUnavailable::Pause, Arc::clone(&stop));
    let flag = Arc::clone(&stop);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    assert!(checker.check_batch(&["a@x.test"]).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    stopper.join().unwrap();
}

#[test]
fn fail_open_returns_not_suppressed_and_counts_unchecked() {
    let mut server = RedisServer::start();
    let store = store(&config(&server));
    store.apply(&[bounce(GLOBAL, 1)]).unwrap();
    server.stop();
    let checker = Checker::new(store, None, OnUnavailable::Send, Arc::new(AtomicBool::new(false)));
    let hits = checker.check_batch(&["user1@x.test", "user2@x.test"]).unwrap();
    assert_eq!(hits, [None, None]);
    let hits = checker.check_batch(&["user3@x.test"]).unwrap();
    assert_eq!(hits, [None]);
    assert_eq!(checker.unchecked(), 3);
    assert_eq!(checker.paused_for(), Duration::ZERO);
}
