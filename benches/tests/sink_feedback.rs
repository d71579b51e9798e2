//! `volley sink --complain / --bounce-later`: after its 250 (which does not wait for them) the
//! sink delivers a complaint or a late bounce to the message's envelope sender at
//! `--feedback-to` — here a second sink, which counts what it accepts per address — retrying
//! until that listener is up; one it can never reach counts as failed after its attempts; a
//! message from the null sender gets nothing back.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{connect_ehlo, send_message, start};
use volley_bench::{FeedbackKind, SinkConfig, SinkHandle};

const RETURN_PATH: &str = "bounces+token@bounce.volley.test";

/// A loopback address nothing listens on (at the time of asking).
fn unused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// The first address `u<i>@dest.test` that `config` answers with `kind`.
fn recipient(config: &SinkConfig, kind: Option<FeedbackKind>) -> String {
    (0..)
        .map(|i| format!("u{i}@dest.test"))
        .find(|a| config.feedback_for(a) == kind)
        .expect("some address")
}

/// Waits (15 s at most) until `done` holds for the sink's stats.
async fn wait_for(sink: &SinkHandle, what: &str, done: impl Fn(&volley_bench::SinkStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(&sink.stats()) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_a_listener_that_starts_late() {
    let listener = unused_addr();
    let config = SinkConfig {
        complain_pct: 10.0,
        bounce_later_pct: 10.0,
        feedback_to: Some(listener),
        ..SinkConfig::default()
    };
    let (complains, bounces, quiet) = (
        recipient(&config, Some(FeedbackKind::Complaint)),
        recipient(&config, Some(FeedbackKind::LateBounce)),
        recipient(&config, None),
    );
    let sink = start(config).await;
    let mut client = connect_ehlo(&sink).await;
    let started = Instant::now();
    let reply = send_message(&mut client, RETURN_PATH, &[&complains, &bounces, &quiet]).await;
    assert_eq!(reply.code, 250, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the 250 does not wait for the reports"
    );
    // Nobody listens yet: nothing delivered, nothing given up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = sink.stats();
    assert_eq!(
        (stats.complaints_sent, stats.late_bounces_sent, stats.feedback_failed),
        (0, 0, 0)
    );
    let receiver = start(SinkConfig {
        listen: listener,
        ..SinkConfig::default()
    })
    .await;
    wait_for(&sink, "both reports", |s| {
        s.complaints_sent == 1 && s.late_bounces_sent == 1
    })
    .await;
    assert_eq!(sink.stats().feedback_failed, 0);
    assert_eq!(receiver.accepted_for(RETURN_PATH), 2, "both went to the return path");
    assert_eq!(receiver.stats().messages, 2, "one report each, none for {quiet}");
    sink.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_listener_fails_after_the_attempts_and_the_null_sender_gets_nothing() {
    let config = SinkConfig {
        complain_pct: 100.0,
        feedback_to: Some(unused_addr()),
        feedback_attempts: 2,
        ..SinkConfig::default()
    };
    let sink = start(config).await;
    let mut client = connect_ehlo(&sink).await;
    assert_eq!(send_message(&mut client, "", &["a@dest.test"]).await.code, 250);
    assert_eq!(send_message(&mut client, RETURN_PATH, &["b@dest.test"]).await.code, 250);
    wait_for(&sink, "the failure", |s| s.feedback_failed == 1).await;
    // Two attempts take 100 ms; nothing else is coming.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = sink.stats();
    assert_eq!(
        (stats.complaints_sent, stats.feedback_failed, stats.messages),
        (0, 1, 2),
        "{stats:?}"
    );
    sink.shutdown().await;
}
