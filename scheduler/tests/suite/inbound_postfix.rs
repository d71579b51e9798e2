//! The feedback loop closed by a real peer: Volley sends a campaign with VERP return paths to a
//! private Postfix that accepts mail for `rcpt.volley.test` and then fails local delivery
//! (local(8): "unknown user"); Postfix's bounce(8) writes genuine RFC 3464 DSNs to the return
//! paths and relays them to `volley inbound`; every bounced recipient is suppressed with
//! Postfix's diagnostic as the reason, and the next campaign to the same list skips them.
//!
//! The listener and the sends share one suppression store and one set of guards, as inside
//! `volley serve`.
//!
//! Needs root (Postfix's master starts as root); CI runs as root. Every socket is on loopback:
//! Postfix's smtpd on 127.0.0.1, Volley's source IPs 127.0.0.2-3, the listener on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use volley_bench::postfix_smtpd::PostfixSmtpd;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::RetryConfig;
use volley_scheduler::inbound::InboundService;
use volley_scheduler::send::SendService;

use super::common::{json_lines as log, suppression_reason as reason};
use super::inbound_listener::config;

/// Recipients per domain: the first `UNKNOWN` at rcpt.volley.test bounce in local delivery,
/// the next `KNOWN` at ok.volley.test are discarded (delivered, as far as Volley can tell).
const UNKNOWN: usize = 12;
const KNOWN: usize = 12;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A campaign `id` to every recipient (header on line 1).
fn campaign(dir: &Path, id: &str) -> Campaign {
    let mut csv = String::from("email\n");
    for i in 0..UNKNOWN {
        csv.push_str(&format!("gone-{i}@rcpt.volley.test\n"));
    }
    for i in 0..KNOWN {
        csv.push_str(&format!("reader-{i}@ok.volley.test\n"));
    }
    std::fs::write(dir.join(format!("{id}.csv")), csv).expect("csv");
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "id = \"{id}\"\nfrom = \"Volley News <news@sender.volley.test>\"\nsubject = \"Hi\"\n\
             text = \"Hello.\"\nrecipients = \"{id}.csv\"\n"
        ),
    )
    .expect("campaign");
    Campaign::load(&path).unwrap_or_else(|e| panic!("campaign loads: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_dsns_for_unknown_users_reach_the_listener_and_suppress_with_postfix_diagnostic() {
    if !is_root() {
        eprintln!("skipped: a private Postfix instance needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    let state = cfg.state_dir.clone();
    // The listener's port is chosen first: Postfix relays the bounce domain to it.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    if let Some(inbound) = cfg.inbound.as_mut() {
        inbound.listen = listen;
    }

    // Postfix: local delivery for rcpt.volley.test (every user unknown), ok.volley.test
    // discarded, and the bounce domain relayed to the listener.
    let transport = dir.path().join("transport");
    std::fs::write(
        &transport,
        format!("bounce.volley.test smtp:[127.0.0.1]:{}\n", listen.port()),
    )
    .expect("transport map");
    let transport_maps = format!("texthash:{}", transport.display());
    let postfix = PostfixSmtpd::start_with_services(
        &dir.path().join("postfix"),
        &[
            ("myhostname", "mx.rcpt.volley.test"),
            ("mydestination", "rcpt.volley.test"),
            ("local_recipient_maps", ""),
            ("local_transport", "local"),
            ("transport_maps", &transport_maps),
            ("queue_run_delay", "1s"),
            ("minimal_backoff_time", "1s"),
            ("maximal_backoff_time", "2s"),
            ("smtp_connection_cache_on_demand", "no"),
        ],
        &["local unix - n n - - local".to_string()],
    )
    .expect("postfix");

    cfg.source_ips = super::common::source_ips(2, 3);
    cfg.routes = super::common::route_all_to(postfix.local_addr());
    cfg.retry = RetryConfig {
        schedule: vec![Duration::from_millis(200).into()],
        max_age: Duration::from_secs(5),
        host_down: Duration::from_secs(60),
    };
    let service = SendService::start(&cfg, Default::default(), true).expect("send service");
    let store = service.store().clone();
    let listener = InboundService::start(&cfg, store.clone(), Some(service.guards().clone()))
        .await
        .expect("inbound starts");

    let first = campaign(dir.path(), "spring");
    let summary = service.launch(&first).expect("launch").wait().await.expect("send");
    assert_eq!(
        summary.delivered,
        (UNKNOWN + KNOWN) as u64,
        "Postfix accepts every recipient (it fails them later): {summary:?}"
    );

    // Postfix bounces each unknown user; the DSNs reach the listener.
    let feedback = state.join("spring/feedback.jsonl");
    let sent_at = Instant::now();
    let deadline = sent_at + Duration::from_secs(60);
    let bounces = loop {
        let lines = log(&feedback);
        if lines.len() >= UNKNOWN {
            break lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {UNKNOWN} DSNs arrived; Postfix log:\n{}",
            lines.len(),
            postfix.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{UNKNOWN} Postfix DSNs suppressed {:?} after the send finished",
        sent_at.elapsed()
    );
    assert_eq!(bounces.len(), UNKNOWN, "one event per DSN: {bounces:#?}");
    let mut lines: Vec<u64> = bounces.iter().filter_map(|b| b["line"].as_u64()).collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        (2..2 + UNKNOWN as u64).collect::<Vec<_>>(),
        "each DSN maps back to its recipient's line"
    );
    for b in &bounces {
        assert_eq!(
            (b["outcome"].as_str(), b["async"].as_bool()),
            (Some("bounced"), Some(true))
        );
        assert_eq!(b["enhanced"], "5.1.1", "{b}");
        assert!(
            ["127.0.0.2", "127.0.0.3"].contains(&b["source_ip"].as_str().unwrap_or_default()),
            "{b}"
        );
    }
    for i in 0..UNKNOWN {
        let why =
            reason(&store, &format!("gone-{i}@rcpt.volley.test")).unwrap_or_else(|| panic!("gone-{i} is suppressed"));
        assert!(
            why.contains(&format!("unknown user: \"gone-{i}\"")),
            "Postfix's diagnostic is the reason: {why}"
        );
    }
    for i in 0..KNOWN {
        assert_eq!(reason(&store, &format!("reader-{i}@ok.volley.test")), None);
    }

    // The next campaign to the same list mails only the known readers.
    let second = campaign(dir.path(), "summer");
    let summary = service
        .launch(&second)
        .expect("launch")
        .wait()
        .await
        .expect("second send");
    assert_eq!(
        (summary.delivered, summary.suppressed),
        (KNOWN as u64, UNKNOWN as u64),
        "{summary:?}"
    );
    drop(listener);
    service.shutdown().await;
}
