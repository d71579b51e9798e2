//! Session behaviour against the smart sink: source-IP binding, HELO fallback, STARTTLS
//! policies, per-recipient outcomes within one transaction.

mod common;

use std::time::Duration;

use volley_bench::{CannedReply, Sink, SinkConfig, Stage};
use volley_engine::smtp::dot::prepare;
use volley_engine::smtp::session::SmtpSession;
use volley_engine::tls::TlsPolicy;
use volley_engine::{Disposition, Envelope, MxHost, SessionError, SmtpConfig};

/// A sink that answers RCPT for `domain` with `text`.
async fn rcpt_reply_sink(domain: &str, text: &str) -> volley_bench::SinkHandle {
    let canned = CannedReply {
        domain: domain.into(),
        stage: Stage::Rcpt,
        text: text.into(),
        percent: 100.0,
    };
    Sink::start(SinkConfig {
        canned: vec![canned],
        ..SinkConfig::default()
    })
    .await
    .expect("sink")
}

fn mx(sink: &volley_bench::SinkHandle) -> MxHost {
    MxHost {
        name: "sink.volley.test".into(),
        addr: sink.local_addr(),
    }
}

#[tokio::test]
async fn connections_come_from_the_chosen_source_ip() {
    let sink = rcpt_reply_sink("whoami.test", "550 5.7.1 connection from {ip} refused for {rcpt}").await;
    let routes = [common::route(3, sink.local_addr()), common::route(4, sink.local_addr())];
    let rcpts = vec!["a@whoami.test".to_string(), "b@whoami.test".to_string()];
    let reports = common::deliver_all(common::fast_config(), &routes, &rcpts).await;
    assert_eq!(reports.len(), 2);
    for r in &reports {
        let status = &r.statuses[0];
        assert_eq!(status.disposition, Disposition::Bounced);
        let expected_ip = r.route.source.ip.to_string();
        assert!(
            status.text.contains(&expected_ip),
            "{} should name {expected_ip}",
            status.text
        );
    }
    sink.shutdown().await;
}

