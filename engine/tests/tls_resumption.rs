//! Reconnects to the same host resume the TLS session: every connection shares the one
//! rustls client configuration (and its session cache) built from `SmtpConfig`.

mod common;

use volley_bench::{Sink, SinkConfig};
use volley_engine::smtp::session::SmtpSession;
use volley_engine::{Disposition, MxHost, SmtpConfig};

#[tokio::test]
async fn a_second_connection_to_the_same_host_resumes_its_tls_session() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let params = common::params(&common::fast_config());
    let mx = MxHost {
        name: "sink.volley.test".into(),
        addr: sink.local_addr(),
    };
    let first = SmtpSession::connect(&common::source(2), &mx, &params, false)
        .await
        .expect("first connection");
    assert!(first.is_tls() && !first.is_tls_resumed(), "a full handshake first");
    first.quit().await;
    // A clone of the parameters, as every pool worker holds, shares the session cache.
    let second = SmtpSession::connect(&common::source(2), &mx, &params.clone(), false)
        .await
        .expect("second connection");
    assert!(second.is_tls() && second.is_tls_resumed(), "the second resumes");
    second.quit().await;
    // A context built anew has an empty cache: what happens when each connection gets its own.
    let fresh = common::params(&common::fast_config());
    let third = SmtpSession::connect(&common::source(2), &mx, &fresh, false)
        .await
        .expect("third connection");
    assert!(
        third.is_tls() && !third.is_tls_resumed(),
        "a separate context cannot resume"
    );
    third.quit().await;
    let stats = sink.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_resumed), (3, 1), "{stats:?}");
    sink.shutdown().await;
}

#[tokio::test]
async fn pool_reconnects_resume_tls() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 1,
        max_messages_per_connection: 1,
        ..common::fast_config()
    };
    let recipients: Vec<String> = (0..5).map(|i| format!("user{i}@dest.test")).collect();
    let reports = common::deliver_all(config, &[common::route(2, sink.local_addr())], &recipients).await;
    assert!(reports
        .iter()
        .all(|r| r.tls && r.statuses[0].disposition == Disposition::Delivered));
    let stats = sink.stats();
    assert_eq!((stats.connections, stats.tls_handshakes), (5, 5), "{stats:?}");
    assert_eq!(stats.tls_resumed, 4, "every reconnect resumes: {stats:?}");
    sink.shutdown().await;
}
