//! Sessions under an MTA-STS policy against the sink (its self-signed certificate trusted as
//! an anchor): `enforce` refuses an MX host outside the policy before connecting and a
//! certificate for another name at the handshake; `testing` completes the session and reports
//! the failure; a client without MTA-STS contexts never downgrades an `enforce` route.

mod common;

use std::sync::Arc;

use tokio::sync::mpsc;
use volley_bench::{Sink, SinkConfig, SinkHandle};
use volley_engine::mta_sts::{FailureKind, MxPattern, SessionCheck, StsMode, StsRoute, StsTls};
use volley_engine::smtp::session::{SessionParams, SmtpSession};
use volley_engine::{MxHost, SessionError};

fn route(mode: StsMode, pattern: &str) -> Arc<StsRoute> {
    Arc::new(StsRoute {
        domain: Arc::from("a.test"),
        mode,
        mx: MxPattern::new(pattern).into_iter().collect(),
        text: Arc::from(""),
    })
}

async fn start_sink(hostname: &str) -> (SinkHandle, tempfile::TempDir) {
    let sink = Sink::start(SinkConfig {
        hostname: hostname.to_string(),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), sink.certificate_pem()).expect("ca");
    (sink, dir)
}

/// Session parameters for `route`, MTA-STS contexts trusting `dir/ca.pem`, and the verdicts.
fn sts_params(dir: &std::path::Path, route: Arc<StsRoute>) -> (SessionParams, mpsc::UnboundedReceiver<SessionCheck>) {
    let mut params = common::params(&common::fast_config());
    let tls = StsTls::new(Some(&dir.join("ca.pem"))).expect("tls");
    let (tx, rx) = mpsc::unbounded_channel();
    params.tls = params.tls.with_mta_sts(tls, Some(tx)).for_route(route);
    (params, rx)
}

fn mx(name: &str, sink: &SinkHandle) -> MxHost {
    MxHost {
        name: Arc::from(name),
        addr: sink.local_addr(),
    }
}

#[tokio::test]
async fn enforce_refuses_an_mx_host_outside_the_policy_before_connecting() {
    let (sink, dir) = start_sink("mx.a.test").await;
    let (params, mut checks) = sts_params(dir.path(), route(StsMode::Enforce, "*.b.test"));
    let result = SmtpSession::connect(&common::source(2), &mx("mx.a.test", &sink), &params, false).await;
    match result {
        Err(SessionError::MtaSts { domain, failure }) => {
            assert_eq!(&*domain, "a.test");
            assert_eq!(failure.kind, FailureKind::MxNotInPolicy);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("connected"),
    }
    assert_eq!(sink.stats().connections, 0);
    let check = checks.try_recv().expect("a verdict");
    assert_eq!(check.failure.map(|f| f.kind.result_type()), Some("validation-failure"));
}

#[tokio::test]
async fn enforce_fails_the_handshake_on_a_certificate_for_another_name() {
    let (sink, dir) = start_sink("other.test").await;
    let (params, mut checks) = sts_params(dir.path(), route(StsMode::Enforce, "mx.a.test"));
    let result = SmtpSession::connect(&common::source(2), &mx("mx.a.test", &sink), &params, false).await;
    let e = result.err().expect("refused");
    assert!(
        e.to_string()
            .starts_with("MTA-STS enforce for a.test: certificate of mx.a.test not valid"),
        "{e}"
    );
    assert!(
        e.is_sender_fault() && e.is_transient() && !e.is_starttls_failure(),
        "{e}"
    );
    assert_eq!(sink.stats().messages, 0);
    let check = checks.try_recv().expect("a verdict");
    assert_eq!(
        check.failure.map(|f| f.kind),
        Some(FailureKind::CertificateHostMismatch)
    );

    // With the matching name the session opens over verified TLS and reports success.
    let (good, dir) = start_sink("mx.a.test").await;
    let (params, mut checks) = sts_params(dir.path(), route(StsMode::Enforce, "mx.a.test"));
    let session = SmtpSession::connect(&common::source(2), &mx("mx.a.test", &good), &params, false)
        .await
        .expect("verified session");
    assert!(session.is_tls());
    assert!(checks.try_recv().expect("a verdict").failure.is_none());
}

#[tokio::test]
async fn testing_completes_the_session_and_reports_the_failure() {
    let (sink, dir) = start_sink("other.test").await;
    let (params, mut checks) = sts_params(dir.path(), route(StsMode::Testing, "mx.a.test"));
    let session = SmtpSession::connect(&common::source(2), &mx("mx.a.test", &sink), &params, false)
        .await
        .expect("testing mode delivers");
    assert!(session.is_tls(), "still encrypted");
    let check = checks.try_recv().expect("a verdict");
    assert_eq!(
        check.failure.map(|f| f.kind),
        Some(FailureKind::CertificateHostMismatch)
    );
}

#[tokio::test]
async fn an_enforce_route_without_mta_sts_contexts_is_refused_not_downgraded() {
    let (sink, _dir) = start_sink("mx.a.test").await;
    let mut params = common::params(&common::fast_config());
    params.tls = params.tls.for_route(route(StsMode::Enforce, "mx.a.test"));
    let result = SmtpSession::connect(&common::source(2), &mx("mx.a.test", &sink), &params, false).await;
    assert!(matches!(result, Err(SessionError::MtaSts { .. })), "{:?}", result.err());
    assert_eq!(sink.stats().tls_handshakes, 0);
    assert_eq!(sink.stats().messages, 0);
}
