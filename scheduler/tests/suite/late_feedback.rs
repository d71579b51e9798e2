//! A receiver that bounces after accepting: the sink (`bounce_later_pct`, like `volley sink
//! --bounce-later 5`) accepts every message of a VERP campaign, then sends an RFC 3464 DSN
//! for its late-bouncing share to each message's return path at the inbound listener, which
//! runs beside the campaign as in `volley serve`. Every one of those recipients — and no
//! other — is suppressed with the sink's diagnostic as the reason and logged `bounced` with
//! `async: true`. And complaints logged by a listener in its own process (`volley inbound`
//! beside `volley send`) still hold the campaign.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_bench::{late_bounce_diagnostic, FeedbackKind, Sink, SinkConfig};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;
use volley_scheduler::inbound::{InboundService, FEEDBACK_LOG};
use volley_scheduler::live::Live;
use volley_scheduler::reputation::{HoldDir, ReputationConfig, Scope};
use volley_scheduler::send::SendService;

use super::common::{feedback_config, json_lines, route_all_to, source_ips, suppression_reason};

const RECIPIENTS: usize = 400;
const BOUNCE_DOMAIN: &str = "bounce.volley.test";

fn config(dir: &Path) -> SendConfig {
    SendConfig {
        source_ips: source_ips(2, 3),
        ..feedback_config(dir, "late-feedback test key, not a production secret", BOUNCE_DOMAIN)
    }
}

/// Campaign `id` to `n` recipients; the campaign and its addresses.
fn campaign(dir: &Path, id: &str, n: usize) -> (Campaign, Vec<String>) {
    let emails: Vec<String> = (0..n).map(|i| format!("reader{i}@dest{}.test", i % 4)).collect();
    std::fs::write(dir.join(format!("{id}.csv")), format!("email\n{}\n", emails.join("\n"))).expect("csv");
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(
        &path,
        format!(
            "id = \"{id}\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n"
        ),
    )
    .expect("campaign toml");
    (Campaign::load(&path).expect("campaign loads"), emails)
}

/// A free loopback address for the inbound listener, set in `config`: the sink sends there
/// before the listener is up (its reports are retried).
fn listener_addr(config: &mut SendConfig) -> std::net::SocketAddr {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    if let Some(inbound) = config.inbound.as_mut() {
        inbound.listen = listen;
    }
    listen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_bounces_from_the_sink_suppress_their_recipients_with_its_diagnostic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    // The listener's address is chosen first: the sink sends there, and the campaign's routes
    // go to the sink.
    let listen = listener_addr(&mut config);
    let sink_config = SinkConfig {
        bounce_later_pct: 5.0,
        feedback_to: Some(listen),
        ..SinkConfig::default()
    };
    let (campaign, emails) = campaign(dir.path(), "late", RECIPIENTS);
    let expected: BTreeSet<String> = emails
        .iter()
        .filter(|e| sink_config.feedback_for(e) == Some(FeedbackKind::LateBounce))
        .cloned()
        .collect();
    assert_eq!(expected.len(), 21, "5 % of {RECIPIENTS} by the sink's hash");
    let sink = Sink::start(sink_config).await.expect("sink");
    config.routes = route_all_to(sink.local_addr());
    // As `volley serve` runs them: the listener acts on the service's suppression list.
    let service = SendService::start(&config, Arc::new(Live::default()), false).expect("service");
    let inbound = InboundService::start(&config, service.store().clone(), Some(service.guards().clone()))
        .await
        .expect("inbound starts");
    service.guards_fed_in_process();
    let summary = service.launch(&campaign).expect("launch").wait().await.expect("run");
    assert_eq!(summary.delivered, RECIPIENTS as u64, "accepted first, bounced later");

    let log = dir.path().join("state/late").join(FEEDBACK_LOG);
    let deadline = Instant::now() + Duration::from_secs(30);
    while json_lines(&log).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} late bounces logged; sink {:?}",
            json_lines(&log).len(),
            expected.len(),
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = json_lines(&log);
    assert_eq!(lines.len(), expected.len(), "one line per late bounce: {lines:?}");
    let mut logged = BTreeSet::new();
    for line in &lines {
        let recipient = line["recipient"].as_str().expect("recipient").to_string();
        assert_eq!(
            (line["outcome"].as_str(), line["async"].as_bool()),
            (Some("bounced"), Some(true)),
            "{line}"
        );
        assert_eq!(line["enhanced"], "5.1.1", "{line}");
        assert_eq!(line["code"], 550, "{line}");
        assert_eq!(line["text"].as_str(), Some(late_bounce_diagnostic(&recipient).as_str()));
        assert_eq!(line["suppression"], "suppress", "{line}");
        assert!(line["line"].as_u64().is_some(), "tied to its recipient line: {line}");
        logged.insert(recipient);
    }
    assert_eq!(logged, expected, "exactly the sink's late-bouncing share");
    let store = service.store().clone();
    for address in &emails {
        let why = suppression_reason(&store, address);
        if expected.contains(address) {
            assert_eq!(why, Some(late_bounce_diagnostic(address)), "{address}");
        } else {
            assert_eq!(why, None, "{address} was not bounced");
        }
    }
    let stats = sink.stats();
    assert_eq!(
        (stats.late_bounces_sent, stats.complaints_sent, stats.feedback_failed),
        (expected.len() as u64, 0, 0)
    );
    drop(inbound);
    service.shutdown().await;
    sink.shutdown().await;
}

