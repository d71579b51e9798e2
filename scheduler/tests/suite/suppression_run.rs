//! The suppression list in whole runs: hard bounces are never mailed again, soft bounces are,
//! list scopes apply to their campaigns only, and a Redis outage mid-run loses no update and
//! lets no suppressed address through.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use volley_bench::{CannedReply, RedisServer, Sink, SinkConfig, SinkHandle, Stage};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig};
use volley_scheduler::suppression::{open_store, Entry, SuppressionConfig, Update, GLOBAL};

fn config(dir: &Path, sink: &SinkHandle, suppression: SuppressionConfig) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: crate::common::source_ips(2, 3),
        routes: crate::common::route_all_to(sink.local_addr()),
        smtp: volley_engine::SmtpConfig {
            timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(5)),
            ..Default::default()
        },
        max_in_flight: 1000,
        suppression,
        // Soft bounces are retried every 50 ms and expire after 300 ms.
        retry: RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_millis(300),
            host_down: Duration::from_secs(60),
        },
        // These runs bounce 30 % of their recipients on purpose: the reputation guard would
        // hold them mid-run (its own tests are in reputation_guard.rs).
        reputation: volley_scheduler::reputation::ReputationConfig {
            enabled: false,
            ..Default::default()
        },
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

async fn sink(latency: Duration) -> SinkHandle {
    let canned = vec![
        CannedReply {
            domain: "hard.test".into(),
            stage: Stage::Rcpt,
            text: "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown".into(),
            percent: 100.0,
        },
        CannedReply {
            domain: "soft.test".into(),
            stage: Stage::Rcpt,
            text: "452 4.2.2 Mailbox full".into(),
            percent: 100.0,
        },
        CannedReply {
            domain: "policy.test".into(),
            stage: Stage::Rcpt,
            text: "550 5.7.1 Message rejected as spam".into(),
            percent: 100.0,
        },
    ];
    Sink::start(SinkConfig {
        canned,
        latency,
        ..SinkConfig::default()
    })
    .await
    .expect("sink")
}

