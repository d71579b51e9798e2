//! Warm-up budgets and adaptive backoff in whole runs against the smart sink, on a rehearsal
//! clock (`[warmup] speed`): an IP at its cap overflows to the others, with every IP at its cap
//! messages wait for the next day instead of bouncing, and a site answering 421 is held back
//! while the other sites keep their pace.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use volley_bench::{CannedReply, Sink, SinkConfig, SinkHandle, Stage};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig, SourceIpConfig};

/// A small curve: gmail 10/day on day 1, 20/day from day 2 (hourly = daily).
const TINY: &str = "name = \"tiny\"\nlast_day = 5\n\
    [[day]]\nday = 1\ngmail = { daily = 10, hourly = 10 }\nother = { daily = 1000, hourly = 1000 }\n\
    microsoft = { daily = 1000, hourly = 1000 }\nyahoo = { daily = 1000, hourly = 1000 }\n\
    [[day]]\nday = 2\ngmail = { daily = 20, hourly = 20 }\n";

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn warming(last: u8) -> SourceIpConfig {
    SourceIpConfig {
        warmup: Some("tiny".into()),
        warmup_start: Some("2026-11-01".parse().expect("day")),
        ..SourceIpConfig::new(ip(last), format!("mta{last}.volley.test"))
    }
}

fn config(dir: &Path, routes: &[(&str, String)], ips: Vec<SourceIpConfig>) -> SendConfig {
    let curves = dir.join("curves");
    std::fs::create_dir_all(&curves).expect("curves dir");
    std::fs::write(curves.join("tiny.toml"), TINY).expect("curve");
    let mut config = SendConfig {
        routes: routes.iter().map(|(d, a)| (d.to_string(), a.clone())).collect(),
        retry: RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_secs(60),
            host_down: Duration::from_secs(60),
        },
        ..SendConfig::new(dir.join("state"), ips)
    };
    config.warmup.curves_dir = curves;
    config
}

