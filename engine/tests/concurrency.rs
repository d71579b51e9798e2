//! Connection concurrency that adapts to the receiver: caps learned from refusals (not counted
//! as failures), connections that follow the queue, and `tls = "required"` against a host
//! without STARTTLS. Against the real sink on loopback.

mod common;

use std::time::{Duration, Instant};

use volley_bench::{Sink, SinkConfig};
use volley_engine::tls::TlsPolicy;
use volley_engine::{Disposition, SmtpConfig};

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@d{}.test", i % 20)).collect()
}

fn delivered(reports: &[volley_engine::DeliveryReport<usize>]) -> usize {
    reports
        .iter()
        .filter(|r| r.statuses[0].disposition == Disposition::Delivered)
        .count()
}

#[tokio::test]
async fn a_per_client_cap_is_learned_per_source_ip_and_nothing_is_deferred() {
    // Like Postfix's smtpd_client_connection_count_limit: 3 connections per client address.
    let sink = Sink::start(SinkConfig {
        max_connections_per_client: Some(3),
        latency: Duration::from_millis(20),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 16,
        initial_connections_per_host: 2,
        ..common::fast_config()
    };
    let routes: Vec<_> = (2..=5).map(|ip| common::route(ip, sink.local_addr())).collect();
    let started = Instant::now();
    let (reports, learned) = common::deliver_all_learning(config, &routes, &addresses(1200)).await;
    let elapsed = started.elapsed();
    assert_eq!(reports.len(), 1200);
    assert_eq!(delivered(&reports), 1200, "a refused connection defers nothing");
    let stats = sink.stats();
    assert_eq!(stats.messages, 1200);
    assert!(stats.connections_refused >= 1, "the cap was reached: {stats:?}");
    assert_eq!(stats.peak_connections_per_client, 3, "{stats:?}");
    assert_eq!(learned.len(), 4);
    for route in &learned {
        assert_eq!(route.limit, 3, "learned limit per source IP: {route:?}");
        assert!(route.learned && route.refusals >= 1, "{route:?}");
    }
    // Ideal: 300 messages per IP over 3 connections at 2 round trips of 20 ms each: 4 s.
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}, ideal about 4 s");
    sink.shutdown().await;
}

#[tokio::test]
async fn connections_a_receiver_still_counts_after_they_ended_do_not_lower_the_limit_below_its_cap() {
    // Like a receiver that hears of a disconnect late (Postfix's anvil, told by smtpd): a
    // closed connection counts against the cap of 3 for another 200 ms. Connections are
    // recycled every 20 messages, so each one reopened right after its QUIT is refused while
    // two others are open: the receiver counted the one that had just ended.
    let sink = Sink::start(SinkConfig {
        max_connections_per_client: Some(3),
        client_close_lag: Duration::from_millis(200),
        latency: Duration::from_millis(10),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 16,
        initial_connections_per_host: 3,
        max_messages_per_connection: 20,
        ..common::fast_config()
    };
    let routes: Vec<_> = (2..=3).map(|ip| common::route(ip, sink.local_addr())).collect();
    let (reports, learned) = common::deliver_all_learning(config, &routes, &addresses(1200)).await;
    assert_eq!(delivered(&reports), 1200, "a refused connection defers nothing");
    let stats = sink.stats();
    assert!(
        stats.connections_refused >= 2,
        "reopened connections were refused: {stats:?}"
    );
    assert_eq!(stats.peak_connections_per_client, 3, "{stats:?}");
    assert_eq!(learned.len(), 2, "{learned:?}");
    for route in &learned {
        assert_eq!(route.limit, 3, "the receiver's cap, not what was open: {route:?}");
    }
    // Refused attempts wait for the receiver to notice the end rather than retrying at once.
    assert!(
        stats.connections_refused < 200,
        "{} refusals for {} connections",
        stats.connections_refused,
        stats.connections
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn a_global_cap_shared_by_source_ips_defers_nothing_after_the_first_refusals() {
    let sink = Sink::start(SinkConfig {
        max_connections: Some(10),
        latency: Duration::from_millis(20),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 32,
        ..common::fast_config()
    };
    let routes: Vec<_> = (2..=5).map(|ip| common::route(ip, sink.local_addr())).collect();
    let started = Instant::now();
    let (reports, learned) = common::deliver_all_learning(config, &routes, &addresses(2000)).await;
    let elapsed = started.elapsed();
    assert_eq!(reports.len(), 2000);
    // A source IP refused while the others hold every slot waits for one: nothing deferred.
    assert_eq!(delivered(&reports), 2000);
    assert!(sink.stats().connections_refused >= 1, "the cap was reached");
    let sum: usize = learned.iter().map(|r| r.limit).sum();
    assert!(sum <= 10 + learned.len(), "limits {learned:?} vs a cap of 10");
    // Ideal: 10 connections at 2 round trips of 20 ms per message: 250 msg/s, 8 s.
    assert!(elapsed < Duration::from_secs(16), "took {elapsed:?}, ideal about 8 s");
    sink.shutdown().await;
}

#[tokio::test]
async fn a_few_messages_to_one_destination_reuse_a_handful_of_connections() {
    let sink = Sink::start(SinkConfig {
        latency: Duration::from_millis(10),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 32,
        ..common::fast_config()
    };
    let route = common::route(2, sink.local_addr());
    let reports = common::deliver_all(config, &[route], &addresses(50)).await;
    assert_eq!(delivered(&reports), 50);
    let stats = sink.stats();
    assert!(
        stats.connections <= 4,
        "50 messages opened {} connections",
        stats.connections
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn required_tls_against_a_host_without_starttls_opens_one_connection_and_quits() {
    let sink = Sink::start(SinkConfig {
        starttls: false,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        tls: TlsPolicy::Required,
        max_connections_per_host: 8,
        ..common::fast_config()
    };
    let route = common::route(2, sink.local_addr());
    let reports = common::deliver_all(config, &[route], &addresses(200)).await;
    assert_eq!(reports.len(), 200);
    for r in &reports {
        let status = &r.statuses[0];
        assert_eq!(status.disposition, Disposition::Deferred, "{status:?}");
        assert!(status.text.contains("does not offer STARTTLS"), "{status:?}");
    }
    let stats = sink.stats();
    assert!(
        stats.connections <= 2,
        "opened {} connections for 200 deferrals",
        stats.connections
    );
    assert_eq!(stats.messages, 0);
    sink.shutdown().await;
}
