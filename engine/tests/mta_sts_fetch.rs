//! MTA-STS policy discovery and fetch against a loopback DNS server and a loopback HTTPS policy
//! host whose certificate comes from a test CA the fetcher trusts: the policy is fetched once
//! and then served from the cache (and from the cache file after a restart); oversized,
//! stalled, redirected and wrongly certified policy hosts fail with their own error.

#[allow(dead_code)] // the module serves several test binaries
mod dns;

use std::path::Path;
use std::time::{Duration, Instant};

use hickory_server::proto::rr::Name;
use volley_bench::policy_host::{PolicyHost, Response, TestCa};
use volley_engine::mta_sts::http::HttpError;
use volley_engine::mta_sts::{FetchError, MtaSts, MtaStsConfig, StsMode, StsTls};
use volley_engine::mx::DnsConfig;

const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 86400\r\n";

struct Fixture {
    auth: dns::AuthServer,
    ca: TestCa,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let auth = dns::AuthServer::serve(
        Name::from_ascii("test.").expect("name"),
        dns::mta_sts_zone("a", [127, 0, 0, 1], [127, 0, 0, 1], "1"),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new().expect("ca");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca file");
    Fixture { auth, ca, dir }
}

fn mta_sts(f: &Fixture, port: u16, timeout: Duration, cache: Option<&Path>) -> MtaSts {
    let config = MtaStsConfig {
        fetch_timeout: timeout,
        ca_file: Some(f.dir.path().join("ca.pem")),
        policy_port: port,
        ..MtaStsConfig::default()
    };
    let dns = DnsConfig {
        nameservers: vec![f.auth.addr],
        timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    };
    let tls = StsTls::new(config.ca_file.as_deref()).expect("tls");
    MtaSts::new(&config, &dns, &tls, cache).expect("mta-sts")
}

async fn host(f: &Fixture, names: &[&str], response: Response) -> PolicyHost {
    PolicyHost::start("127.0.0.1:0".parse().expect("addr"), &f.ca, names, response)
        .await
        .expect("policy host")
}

#[tokio::test]
async fn a_policy_is_fetched_once_then_cached_across_a_restart() {
    let f = fixture().await;
    let server = host(&f, &["mta-sts.a.test"], Response::policy(POLICY)).await;
    let cache = f.dir.path().join("policies.json");
    let sts = mta_sts(&f, server.local_addr().port(), Duration::from_secs(5), Some(&cache));
    let first = sts.policy("a.test").await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let policy = first.policy.expect("a policy");
    assert_eq!((policy.id.as_str(), policy.policy.mode), ("1", StsMode::Enforce));
    assert_eq!(policy.text, POLICY);
    let again = sts.policy("a.test").await;
    assert_eq!(again.policy.map(|p| p.id.clone()).as_deref(), Some("1"));
    assert_eq!(server.requests(), 1, "same record id: served from the cache");

    // A restart reads the cache file; the policy host being gone does not matter.
    sts.save();
    drop(server);
    let restarted = mta_sts(&f, 1, Duration::from_secs(5), Some(&cache));
    let after = restarted.policy("a.test").await;
    assert_eq!(after.policy.map(|p| p.policy.mode), Some(StsMode::Enforce));
    assert!(after.error.is_none());

    let none = sts.policy("nopolicy.test").await;
    assert!(
        none.policy.is_none() && none.error.is_none(),
        "no record: no policy, no error"
    );
}

#[tokio::test]
async fn an_oversized_policy_is_refused() {
    let f = fixture().await;
    let big = format!("{POLICY}{}", "x: y\r\n".repeat(20_000));
    let server = host(&f, &["mta-sts.a.test"], Response::policy(&big)).await;
    let sts = mta_sts(&f, server.local_addr().port(), Duration::from_secs(5), None);
    let lookup = sts.policy("a.test").await;
    assert!(lookup.policy.is_none());
    match lookup.error {
        Some(FetchError::Http {
            error: HttpError::TooLarge(65536),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stalled_policy_host_times_out() {
    let f = fixture().await;
    let server = host(&f, &["mta-sts.a.test"], Response::Silent).await;
    let sts = mta_sts(&f, server.local_addr().port(), Duration::from_millis(300), None);
    let started = Instant::now();
    let lookup = sts.policy("a.test").await;
    assert!(
        matches!(lookup.error, Some(FetchError::Timeout { .. })),
        "{:?}",
        lookup.error
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(lookup.error.map(|e| e.result_type()), Some("sts-policy-fetch-error"));
    // Within the back-off the domain is not fetched again (its routing does not wait again).
    let started = Instant::now();
    let again = sts.policy("a.test").await;
    assert!(again.error.is_none() && again.policy.is_none());
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn redirects_and_certificates_for_another_name_are_refused() {
    let f = fixture().await;
    let redirect = Response::Raw(b"HTTP/1.1 302 Found\r\nLocation: https://elsewhere.test/\r\n\r\n".to_vec());
    let server = host(&f, &["mta-sts.a.test"], redirect).await;
    let lookup = mta_sts(&f, server.local_addr().port(), Duration::from_secs(5), None)
        .policy("a.test")
        .await;
    assert!(
        matches!(
            lookup.error,
            Some(FetchError::Http {
                error: HttpError::Status(302),
                ..
            })
        ),
        "{:?}",
        lookup.error
    );

    let wrong = host(&f, &["mta-sts.other.test"], Response::policy(POLICY)).await;
    let lookup = mta_sts(&f, wrong.local_addr().port(), Duration::from_secs(5), None)
        .policy("a.test")
        .await;
    assert_eq!(
        lookup.error.as_ref().map(FetchError::result_type),
        Some("sts-webpki-invalid"),
        "{:?}",
        lookup.error
    );
    assert!(lookup.policy.is_none());
}

#[tokio::test]
async fn an_internationalised_domain_is_asked_for_in_a_labels() {
    let auth = dns::AuthServer::serve(
        Name::from_ascii("test.").expect("name"),
        dns::mta_sts_zone("xn--bcher-kva", [127, 0, 0, 1], [127, 0, 0, 1], "7"),
    )
    .await;
    let f = Fixture {
        auth,
        ..fixture().await
    };
    let server = host(&f, &["mta-sts.xn--bcher-kva.test"], Response::policy(POLICY)).await;
    let lookup = mta_sts(&f, server.local_addr().port(), Duration::from_secs(5), None)
        .policy("Bücher.test")
        .await;
    assert!(lookup.error.is_none(), "{:?}", lookup.error);
    let policy = lookup.policy.expect("a policy");
    assert_eq!(
        (policy.domain.as_str(), policy.id.as_str()),
        ("xn--bcher-kva.test", "7")
    );
}
