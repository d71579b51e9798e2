//! Whole runs of `send::run` against the in-process sink, checked from the accounting log.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde_json::Value;
use std::time::Duration;
use volley_bench::{Sink, SinkConfig};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig, SourceIpConfig};

fn config(dir: &Path, routes: &[(&str, String)]) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: (2..=5)
            .map(|i| SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), format!("mta{i}.volley.test")))
            .collect(),
        routes: routes.iter().map(|(d, t)| (d.to_string(), t.clone())).collect(),
        smtp: volley_engine::SmtpConfig {
            timeouts: volley_engine::timeouts::Timeouts::uniform(std::time::Duration::from_secs(5)),
            ..Default::default()
        },
        max_in_flight: 1000,
        retry: quick_retries(30_000),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

/// Retries every 50 ms, given up after `max_age_ms`.
fn quick_retries(max_age_ms: u64) -> RetryConfig {
    RetryConfig {
        schedule: vec![Duration::from_millis(50).into()],
        max_age: Duration::from_millis(max_age_ms),
        host_down: Duration::from_secs(60),
    }
}

fn write_campaign(dir: &Path, csv: &str) -> Campaign {
    std::fs::write(dir.join("recipients.csv"), csv).expect("csv");
    std::fs::write(
        dir.join("campaign.toml"),
        "id = \"t1\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi {{name}}\"\ntext = \"Hello {{name}}\"\nrecipients = \"recipients.csv\"\n",
    )
    .expect("toml");
    Campaign::load(&dir.join("campaign.toml")).expect("campaign loads")
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempfail_and_permfail_give_exactly_one_outcome_per_recipient() {
    let sink = Sink::start(SinkConfig {
        tempfail_pct: 5.0,
        permfail_pct: 2.0,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 4000;
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("u{i}@d{}.test,N{i}\n", i % 50));
    }
    let campaign = write_campaign(dir.path(), &csv);
    let summary = volley_scheduler::send::run(&campaign, &config(dir.path(), &[("*", sink.local_addr().to_string())]))
        .await
        .expect("run");

    let log = read_log(&summary.accounting_log);
    assert!(log.len() > n, "one line per attempt: every recipient plus the retries");
    let mut per_rcpt: HashMap<&str, &str> = HashMap::new();
    let mut deferrals = 0u64;
    for line in &log {
        for field in [
            "ts",
            "campaign",
            "recipient",
            "domain",
            "source_ip",
            "mx",
            "outcome",
            "code",
            "enhanced",
            "category",
            "attempt",
            "latency_ms",
            "message_id",
        ] {
            assert!(line.get(field).is_some(), "field {field} missing in {line}");
        }
        let rcpt = line["recipient"].as_str().expect("recipient");
        let outcome = line["outcome"].as_str().expect("outcome");
        if outcome == "deferred" {
            deferrals += 1;
            assert!(
                line["next_attempt"].as_str().is_some(),
                "a deferral says when it is retried: {line}"
            );
            continue;
        }
        assert!(per_rcpt.insert(rcpt, outcome).is_none(), "{rcpt}: two final outcomes");
    }
    let stats = sink.stats();
    let count = |o: &str| per_rcpt.values().filter(|&&v| v == o).count() as u64;
    assert_eq!(per_rcpt.len(), n, "every recipient has a final outcome");
    assert_eq!(count("delivered"), stats.messages);
    assert_eq!(count("bounced"), stats.rcpt_permfails);
    assert_eq!(
        deferrals, stats.rcpt_tempfails,
        "every 4xx is one deferral, then a retry"
    );
    assert_eq!(count("delivered") + count("bounced"), n as u64, "retried until final");
    assert!(stats.rcpt_tempfails > 0 && stats.rcpt_permfails > 0);
    for (rcpt, outcome) in &per_rcpt {
        assert_eq!(sink.accepted_for(rcpt), u64::from(*outcome == "delivered"), "{rcpt}");
    }
    assert_eq!(
        (summary.delivered, summary.bounced),
        (count("delivered"), count("bounced"))
    );
    assert_eq!(
        (summary.deferred, summary.deferrals, summary.retried),
        (0, deferrals, deferrals)
    );
    assert!(summary.complete);
    assert_eq!(summary.recipients, n as u64);
    assert_eq!(summary.by_source_ip.len(), 4, "rotation used every source IP");
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_go_to_the_rejects_file_and_the_send_continues() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = "email,name\n\
               good1@a.test,One\n\
               not-an-address,Two\n\
               good2@a.test,Three,extra-field\n\
               good3@a.test,\"Evil\r\nBcc: victim@x.test\"\n\
               good1@a.test,Duplicate\n\
               good4@nowhere.test,Four\n\
               good5@a.test,Five\n";
    let campaign = write_campaign(dir.path(), csv);
    // Only a.test has a route: nowhere.test is deferred with a routing error, retried, and
    // expired when its retry period (here 300 ms) is over.
    let mut cfg = config(dir.path(), &[("a.test", sink.local_addr().to_string())]);
    cfg.retry = quick_retries(300);
    let summary = volley_scheduler::send::run(&campaign, &cfg).await.expect("run");
    assert_eq!(summary.rows, 7);
    assert_eq!(summary.delivered, 2, "{summary:?}");
    assert_eq!(summary.rejected, 3, "{summary:?}");
    assert_eq!(summary.duplicates, 1);
    assert_eq!((summary.deferred, summary.expired, summary.bounced), (0, 1, 1));
    assert!(summary.retried >= 2, "{summary:?}");
    assert_eq!(sink.accepted_for("good1@a.test"), 1, "duplicate sent once");
    assert_eq!(sink.accepted_for("good5@a.test"), 1);
    assert_eq!(sink.accepted_for("good3@a.test"), 0, "header injection refused");

    let rejects = read_log(&summary.rejects_file);
    let lines: Vec<u64> = rejects.iter().map(|r| r["line"].as_u64().expect("line")).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert_eq!(rejects[0]["field"], "email");
    assert_eq!(rejects[0]["value"], "not-an-address");
    assert!(rejects
        .iter()
        .all(|r| r["file"].as_str().is_some_and(|f| f.ends_with("recipients.csv"))));
    let injection = rejects[2]["reason"].as_str().unwrap_or_default().to_string()
        + rejects[2]["field"].as_str().unwrap_or_default();
    assert!(
        injection.to_lowercase().contains("subject") || injection.contains("name"),
        "{injection}"
    );

    let log = read_log(&summary.accounting_log);
    let outcome_of = |r: &str| log.iter().rfind(|l| l["recipient"] == r).map(|l| l["outcome"].clone());
    assert_eq!(outcome_of("good4@nowhere.test"), Some(Value::from("expired")));
    assert_eq!(
        log.iter().filter(|l| l["recipient"] == "good4@nowhere.test").count() as u64,
        summary.retried + 1
    );
    let rejected: Vec<&Value> = log.iter().filter(|l| l["outcome"] == "rejected").collect();
    assert_eq!(rejected.len(), 3);
    // Regression: the accounting log's `recipient` is the address (as far as it is known),
    // never another field's offending value such as the injected header text.
    let recipients: Vec<&str> = rejected
        .iter()
        .map(|l| l["recipient"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(recipients, ["not-an-address", "", "good3@a.test"]);
    assert_eq!(rejected[2]["domain"], "a.test");
    assert!(rejected
        .iter()
        .all(|l| !l["recipient"].as_str().unwrap_or_default().contains('\n')));
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_rows_are_bounded_when_one_slow_site_holds_the_whole_list() {
    // Regression: rows parked behind a busy site were unbounded, so a 10M list to one site
    // parked nearly all of it (680 MiB peak RSS). Now the producer waits at `max_parked`.
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(5),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 3000;
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("u{i}@one.test,N{i}\n"));
    }
    let campaign = write_campaign(dir.path(), &csv);
    let mut cfg = config(dir.path(), &[("*", sink.local_addr().to_string())]);
    cfg.max_in_flight_per_site = 20;
    cfg.max_parked = 100;
    let summary = volley_scheduler::send::run(&campaign, &cfg).await.expect("run");
    assert_eq!(summary.delivered, n as u64, "{summary:?}");
    assert!(summary.complete);
    assert!(summary.peak_parked > 0, "the test must make the site park rows");
    assert!(
        summary.peak_parked <= (cfg.max_parked + cfg.max_in_flight_per_site) as u64,
        "peak parked {} over the bound",
        summary.peak_parked
    );
    for i in 0..n {
        assert_eq!(sink.accepted_for(&format!("u{i}@one.test")), 1);
    }
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_refused_after_the_message_is_built_are_in_the_rejects_file() {
    // Regression: a header line over 998 octets (a List-Unsubscribe URL that cannot fold) is
    // found when the built message is prepared for DATA (as a DKIM failure is); such rows were `rejected` in the accounting log but
    // missing from rejects.jsonl.
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "x".repeat(1500);
    let csv = format!(
        "email,name,tag\nok1@a.test,One,short\nlong@a.test,Two,{long}\nbad-address,Three,t\nok2@a.test,Four,t\n"
    );
    std::fs::write(dir.path().join("recipients.csv"), csv).expect("csv");
    std::fs::write(
        dir.path().join("campaign.toml"),
        "id = \"t6\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi {{name}}\"\ntext = \"Hello\"\n\
         recipients = \"recipients.csv\"\n[list_unsubscribe]\nurl = \"https://u.test/u?t={{tag}}\"\n",
    )
    .expect("toml");
    let campaign = Campaign::load(&dir.path().join("campaign.toml")).expect("campaign loads");
    let cfg = config(dir.path(), &[("*", sink.local_addr().to_string())]);
    let summary = volley_scheduler::send::run(&campaign, &cfg).await.expect("run");
    assert_eq!((summary.delivered, summary.rejected), (2, 2), "{summary:?}");
    let log = read_log(&summary.accounting_log);
    let mut rejected: Vec<u64> = log
        .iter()
        .filter(|l| l["outcome"] == "rejected")
        .map(|l| l["line"].as_u64().expect("line"))
        .collect();
    rejected.sort_unstable();
    let mut in_file: Vec<u64> = read_log(&summary.rejects_file)
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    in_file.sort_unstable();
    assert_eq!(rejected, [3, 4]);
    assert_eq!(in_file, rejected, "every rejected row is in the rejects file");
    let again = volley_scheduler::send::run(&campaign, &cfg).await.expect("rerun");
    assert_eq!(again.rejected, 2);
    let mut after_rerun: Vec<u64> = read_log(&again.rejects_file)
        .iter()
        .map(|r| r["line"].as_u64().expect("line"))
        .collect();
    after_rerun.sort_unstable();
    assert_eq!(after_rerun, rejected, "a rerun keeps the file whole, each row once");
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_counts_from_the_first_attempt_not_from_the_hand_over() {
    // Regression: with one slow connection the engine's queue holds messages for longer than
    // `max_age`; the age counted from when the row was handed over (or read), so most
    // recipients expired at attempt 1 without a retry.
    let sink = Sink::start(SinkConfig {
        tempfail_pct: 100.0,
        latency: Duration::from_millis(60),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 24;
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("u{i}@slow.test,N{i}\n"));
    }
    let campaign = write_campaign(dir.path(), &csv);
    let mut cfg = config(dir.path(), &[("*", sink.local_addr().to_string())]);
    cfg.source_ips.truncate(1);
    cfg.smtp.max_connections_per_host = 1;
    cfg.retry = RetryConfig {
        schedule: vec![Duration::from_millis(100).into()],
        max_age: Duration::from_millis(800),
        host_down: Duration::from_secs(60),
    };
    let summary = volley_scheduler::send::run(&campaign, &cfg).await.expect("run");
    assert_eq!(summary.expired, n as u64, "{summary:?}");
    let log = read_log(&summary.accounting_log);
    let first_try_expiries: Vec<&Value> = log
        .iter()
        .filter(|l| l["outcome"] == "expired" && l["attempt"] == 1)
        .collect();
    assert!(
        first_try_expiries.is_empty(),
        "{} of {n} recipients expired at their first attempt: {:?}",
        first_try_expiries.len(),
        first_try_expiries.first()
    );
    sink.shutdown().await;
}
