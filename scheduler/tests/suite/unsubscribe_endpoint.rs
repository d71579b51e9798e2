//! The one-click unsubscribe endpoint over real HTTP/1.1 on loopback (hand-written requests on
//! a tokio TCP stream): a POST with `List-Unsubscribe=One-Click` suppresses the recipient in
//! the campaign's list and logs one `unsubscribed` line, durably before its 200; a GET shows
//! the confirmation page and changes nothing; damaged, forged, expired and unknown tokens,
//! big bodies and fast clients are refused and change nothing; the same POST twice counts
//! once. End to end: a `volley = true` campaign sent to Postfix's smtp-sink carries a signed
//! link and address per message; POSTing one link and mailing the other address (to the
//! inbound listener) suppress those two recipients, and the next campaign skips them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use volley_bench::postfix::PostfixSink;
use volley_feedback::{Keyring, Token};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{FeedbackConfig, SendConfig};
use volley_scheduler::inbound::{Applier, InboundService, LIST_FILE};
use volley_scheduler::suppression::{open_store, SuppressionStore};
use volley_scheduler::unsubscribe::{UnsubscribeConfig, UnsubscribeCounters, UnsubscribeService, TOKEN_SOURCE_IP};

const SECRET: &str = "an unsubscribe test secret of 32+ characters";
const BOUNCE_DOMAIN: &str = "bounce.volley.test";
const URL: &str = "https://unsub.volley.test/u";

fn keys() -> Keyring {
    Keyring::single(1, SECRET.as_bytes())
}

