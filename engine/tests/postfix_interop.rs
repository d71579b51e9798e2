//! Interop with a peer nobody here wrote: Postfix's `smtp-sink` (Debian package `postfix`), a
//! PIPELINING SMTP server. The engine delivers 500 messages from two source IPs through a
//! [`DeliveryPool`]; the test then checks what *smtp-sink* says it received — its `-d` dump files
//! (one per transaction, with the client address, EHLO, MAIL and RCPT arguments and the
//! un-stuffed message) and its `-c` message counter — against what was sent.
//!
//! Every socket is on 127.0.0.1; smtp-sink listens on a port the test picked free.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use volley_bench::postfix::{Dumped, PostfixSink};
use volley_engine::smtp::dot::prepare;
use volley_engine::{
    Delivery, DeliveryPool, DeliveryReport, Disposition, Envelope, MxHost, RouteKey, SmtpConfig, SourceIp,
};

const MESSAGES: u64 = 500;
const SOURCES: [(&str, &str); 2] = [("127.0.0.2", "mta2.volley.test"), ("127.0.0.3", "mta3.volley.test")];
const MAIL_FROM: &str = "bounces@sender.test";
/// Upper bound on the whole exchange, so a stuck peer fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(15);

/// The test's `X-Interop-Tag` header in what smtp-sink stored.
fn tag_of(d: &Dumped) -> Option<u64> {
    d.header("X-Interop-Tag")?.trim().parse().ok()
}

/// What the test sends as message `tag`.
struct Sent {
    source: usize,
    recipients: Vec<String>,
    message: Vec<u8>,
}

fn sent(tag: u64) -> Sent {
    let recipients = (0..1 + tag % 3)
        .map(|k| format!("rcpt{tag}-{k}@dest{}.test", tag % 7))
        .collect();
    // Lines starting with dots check the dot-stuffing round trip (RFC 5321 §4.5.2).
    let message = format!(
        "From: Interop <{MAIL_FROM}>\r\nTo: undisclosed-recipients:;\r\nSubject: interop {tag}\r\n\
         Message-ID: <{tag}.interop@sender.test>\r\nX-Interop-Tag: {tag}\r\n\r\n\
         Hello {tag}.\r\n.leading dot {tag}\r\n..two dots {tag}\r\n.\r\nend {tag}\r\n"
    );
    Sent {
        source: (tag % 2) as usize,
        recipients,
        message: message.into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_receives_exactly_what_the_pool_reports_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = PostfixSink::start(dir.path());
    assert!(sink.addr().ip().is_loopback());

    let config = SmtpConfig::default();
    let params = config.session_params().expect("default SMTP config is valid");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DeliveryReport<u64>>();
    let pool = DeliveryPool::new(config, params, tx);
    let routes: Vec<RouteKey> = SOURCES
        .iter()
        .map(|(ip, name)| {
            RouteKey::new(
                SourceIp {
                    ip: ip.parse::<IpAddr>().expect("source IP"),
                    ehlo_name: (*name).into(),
                },
                MxHost {
                    name: "127.0.0.1".into(),
                    addr: sink.addr(),
                },
            )
        })
        .collect();

    let mut reports = BTreeMap::new();
    let exchange = async {
        for tag in 0..MESSAGES {
            let s = sent(tag);
            let delivery = Delivery {
                tag,
                route: routes[s.source].clone(),
                envelope: Envelope {
                    mail_from: MAIL_FROM.into(),
                    recipients: s.recipients,
                },
                payload: prepare(&s.message).expect("test message is valid"),
            };
            pool.submit(delivery).await;
        }
        pool.close().await;
        while reports.len() < MESSAGES as usize {
            let report = rx.recv().await.expect("one report per delivery");
            assert!(
                reports.insert(report.tag, report).is_none(),
                "two reports for one delivery"
            );
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("500 deliveries to smtp-sink did not finish within {DEADLINE:?}"));

    // The engine's view: every recipient of every message delivered, in clear (no STARTTLS offered).
    for (tag, report) in &reports {
        assert_eq!(
            report.statuses.len(),
            sent(*tag).recipients.len(),
            "message {tag}: one status per recipient"
        );
        for status in &report.statuses {
            assert_eq!(status.disposition, Disposition::Delivered, "message {tag}: {status:?}");
            assert_eq!(status.code, Some(250), "message {tag}: {status:?}");
        }
        assert!(!report.tls, "smtp-sink does not offer STARTTLS");
    }
    let stats = pool.stats();
    assert!(
        stats.connections_opened >= 2,
        "one connection per source IP at least: {stats:?}"
    );
    assert!(
        stats.connections_opened < MESSAGES,
        "connections are reused, not opened per message: {stats:?}"
    );

    // smtp-sink's view: exactly those transactions, envelopes, sources and messages.
    let dumped = sink.transactions(MESSAGES as usize);
    let text_of = |d: &Dumped| String::from_utf8_lossy(&d.body).into_owned();
    assert_eq!(
        dumped.len(),
        MESSAGES as usize,
        "smtp-sink recorded {} transactions",
        dumped.len()
    );
    let mut seen = BTreeMap::new();
    for d in &dumped {
        let tag =
            tag_of(d).unwrap_or_else(|| panic!("{}: no X-Interop-Tag in what smtp-sink stored", d.file.display()));
        assert!(
            seen.insert(tag, d).is_none(),
            "message {tag} received twice by smtp-sink"
        );
    }
    for tag in 0..MESSAGES {
        let d = seen
            .get(&tag)
            .unwrap_or_else(|| panic!("smtp-sink never received message {tag}"));
        let s = sent(tag);
        let (ip, ehlo) = SOURCES[s.source];
        assert_eq!(d.client_addr, ip, "message {tag}: client address seen by smtp-sink");
        assert_eq!(d.helo, ehlo, "message {tag}: EHLO argument");
        let mut mail = d.mail_args.split_whitespace();
        assert_eq!(
            mail.next(),
            Some(format!("<{MAIL_FROM}>").as_str()),
            "message {tag}: MAIL FROM"
        );
        for param in mail {
            if let Some(size) = param.strip_prefix("SIZE=") {
                let payload = prepare(&s.message).expect("test message is valid");
                assert_eq!(
                    size,
                    payload.message_size().to_string(),
                    "message {tag}: SIZE= (RFC 1870)"
                );
            }
        }
        let rcpts: Vec<&str> = d.rcpts.iter().filter_map(|r| r.split_whitespace().next()).collect();
        let expected: Vec<String> = s.recipients.iter().map(|r| format!("<{r}>")).collect();
        assert_eq!(rcpts, expected, "message {tag}: RCPT TO, in order");
        assert!(d.complete, "message {tag}: dump file not finished");
        assert_eq!(
            String::from_utf8_lossy(&d.message_crlf()),
            String::from_utf8_lossy(&s.message),
            "message {tag}: the message smtp-sink stored, CRLF restored, is the one sent"
        );
        for line in [
            format!("\n.leading dot {tag}\n"),
            format!("\n..two dots {tag}\n"),
            format!("\n.\nend {tag}\n"),
        ] {
            assert!(
                text_of(d).contains(&line),
                "message {tag}: {line:?} not un-stuffed as sent:\n{}",
                text_of(d)
            );
        }
    }
    let recipients: usize = dumped.iter().map(|d| d.rcpts.len()).sum();
    let expected: usize = (0..MESSAGES).map(|t| sent(t).recipients.len()).sum();
    assert_eq!(recipients, expected, "RCPT records at smtp-sink");
    assert_eq!(
        sink.message_counter(),
        Some(MESSAGES),
        "smtp-sink's own -c message counter"
    );
}
