//! The inbound listener over real SMTP: a genuine Postfix DSN (made by `bounce(8)`, see
//! feedback/tests/fixtures) and an ARF complaint made by mail-auth's generator suppress their
//! recipients and are logged in the campaign's feedback log, a complaint feeds the reputation
//! guard, the same report twice counts once; relaying is refused; unreadable and forged
//! reports are quarantined and change nothing.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_auth::report::{Feedback as ArfFeedback, FeedbackType};
use serde_json::Value;
use volley_feedback::{Keyring, Token};
use volley_scheduler::config::SendConfig;
use volley_scheduler::inbound::InboundService;
use volley_scheduler::reputation::{Guards, Metric, ReputationConfig, Signal};
use volley_scheduler::suppression::open_store;

use super::common::{feedback_config, json_lines, suppression_reason};

/// The key the Postfix fixtures' tokens were signed with (feedback/tests/intake.rs).
const SECRET: &str = "volley feedback fixtures: not a production secret";
const BOUNCE_DOMAIN: &str = "bounce.volley.test";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../feedback/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(super) fn config(dir: &Path) -> SendConfig {
    feedback_config(dir, SECRET, BOUNCE_DOMAIN)
}

/// A campaign folder whose accounting log has `line` sent to `recipient` at `provider`.
fn sent(state: &Path, campaign: &str, line: u64, recipient: &str, provider: &str) {
    let dir = state.join(campaign);
    std::fs::create_dir_all(&dir).expect("campaign folder");
    let record = serde_json::json!({
        "campaign": campaign, "recipient": recipient, "outcome": "delivered", "line": line,
        "provider": provider, "source_ip": "127.0.0.3",
    });
    std::fs::write(dir.join("accounting.jsonl"), format!("{record}\n")).expect("accounting log");
}

/// One SMTP transaction; the reply code of each step (greeting, EHLO, MAIL, RCPT…, DATA, dot).
pub(super) fn smtp(addr: SocketAddr, mail_from: &str, rcpts: &[&str], message: &[u8]) -> Vec<u16> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut w = stream;
    let mut codes = Vec::new();
    let mut read = |codes: &mut Vec<u16>| loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("reply");
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            codes.push(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
            return;
        }
    };
    read(&mut codes);
    write!(w, "EHLO reporter.test\r\n").expect("write");
    read(&mut codes);
    write!(w, "MAIL FROM:<{mail_from}>\r\n").expect("write");
    read(&mut codes);
    let mut any = false;
    for r in rcpts {
        write!(w, "RCPT TO:<{r}>\r\n").expect("write");
        read(&mut codes);
        any |= codes.last() == Some(&250);
    }
    if any {
        write!(w, "DATA\r\n").expect("write");
        read(&mut codes);
        let payload = volley_engine::smtp::dot::prepare(message).expect("a message SMTP can carry");
        w.write_all(payload.wire_bytes()).expect("write");
        read(&mut codes);
    }
    let _ = w.write_all(b"QUIT\r\n");
    codes
}

/// The `To:` of a fixture (the VERP address Postfix sent the DSN to).
fn to_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().find(|l| l.starts_with("To: ")).expect("To:");
    line.trim_start_matches("To: ")
        .trim_matches(['<', '>', ' '])
        .to_string()
}