fn campaign(dir: &Path, id: &str, recipients: &[String]) -> Campaign {
    let csv: String = std::iter::once("email".to_string())
        .chain(recipients.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
    let toml = format!(
        "id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n"
    );
    std::fs::write(dir.join(format!("{id}.toml")), toml).expect("toml");
    Campaign::load(&dir.join(format!("{id}.toml"))).expect("campaign loads")
}

fn addresses(domain: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@{domain}")).collect()
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .collect()
}

async fn sink(canned: Vec<CannedReply>) -> SinkHandle {
    Sink::start(SinkConfig {
        canned,
        ..SinkConfig::default()
    })
    .await
    .expect("sink")
}

/// Day-2 counts per IP for gmail from the embedded counters file.
fn counted(state: &Path, provider: &str) -> Vec<(String, u64, String)> {
    let text = std::fs::read_to_string(state.join("warmup-counters.json")).expect("counters file");
    let v: Value = serde_json::from_str(&text).expect("counters JSON");
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["provider"] == provider)
        .map(|e| {
            (
                e["ip"].as_str().unwrap_or_default().to_string(),
                e["day_count"].as_u64().unwrap_or_default(),
                e["day"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_at_its_cap_overflows_and_with_every_ip_capped_mail_waits_for_the_next_day() {
    let sink = sink(Vec::new()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(
        dir.path(),
        &[("*", sink.local_addr().to_string())],
        vec![warming(2), warming(3)],
    );
    // 10 warm-up hours per real second: day 1 is over 2 s after the start.
    cfg.warmup.speed = 36_000.0;
    cfg.warmup.clock_start = Some(humantime::parse_rfc3339("2026-11-01T04:00:00Z").expect("time"));
    let gmail = addresses("gmail.com", 50);
    let others = addresses("example.org", 40);
    let all: Vec<String> = gmail.iter().chain(&others).cloned().collect();

    let summary = volley_scheduler::send::run(&campaign(dir.path(), "warm", &all), &cfg)
        .await
        .expect("run");
    assert!(summary.complete, "{summary:?}");
    assert_eq!((summary.delivered, summary.bounced), (90, 0), "waiting never bounces");
    let gmail_tally = &summary.by_provider["gmail"];
    assert_eq!(gmail_tally.tally.delivered, 50);
    assert_eq!(summary.by_provider["other"].tally.delivered, 40);
    // Day 1: 10 per IP (20); the other 30 waited for day 2, when each IP may send 20.
    assert!(summary.warmup_waited >= 30, "{}", summary.warmup_waited);
    assert!(
        gmail_tally
            .last_at
            .as_deref()
            .is_some_and(|t| t.starts_with("2026-11-02")),
        "{gmail_tally:?}"
    );
    let day2 = counted(&cfg.state_dir, "gmail");
    assert_eq!(day2.len(), 2, "{day2:?}");
    assert!(
        day2.iter().all(|(_, n, day)| *n <= 20 && day == "2026-11-02"),
        "{day2:?}"
    );
    assert_eq!(day2.iter().map(|(_, n, _)| n).sum::<u64>(), 30, "{day2:?}");
    for (ip, n, _) in &day2 {
        let total = summary.by_source_ip[ip].delivered;
        let gmail_total = log_lines(&summary.accounting_log)
            .iter()
            .filter(|l| l["provider"] == "gmail" && l["source_ip"] == ip.as_str() && l["outcome"] == "delivered")
            .count() as u64;
        assert_eq!(
            gmail_total - n,
            10,
            "{ip}: exactly its day-1 cap on day 1 (total {total})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_goes_to_the_warm_ip_when_the_warming_one_is_spent() {
    let sink = sink(Vec::new()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let warm = SourceIpConfig {
        warm: true,
        ..SourceIpConfig::new(ip(3), "mta3.volley.test")
    };
    let mut cfg = config(
        dir.path(),
        &[("*", sink.local_addr().to_string())],
        vec![warming(2), warm],
    );
    cfg.warmup.speed = 36_000.0;
    cfg.warmup.clock_start = Some(humantime::parse_rfc3339("2026-11-01T04:00:00Z").expect("time"));
    let summary = volley_scheduler::send::run(&campaign(dir.path(), "over", &addresses("gmail.com", 60)), &cfg)
        .await
        .expect("run");
    assert_eq!(summary.delivered, 60);
    let warming_ip = summary.by_source_ip.get("127.0.0.2").map_or(0, |t| t.delivered);
    assert!(
        warming_ip <= 10,
        "the warming IP never exceeds its day-1 cap: {warming_ip}"
    );
    assert_eq!(summary.by_source_ip["127.0.0.3"].delivered, 60 - warming_ip);
    assert_eq!(summary.warmup_waited, 0, "the warm IP had room: nothing waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_answering_421_is_held_back_and_the_other_sites_keep_their_pace() {
    let slow = sink(vec![CannedReply {
        domain: "slow.test".into(),
        stage: Stage::Rcpt,
        text: "421 4.7.0 Too many connections, try again later".into(),
        percent: 100.0,
    }])
    .await;
    let fast = sink(Vec::new()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("backoff.toml");
    std::fs::write(
        &rules,
        "quiet = \"200ms\"\n[[rule]]\ncode = [\"421\"]\naction = \"suspend\"\nfor = \"300ms\"\n",
    )
    .expect("rules");
    let routes = [
        ("slow.test", slow.local_addr().to_string()),
        ("*", fast.local_addr().to_string()),
    ];
    let fast_rcpts = addresses("fast.test", 3000);
    let slow_rcpts = addresses("slow.test", 100);

    // Baseline: the fast site alone.
    let mut cfg = config(
        dir.path(),
        &routes,
        vec![SourceIpConfig::new(ip(2), "mta2.volley.test")],
    );
    cfg.retry.max_age = Duration::from_millis(600);
    cfg.warmup.backoff = Some(rules.clone());
    let base = volley_scheduler::send::run(&campaign(dir.path(), "base", &fast_rcpts), &cfg)
        .await
        .expect("baseline");
    assert_eq!(base.delivered, 3000);

    let all: Vec<String> = slow_rcpts.iter().chain(&fast_rcpts).cloned().collect();
    let started = SystemTime::now();
    let mixed = volley_scheduler::send::run(&campaign(dir.path(), "mixed", &all), &cfg)
        .await
        .expect("mixed run");
    let slow_line = log_lines(&mixed.accounting_log)
        .into_iter()
        .find(|l| l["domain"] == "slow.test");
    assert!(mixed.backoff_events > 0, "{slow_line:?}");
    assert_eq!(mixed.by_domain["fast.test"].delivered, 3000);
    assert_eq!(mixed.expired, 100, "the slow site's recipients expire after retries");
    // Without backoff each slow recipient would be tried every 50 ms for 600 ms (~12 times);
    // held for 300 ms after each 421, it is tried a few times.
    let slow_attempts: u64 = slow_rcpts.iter().map(|a| slow.rcpts_for(a)).sum();
    assert!(
        (100..=500).contains(&slow_attempts),
        "slow site attempts {slow_attempts} (unthrottled would be ~1200)"
    );
    // The fast site's pace: its deliveries took about as long as alone.
    let fast_span = |summary: &volley_scheduler::summary::Summary| {
        let times: Vec<SystemTime> = log_lines(&summary.accounting_log)
            .iter()
            .filter(|l| l["domain"] == "fast.test" && l["outcome"] == "delivered")
            .filter_map(|l| humantime::parse_rfc3339(l["ts"].as_str()?).ok())
            .collect();
        let first = times.iter().min().copied().unwrap_or(started);
        let last = times.iter().max().copied().unwrap_or(started);
        last.duration_since(first).unwrap_or_default()
    };
    let (alone, with_slow) = (fast_span(&base), fast_span(&mixed));
    assert!(
        with_slow <= alone * 3 + Duration::from_millis(500),
        "fast site alone {alone:?}, next to a throttled site {with_slow:?}"
    );
}

/// Caps that make a run span a few warm-up hours: 10 an hour per IP to gmail and yahoo.
const HOURLY: &str = "name = \"hourly\"\nlast_day = 5\n[[day]]\nday = 1\n\
    gmail = { daily = 100, hourly = 10 }\nyahoo = { daily = 100, hourly = 10 }\n\
    microsoft = { daily = 1000, hourly = 1000 }\nother = { daily = 1000, hourly = 1000 }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_predicts_each_providers_finish_within_one_interval() {
    let sink = sink(Vec::new()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let on_hourly = |last: u8| SourceIpConfig {
        warmup: Some("hourly".into()),
        ..warming(last)
    };
    let mut cfg = config(
        dir.path(),
        &[("*", sink.local_addr().to_string())],
        vec![on_hourly(2), on_hourly(3)],
    );
    std::fs::write(cfg.warmup.curves_dir.join("hourly.toml"), HOURLY).expect("curve");
    // A warm-up hour per real second, from 04:00 now.
    cfg.warmup.speed = 3600.0;
    cfg.warmup.clock_start = Some(humantime::parse_rfc3339("2026-11-01T04:00:00Z").expect("time"));
    cfg.warmup.clock_anchor = Some(SystemTime::now());
    let recipients: Vec<String> = [
        addresses("gmail.com", 50),
        addresses("yahoo.com", 30),
        addresses("example.org", 20),
    ]
    .concat();

    // The plan: the same pool, curves and clock, recipients counted per provider group.
    let policy = cfg.warmup_policy(Path::new("volley.toml")).expect("policy");
    let ips = policy
        .states
        .iter()
        .map(|(ip, state)| volley_warmup::PlanIp {
            ip: *ip,
            state: state.clone(),
            rate: None,
            weight: 1,
        })
        .collect();
    let counts = [("gmail", 50), ("yahoo", 30), ("other", 20)]
        .into_iter()
        .map(|(p, n)| (p.to_string(), n))
        .collect();
    let mut input = volley_warmup::PlanInput::new(ips, policy.curves, counts, cfg.warmup.clock().now());
    let interval = Duration::from_secs(3600);
    input.every = interval;
    let plan = volley_warmup::plan(&input).expect("plan");

    let summary = volley_scheduler::send::run(&campaign(dir.path(), "planned", &recipients), &cfg)
        .await
        .expect("run");
    assert_eq!(summary.delivered, 100);
    for predicted in &plan.providers {
        let name = predicted.provider.as_str();
        let Some(finish) = predicted.finish else { continue };
        let actual = summary.by_provider[name]
            .last_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .expect("finish time");
        let off = actual.duration_since(finish).unwrap_or_else(|e| e.duration());
        eprintln!("{name}: {off:?} between plan and run");
        assert!(
            off <= interval,
            "{name}: planned {}, finished {} ({off:?} apart)",
            humantime::format_rfc3339_seconds(finish),
            humantime::format_rfc3339_seconds(actual)
        );
    }
    // Gmail (2 IPs × 10 an hour for 50) takes the longest: past 06:00.
    let gmail = plan
        .providers
        .iter()
        .find(|p| p.provider == "gmail")
        .expect("gmail planned");
    assert!(gmail.finish_after_s.is_some_and(|s| s > 2.0 * 3600.0), "{gmail:?}");
}