fn config(dir: &Path, unsubscribe: &str) -> SendConfig {
    std::fs::write(dir.join("keys"), format!("1 {SECRET}\n")).expect("key file");
    let feedback: FeedbackConfig = toml::from_str(&format!(
        "bounce_domain = \"{BOUNCE_DOMAIN}\"\nkey_file = \"{}\"\nunsubscribe_url = \"{URL}\"\nunsubscribe_max_age = \"1day\"\n",
        dir.join("keys").display()
    ))
    .expect("feedback config");
    let unsubscribe: UnsubscribeConfig =
        toml::from_str(&format!("listen = \"127.0.0.1:0\"\n{unsubscribe}")).expect("unsubscribe config");
    SendConfig {
        state_dir: dir.join("state"),
        feedback: Some(feedback),
        unsubscribe: Some(unsubscribe),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

/// A campaign folder whose accounting log has `line` deferred from 127.0.0.2, then delivered
/// to `recipient` from 127.0.0.3; its suppression list is `news`.
fn sent(state: &Path, campaign: &str, line: u64, recipient: &str) {
    let dir = state.join(campaign);
    std::fs::create_dir_all(&dir).expect("campaign folder");
    let attempt = |outcome: &str, ip: &str| {
        serde_json::json!({
            "campaign": campaign, "recipient": recipient, "outcome": outcome, "line": line,
            "provider": "yahoo", "source_ip": ip,
        })
    };
    let log = format!(
        "{}\n{}\n",
        attempt("deferred", "127.0.0.2"),
        attempt("delivered", "127.0.0.3")
    );
    std::fs::write(dir.join("accounting.jsonl"), log).expect("accounting log");
    std::fs::write(dir.join(LIST_FILE), "news").expect("list file");
}

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), the whole answer read.
async fn http(addr: SocketAddr, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: unsub.volley.test\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        request.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write head");
    // A refused body may not be read at all: the answer counts, not the write.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    if read.is_err() || raw.is_empty() {
        panic!("no answer to {method} {path}: {}", String::from_utf8_lossy(&raw));
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const ONE_CLICK: &[u8] = b"List-Unsubscribe=One-Click";

use super::common::json_lines as log;

fn suppressed(store: &Arc<dyn SuppressionStore>, list: &str, address: &str) -> Option<String> {
    store
        .check(&[list], &[address])
        .expect("check")
        .remove(0)
        .map(|(_, entry)| entry.reason)
}

struct Running {
    service: UnsubscribeService,
    store: Arc<dyn SuppressionStore>,
    counters: Arc<UnsubscribeCounters>,
}

async fn start(config: &SendConfig) -> Running {
    let store = open_store(&config.suppression, &config.state_dir).expect("store");
    let applier = Arc::new(Applier::for_config(config, store.clone(), None));
    let counters = Arc::new(UnsubscribeCounters::default());
    let service = UnsubscribeService::start(config, applier, counters.clone())
        .await
        .expect("the endpoint starts");
    Running {
        service,
        store,
        counters,
    }
}

/// The endpoint of `config(dir, settings)` over a campaign `spring` whose line 4 went to
/// `recipient`; the state directory.
async fn spring(dir: &Path, settings: &str, recipient: &str) -> (std::path::PathBuf, Running) {
    let config = config(dir, settings);
    sent(&config.state_dir, "spring", 4, recipient);
    (config.state_dir.clone(), start(&config).await)
}

fn link(campaign: &str, line: u64, issued: SystemTime) -> String {
    format!(
        "/u/{}",
        Token::unsubscribe(campaign, line, TOKEN_SOURCE_IP, issued).encode(&keys())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_click_post_suppresses_once_and_a_get_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, run) = spring(dir.path(), "", "Reader@Dest.test").await;
    let addr = run.service.local_addr();
    let path = link("spring", 4, SystemTime::now());

    let page = http(addr, "GET", &path, None, b"").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("<form method=\"post\">")
            && page.body.contains("name=\"List-Unsubscribe\" value=\"One-Click\""),
        "the page's button posts the one-click field: {}",
        page.body
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(
        suppressed(&run.store, "news", "reader@dest.test"),
        None,
        "GET never unsubscribes"
    );
    assert!(log(&state.join("spring/feedback.jsonl")).is_empty());

    let done = http(addr, "POST", &path, FORM, ONE_CLICK).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.header("location"), None, "no redirect (RFC 8058 §3.2)");
    // Durable before the 200: the suppression and the feedback line are there on return.
    assert_eq!(
        suppressed(&run.store, "news", "reader@dest.test").as_deref(),
        Some("unsubscribe"),
        "suppressed in the campaign's list"
    );
    let lines = log(&state.join("spring/feedback.jsonl"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["outcome"], "unsubscribed");
    assert_eq!(l["campaign"], "spring");
    assert_eq!(l["recipient"], "reader@dest.test");
    assert_eq!(l["line"], 4);
    assert_eq!(l["list"], "news");
    assert_eq!(
        (l["source_ip"].as_str(), l["provider"].as_str()),
        (Some("127.0.0.3"), Some("yahoo")),
        "the delivered attempt's source IP and provider group"
    );
    assert!(l["text"].as_str().is_some_and(|t| t.contains("RFC 8058")), "{l}");

    // The same link again (a second click, a provider retrying; a newer token of the same
    // message too): 200, counted once.
    let again = http(addr, "POST", &path, FORM, ONE_CLICK).await;
    assert_eq!(again.status, 200, "{again:?}");
    let newer = link("spring", 4, SystemTime::now() + Duration::from_secs(7200));
    assert_eq!(http(addr, "POST", &newer, FORM, ONE_CLICK).await.status, 200);
    assert_eq!(log(&state.join("spring/feedback.jsonl")).len(), 1, "counted once");
    let counts: Vec<(&str, u64)> = run
        .counters
        .snapshot()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(a, n)| (a.name(), n))
        .collect();
    assert_eq!(counts, [("unsubscribed", 1), ("repeated", 2), ("page", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_forged_expired_and_unknown_tokens_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, run) = spring(dir.path(), "", "reader@dest.test").await;
    let addr = run.service.local_addr();
    let good = link("spring", 4, SystemTime::now());
    let forged = format!(
        "/u/{}",
        Token::unsubscribe("spring", 4, TOKEN_SOURCE_IP, SystemTime::now())
            .encode(&Keyring::single(1, b"somebody else's secret of 32+ characters"))
    );
    let mut altered = good.clone().into_bytes();
    // A character inside the MAC (the last one may hold only padding bits).
    let at = altered.len() - 5;
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(altered).expect("ascii");
    let expired = link("spring", 4, SystemTime::now() - Duration::from_secs(3 * 86_400));
    let bounce = format!(
        "/u/{}",
        Token::bounce("spring", 4, "127.0.0.3".parse().expect("ip")).encode(&keys())
    );
    let cases = [
        ("damaged", "POST", "/u/not-a-token".to_string(), ONE_CLICK, 400),
        ("forged", "POST", forged.clone(), ONE_CLICK, 400),
        ("altered", "POST", altered, ONE_CLICK, 400),
        ("bounce token", "POST", bounce, ONE_CLICK, 400),
        ("expired", "POST", expired.clone(), ONE_CLICK, 404),
        ("expired page", "GET", expired, b"", 404),
        ("forged page", "GET", forged, b"", 400),
        (
            "unknown campaign",
            "POST",
            link("autumn", 4, SystemTime::now()),
            ONE_CLICK,
            404,
        ),
        (
            "unknown line",
            "POST",
            link("spring", 5, SystemTime::now()),
            ONE_CLICK,
            404,
        ),
        ("no one-click field", "POST", good.clone(), b"unsubscribe=yes", 400),
        ("empty body", "POST", good.clone(), b"", 400),
        ("other path", "POST", "/elsewhere".to_string(), ONE_CLICK, 404),
    ];
    for (what, method, path, body, status) in cases {
        let reply = http(addr, method, &path, FORM, body).await;
        assert_eq!(reply.status, status, "{what}: {reply:?}");
    }
    assert_eq!(suppressed(&run.store, "news", "reader@dest.test"), None);
    assert!(!state.join("spring/feedback.jsonl").exists(), "nothing logged");
    assert!(!state.join("inbound").exists(), "nothing logged for unknown campaigns");
    let count = |name: &str| {
        run.counters
            .snapshot()
            .into_iter()
            .find(|(a, _)| a.name() == name)
            .map_or(0, |(_, n)| n)
    };
    assert_eq!(
        (
            count("forged"),
            count("expired"),
            count("not_found"),
            count("bad_request")
        ),
        (3, 2, 3, 4)
    );
    // The good link still works afterwards.
    assert_eq!(http(addr, "POST", &good, FORM, ONE_CLICK).await.status, 200);
    assert!(suppressed(&run.store, "news", "reader@dest.test").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_bodies_get_413_and_a_fast_client_429_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, run) = spring(
        dir.path(),
        "rate_per_client = \"4/m\"\nmax_body = 1024\n",
        "reader@dest.test",
    )
    .await;
    let addr = run.service.local_addr();
    let path = link("spring", 4, SystemTime::now());

    let mut big = ONE_CLICK.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2000).collect::<Vec<u8>>());
    let reply = http(addr, "POST", &path, FORM, &big).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(suppressed(&run.store, "news", "reader@dest.test"), None);
    assert!(!state.join("spring/feedback.jsonl").exists());
    for _ in 0..3 {
        assert_eq!(http(addr, "GET", &path, None, b"").await.status, 200);
    }
    let limited = http(addr, "POST", &path, FORM, ONE_CLICK).await;
    assert_eq!(limited.status, 429, "the 5th request in a minute: {limited:?}");
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=15).contains(&retry), "one request per 15 s: {retry}");
    assert_eq!(
        suppressed(&run.store, "news", "reader@dest.test"),
        None,
        "a limited POST changes nothing"
    );
}

