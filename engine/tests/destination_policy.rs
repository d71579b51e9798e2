//! Routes carrying a destination policy use its values instead of the pool's: connections per
//! source IP, messages per connection, recipients per transaction, TLS, and a cap over every
//! source IP of the destination. Against the real sink on loopback.

mod common;

use std::sync::Arc;
use std::time::Duration;

use volley_bench::{Sink, SinkConfig};
use volley_engine::tls::TlsPolicy;
use volley_engine::{Disposition, RouteKey, RoutePolicy, TotalCap};

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@d{}.test", i % 20)).collect()
}

fn with_policy(route: RouteKey, policy: &Arc<RoutePolicy>) -> RouteKey {
    RouteKey {
        policy: Some(policy.clone()),
        ..route
    }
}

fn all_delivered(reports: &[volley_engine::DeliveryReport<usize>]) -> bool {
    reports
        .iter()
        .all(|r| r.statuses.iter().all(|s| s.disposition == Disposition::Delivered))
}

#[tokio::test]
async fn a_policy_sets_connections_per_ip_messages_per_connection_and_tls() {
    let latency = Duration::from_millis(5);
    let strict_sink = Sink::start(SinkConfig {
        latency,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let open_sink = Sink::start(SinkConfig {
        latency,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let config = common::fast_config();
    let strict = Arc::new(RoutePolicy {
        max_connections_per_ip: 1,
        initial_connections: 1,
        max_messages_per_connection: 5,
        tls: TlsPolicy::Disabled,
        ..RoutePolicy::from_config("strict", &config)
    });
    let mut routes: Vec<RouteKey> = (2..=3)
        .map(|ip| with_policy(common::route(ip, strict_sink.local_addr()), &strict))
        .collect();
    // Routes without a policy in the same pool keep the pool's settings.
    routes.extend((2..=3).map(|ip| common::route(ip, open_sink.local_addr())));
    let (reports, routes_seen) = common::deliver_all_learning(config, &routes, &addresses(400)).await;
    assert_eq!(reports.len(), 400);
    assert!(all_delivered(&reports));
    let strict_routes: Vec<_> = routes_seen
        .iter()
        .filter(|r| r.mx_addr == strict_sink.local_addr())
        .map(|r| (r.destination.as_deref(), r.cap, r.limit))
        .collect();
    assert_eq!(strict_routes, [(Some("strict"), 1, 1); 2]);
    assert!(routes_seen
        .iter()
        .filter(|r| r.mx_addr == open_sink.local_addr())
        .all(|r| r.destination.is_none() && r.cap == 32));

    // One connection at a time per source IP, each replaced after 5 messages (the sink's
    // peak per client is not asserted: it counts a closed connection until its handler has
    // finished, which can overlap the next one).
    let strict_stats = strict_sink.stats();
    assert_eq!(strict_stats.messages, 200);
    assert_eq!(
        strict_stats.connections,
        200 / 5,
        "5 messages per connection: {strict_stats:?}"
    );
    assert_eq!(strict_stats.tls_handshakes, 0, "tls = disabled: {strict_stats:?}");

    let open_stats = open_sink.stats();
    assert_eq!(open_stats.messages, 200);
    assert!(open_stats.connections <= 8, "connections reused: {open_stats:?}");
    assert!(
        open_stats.tls_handshakes >= 1,
        "the pool's opportunistic TLS: {open_stats:?}"
    );
    strict_sink.shutdown().await;
    open_sink.shutdown().await;
}

#[tokio::test]
async fn a_total_cap_holds_over_every_source_ip_of_the_destination() {
    // The receiver refuses a third connection from anyone: a destination capped at 2 over
    // all source IPs is never refused; without the cap, four source IPs are.
    async fn refused(total: Option<usize>) -> u64 {
        let sink = Sink::start(SinkConfig {
            max_connections: Some(2),
            latency: Duration::from_millis(10),
            ..SinkConfig::default()
        })
        .await
        .expect("sink");
        let config = common::fast_config();
        let policy = Arc::new(RoutePolicy {
            max_connections_per_ip: 4,
            initial_connections: 4,
            total: total.map(|max| TotalCap {
                owner: Arc::from("capped"),
                max,
            }),
            ..RoutePolicy::from_config("capped", &config)
        });
        let routes: Vec<RouteKey> = (2..=5)
            .map(|ip| with_policy(common::route(ip, sink.local_addr()), &policy))
            .collect();
        let reports = common::deliver_all(config, &routes, &addresses(400)).await;
        assert_eq!(reports.len(), 400);
        if total.is_some() {
            assert!(all_delivered(&reports));
        }
        let refused = sink.stats().connections_refused;
        sink.shutdown().await;
        refused
    }
    assert!(
        refused(None).await >= 1,
        "without the cap the receiver's limit is reached"
    );
    assert_eq!(refused(Some(2)).await, 0, "the destination's cap keeps below it");
}

#[tokio::test]
async fn a_policy_splits_transactions_at_its_recipient_count() {
    let sink = Sink::start(SinkConfig::default()).await.expect("sink");
    let config = common::fast_config();
    let policy = Arc::new(RoutePolicy {
        max_recipients_per_transaction: 2,
        ..RoutePolicy::from_config("small", &config)
    });
    let route = with_policy(common::route(2, sink.local_addr()), &policy);
    let recipients: Vec<String> = (0..5).map(|i| format!("u{i}@d.test")).collect();
    let statuses = common::deliver_one(config, route, recipients).await;
    assert_eq!(statuses.len(), 5);
    assert!(statuses.iter().all(|s| s.disposition == Disposition::Delivered));
    let stats = sink.stats();
    assert_eq!((stats.mail_commands, stats.recipients), (3, 5), "{stats:?}");
    sink.shutdown().await;
}