#[tokio::test]
async fn helo_fallback_when_ehlo_is_refused() {
    let sink = Sink::start(SinkConfig {
        refuse_ehlo: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = common::fast_config();
    let mut session = SmtpSession::connect(&common::source(2), &mx(&sink), &common::params(&config), false)
        .await
        .expect("connect");
    assert!(!session.capabilities().pipelining, "HELO gives no extensions");
    assert!(!session.is_tls(), "no STARTTLS without EHLO");
    let envelope = Envelope {
        mail_from: "b@sender.test".into(),
        recipients: vec!["x@dest.test".into()],
    };
    let result = session
        .send_message(&envelope, &prepare(&common::message(1)).expect("payload"))
        .await;
    assert_eq!(result.statuses[0].disposition, Disposition::Delivered);
    session.quit().await;
    assert_eq!(sink.accepted_for("x@dest.test"), 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn opportunistic_tls_is_used_when_offered() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let reports = common::deliver_all(
        common::fast_config(),
        &[common::route(2, sink.local_addr())],
        &["t@dest.test".into()],
    )
    .await;
    assert!(reports[0].tls);
    assert_eq!(reports[0].statuses[0].disposition, Disposition::Delivered);
    assert_eq!(sink.stats().tls_handshakes, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn required_tls_never_sends_in_clear() {
    let sink = Sink::start(SinkConfig {
        starttls: false,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        tls: TlsPolicy::Required,
        ..common::fast_config()
    };
    let err = SmtpSession::connect(&common::source(2), &mx(&sink), &common::params(&config), false)
        .await
        .err();
    assert!(matches!(err, Some(SessionError::TlsNotOffered { .. })), "{err:?}");
    let reports = common::deliver_all(config, &[common::route(2, sink.local_addr())], &["c@dest.test".into()]).await;
    assert_eq!(reports[0].statuses[0].disposition, Disposition::Deferred);
    assert!(reports[0].statuses[0].text.contains("does not offer STARTTLS"));
    assert_eq!(sink.stats().messages, 0, "nothing was sent in clear");
    sink.shutdown().await;
}

#[tokio::test]
async fn verified_tls_trusts_a_configured_ca_and_refuses_an_unknown_one() {
    let sink = Sink::start(SinkConfig {
        hostname: "localhost".into(),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = std::env::temp_dir().join(format!("volley-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ca = dir.join("sink.pem");
    std::fs::write(&ca, sink.certificate_pem()).expect("write ca");
    let mx = MxHost {
        name: "localhost".into(),
        addr: sink.local_addr(),
    };

    let trusting = SmtpConfig {
        tls: TlsPolicy::Required,
        verify_certificates: true,
        ca_file: Some(ca.clone()),
        ..common::fast_config()
    };
    let session = SmtpSession::connect(&common::source(2), &mx, &common::params(&trusting), false).await;
    assert!(
        session.as_ref().is_ok_and(|s| s.is_tls()),
        "{:?}",
        session.as_ref().err()
    );

    let untrusting = SmtpConfig {
        tls: TlsPolicy::Required,
        verify_certificates: true,
        ..common::fast_config()
    };
    let err = SmtpSession::connect(&common::source(2), &mx, &common::params(&untrusting), false)
        .await
        .err();
    assert!(matches!(err, Some(SessionError::Tls { .. })), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
    sink.shutdown().await;
}

#[tokio::test]
async fn partial_acceptance_is_reported_per_recipient() {
    let sink = rcpt_reply_sink(
        "gone.test",
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 Please check.",
    )
    .await;
    let config = common::fast_config();
    let mut session = SmtpSession::connect(&common::source(2), &mx(&sink), &common::params(&config), false)
        .await
        .expect("connect");
    let envelope = Envelope {
        mail_from: "b@sender.test".into(),
        recipients: vec![
            "ok1@dest.test".into(),
            "nobody@gone.test".into(),
            "ok2@dest.test".into(),
        ],
    };
    let result = session
        .send_message(&envelope, &prepare(&common::message(1)).expect("payload"))
        .await;
    let d: Vec<_> = result.statuses.iter().map(|s| s.disposition).collect();
    assert_eq!(
        d,
        [Disposition::Delivered, Disposition::Bounced, Disposition::Delivered]
    );
    assert_eq!(
        result.statuses[1].enhanced.map(|e| e.to_string()).as_deref(),
        Some("5.1.1")
    );
    // All recipients refused: no content is sent, and the connection stays usable.
    let refused = Envelope {
        mail_from: "b@sender.test".into(),
        recipients: vec!["x@gone.test".into()],
    };
    let result = session
        .send_message(&refused, &prepare(&common::message(2)).expect("payload"))
        .await;
    assert_eq!(result.statuses[0].disposition, Disposition::Bounced);
    assert!(result.connection_error.is_none());
    let again = Envelope {
        mail_from: "b@sender.test".into(),
        recipients: vec!["ok3@dest.test".into()],
    };
    let result = session
        .send_message(&again, &prepare(&common::message(3)).expect("payload"))
        .await;
    assert_eq!(result.statuses[0].disposition, Disposition::Delivered);
    session.quit().await;
    assert_eq!(sink.stats().messages, 2);
    assert_eq!(sink.accepted_for("nobody@gone.test"), 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn slow_server_times_out_per_phase_and_defers() {
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(400),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_millis(150)),
        ..SmtpConfig::default()
    };
    let reports = common::deliver_all(
        config,
        &[common::route(2, sink.local_addr())],
        &["slow@dest.test".into()],
    )
    .await;
    let status = &reports[0].statuses[0];
    assert_eq!(status.disposition, Disposition::Deferred);
    assert!(status.text.contains("timed out"), "{}", status.text);
    sink.shutdown().await;
}

/// Regression: a 421 answer to a pipelined RCPT (the server closes the channel) used to be
/// reported as "connection closed by the server during data", losing the code that backoff
/// rules read; the recipient now carries the 421 reply and the connection is not reused.
#[tokio::test]
async fn a_421_reply_is_the_recipients_status_and_ends_the_connection() {
    let sink = rcpt_reply_sink("busy.test", "421 4.7.0 Too many connections, try again later").await;
    let config = common::fast_config();
    let mut session = SmtpSession::connect(&common::source(2), &mx(&sink), &common::params(&config), false)
        .await
        .expect("connect");
    assert!(session.capabilities().pipelining);
    let envelope = Envelope {
        mail_from: "b@sender.test".into(),
        recipients: vec!["x@busy.test".into()],
    };
    let result = session
        .send_message(&envelope, &prepare(&common::message(1)).expect("payload"))
        .await;
    let status = &result.statuses[0];
    assert_eq!(status.disposition, Disposition::Deferred);
    assert_eq!(status.code, Some(421), "{status:?}");
    assert_eq!(status.enhanced.map(|e| e.to_string()).as_deref(), Some("4.7.0"));
    assert!(status.text.contains("Too many connections"), "{}", status.text);
    assert!(
        matches!(result.connection_error, Some(SessionError::Rejected { .. })),
        "{:?}",
        result.connection_error
    );
    sink.shutdown().await;
}

/// Regression: over TLS, `write_all` returns once rustls has taken the plaintext; when the
/// socket was full, the last records could stay in rustls' buffer, and the server waited for
/// the end of the message while the client waited for its reply — until the data-end timeout
/// (seen twice in a 10,000,000-message run: 421 "Timeout exceeded" after 300 s, then a retry
/// 30 minutes later). Every write is now flushed to the socket.
#[tokio::test]
async fn large_messages_over_tls_reach_the_server_to_the_last_byte() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let config = common::fast_config();
    let mut session = SmtpSession::connect(&common::source(2), &mx(&sink), &common::params(&config), false)
        .await
        .expect("connect");
    assert!(session.is_tls());
    let line = "x".repeat(70) + "\r\n";
    let message = format!(
        "From: a@sender.test\r\nSubject: big\r\n\r\n{}",
        line.repeat(4 * 1024 * 1024 / line.len())
    );
    let payload = prepare(message.as_bytes()).expect("payload");
    for i in 0..4 {
        let envelope = Envelope {
            mail_from: "b@sender.test".into(),
            recipients: vec![format!("big{i}@dest.test")],
        };
        let result = session.send_message(&envelope, &payload).await;
        assert_eq!(
            result.statuses[0].disposition,
            Disposition::Delivered,
            "message {i}: {}",
            result.statuses[0].text
        );
    }
    session.quit().await;
    sink.shutdown().await;
}
