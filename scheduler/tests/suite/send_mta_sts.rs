//! MTA-STS (RFC 8461) and TLS reports (RFC 8460) end to end on loopback: a real DNS server
//! (`_mta-sts`, `_smtp._tls`, MX and the policy host's address), an HTTPS policy host whose
//! certificate comes from a test CA Volley trusts (`[mta_sts] ca_file`), and a sink as the MX
//! host whose certificate matches the MX name or not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::rr::Name;
use serde_json::Value;
use volley_bench::policy_host::{PolicyHost, Response, TestCa};
use volley_bench::{Sink, SinkConfig, SinkHandle};
use volley_engine::mta_sts::MtaStsConfig;
use volley_engine::mx::DnsConfig;
use volley_scheduler::config::{SendConfig, SourceIpConfig};
use volley_scheduler::summary::Summary;

use super::send_mx::{dns, write_campaign};

/// One policy domain `<label>.test` with its DNS, policy host and MX sink.
pub(crate) struct Domain {
    pub(crate) auth: dns::AuthServer,
    pub(crate) policy_host: PolicyHost,
    pub(crate) sink: SinkHandle,
    pub(crate) dir: tempfile::TempDir,
}

/// `<label>.test` publishing a `mode` policy naming `mx.<label>.test`, whose MX sink (on
/// 127.0.0.`ip`) presents a certificate for `sink_name`.
pub(crate) async fn domain(label: &str, ip: u8, mode: &str, sink_name: &str) -> Domain {
    domain_with_mx(label, ip, mode, sink_name, &format!("mx.{label}.test")).await
}

/// Like [`domain`], the policy naming `policy_mx`.
async fn domain_with_mx(label: &str, ip: u8, mode: &str, sink_name: &str, policy_mx: &str) -> Domain {
    let ca = TestCa::new().expect("ca");
    let policy = format!("version: STSv1\r\nmode: {mode}\r\nmx: {policy_mx}\r\nmax_age: 86400\r\n");
    let policy_ip = [127, 0, 0, ip + 1];
    let policy_host = PolicyHost::start(
        SocketAddr::from((policy_ip, 0)),
        &ca,
        &[&format!("mta-sts.{label}.test")],
        Response::policy(&policy),
    )
    .await
    .expect("policy host");
    let sink = Sink::start(SinkConfig {
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip)), 0),
        hostname: sink_name.to_string(),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let zone = dns::mta_sts_zone(label, [127, 0, 0, ip], policy_ip, "1");
    let auth = dns::AuthServer::serve(Name::from_ascii("test.").expect("name"), zone).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The test CA (policy host) and the sink's self-signed certificate are trusted: a
    // mismatch is about the name, not the chain.
    std::fs::write(dir.path().join("ca.pem"), ca.pem() + sink.certificate_pem()).expect("ca file");
    Domain {
        auth,
        policy_host,
        sink,
        dir,
    }
}

pub(crate) fn config(d: &Domain) -> SendConfig {
    SendConfig {
        source_ips: vec![SourceIpConfig::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            "mta2.volley.test",
        )],
        max_in_flight: 100,
        retry: volley_scheduler::config::RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_millis(400),
            host_down: Duration::from_secs(60),
        },
        dns: Some(DnsConfig {
            nameservers: vec![d.auth.addr],
            timeout: Duration::from_secs(2),
            ..DnsConfig::default()
        }),
        mx_port: d.sink.local_addr().port(),
        mta_sts: MtaStsConfig {
            ca_file: Some(d.dir.path().join("ca.pem")),
            policy_port: d.policy_host.local_addr().port(),
            ..MtaStsConfig::default()
        },
        ..SendConfig::new(d.dir.path().join("state"), Vec::new())
    }
}

