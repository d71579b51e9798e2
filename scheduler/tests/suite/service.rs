//! The long-lived send service: campaigns join while others run on one pool, and each can be
//! paused (nothing new goes out), resumed and cancelled (stops early, resumable).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{delivered, until};
use volley_bench::{Sink, SinkConfig, SinkHandle};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{SendConfig, SourceIpConfig};
use volley_scheduler::live::{CampaignLive, Live};
use volley_scheduler::outcome::Outcome;
use volley_scheduler::send::SendService;

fn config(dir: &Path, sink: &SinkHandle) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: (2..=3)
            .map(|i| {
                let mut ip =
                    SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), format!("mta{i}.volley.test"));
                if i == 3 {
                    ip.warmup = Some("standard".into());
                    ip.warmup_start = Some("2026-11-20".parse().expect("day"));
                }
                ip
            })
            .collect(),
        routes: [("*".to_string(), sink.local_addr().to_string())].into_iter().collect(),
        smtp: volley_engine::SmtpConfig {
            max_connections_per_host: 2,
            // Pause stops handing messages to the pool; what is queued at a connection still
            // goes. A short queue makes that tail short.
            queue_per_host: 4,
            ..Default::default()
        },
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

fn campaign(dir: &Path, id: &str, n: usize) -> Campaign {
    let rows: String = (0..n).map(|i| format!("u{i}@{id}.test\n")).collect();
    std::fs::write(dir.join(format!("{id}.csv")), format!("email\n{rows}")).expect("csv");
    let toml = format!(
        "id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n"
    );
    std::fs::write(dir.join(format!("{id}.toml")), toml).expect("toml");
    Campaign::load(&dir.join(format!("{id}.toml"))).expect("campaign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaigns_join_pause_resume_and_cancel_on_one_pool() {
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(20),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let live = Arc::new(Live::default());
    let service = SendService::start(&config(dir.path(), &sink), live.clone(), true).expect("service");

    let a = service.launch(&campaign(dir.path(), "a", 400)).expect("launch a");
    until("a to start delivering", || delivered(&live, "a") > 20).await;
    assert!(
        service.launch(&campaign(dir.path(), "a", 10)).is_err(),
        "the same id cannot run twice"
    );

    // Paused: what is on the wire or queued at a connection lands, then nothing more.
    a.live.set_paused(true);
    let mut settled = delivered(&live, "a");
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = delivered(&live, "a");
        if now == settled {
            break;
        }
        settled = now;
    }
    let accepted = sink.stats().messages;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(delivered(&live, "a"), settled, "nothing delivered while paused");
    assert_eq!(sink.stats().messages, accepted, "nothing sent while paused");
    assert!(settled < 400);
    assert!(live.snapshot()[0].paused);

    // Another campaign joins the running service and finishes while a is paused.
    let b = service.launch(&campaign(dir.path(), "b", 50)).expect("launch b");
    let b = b.wait().await.expect("b");
    assert!(b.complete);
    assert_eq!(b.delivered, 50);

    resume(&a.live);
    let a = a.wait().await.expect("a");
    assert!(a.complete);
    assert_eq!(a.delivered, 400);

    // Cancelled: stops early, and a later launch of the same id resumes where it stopped.
    let c_campaign = campaign(dir.path(), "c", 600);
    let c = service.launch(&c_campaign).expect("launch c");
    until("c to start delivering", || delivered(&live, "c") > 20).await;
    c.cancel();
    let stopped = c.wait().await.expect("c");
    assert!(!stopped.complete);
    assert!(stopped.delivered < 600, "{}", stopped.delivered);
    let again = service.launch(&c_campaign).expect("relaunch c");
    let again_live = again.live.clone();
    let rest = again.wait().await.expect("c again");
    assert!(rest.complete);
    assert_eq!(
        rest.delivered, 600,
        "the resumed run's summary covers the whole campaign"
    );
    assert_eq!(
        rest.resent_after_restart, 0,
        "the cancelled run recorded all it had sent"
    );
    // Regression (issue 17): the rate is this run's deliveries over this run's time, not the
    // whole campaign's deliveries over this run's time.
    let this_run = 600 - stopped.delivered;
    assert_eq!(rest.this_run.delivered, this_run);
    assert_eq!(
        (rest.msgs_per_s * rest.elapsed_s).round() as u64,
        this_run,
        "{} msg/s over {} s",
        rest.msgs_per_s,
        rest.elapsed_s
    );
    // The live counters count the campaign (earlier runs included), and this run apart.
    let counts = again_live.snapshot();
    assert_eq!(counts.total(Outcome::Delivered), 600);
    assert_eq!(counts.count(Outcome::Delivered), this_run);
    assert_eq!(sink.stats().messages, 400 + 50 + 600, "each recipient delivered once");
    service.shutdown().await;
    sink.shutdown().await;
}

