//! Blocklist monitoring in a running service: a loopback DNSBL zone lists one source IP mid-run;
//! that IP stops sending within one interval while the others carry its traffic, and sends again
//! once delisted. The service's guards and live counters show the listing.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_bench::dns::DynamicDns;
use volley_bench::{Sink, SinkConfig};
use volley_engine::dnsbl::BlocklistZone;
use volley_scheduler::blocklists::BlocklistConfig;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;
use volley_scheduler::live::Live;
use volley_scheduler::outcome::Outcome;
use volley_scheduler::reputation::OnListed;
use volley_scheduler::send::SendService;

use super::common::{route_all_to, source_ips};

const INTERVAL: Duration = Duration::from_secs(1);
const LISTED: &str = "2.0.0.127.bl.test";

fn campaign(dir: &Path, n: usize) -> Campaign {
    let rows: String = (0..n).map(|i| format!("u{i}@d{}.test\n", i % 10)).collect();
    std::fs::write(dir.join("bl.csv"), format!("email\n{rows}")).expect("csv");
    let toml =
        "id = \"bl\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"bl.csv\"\n";
    std::fs::write(dir.join("bl.toml"), toml).expect("toml");
    Campaign::load(&dir.join("bl.toml")).expect("campaign")
}

/// Deliveries from `ip` so far.
fn delivered_by(live: &Live, ip: &str) -> u64 {
    live.snapshot()
        .iter()
        .flat_map(|c| c.labelled.clone())
        .filter(|(l, _)| l.outcome == Outcome::Delivered && l.source_ip.as_deref() == Some(ip))
        .map(|(_, n)| n)
        .sum()
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_ip_stops_within_an_interval_the_others_carry_its_traffic_and_delisting_brings_it_back() {
    let dns = DynamicDns::start("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("dns");
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(10),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SendConfig {
        state_dir: dir.path().join("state"),
        source_ips: source_ips(2, 4),
        routes: route_all_to(sink.local_addr()),
        dns: Some(volley_engine::mx::DnsConfig {
            nameservers: vec![dns.local_addr()],
            timeout: Duration::from_millis(500),
            ..Default::default()
        }),
        blocklists: Some(BlocklistConfig {
            zones: vec![BlocklistZone::new("bl.test")],
            interval: INTERVAL,
            on_listed: OnListed::Pause,
        }),
        smtp: volley_engine::SmtpConfig {
            // A short queue at each connection: what is queued there still goes after a stop.
            queue_per_host: 4,
            ..Default::default()
        },
        ..SendConfig::new(Default::default(), Vec::new())
    };
    let live = Arc::new(Live::default());
    let service = SendService::start(&config, live.clone(), false).expect("service");
    let run = service.launch(&campaign(dir.path(), 200_000)).expect("launch");
    until("127.0.0.2 to deliver", Duration::from_secs(30), || {
        delivered_by(&live, "127.0.0.2") > 50
    })
    .await;
    assert!(dns.queries() >= 3, "each IP was looked up at start");

    // Listed: within one interval (plus the look-up) the IP is held.
    dns.set_a(LISTED, &[Ipv4Addr::new(127, 0, 0, 2)]);
    let ip2: IpAddr = "127.0.0.2".parse().expect("ip");
    let seen = until("the listing to be seen", INTERVAL * 3, || {
        service.guards().listings().iter().any(|v| v.source_ip == ip2 && v.held)
    })
    .await;
    eprintln!("listing seen after {seen:?}");
    let view = service.guards().listings();
    let v = view.iter().find(|v| v.source_ip == ip2).expect("127.0.0.2 checked");
    assert_eq!(v.checked, ["bl.test"]);
    assert_eq!(v.listed[0].zone, "bl.test");
    assert_eq!(v.listed[0].codes, [Ipv4Addr::new(127, 0, 0, 2)]);
    assert!(
        !view.iter().any(|o| o.source_ip != ip2 && !o.listed.is_empty()),
        "{view:?}"
    );
    // What was queued at its connections drains; then nothing more from it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (held2, others) = (
        delivered_by(&live, "127.0.0.2"),
        delivered_by(&live, "127.0.0.3") + delivered_by(&live, "127.0.0.4"),
    );
    tokio::time::sleep(INTERVAL * 2).await;
    assert_eq!(delivered_by(&live, "127.0.0.2"), held2, "a listed IP sends nothing");
    let carried = delivered_by(&live, "127.0.0.3") + delivered_by(&live, "127.0.0.4") - others;
    assert!(carried > 100, "the other IPs carry the traffic ({carried} in 2 s)");
    until("the live counters to show the listing", INTERVAL * 3, || {
        live.listings().iter().any(|v| v.source_ip == ip2 && v.held)
    })
    .await;

    // Delisted: back within an interval.
    dns.remove(LISTED);
    let back = until("127.0.0.2 to send again", INTERVAL * 4, || {
        delivered_by(&live, "127.0.0.2") > held2
    })
    .await;
    eprintln!("sending again {back:?} after the delisting");
    assert!(!run.is_finished(), "the campaign was still running throughout");
    run.cancel();
    let summary = run.wait().await.expect("summary");
    assert!(!summary.complete);
    service.shutdown().await;
}