/// `extra` appended to a campaign of `emails` whose suppression list is `news`.
fn campaign(dir: &Path, id: &str, emails: &[String], extra: &str) -> Campaign {
    let csv = std::iter::once("email".to_string())
        .chain(emails.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
    let toml = format!(
        "id = \"{id}\"\nfrom = \"Volley News <news@sender.volley.test>\"\nsubject = \"Hi\"\ntext = \"Hello.\"\n\
         recipients = \"{id}.csv\"\nsuppression_list = \"news\"\n{extra}"
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, toml).expect("campaign toml");
    Campaign::load(&path).unwrap_or_else(|e| panic!("campaign loads: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_link_posted_and_a_sent_address_mailed_unsubscribe_before_the_next_campaign() {
    const RECIPIENTS: usize = 12;
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = PostfixSink::start(&dir.path().join("smtp-sink"));
    let mut config = config(dir.path(), "");
    config.source_ips = super::common::source_ips(2, 3);
    config.routes = super::common::route_all_to(sink.addr());
    config.inbound = Some(toml::from_str("listen = \"127.0.0.1:0\"\n").expect("inbound config"));
    let emails: Vec<String> = (0..RECIPIENTS)
        .map(|i| format!("reader{i}@dest{}.test", i % 3))
        .collect();
    let first = campaign(dir.path(), "weekly-1", &emails, "[list_unsubscribe]\nvolley = true\n");

    let live = Arc::new(volley_scheduler::live::Live::default());
    let service = volley_scheduler::send::SendService::start(&config, live, true).expect("send service");
    let applier = Arc::new(Applier::for_config(&config, service.store().clone(), None));
    let endpoint = UnsubscribeService::start(&config, applier.clone(), Arc::default())
        .await
        .expect("endpoint");
    let inbound = InboundService::start_with(&config, applier).await.expect("inbound");

    let summary = service.launch(&first).expect("launch").wait().await.expect("first run");
    assert_eq!(summary.delivered, RECIPIENTS as u64, "{summary:?}");
    let dumped = sink.transactions(RECIPIENTS);
    assert_eq!(dumped.len(), RECIPIENTS, "{}", sink.stderr());
    let header = |rcpt: &str, name: &str| {
        let d = dumped
            .iter()
            .find(|d| d.rcpts.first().is_some_and(|r| r.contains(rcpt)))
            .unwrap_or_else(|| panic!("{rcpt} was sent"));
        d.header(name).unwrap_or_else(|| panic!("{rcpt}: no {name}"))
    };
    // reader1 clicks the link; reader2 mails the address.
    let value = header("<reader1@", "List-Unsubscribe");
    assert_eq!(
        header("<reader1@", "List-Unsubscribe-Post"),
        "List-Unsubscribe=One-Click"
    );
    let (url, mailto) = value
        .split_once(',')
        .map(|(u, m)| (u.trim(), m.trim()))
        .unwrap_or_else(|| panic!("a link and an address: {value:?}"));
    let path = url
        .trim_matches(['<', '>'])
        .strip_prefix("https://unsub.volley.test")
        .unwrap_or_else(|| panic!("{value}"))
        .to_string();
    assert!(
        path.starts_with("/u/") && mailto.starts_with("<mailto:unsubscribe+"),
        "{value}"
    );
    assert_eq!(
        path.trim_start_matches("/u/"),
        mailto
            .trim_start_matches("<mailto:unsubscribe+")
            .split('@')
            .next()
            .unwrap_or(""),
        "one token in both"
    );
    let other = header("<reader2@", "List-Unsubscribe");
    assert_ne!(other, value, "a token per recipient");
    let reply = http(endpoint.local_addr(), "POST", &path, FORM, ONE_CLICK).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let address = other
        .split_once("<mailto:")
        .and_then(|(_, rest)| rest.split('?').next())
        .expect("mailto address")
        .to_string();
    let inbound_addr = inbound.local_addr();
    let codes = tokio::task::spawn_blocking(move || {
        let raw = b"From: reader2@dest2.test\r\nTo: list\r\nSubject: unsubscribe\r\n\r\n\r\n";
        super::inbound_listener::smtp(inbound_addr, "reader2@dest2.test", &[&address], raw)
    })
    .await
    .expect("join");
    assert_eq!(codes.last(), Some(&250), "{codes:?}");
    let feedback = state_log(&config, "weekly-1");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut lines = feedback();
    while lines.len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lines = feedback();
    }
    let mut who: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["recipient"].as_str().unwrap_or("").to_string(),
                l["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    who.sort();
    assert_eq!(who.len(), 2, "{lines:?}");
    assert!(who[0].0 == "reader1@dest1.test" && who[0].1.contains("link"), "{who:?}");
    assert!(who[1].0 == "reader2@dest2.test" && who[1].1.contains("mail"), "{who:?}");
    for l in &lines {
        let ip = l["source_ip"].as_str().unwrap_or("");
        assert!(ip == "127.0.0.2" || ip == "127.0.0.3", "the IP that sent it: {l}");
    }

    // The next campaign of the same list skips them.
    let second = campaign(dir.path(), "weekly-2", &emails, "");
    let summary = service
        .launch(&second)
        .expect("launch")
        .wait()
        .await
        .expect("second run");
    assert_eq!(
        (summary.delivered, summary.suppressed),
        ((RECIPIENTS - 2) as u64, 2),
        "{summary:?}"
    );
    drop((endpoint, inbound));
    service.shutdown().await;
}

fn state_log(config: &SendConfig, campaign: &str) -> impl Fn() -> Vec<Value> {
    let path = config.state_dir.join(campaign).join("feedback.jsonl");
    move || log(&path)
}

#[test]
fn unsubscribe_settings_problems_name_line_field_and_value() {
    let text = "source_ips = [{ address = \"127.0.0.2\", ehlo_name = \"a.test\" }]\n\
                [feedback]\n\
                bounce_domain = \"bounce.volley.test\"\n\
                key_file = \"k\"\n\
                unsubscribe_url = \"http://unsub.volley.test/u\"\n\
                [unsubscribe]\n\
                listen = \"127.0.0.1:0\"\n\
                max_body = 10\n\
                rate_per_client = \"0/m\"\n";
    let e = SendConfig::parse(text, Path::new("volley.toml"))
        .expect_err("a rate of 0")
        .to_string();
    assert!(e.contains("rate_per_client") && e.contains("0/m"), "{e}");
    let Err(volley_scheduler::config::ConfigError::Problems { problems, .. }) =
        SendConfig::parse(&text.replace("\"0/m\"", "\"10/m\""), Path::new("volley.toml"))
    else {
        panic!("problems expected")
    };
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        shown.iter().any(|s| s.starts_with(
            "line 5: field `feedback.unsubscribe_url` = \"http://unsub.volley.test/u\": must be an https:// URL"
        )),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("line 8: field `unsubscribe.max_body` = \"10\"")),
        "{shown:#?}"
    );
    let without_url = text
        .replace("unsubscribe_url = \"http://unsub.volley.test/u\"\n", "")
        .replace("max_body = 10\n", "")
        .replace("\"0/m\"", "\"10/m\"");
    let Err(volley_scheduler::config::ConfigError::Problems { problems, .. }) =
        SendConfig::parse(&without_url, Path::new("volley.toml"))
    else {
        panic!("problems expected")
    };
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("needs [feedback] with unsubscribe_url")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_post_many_times_at_once_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, run) = spring(dir.path(), "", "reader@dest.test").await;
    let addr = run.service.local_addr();
    let path = link("spring", 4, SystemTime::now());
    let posts: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { http(addr, "POST", &path, FORM, ONE_CLICK).await.status })
        })
        .collect();
    for post in posts {
        assert_eq!(post.await.expect("join"), 200);
    }
    assert_eq!(
        log(&state.join("spring/feedback.jsonl")).len(),
        1,
        "one unsubscribe however many arrive at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_cut_off_and_holds_the_connection_cap_until_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = "max_connections = 1\nconnection_timeout = \"1s\"\n";
    let (_state, run) = spring(dir.path(), settings, "reader@dest.test").await;
    let addr = run.service.local_addr();
    let started = std::time::Instant::now();
    // Half a request head, then silence: it holds the only connection slot.
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    silent
        .write_all(b"GET /u/x HTTP/1.1\r\nHost: unsub")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = http(addr, "GET", &link("spring", 4, SystemTime::now()), None, b"").await;
    assert_eq!(second.status, 200, "{second:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "the second client waited for the first one's deadline: {waited:?}"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent client was cut off without an answer: {closed:?} {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_campaign_s_link_unsubscribes_the_recipient_of_the_node_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "");
    // A cluster node's log of campaign `autumn` (original lines), under `state/cluster/`.
    sent(&config.state_dir.join("cluster"), "autumn", 1_004, "Reader@Dest.test");
    let run = start(&config).await;
    let done = http(
        run.service.local_addr(),
        "POST",
        &link("autumn", 1_004, SystemTime::now()),
        FORM,
        ONE_CLICK,
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        suppressed(&run.store, "news", "reader@dest.test").as_deref(),
        Some("unsubscribe"),
        "suppressed in the cluster campaign's list"
    );
    let lines = log(&config.state_dir.join("cluster/autumn/feedback.jsonl"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (&lines[0]["campaign"], &lines[0]["line"], &lines[0]["source_ip"]),
        (
            &serde_json::json!("autumn"),
            &serde_json::json!(1_004),
            &serde_json::json!("127.0.0.3")
        )
    );
}