fn campaign(dir: &Path, id: &str, list: Option<&str>, recipients: &[String]) -> Campaign {
    let csv: String = std::iter::once("email".to_string())
        .chain(recipients.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
    let list = list
        .map(|l| format!("suppression_list = \"{l}\"\n"))
        .unwrap_or_default();
    let toml = format!(
        "id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n{list}"
    );
    std::fs::write(dir.join(format!("{id}.toml")), toml).expect("toml");
    Campaign::load(&dir.join(format!("{id}.toml"))).expect("campaign loads")
}

fn outcomes(path: &Path) -> std::collections::HashMap<String, Value> {
    // The last line per recipient is its final outcome.
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .map(|v| (v["recipient"].as_str().unwrap_or_default().to_string(), v))
        .collect()
}

fn addresses(domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@{domain}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_bounces_are_never_mailed_again_and_soft_bounces_are() {
    let sink = sink(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &sink, SuppressionConfig::default());
    let (hard, soft, policy, ok) = (
        addresses("hard.test", 20),
        addresses("soft.test", 20),
        addresses("policy.test", 10),
        addresses("ok.test", 20),
    );
    let all: Vec<String> = [&hard, &soft, &policy, &ok].into_iter().flatten().cloned().collect();

    let first = volley_scheduler::send::run(&campaign(dir.path(), "first", None, &all), &cfg)
        .await
        .expect("first run");
    assert!(first.complete);
    assert_eq!((first.delivered, first.bounced, first.suppressed), (20, 50, 0));
    assert_eq!(
        first.expired, 30,
        "soft bounces and policy blocks (about the IP, not the recipient) retried until max_age"
    );
    assert!(first.policy_retries >= 10, "{}", first.policy_retries);
    assert_eq!(
        first.suppression_updates, 40,
        "20 hard + 20 soft; policy blocks write nothing"
    );
    let log = outcomes(&first.accounting_log);
    assert_eq!(log["user0@hard.test"]["category"], "bad-mailbox");
    assert_eq!(log["user0@soft.test"]["category"], "message-expired");
    assert_eq!(log["user0@policy.test"]["category"], "message-expired");
    assert_eq!(log["user0@policy.test"]["code"], 550);

    let tried_in_first: Vec<u64> = soft.iter().chain(&policy).map(|a| sink.rcpts_for(a)).collect();
    assert!(tried_in_first.iter().all(|&n| n >= 1));
    let second = volley_scheduler::send::run(&campaign(dir.path(), "second", None, &all), &cfg)
        .await
        .expect("second run");
    assert!(second.complete);
    assert_eq!(second.suppressed, 20, "exactly the hard bounces");
    assert_eq!((second.delivered, second.bounced), (20, 30));
    let log = outcomes(&second.accounting_log);
    for a in &hard {
        assert_eq!(sink.rcpts_for(a), 1, "{a}: tried in the first run only");
        assert_eq!(log[a]["outcome"], "suppressed", "{a}");
        assert!(
            log[a]["text"].as_str().unwrap_or_default().contains("User unknown"),
            "{:?}",
            log[a]
        );
    }
    for (a, before) in soft.iter().chain(&policy).zip(&tried_in_first) {
        assert!(sink.rcpts_for(a) > *before, "{a} is tried again");
        assert_ne!(log[a]["outcome"], "suppressed", "{a}");
    }
    for a in &ok {
        assert_eq!(sink.accepted_for(a), 2, "{a}");
    }

    // A third run: the soft bounces reach the limit (3 within 7 days) and are suppressed.
    let third = volley_scheduler::send::run(&campaign(dir.path(), "third", None, &all), &cfg)
        .await
        .expect("third run");
    assert_eq!(third.suppressed, 20, "hard only: the soft count reaches 3 in this run");
    let fourth = volley_scheduler::send::run(&campaign(dir.path(), "fourth", None, &all), &cfg)
        .await
        .expect("fourth run");
    assert_eq!(fourth.suppressed, 40, "hard + soft after three soft bounces");
    assert_eq!(fourth.delivered, 20);
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_scope_applies_only_to_campaigns_of_that_list() {
    let sink = sink(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), &sink, SuppressionConfig::default());
    {
        let store = open_store(&cfg.suppression, &cfg.state_dir).expect("store");
        let updates = [
            Update::suppress("news", "a@ok.test", Entry::new("unsubscribed", "manual", 1)),
            Update::suppress(GLOBAL, "b@ok.test", Entry::new("complaint", "manual", 1)),
        ];
        store.apply(&updates).expect("apply");
    }
    let list = vec![
        "a@ok.test".to_string(),
        "b@ok.test".to_string(),
        "c@ok.test".to_string(),
    ];
    let news = volley_scheduler::send::run(&campaign(dir.path(), "news1", Some("news"), &list), &cfg)
        .await
        .expect("news run");
    assert_eq!((news.delivered, news.suppressed), (1, 2));
    let other = volley_scheduler::send::run(&campaign(dir.path(), "promo1", None, &list), &cfg)
        .await
        .expect("other run");
    assert_eq!(
        (other.delivered, other.suppressed),
        (2, 1),
        "only the global entry applies"
    );
    assert_eq!(sink.accepted_for("a@ok.test"), 1);
    assert_eq!(sink.rcpts_for("b@ok.test"), 0);
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_mid_run_loses_no_update_and_sends_nothing_unchecked() {
    // Killed with SIGKILL mid-run; persisting every write, as a production Redis should.
    let redis = RedisServer::start_durable();
    let url = redis.url();
    let sink = sink(Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let suppression = SuppressionConfig {
        redis: Some(url),
        ..SuppressionConfig::default()
    };
    let mut cfg = config(dir.path(), &sink, suppression);
    // A slow sink and few messages in flight keep the run (and the producer's checks) going
    // while Redis is down.
    cfg.max_in_flight = 4;
    let store = open_store(&cfg.suppression, &cfg.state_dir).expect("store");
    let hard = addresses("hard.test", 600);
    let ok = addresses("ok.test", 1400);
    // Every 7th ok address is suppressed before the run.
    let known: Vec<&String> = ok.iter().step_by(7).collect();
    let updates: Vec<Update> = known
        .iter()
        .map(|a| Update::suppress(GLOBAL, a.as_str(), Entry::new("unsubscribed", "manual", 1)))
        .collect();
    store.apply(&updates).expect("pre-suppress");
    // Interleave so hard bounces keep coming during the whole run.
    let all: Vec<String> = ok
        .chunks(7)
        .zip(hard.chunks(3))
        .flat_map(|(o, h)| o.iter().chain(h).cloned())
        .collect();

    let redis = Arc::new(Mutex::new(redis));
    let outage = {
        let redis = redis.clone();
        let log = cfg.state_dir.join("outage").join("accounting.jsonl");
        std::thread::spawn(move || {
            // Mid-campaign: once 300 recipients have an outcome.
            let lines = || std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
            let started = std::time::Instant::now();
            while lines() < 300 && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            redis.lock().unwrap_or_else(|p| p.into_inner()).stop();
            std::thread::sleep(Duration::from_millis(1500));
            redis.lock().unwrap_or_else(|p| p.into_inner()).restart();
        })
    };
    let summary = volley_scheduler::send::run(&campaign(dir.path(), "outage", None, &all), &cfg)
        .await
        .expect("run");
    outage.join().expect("outage thread");
    assert!(summary.complete);
    let log = outcomes(&summary.accounting_log);
    assert_eq!(log.len(), all.len(), "one final outcome per recipient");
    assert_eq!(summary.suppressed, known.len() as u64);
    assert_eq!(summary.bounced, hard.len() as u64);
    assert_eq!(summary.delivered, (ok.len() - known.len()) as u64);
    assert!(
        summary.suppression_paused_s > 0.0,
        "reading paused during the outage: {summary:?}"
    );
    assert_eq!(
        summary.suppression_pending, 0,
        "written after the restart, nothing left over"
    );
    assert_eq!(summary.suppression_updates, hard.len() as u64);
    for a in &known {
        assert_eq!(sink.rcpts_for(a), 0, "{a} is suppressed and must never be sent to");
    }
    // Every hard bounce of the run is in Redis.
    let refs: Vec<&str> = hard.iter().map(String::as_str).collect();
    let store = open_store(&cfg.suppression, &cfg.state_dir).expect("store"); // fresh connections
    let found = store.check(&[GLOBAL], &refs).expect("check after the outage");
    let missing: Vec<&&str> = refs
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(a, _)| a)
        .collect();
    assert!(missing.is_empty(), "hard bounces missing from Redis: {missing:?}");
    sink.shutdown().await;
}

/// One run of `recipients` (each seeded with one soft bounce) against a sink started with
/// `sink`, with `tls`: the summary, the final accounting lines and each recipient's
/// soft-bounce count after it (none of them may be suppressed).
async fn run_seeded(
    id: &str,
    sink: SinkConfig,
    tls: volley_engine::tls::TlsPolicy,
    recipients: &[String],
) -> (
    volley_scheduler::summary::Summary,
    std::collections::HashMap<String, Value>,
    Vec<usize>,
) {
    let sink = Sink::start(sink).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &sink, SuppressionConfig::default());
    cfg.smtp.tls = tls;
    let seed: Vec<Update> = recipients
        .iter()
        .map(|a| Update::SoftBounce {
            scope: GLOBAL.into(),
            address: a.clone(),
            code: Some(452),
            enhanced: Some("4.2.2".into()),
            reason: "mailbox full".into(),
            at: volley_scheduler::suppression::unix_now(),
        })
        .collect();
    open_store(&cfg.suppression, &cfg.state_dir)
        .expect("store")
        .apply(&seed)
        .expect("seed");
    let summary = volley_scheduler::send::run(&campaign(dir.path(), id, None, recipients), &cfg)
        .await
        .expect("run");
    sink.shutdown().await;
    let store = open_store(&cfg.suppression, &cfg.state_dir).expect("store");
    let counts = recipients
        .iter()
        .map(|a| {
            assert!(store.get(GLOBAL, a).expect("get").is_none(), "{a} suppressed");
            store.soft(GLOBAL, a).expect("soft").map_or(0, |r| r.at.len())
        })
        .collect();
    let log = outcomes(&summary.accounting_log);
    (summary, log, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failures_never_count_against_a_recipient_and_a_delivery_resets_the_count() {
    // Regression: Volley's own SIZE refusal was `routing-errors` (a soft bounce), and expiries
    // after `tls = "required"` against a host without STARTTLS or after a refused MAIL FROM
    // counted soft bounces, so an operator's mistake suppressed whole lists.
    use volley_engine::tls::TlsPolicy::{Opportunistic, Required};
    let rcpts = addresses("ok.test", 4);

    // 1. The message is bigger than the server's SIZE: Volley does not send it.
    let small = SinkConfig {
        max_message_size: 100,
        ..SinkConfig::default()
    };
    let (summary, log, counts) = run_seeded("size", small, Opportunistic, &rcpts).await;
    assert_eq!(summary.bounced, 4, "{summary:?}");
    for a in &rcpts {
        assert_eq!(log[a]["category"], "message-size", "{}", log[a]);
        assert!(log[a].get("suppression").is_none(), "{}", log[a]);
    }
    assert_eq!(counts, [1; 4], "Volley's SIZE refusal counted against the recipients");

    // 2. `tls = "required"` against a host without STARTTLS: deferred until expiry.
    let plain = SinkConfig {
        starttls: false,
        ..SinkConfig::default()
    };
    let (summary, _, counts) = run_seeded("tls", plain, Required, &rcpts).await;
    assert_eq!(summary.expired, 4, "{summary:?}");
    assert_eq!(
        counts, [1; 4],
        "the TLS policy's expiries counted against the recipients"
    );

    // 3. MAIL FROM refused (451): about the sender.
    let refusing = SinkConfig {
        canned: vec![CannedReply {
            domain: "*".into(),
            stage: Stage::Mail,
            text: "451 4.3.0 Sender temporarily rejected".into(),
            percent: 100.0,
        }],
        ..SinkConfig::default()
    };
    let (summary, _, counts) = run_seeded("mailfrom", refusing, Opportunistic, &rcpts).await;
    assert_eq!(summary.expired, 4, "{summary:?}");
    assert_eq!(counts, [1; 4], "a refused MAIL FROM counted against the recipients");

    // 4. A delivery resets the count.
    let (summary, _, counts) = run_seeded("fine", SinkConfig::default(), Opportunistic, &rcpts).await;
    assert_eq!(summary.delivered, 4, "{summary:?}");
    assert_eq!(counts, [0; 4], "the deliveries did not reset the soft bounces");
}
