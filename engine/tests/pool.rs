//! The connection pool: reuse, caps, and no delivery lost when connections break.

mod common;

use std::collections::HashMap;

use volley_bench::{Sink, SinkConfig};
use volley_engine::{Disposition, SmtpConfig};

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@d{}.test", i % 7)).collect()
}

#[tokio::test]
async fn connections_are_reused_and_capped() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 3,
        max_messages_per_connection: 50,
        ..common::fast_config()
    };
    let routes = [common::route(2, sink.local_addr()), common::route(3, sink.local_addr())];
    let reports = common::deliver_all(config, &routes, &addresses(600)).await;
    assert_eq!(reports.len(), 600);
    assert!(reports
        .iter()
        .all(|r| r.statuses[0].disposition == Disposition::Delivered));
    let stats = sink.stats();
    assert_eq!(stats.messages, 600);
    // 600 messages at most 50 per connection: at least 12 connections; at most 3 at once per
    // (source, host) means connections are reused rather than one per message.
    assert!(stats.connections >= 12, "{stats:?}");
    assert!(stats.connections <= 600 / 50 + 2 * 3, "{stats:?}");
    sink.shutdown().await;
}

#[tokio::test]
async fn connection_cap_at_the_server_is_learned_and_defers_nothing() {
    // The server allows 1 connection; the pool may open up to 4. Before adaptive concurrency
    // the refused connections deferred their deliveries with the server's 421; now the route
    // learns the cap and the deliveries wait for the open connection.
    let sink = Sink::start(SinkConfig {
        max_connections: Some(1),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 4,
        initial_connections_per_host: 4,
        ..common::fast_config()
    };
    let routes = [common::route(2, sink.local_addr())];
    let (reports, learned) = common::deliver_all_learning(config, &routes, &addresses(200)).await;
    assert_eq!(reports.len(), 200);
    let mut by: HashMap<Disposition, u64> = HashMap::new();
    for r in &reports {
        *by.entry(r.statuses[0].disposition).or_default() += 1;
    }
    assert_eq!(by.get(&Disposition::Delivered).copied(), Some(200), "{by:?}");
    assert_eq!(sink.stats().messages, 200);
    assert!(sink.stats().connections_refused >= 1);
    assert_eq!(learned[0].limit, 1, "{learned:?}");
    sink.shutdown().await;
}

#[tokio::test]
async fn faults_give_exactly_one_outcome_per_recipient_matching_the_sink() {
    let sink = Sink::start(SinkConfig {
        tempfail_pct: 5.0,
        permfail_pct: 2.0,
        drop_pct: 2.0,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let rcpts = addresses(3000);
    let routes: Vec<_> = (2..=5).map(|ip| common::route(ip, sink.local_addr())).collect();
    let reports = common::deliver_all(common::fast_config(), &routes, &rcpts).await;
    assert_eq!(reports.len(), rcpts.len(), "one report per delivery");
    let mut tags: Vec<usize> = reports.iter().map(|r| r.tag).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), rcpts.len(), "no delivery reported twice");
    let stats = sink.stats();
    let count = |d| {
        reports
            .iter()
            .filter(|r| r.statuses.len() == 1 && r.statuses[0].disposition == d)
            .count() as u64
    };
    let (delivered, deferred, bounced) = (
        count(Disposition::Delivered),
        count(Disposition::Deferred),
        count(Disposition::Bounced),
    );
    assert_eq!(delivered + deferred + bounced, rcpts.len() as u64);
    assert_eq!(delivered, stats.messages, "{stats:?}");
    assert_eq!(bounced, stats.rcpt_permfails, "{stats:?}");
    // Deferred: 451s from the sink plus deliveries on connections it dropped.
    assert!(deferred >= stats.rcpt_tempfails, "{stats:?}");
    assert!(
        stats.rcpt_tempfails > 0 && stats.rcpt_permfails > 0 && stats.drops > 0,
        "faults were injected: {stats:?}"
    );
    let maybe = reports.iter().filter(|r| r.statuses[0].maybe_delivered).count() as u64;
    assert_eq!(maybe, stats.drops_after_data, "the RFC 1047 window is flagged");
    for r in &reports {
        let expected = u64::from(r.statuses[0].disposition == Disposition::Delivered);
        assert_eq!(sink.accepted_for(&rcpts[r.tag]), expected, "{}", rcpts[r.tag]);
    }
    sink.shutdown().await;
}

#[tokio::test]
async fn unreachable_host_defers_with_the_reason() {
    // A port nothing listens on: bind one, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let reports = common::deliver_all(common::fast_config(), &[common::route(2, addr)], &addresses(5)).await;
    assert_eq!(reports.len(), 5);
    for r in &reports {
        assert_eq!(r.statuses[0].disposition, Disposition::Deferred);
        assert!(r.statuses[0].text.contains("cannot connect"), "{}", r.statuses[0].text);
    }
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let config = SmtpConfig {
        idle_timeout: std::time::Duration::from_millis(200),
        ..common::fast_config()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pool = volley_engine::DeliveryPool::new(config.clone(), common::params(&config), tx);
    let delivery = |tag: usize| volley_engine::Delivery {
        tag,
        route: common::route(2, sink.local_addr()),
        envelope: volley_engine::Envelope {
            mail_from: "b@sender.test".into(),
            recipients: vec![format!("i{tag}@d.test")],
        },
        payload: volley_engine::smtp::dot::prepare(&common::message(tag as u64)).expect("payload"),
    };
    pool.submit(delivery(1)).await;
    assert!(rx
        .recv()
        .await
        .is_some_and(|r| r.statuses[0].disposition == Disposition::Delivered));
    assert_eq!(pool.stats().open_connections, 1, "kept open for reuse");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(pool.stats().open_connections, 0, "closed after the idle timeout");
    // Work after the idle close opens a new connection.
    pool.submit(delivery(2)).await;
    assert!(rx
        .recv()
        .await
        .is_some_and(|r| r.statuses[0].disposition == Disposition::Delivered));
    assert_eq!(pool.stats().connections_opened, 2);
    pool.close().await;
    assert_eq!(pool.stats().open_connections, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn pool_wide_connection_cap_holds_across_routes_and_loses_nothing() {
    // The server refuses a 3rd concurrent connection (421). Eight routes (source IPs) with up
    // to 4 connections each would open 32; `max_connections = 2` keeps the whole pool at 2, so
    // every delivery goes through: idle connections make room for the routes that wait.
    let sink = Sink::start(SinkConfig {
        max_connections: Some(2),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 4,
        max_connections: 2,
        ..common::fast_config()
    };
    let routes: Vec<_> = (2..10).map(|ip| common::route(ip, sink.local_addr())).collect();
    let reports = common::deliver_all(config, &routes, &addresses(400)).await;
    assert_eq!(reports.len(), 400);
    let refused: Vec<_> = reports
        .iter()
        .filter(|r| r.statuses[0].disposition != Disposition::Delivered)
        .map(|r| &r.statuses[0])
        .collect();
    assert!(
        refused.is_empty(),
        "{} not delivered, e.g. {:?}",
        refused.len(),
        refused.first()
    );
    assert_eq!(sink.stats().messages, 400);
    let sources: std::collections::HashSet<_> = reports.iter().map(|r| r.route.source.ip).collect();
    assert_eq!(sources.len(), 8, "every route was served");
    sink.shutdown().await;
}

#[tokio::test]
async fn route_limits_tighten_one_route_only() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let config = SmtpConfig {
        max_connections_per_host: 8,
        max_messages_per_connection: 1000,
        ..common::fast_config()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let pool = volley_engine::DeliveryPool::new(config.clone(), common::params(&config), tx);
    let (warming, warm) = (common::route(2, sink.local_addr()), common::route(3, sink.local_addr()));
    pool.set_route_limits(
        &warming,
        volley_engine::RouteLimits {
            max_connections: 1,
            max_messages_per_connection: 3,
        },
    );
    // 30 on the limited route, then 30 on the other.
    for i in 0..60u64 {
        let route = if i < 30 { &warming } else { &warm };
        let delivery = volley_engine::Delivery {
            tag: i,
            route: route.clone(),
            envelope: volley_engine::Envelope {
                mail_from: "bounces@sender.test".into(),
                recipients: vec![format!("user{i}@limits.test")],
            },
            payload: volley_engine::smtp::dot::prepare(&common::message(i)).expect("payload"),
        };
        pool.submit(delivery).await;
    }
    pool.close().await;
    let mut per_route: HashMap<std::net::IpAddr, usize> = HashMap::new();
    while let Ok(r) = rx.try_recv() {
        assert_eq!(r.statuses[0].disposition, Disposition::Delivered);
        *per_route.entry(r.route.source.ip).or_default() += 1;
    }
    assert_eq!(per_route.values().sum::<usize>(), 60);
    // 30 messages at 3 per connection: exactly 10 connections from .2 (the pool's limits, 8
    // connections of up to 1000 messages, could never need 10); .3 keeps those limits and
    // needs between 1 and 8.
    let stats = sink.stats();
    assert!((11..=18).contains(&stats.connections), "{stats:?}");
    sink.shutdown().await;
}

/// Regression: a STARTTLS handshake that stalls past the STARTTLS timeout was reported as a
/// plain timeout and, unlike a handshake error, never fell back to clear text with the
/// opportunistic policy: every connection stalled and deferred again.
#[tokio::test]
async fn opportunistic_tls_falls_back_to_clear_after_a_handshake_timeout() {
    let sink = Sink::start(SinkConfig {
        tls_faults: vec!["stall:5s".parse().expect("valid TLS fault")],
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let mut config = common::fast_config();
    config.timeouts.starttls = std::time::Duration::from_millis(300);
    let reports = common::deliver_all(config, &[common::route(2, sink.local_addr())], &addresses(5)).await;
    assert_eq!(reports.len(), 5);
    for r in &reports {
        assert_eq!(r.statuses[0].disposition, Disposition::Delivered, "{:?}", r.statuses[0]);
        assert!(!r.tls, "delivered in clear after the failed handshake");
    }
    assert_eq!(sink.stats().messages, 5);
    assert!(sink.stats().tls_faults_injected >= 1);
    sink.shutdown().await;
}