pub(crate) async fn send(d: &Domain, label: &str) -> (Summary, Vec<String>, Vec<Value>) {
    let rcpts: Vec<String> = (0..3).map(|i| format!("r{i}@{label}.test")).collect();
    let list: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let summary = volley_scheduler::send::run(&write_campaign(d.dir.path(), &list), &config(d))
        .await
        .expect("run");
    let log = std::fs::read_to_string(&summary.accounting_log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .collect();
    (summary, rcpts, log)
}

/// Today's TLS report of `<label>.test`.
fn tls_report(d: &Domain, label: &str) -> Value {
    let dir = d.dir.path().join("state").join("tls-rpt");
    let day = std::fs::read_dir(&dir)
        .expect("tls-rpt dir")
        .filter_map(Result::ok)
        .next()
        .expect("a day");
    let text = std::fs::read_to_string(day.path().join(format!("{label}.test.json"))).expect("report");
    serde_json::from_str(&text).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_with_a_certificate_for_another_name_sends_nothing_and_defers() {
    let d = domain("enforce", 30, "enforce", "wrong-name.invalid").await;
    let (summary, rcpts, log) = send(&d, "enforce").await;
    assert_eq!(d.sink.stats().messages, 0, "nothing sent: {log:?}");
    for r in &rcpts {
        assert_eq!(d.sink.accepted_for(r), 0);
        let lines: Vec<&Value> = log.iter().filter(|l| l["recipient"] == r.as_str()).collect();
        assert!(!lines.is_empty(), "{r}");
        for line in lines {
            assert!(
                line["outcome"] == "deferred" || line["outcome"] == "expired",
                "{r}: {line}"
            );
            let text = line["text"].as_str().unwrap_or_default();
            assert!(
                text.starts_with("MTA-STS enforce for enforce.test: certificate of mx.enforce.test not valid"),
                "{r}: {text}"
            );
            assert_eq!(line["enhanced"], "4.7.5", "{line}");
        }
    }
    assert_eq!(summary.delivered, 0);
    assert_eq!(d.policy_host.requests(), 1, "the policy is fetched once and cached");
    let report = tls_report(&d, "enforce");
    let policy = &report["policies"][0];
    assert_eq!(policy["policy"]["policy-domain"], "enforce.test");
    assert_eq!(policy["policy"]["policy-type"], "sts");
    assert_eq!(policy["summary"]["total-successful-session-count"], 0);
    assert!(
        policy["summary"]["total-failure-session-count"].as_u64() >= Some(1),
        "{report}"
    );
    assert_eq!(policy["failure-details"][0]["result-type"], "certificate-host-mismatch");
    assert_eq!(policy["failure-details"][0]["receiving-mx-hostname"], "mx.enforce.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_with_a_matching_certificate_delivers_over_verified_tls() {
    let d = domain("good", 40, "enforce", "mx.good.test").await;
    let (summary, rcpts, log) = send(&d, "good").await;
    for r in &rcpts {
        assert_eq!(d.sink.accepted_for(r), 1, "{r}: {log:?}");
    }
    assert_eq!(summary.delivered, 3);
    assert!(log.iter().all(|l| l["tls"] == true), "{log:?}");
    let report = tls_report(&d, "good");
    let summary = &report["policies"][0]["summary"];
    assert!(
        summary["total-successful-session-count"].as_u64() >= Some(1),
        "{report}"
    );
    assert_eq!(summary["total-failure-session-count"], 0);
    assert!(report["policies"][0].get("failure-details").is_none(), "{report}");
    let rua = std::fs::read_dir(d.dir.path().join("state").join("tls-rpt"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|day| std::fs::read_to_string(day.path().join("good.test.rua")).unwrap_or_default())
        .collect::<String>();
    assert_eq!(rua, "mailto:tls@good.test\n", "where the report would go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testing_mode_delivers_and_reports_the_certificate_failure() {
    let d = domain("testing", 50, "testing", "wrong-name.invalid").await;
    let (summary, rcpts, log) = send(&d, "testing").await;
    for r in &rcpts {
        assert_eq!(d.sink.accepted_for(r), 1, "{r}: {log:?}");
    }
    assert_eq!(summary.delivered, 3);
    assert!(log.iter().all(|l| l["tls"] == true), "still encrypted: {log:?}");
    let report = tls_report(&d, "testing");
    let policy = &report["policies"][0];
    assert!(
        policy["summary"]["total-failure-session-count"].as_u64() >= Some(1),
        "{report}"
    );
    assert_eq!(policy["summary"]["total-successful-session-count"], 0);
    let failure = &policy["failure-details"][0];
    assert_eq!(failure["result-type"], "certificate-host-mismatch", "{report}");
    assert_eq!(failure["receiving-mx-hostname"], "mx.testing.test");
    assert_eq!(failure["sending-mta-ip"], "127.0.0.2");
    assert!(policy["policy"]["policy-string"]
        .as_array()
        .is_some_and(|l| l.iter().any(|s| s == "mode: testing")));
    assert_eq!(policy["policy"]["mx-host"][0], "mx.testing.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_with_no_mx_host_in_the_policy_defers_without_connecting() {
    let d = domain_with_mx("nomx", 60, "enforce", "mx.nomx.test", "*.elsewhere.test").await;
    let (summary, rcpts, log) = send(&d, "nomx").await;
    assert_eq!(
        d.sink.stats().connections,
        0,
        "no connection to an MX host outside the policy"
    );
    assert_eq!(summary.delivered, 0);
    for r in &rcpts {
        let last = log.iter().rfind(|l| l["recipient"] == r.as_str()).expect("a line");
        assert!(last["outcome"] == "deferred" || last["outcome"] == "expired", "{last}");
        assert_eq!(
            last["text"],
            "MTA-STS enforce for nomx.test: no MX host (mx.nomx.test) is in the policy (mx: *.elsewhere.test)"
        );
    }
}