/// Waits until the spool is empty (every accepted message processed).
fn drained(state: &Path) {
    let spool = state.join("inbound/spool");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
        if left == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{left} messages still spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postfix_dsn_and_an_arf_complaint_suppress_are_logged_once_and_feed_the_guard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let state = config.state_dir.clone();
    sent(&state, "postfix-fixtures", 7, "nosuchuser@rcpt.volley.test", "other");
    sent(&state, "spring", 4, "reader@dest.test", "yahoo");
    let store = open_store(&config.suppression, &state).expect("store");
    let guards = Arc::new(Guards::open(
        &ReputationConfig {
            min_sample: 1,
            ..ReputationConfig::default()
        },
        &state,
    ));
    let ip3: IpAddr = "127.0.0.3".parse().expect("ip");
    guards.record(
        "spring",
        Some((ip3, "yahoo")),
        Signal::Delivered,
        std::time::SystemTime::now(),
    );
    let service = InboundService::start(&config, store.clone(), Some(guards.clone()))
        .await
        .expect("inbound starts");
    let addr = service.local_addr();

    let dsn = fixture("postfix/local-unknown-user.eml");
    let keys = Keyring::single(1, SECRET.as_bytes());
    let sender = volley_feedback::verp::return_path(&Token::bounce("spring", 4, ip3), &keys, BOUNCE_DOMAIN);
    let original = format!(
        "Return-Path: <{sender}>\r\nFrom: News <news@sender.test>\r\nTo: <reader@dest.test>\r\n\
         Subject: Sale\r\nMessage-ID: <spring.4@sender.test>\r\n\r\nHello.\r\n"
    );
    let arf = ArfFeedback::new(FeedbackType::Abuse)
        .with_user_agent("ExampleFBL/2.0")
        .with_version(1)
        .with_original_mail_from(sender.clone())
        .with_original_rcpt_to("reader@dest.test".to_string())
        .with_message(original)
        .to_rfc5322("fbl@mailbox.test", "fbl@bounce.volley.test", "Complaint")
        .expect("mail-auth writes the report")
        .into_bytes();
    let results = tokio::task::spawn_blocking(move || {
        let dsn_to = to_of(&dsn);
        let first = smtp(addr, "", &[&dsn_to], &dsn);
        let again = smtp(addr, "", &[&dsn_to], &dsn);
        let complaint = smtp(addr, "fbl@mailbox.test", &["fbl@bounce.volley.test"], &arf);
        (first, again, complaint)
    })
    .await
    .expect("join");
    assert_eq!(results.0, [220, 250, 250, 250, 354, 250], "{results:?}");
    assert_eq!(
        results.1.last(),
        Some(&250),
        "a duplicate is accepted (and counted once)"
    );
    assert_eq!(results.2.last(), Some(&250));
    drained(&state);

    let why = suppression_reason(&store, "nosuchuser@rcpt.volley.test").expect("the DSN's recipient is suppressed");
    assert!(
        why.contains("unknown user: \"nosuchuser\""),
        "Postfix's diagnostic is the reason: {why}"
    );
    assert_eq!(
        suppression_reason(&store, "reader@dest.test").as_deref(),
        Some("complaint (abuse)")
    );
    let bounces = json_lines(&state.join("postfix-fixtures/feedback.jsonl"));
    assert_eq!(bounces.len(), 1, "the same DSN twice is one event: {bounces:?}");
    let b = &bounces[0];
    assert_eq!(
        (b["outcome"].as_str(), b["async"].as_bool()),
        (Some("bounced"), Some(true))
    );
    assert_eq!(b["recipient"], "nosuchuser@rcpt.volley.test");
    assert_eq!(b["enhanced"], "5.1.1");
    assert_eq!(b["suppression"], "suppress");
    let complaints = json_lines(&state.join("spring/feedback.jsonl"));
    assert_eq!(complaints.len(), 1, "{complaints:?}");
    let c = &complaints[0];
    assert_eq!(c["outcome"], "complained");
    assert_eq!(
        (c["source_ip"].as_str(), c["provider"].as_str()),
        (Some("127.0.0.3"), Some("yahoo"))
    );
    assert_eq!(c["line"], 4);
    let hold = guards
        .campaign_hold("spring")
        .expect("1 complaint per 1 delivered holds the campaign");
    assert_eq!(hold.metric, Metric::ComplaintRate);
    assert!(guards.route_held(ip3, "yahoo"), "and the route it came from");
    drop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_is_refused_and_unreadable_or_forged_reports_are_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let state = config.state_dir.clone();
    sent(&state, "postfix-fixtures", 7, "nosuchuser@rcpt.volley.test", "other");
    let store = open_store(&config.suppression, &state).expect("store");
    let service = InboundService::start(&config, store.clone(), None)
        .await
        .expect("inbound starts");
    let addr = service.local_addr();
    let dsn = fixture("postfix/local-unknown-user.eml");
    // The token with one character changed: refused, never acted on.
    let to = to_of(&dsn);
    let (local, domain) = to.split_once('@').expect("address");
    let last = local.chars().last().expect("token");
    let forged_to = format!(
        "{}{}@{domain}",
        &local[..local.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    let forged = String::from_utf8_lossy(&dsn).replace(&to, &forged_to).into_bytes();
    let codes = tokio::task::spawn_blocking(move || {
        (
            smtp(
                addr,
                "someone@elsewhere.test",
                &["victim@elsewhere.test"],
                b"Subject: relay me\r\n\r\nhi\r\n",
            ),
            smtp(
                addr,
                "",
                &["postmaster@bounce.volley.test"],
                b"Subject: hello\r\n\r\njust text\r\n",
            ),
            smtp(addr, "", &[&forged_to], &forged),
        )
    })
    .await
    .expect("join");
    assert_eq!(codes.0, [220, 250, 250, 550], "relaying is refused: {codes:?}");
    assert_eq!(codes.1.last(), Some(&250));
    assert_eq!(codes.2.last(), Some(&250));
    drained(&state);
    let quarantine = state.join("inbound/quarantine");
    let mut reasons: Vec<String> = std::fs::read_dir(&quarantine)
        .expect("quarantine")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).expect("sidecar")).expect("json");
            v["reason"]["reason"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["bad-token", "unrecognised"], "both kept with their reason");
    assert_eq!(
        suppression_reason(&store, "nosuchuser@rcpt.volley.test"),
        None,
        "a forged report changes nothing"
    );
    assert!(!state.join("postfix-fixtures/feedback.jsonl").exists());
    drop(service);
}
