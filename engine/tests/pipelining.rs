//! Pipelining is real: with 20 ms added per reply batch, a 10-recipient message on a reused
//! connection costs about 2 round trips when the server offers PIPELINING, and about 13 when
//! it does not.

mod common;

use std::time::{Duration, Instant};

use volley_bench::{Sink, SinkConfig};
use volley_engine::smtp::dot::prepare;
use volley_engine::smtp::session::SmtpSession;
use volley_engine::{Disposition, Envelope, MxHost};

async fn second_message_cost(pipelining: bool) -> (u64, Duration, usize) {
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(20),
        pipelining,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = common::fast_config();
    let params = common::params(&config);
    let mx = MxHost {
        name: "sink.volley.test".into(),
        addr: sink.local_addr(),
    };
    let mut session = SmtpSession::connect(&common::source(2), &mx, &params, false)
        .await
        .expect("connect");
    assert_eq!(session.capabilities().pipelining, pipelining);
    let envelope = Envelope {
        mail_from: "bounces@sender.test".into(),
        recipients: (0..10).map(|i| format!("r{i}@dest.test")).collect(),
    };
    let payload = prepare(&common::message(1)).expect("payload");
    // First message warms the connection; the second is measured on the reused connection.
    let first = session.send_message(&envelope, &payload).await;
    assert!(first.statuses.iter().all(|s| s.disposition == Disposition::Delivered));
    let flushes_before = sink.stats().reply_flushes;
    let started = Instant::now();
    let second = session.send_message(&envelope, &payload).await;
    let elapsed = started.elapsed();
    let round_trips = sink.stats().reply_flushes - flushes_before;
    let delivered = second
        .statuses
        .iter()
        .filter(|s| s.disposition == Disposition::Delivered)
        .count();
    session.quit().await;
    assert_eq!(sink.stats().messages, 2);
    sink.shutdown().await;
    (round_trips, elapsed, delivered)
}

#[tokio::test]
async fn ten_recipients_cost_two_round_trips_when_pipelined() {
    let (round_trips, elapsed, delivered) = second_message_cost(true).await;
    assert_eq!(delivered, 10);
    assert_eq!(round_trips, 2, "MAIL+10 RCPT+DATA in one batch, then the content");
    assert!(
        elapsed >= Duration::from_millis(40),
        "two 20 ms round trips: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(200),
        "about 2 round trips, not 12: {elapsed:?}"
    );
}

#[tokio::test]
async fn without_pipelining_each_command_is_a_round_trip() {
    let (round_trips, elapsed, delivered) = second_message_cost(false).await;
    assert_eq!(delivered, 10);
    assert_eq!(round_trips, 13, "MAIL, 10 RCPT, DATA and the content, one at a time");
    assert!(elapsed >= Duration::from_millis(13 * 20), "{elapsed:?}");
}