fn resume(live: &CampaignLive) {
    live.set_paused(false);
}

/// A source IP no interface of this host has (RFC 5737 documentation range): binding it fails
/// locally, nothing is ever sent to or from it.
fn unbindable_ip() -> SourceIpConfig {
    SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), "mta-missing.volley.test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_with_a_source_ip_this_host_lacks_refuses_to_start() {
    // Regression: the run started, deferred every recipient given that IP with "cannot
    // bind" until max_age, then expired them as soft bounces (suppressing the list).
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &sink);
    cfg.source_ips.push(unbindable_ip());
    cfg.retry.max_age = Duration::from_millis(300);
    cfg.retry.schedule = vec![Duration::from_millis(50).into()];
    let c = campaign(dir.path(), "unbound", 20);
    let err = volley_scheduler::send::run(&c, &cfg)
        .await
        .map(|s| format!("{s:?}"))
        .expect_err("a source IP that cannot be bound refuses the run");
    let text = err.to_string();
    assert!(
        matches!(err, volley_scheduler::send::SendError::UnbindableSourceIps(ref ips) if ips.len() == 1),
        "{text}"
    );
    assert!(
        text.contains("source_ips[2].address = 192.0.2.1") && text.contains("cannot be bound"),
        "{text}"
    );
    assert_eq!(sink.stats().messages, 0, "nothing was sent");
    assert!(
        !dir.path().join("state/unbound/accounting.jsonl").exists(),
        "no outcome recorded"
    );
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_service_marks_an_unbindable_ip_unusable_and_sends_from_the_others() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), &sink);
    cfg.source_ips.push(unbindable_ip());
    let live = Arc::new(Live::default());
    let service = SendService::start_with(&cfg, live, true, volley_scheduler::send::OnUnbindable::MarkUnusable)
        .expect("serve mode starts");
    let unusable = service.unusable_ips();
    assert_eq!(unusable.len(), 1);
    assert!(
        unusable.contains_key(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        "{unusable:?}"
    );
    let summary = service
        .launch(&campaign(dir.path(), "marked", 30))
        .expect("launch")
        .wait()
        .await
        .expect("run");
    service.shutdown().await;
    assert_eq!((summary.delivered, summary.deferrals), (30, 0), "{summary:?}");
    assert!(!summary.by_source_ip.contains_key("192.0.2.1"), "{summary:?}");
    sink.shutdown().await;
}

/// Regression (CI: a campaign held by a reputation guard after its last outcome never ended):
/// a paused campaign with nothing left to read ends, complete; a pause only stops sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_campaign_with_nothing_left_to_send_ends() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let live = Arc::new(Live::default());
    let service = SendService::start(&config(dir.path(), &sink), live, true).expect("service");
    let launched = service
        .launch_with(&campaign(dir.path(), "empty", 0), true)
        .expect("launch");
    let summary = tokio::time::timeout(Duration::from_secs(20), launched.wait())
        .await
        .expect("a paused campaign with no recipient left ends")
        .expect("run");
    assert!(summary.complete, "{summary:?}");
    assert_eq!(sink.stats().messages, 0);
}
