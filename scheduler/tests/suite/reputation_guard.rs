//! Reputation guards in whole runs: a receiver bouncing 20 % of recipients holds the campaign
//! (or each source IP's route to the provider group) before the run finishes; nothing more
//! is sent while held; lifting the hold from outside the process (as `volley reputation
//! resume` does) lets the run finish, from the lifted route only.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use volley_bench::{Sink, SinkConfig};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;
use volley_scheduler::reputation::{HoldDir, Metric, ReputationConfig, Scope};

use super::common::{route_all_to, source_ips};

const MESSAGES: usize = 600;

fn setup(dir: &Path, id: &str) -> Campaign {
    let mut csv = String::from("email\n");
    for i in 0..MESSAGES {
        csv.push_str(&format!("u{i}@d{}.test\n", i % 6));
    }
    std::fs::write(dir.join("recipients.csv"), csv).expect("csv");
    std::fs::write(
        dir.join("campaign.toml"),
        format!("id = \"{id}\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"recipients.csv\"\n"),
    )
    .expect("toml");
    Campaign::load(&dir.join("campaign.toml")).expect("campaign loads")
}

fn config(dir: &Path, sink: std::net::SocketAddr, last_ip: u8, reputation: ReputationConfig) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: source_ips(2, last_ip),
        routes: route_all_to(sink),
        // A few deliveries in flight at a time, so that a hold stops the run early.
        max_in_flight: 16,
        reputation,
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn finals(path: &Path) -> usize {
    log_lines(path).iter().filter(|l| l["outcome"] != "deferred").count()
}

/// Waits until `holds` files exist in `dir` (30 s at most).
fn wait_for_holds(dir: &Path, holds: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds.iter().all(|h| dir.join(h).is_file()) {
        assert!(Instant::now() < deadline, "no holds {holds:?} in {}", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of final outcomes once the run has settled (nothing recorded for 1.5 s), and
/// checks that it stays there for another 1.5 s: the run is held, not slow.
fn settled_finals(log: &Path) -> usize {
    let mut last = finals(log);
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let now = finals(log);
        if now == last {
            break;
        }
        last = now;
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(finals(log), last, "nothing is sent while held");
    last
}

async fn sink() -> volley_bench::SinkHandle {
    Sink::start(SinkConfig {
        permfail_pct: 20.0,
        latency: Duration::from_millis(5),
        ..SinkConfig::default()
    })
    .await
    .expect("sink")
}

/// A run of campaign `id` with `reputation` against a receiver bouncing 20 %, up to the moment
/// `holds` are placed and the run has settled: the run, its accounting log, and its final
/// outcomes at the hold.
struct Held {
    _sink: volley_bench::SinkHandle,
    dir: tempfile::TempDir,
    run: tokio::task::JoinHandle<Result<volley_scheduler::summary::Summary, volley_scheduler::send::SendError>>,
    log: PathBuf,
    finals: usize,
}

async fn run_until_held(id: &str, reputation: ReputationConfig, holds: &'static [&'static str]) -> Held {
    let sink = sink().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let campaign = setup(dir.path(), id);
    let config = config(dir.path(), sink.local_addr(), 3, reputation);
    let run = tokio::spawn(async move { volley_scheduler::send::run(&campaign, &config).await });
    let holds_dir: PathBuf = dir.path().join("state/holds");
    let log = dir.path().join(format!("state/{id}/accounting.jsonl"));
    let finals = tokio::task::spawn_blocking({
        let log = log.clone();
        move || {
            wait_for_holds(&holds_dir, holds);
            settled_finals(&log)
        }
    })
    .await
    .expect("join");
    Held {
        _sink: sink,
        dir,
        run,
        log,
        finals,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_bouncing_past_the_threshold_is_held_before_it_ends_and_resumes_when_lifted() {
    let reputation = ReputationConfig {
        min_sample: 100,
        routes: false,
        ..ReputationConfig::default()
    };
    let Held {
        dir,
        run,
        log,
        finals: held_at,
        _sink: _kept_alive,
    } = run_until_held("bouncy", reputation, &["campaign-bouncy.json"]).await;
    assert!(
        held_at < MESSAGES,
        "held before the end ({held_at} of {MESSAGES} final)"
    );
    let holds = HoldDir::new(&dir.path().join("state")).list().0;
    assert_eq!(holds.len(), 1, "{holds:?}");
    let hold = &holds[0];
    assert_eq!(hold.metric, Metric::HardBounceRate);
    assert!(hold.sample >= 100 && hold.rate_percent > 5.0, "{hold:?}");
    assert!(!run.is_finished(), "a held campaign waits for the operator");

    // `volley reputation resume --campaign bouncy`, from another process's point of view. The
    // window starts over at each lift: at 20 % bounces it is held again every ~100 messages.
    let scope = Scope::Campaign {
        campaign: "bouncy".into(),
    };
    let lifts = lift_until_done(dir.path(), scope, "bouncy").await;
    assert!(lifts >= 1);
    let summary = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("finishes once lifted")
        .expect("join")
        .expect("run");
    assert!(summary.complete);
    assert_eq!(finals(&log), MESSAGES, "every recipient has its final outcome");
    assert!(summary.bounced > 0 && summary.delivered > 0);
}

/// Lifts the hold on `scope` whenever it is placed, until campaign `id` has every final
/// outcome (60 s at most); how many times a hold was lifted.
async fn lift_until_done(dir: &Path, scope: Scope, id: &str) -> usize {
    let (state, log) = (dir.join("state"), dir.join(format!("state/{id}/accounting.jsonl")));
    tokio::task::spawn_blocking(move || {
        let holds = HoldDir::new(&state);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lifts = 0;
        while finals(&log) < MESSAGES {
            assert!(Instant::now() < deadline, "the run did not finish with {scope} lifted");
            if holds.lift(&scope).expect("lift") {
                lifts += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        lifts
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_bouncing_past_the_threshold_are_held_and_a_lifted_route_carries_the_rest() {
    let reputation = ReputationConfig {
        min_sample: 60,
        campaigns: false,
        ..ReputationConfig::default()
    };
    let Held {
        dir,
        run,
        log,
        finals: held_at,
        _sink: _kept_alive,
    } = run_until_held(
        "routes",
        reputation,
        &["route-127.0.0.2-other.json", "route-127.0.0.3-other.json"],
    )
    .await;
    assert!(held_at < MESSAGES, "both routes held before the end ({held_at} final)");
    assert!(!run.is_finished(), "no route left: the campaign waits");

    let lifted_ip: IpAddr = "127.0.0.3".parse().expect("ip");
    let before = log_lines(&log).len();
    let scope = Scope::Route {
        source_ip: lifted_ip,
        provider: "other".into(),
    };
    lift_until_done(dir.path(), scope, "routes").await;
    let summary = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("finishes")
        .expect("join")
        .expect("run");
    assert!(summary.complete);
    let after: Vec<Value> = log_lines(&log).split_off(before);
    assert!(!after.is_empty());
    for line in &after {
        assert_eq!(line["source_ip"], "127.0.0.3", "only the lifted route sends: {line}");
    }
    assert!(
        summary.reputation_holds.iter().any(|h| h.scope
            == Scope::Route {
                source_ip: "127.0.0.2".parse().expect("ip"),
                provider: "other".into()
            }),
        "the summary names the hold still in place: {:?}",
        summary.reputation_holds
    );
}
