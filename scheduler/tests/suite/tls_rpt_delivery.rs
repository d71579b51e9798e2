//! Finished TLS reports (RFC 8460 §5) leave for the policy domain's `rua` on loopback: an
//! `https:` URI gets a POST on an HTTPS host whose certificate comes from the test CA, a
//! `mailto:` URI a `multipart/report` message at the MX the test DNS names (Postfix
//! smtp-sink). A pass runs as if the next day had come.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_server::proto::rr::Name;
use mail_parser::MimeHeaders;
use serde_json::Value;
use volley_bench::policy_host::Response;
use volley_bench::postfix::PostfixSink;
use volley_engine::mta_sts::{MtaSts, MtaStsConfig, StsTls};
use volley_engine::mx::{DnsConfig, MxResolver};
use volley_engine::SourceIp;
use volley_scheduler::tls_reports::mail::MailRoute;
use volley_scheduler::tls_reports::outbox::{Outbox, Pass, RETRY_PAUSE};

use super::send_mta_sts::{config, domain, send};
use super::send_mx::dns;

const DAY: Duration = Duration::from_secs(86_400);

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("gzip");
    out
}

/// The one day directory under `<state>/tls-rpt`.
fn day_dir(state: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(state.join("tls-rpt"))
        .expect("tls-rpt dir")
        .filter_map(Result::ok)
        .next()
        .expect("a day")
        .path()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_rua_gets_the_finished_report_once_and_a_failure_is_retried() {
    let d = domain("rpth", 70, "testing", "mx.rpth.test").await;
    let (summary, _, _) = send(&d, "rpth").await;
    assert_eq!(summary.delivered, 3);
    let config = config(&d);
    let state = d.dir.path().join("state");
    let day = day_dir(&state);
    // The policy host takes the reports too (its certificate names mta-sts.rpth.test).
    let uri = format!("https://mta-sts.rpth.test:{}/tlsrpt", d.policy_host.local_addr().port());
    std::fs::write(day.join("rpth.test.rua"), format!("{uri}\n")).expect("rua");
    let tls = StsTls::new(config.mta_sts.ca_file.as_deref()).expect("tls");
    let dns = config.dns.as_ref().expect("dns");
    let outbox = Outbox {
        mta_sts: Arc::new(MtaSts::new(&config.mta_sts, dns, &tls, None).expect("mta-sts")),
        mail: None,
    };
    let fetched = d.policy_host.requests();
    let now = SystemTime::now();
    assert_eq!(
        outbox.pass(&state, now).await.expect("pass"),
        Pass::default(),
        "today is not over"
    );
    assert_eq!(d.policy_host.requests(), fetched);

    d.policy_host.answer(Response::status(500));
    let tomorrow = now + DAY;
    let failed = outbox.pass(&state, tomorrow).await.expect("pass");
    assert_eq!(
        failed,
        Pass {
            sent: 0,
            failed: 1,
            abandoned: 0
        }
    );
    assert_eq!(d.policy_host.requests(), fetched + 1);
    let marker = std::fs::read_to_string(day.join("rpth.test.sent")).expect("marker");
    assert!(marker.starts_with("failing "), "{marker}");
    assert_eq!(
        outbox.pass(&state, tomorrow).await.expect("pass"),
        Pass::default(),
        "not before the pause"
    );

    d.policy_host.answer(Response::status(202));
    let later = tomorrow + RETRY_PAUSE;
    assert_eq!(
        outbox.pass(&state, later).await.expect("pass"),
        Pass {
            sent: 1,
            failed: 0,
            abandoned: 0
        }
    );
    assert_eq!(d.policy_host.requests(), fetched + 2);
    assert_eq!(
        std::fs::read_to_string(day.join("rpth.test.sent")).expect("marker"),
        format!("sent {uri}\n")
    );
    assert!(day.join("done").exists(), "the day is done with");
    // Sent once: neither another pass nor a restart (a new outbox) sends it again.
    assert_eq!(outbox.pass(&state, later + DAY).await.expect("pass"), Pass::default());
    // Even without the day's `done` file, the per-domain marker keeps it from going again.
    std::fs::remove_file(day.join("done")).expect("done file");
    let restarted = Outbox {
        mail: None,
        ..outbox.clone()
    };
    assert_eq!(
        restarted.pass(&state, later + DAY).await.expect("pass"),
        Pass::default()
    );
    assert_eq!(d.policy_host.requests(), fetched + 2);

    let request = d.policy_host.received().pop().expect("the POST");
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post /tlsrpt http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: application/tlsrpt+gzip\r\n"), "{head}");
    let report: Value = serde_json::from_slice(&gunzip(&request[head_end..])).expect("report json");
    assert_eq!(report["policies"][0]["policy"]["policy-domain"], "rpth.test");
    // The three messages went in one session, which met the policy.
    assert_eq!(report["policies"][0]["summary"]["total-successful-session-count"], 1);
    assert_eq!(report["policies"][0]["summary"]["total-failure-session-count"], 0);
    let written: Value =
        serde_json::from_slice(&std::fs::read(day.join("rpth.test.json")).expect("report file")).expect("json");
    assert_eq!(report, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailto_rua_gets_a_tlsrpt_multipart_report_at_its_mx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Ok(sink) = PostfixSink::try_start(&dir.path().join("smtp-sink")) else {
        panic!("Postfix smtp-sink is needed for this test");
    };
    // rpt.test's MX is mx.rpt.test at 127.0.0.1, where smtp-sink listens.
    let zone = dns::mta_sts_zone("rpt", [127, 0, 0, 1], [127, 0, 0, 1], "1");
    let auth = dns::AuthServer::serve(Name::from_ascii("test.").expect("name"), zone).await;
    let dns = DnsConfig {
        nameservers: vec![auth.addr],
        timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    };
    let state = dir.path().join("state");
    let day = state.join("tls-rpt").join("2026-12-03");
    std::fs::create_dir_all(&day).expect("day dir");
    let json = serde_json::json!({
        "organization-name": "Volley",
        "date-range": {"start-datetime": "2026-12-03T00:00:00Z", "end-datetime": "2026-12-03T23:59:59Z"},
        "contact-info": "postmaster@volley.test",
        "report-id": "2026-12-03_a.test@Volley",
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": ["version: STSv1"], "policy-domain": "a.test"},
            "summary": {"total-successful-session-count": 5, "total-failure-session-count": 1}
        }]
    });
    let bytes = serde_json::to_vec_pretty(&json).expect("json");
    std::fs::write(day.join("a.test.json"), &bytes).expect("report");
    std::fs::write(day.join("a.test.rua"), "mailto:tls@rpt.test\n").expect("rua");
    let params = volley_engine::SmtpConfig::default().session_params().expect("params");
    // The reporting domain's DKIM key: the report goes out signed with it.
    let key = volley_engine::dkim::generate(volley_engine::dkim::KeyAlgorithm::Ed25519, "volley.test", "rpt")
        .expect("keygen");
    let key_path = dir.path().join("rpt.pem");
    key.write_private_key(&key_path).expect("write the key");
    let (signers, _) = volley_engine::dkim::DkimSigners::load(&[volley_engine::dkim::DkimKeyConfig {
        domain: "volley.test".into(),
        selector: "rpt".into(),
        key: key_path,
        algorithm: None,
        headers: None,
        canonicalization: Default::default(),
        expire: None,
    }])
    .expect("signers");
    let outbox = Outbox {
        mta_sts: Arc::new(
            MtaSts::new(&MtaStsConfig::default(), &dns, &StsTls::new(None).expect("tls"), None).expect("mta-sts"),
        ),
        mail: Some(Arc::new(MailRoute {
            resolver: MxResolver::new(&dns).expect("resolver"),
            mx_port: sink.addr().port(),
            source: SourceIp {
                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                ehlo_name: Arc::from("mta1.volley.test"),
            },
            params,
            from: "tlsrpt@volley.test".into(),
            signers: Some(Arc::new(signers)),
        })),
    };
    let now = humantime::parse_rfc3339("2026-12-04T06:00:00Z").expect("time");
    let pass = outbox.pass(&state, now).await;
    assert_eq!(
        pass.expect("pass"),
        Pass {
            sent: 1,
            failed: 0,
            abandoned: 0
        },
        "{}",
        sink.stderr()
    );
    assert_eq!(outbox.pass(&state, now + DAY).await.expect("pass"), Pass::default());

    let dumped = sink.transactions(1);
    assert_eq!(dumped.len(), 1);
    assert_eq!(dumped[0].rcpts, vec!["<tls@rpt.test>".to_string()]);
    assert!(
        dumped[0].mail_args.starts_with("<tlsrpt@volley.test>"),
        "{}",
        dumped[0].mail_args
    );
    let message = mail_parser::MessageParser::default()
        .parse(&dumped[0].body)
        .expect("message");
    let ctype = message.root_part().content_type().expect("content type");
    assert_eq!((ctype.ctype(), ctype.subtype()), ("multipart", Some("report")));
    assert_eq!(ctype.attribute("report-type"), Some("tlsrpt"));
    let header = |name: &str| message.header(name).and_then(|h| h.as_text()).map(str::to_string);
    let signature: String = message
        .header_raw("DKIM-Signature")
        .expect("the report is DKIM-signed")
        .split_whitespace()
        .collect();
    assert!(
        signature.contains("d=volley.test") && signature.contains("s=rpt"),
        "{signature}"
    );
    assert_eq!(header("TLS-Report-Domain").as_deref(), Some("a.test"));
    assert_eq!(header("TLS-Report-Submitter").as_deref(), Some("volley.test"));
    assert_eq!(
        message.subject(),
        Some("Report Domain: a.test Submitter: volley.test Report-ID: <2026-12-03_a.test@Volley>")
    );
    let attachment = message.attachments().next().expect("attachment");
    assert_eq!(
        attachment.attachment_name(),
        Some("volley.test!a.test!1796256000!1796342399.json.gz")
    );
    let atype = attachment.content_type().expect("attachment type");
    assert_eq!((atype.ctype(), atype.subtype()), ("application", Some("tlsrpt+gzip")));
    assert_eq!(gunzip(attachment.contents()), bytes);
    auth.shutdown().await;
}