/// `volley send` with `volley inbound` in its own process beside it: the listener suppresses
/// and logs complaints but has no guards (it does not see the deliveries); the send service
/// reads the complaints from the campaign's feedback log into its guards, so a list drawing
/// complaints past 0.3 % is held before it ends, and finishes once the holds are lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complaints_logged_by_a_separate_listener_hold_the_campaign() {
    const LOUD: usize = 1500;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.max_in_flight = 8;
    config.reputation = ReputationConfig {
        min_sample: 200,
        routes: false,
        ..ReputationConfig::default()
    };
    let listen = listener_addr(&mut config);
    let sink = Sink::start(SinkConfig {
        complain_pct: 2.0,
        feedback_to: Some(listen),
        latency: Duration::from_millis(3),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    config.routes = route_all_to(sink.local_addr());
    let (campaign, _) = campaign(dir.path(), "loud", LOUD);
    let service = SendService::start(&config, Arc::new(Live::default()), false).expect("service");
    // As `volley inbound` runs it: no guards.
    let inbound = InboundService::start(&config, service.store().clone(), None)
        .await
        .expect("inbound starts");
    let launched = service.launch(&campaign).expect("launch");
    let state = dir.path().join("state");
    let hold_file = state.join("holds/campaign-loud.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !hold_file.is_file() {
        assert!(
            !launched.is_finished(),
            "the campaign finished without a complaint hold; sink {:?}",
            sink.stats()
        );
        assert!(Instant::now() < deadline, "no hold; sink {:?}", sink.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held_at = launched.live.snapshot().finals();
    assert!(held_at < LOUD as u64, "held before the end ({held_at} of {LOUD})");
    let hold: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&hold_file).expect("hold file")).expect("hold JSON");
    assert_eq!(hold["metric"], "complaint_rate", "{hold}");
    assert!(hold["sample"].as_u64() >= Some(200), "{hold}");
    // `volley reputation resume --campaign loud` whenever it is held, until the end.
    let scope = Scope::Campaign {
        campaign: "loud".into(),
    };
    let holds = HoldDir::new(&state);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !launched.is_finished() {
        assert!(Instant::now() < deadline, "not finished; sink {:?}", sink.stats());
        holds.lift(&scope).expect("lift");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = launched.wait().await.expect("run");
    assert_eq!(summary.delivered, LOUD as u64);
    drop(inbound);
    service.shutdown().await;
    sink.shutdown().await;
}
