//! MX resolution against real DNS servers on loopback (tests/dns): a hickory authoritative
//! server for `test.`, a SERVFAIL responder and a silent socket. Nothing leaves 127.0.0.0/8.

mod dns;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dns::{AuthServer, ScriptedUdp};
use hickory_server::proto::rr::{Name, RecordType};
use volley_bench::dns::BenchZone;
use volley_engine::mx::{DnsConfig, MxAnswer, MxError, MxRecord, MxResolver, MxSite};

fn config(nameserver: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![nameserver],
        timeout: Duration::from_secs(2),
        attempts: 1,
        min_ttl: Duration::ZERO,
        ..DnsConfig::default()
    }
}

fn resolver(nameserver: SocketAddr) -> MxResolver {
    MxResolver::new(&config(nameserver)).expect("resolver")
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The hosts of an answer that must be `Hosts`, with its site and implicit flag.
fn hosts(answer: &MxAnswer) -> (&MxSite, &[MxRecord], bool) {
    match answer {
        MxAnswer::Hosts { site, hosts, implicit } => (site, hosts, *implicit),
        MxAnswer::NullMx => panic!("expected hosts, got a null MX"),
    }
}

#[tokio::test]
async fn hosts_in_preference_order_with_addresses() {
    let server = AuthServer::start().await;
    let answer = resolver(server.addr).resolve("a.test").await.unwrap();
    let (site, records, implicit) = hosts(&answer);
    assert!(!implicit);
    assert_eq!(site.as_str(), "mx1.a.test,mx2.a.test");
    let expected = [
        (10, "mx1.a.test", ip("127.0.0.10")),
        (20, "mx2.a.test", ip("127.0.0.11")),
    ];
    assert_eq!(records.len(), 2);
    for (record, (pref, host, addr)) in records.iter().zip(expected) {
        assert_eq!(
            (record.preference, &*record.host, &record.addrs[..]),
            (pref, host, &[addr][..])
        );
    }
}

#[tokio::test]
async fn domains_with_the_same_mx_hosts_share_a_site() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    let a = resolver.resolve("a.test").await.unwrap();
    let b = resolver.resolve("B.Test.").await.unwrap();
    let c = resolver.resolve("c.test").await.unwrap();
    assert_eq!(a.site(), b.site(), "b.test names the same hosts (in upper case)");
    assert_ne!(a.site(), c.site());
    assert_eq!(c.site().unwrap().as_str(), "mx1.a.test");
}

#[tokio::test]
async fn no_mx_uses_the_domain_itself_as_implicit_mx() {
    let server = AuthServer::start().await;
    let answer = resolver(server.addr).resolve("implicit.test").await.unwrap();
    let (site, records, implicit) = hosts(&answer);
    assert!(implicit, "RFC 5321 §5.1 implicit MX");
    assert_eq!(site.as_str(), "implicit.test");
    assert_eq!(
        records,
        [MxRecord {
            preference: 0,
            host: "implicit.test".into(),
            addrs: vec![ip("127.0.0.12")]
        }]
    );
}

#[tokio::test]
async fn null_mx_is_an_answer_that_accepts_no_mail() {
    let server = AuthServer::start().await;
    let answer = resolver(server.addr).resolve("nullmx.test").await.unwrap();
    assert_eq!(*answer, MxAnswer::NullMx);
}

#[tokio::test]
async fn nxdomain_and_no_address_domains_are_permanent() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    let err = resolver.resolve("nxdomain.test").await.unwrap_err();
    assert_eq!(
        err,
        MxError::NxDomain {
            domain: "nxdomain.test".into()
        }
    );
    assert!(err.is_permanent());
    let err = resolver.resolve("noaddr.test").await.unwrap_err();
    assert_eq!(
        err,
        MxError::NoAddresses {
            domain: "noaddr.test".into()
        }
    );
    assert!(err.is_permanent());
}

#[tokio::test]
async fn mx_hosts_without_addresses_are_transient() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    let err = resolver.resolve("deadmx.test").await.unwrap_err();
    assert!(
        matches!(&err, MxError::MxHostsUnresolvable { site, .. } if site.as_str() == "nowhere.test"),
        "{err}"
    );
    assert!(!err.is_permanent());
    // An IP literal as MX host is not used, and not even queried.
    let err = resolver.resolve("iplit.test").await.unwrap_err();
    assert!(matches!(err, MxError::MxHostsUnresolvable { .. }), "{err}");
    assert_eq!(server.queries("127.0.0.15", RecordType::A), 0);
}

#[tokio::test]
async fn ipv6_hosts_and_ipv4_first() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    let v6 = resolver.resolve("v6.test").await.unwrap();
    assert_eq!(hosts(&v6).1[0].addrs, [ip("::1")]);
    let dual = resolver.resolve("dual.test").await.unwrap();
    assert_eq!(hosts(&dual).1[0].addrs, [ip("127.0.0.14"), ip("::1")]);
}

#[tokio::test]
async fn servfail_is_transient_and_cached_briefly() {
    let server = ScriptedUdp::servfail().await;
    let resolver = resolver(server.addr);
    let err = resolver.resolve("a.test").await.unwrap_err();
    assert!(
        matches!(&err, MxError::Transient { reason, .. } if reason.contains("Server Failure")),
        "{err}"
    );
    assert!(!err.is_permanent());
    let asked = server.received();
    assert!(asked >= 1);
    let again = resolver.resolve("a.test").await.unwrap_err();
    assert_eq!(again, err);
    assert_eq!(
        server.received(),
        asked,
        "the SERVFAIL is served from the cache for transient_ttl"
    );
}

#[tokio::test]
async fn transient_errors_expire_after_transient_ttl() {
    let server = ScriptedUdp::servfail().await;
    let mut config = config(server.addr);
    config.transient_ttl = Duration::from_millis(200);
    let resolver = MxResolver::new(&config).unwrap();
    resolver.resolve("a.test").await.unwrap_err();
    let asked = server.received();
    tokio::time::sleep(Duration::from_millis(300)).await;
    resolver.resolve("a.test").await.unwrap_err();
    assert!(server.received() > asked, "expired SERVFAIL must be asked again");
}

#[tokio::test]
async fn silent_server_times_out_as_transient() {
    let server = ScriptedUdp::silent().await;
    let mut config = config(server.addr);
    config.timeout = Duration::from_millis(300);
    let resolver = MxResolver::new(&config).unwrap();
    let started = Instant::now();
    let err = resolver.resolve("a.test").await.unwrap_err();
    assert!(matches!(err, MxError::Transient { .. }), "{err}");
    assert!(!err.is_permanent());
    assert!(server.received() >= 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn answers_come_from_the_cache_after_the_server_is_gone() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    let first = resolver.resolve("a.test").await.unwrap();
    let nx = resolver.resolve("nxdomain.test").await.unwrap_err();
    let asked = server.total_queries();
    let second = resolver.resolve("A.TEST").await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(server.total_queries(), asked);
    server.shutdown().await;
    let third = resolver.resolve("a.test").await.unwrap();
    assert!(Arc::ptr_eq(&first, &third));
    assert_eq!(resolver.resolve("nxdomain.test").await.unwrap_err(), nx);
}

#[tokio::test]
async fn record_ttl_expiry_queries_again() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    resolver.resolve("short.test").await.unwrap();
    resolver.resolve("short.test").await.unwrap();
    assert_eq!(server.queries("short.test", RecordType::MX), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await; // the zone's TTL is 1 s
    let answer = resolver.resolve("short.test").await.unwrap();
    assert_eq!(server.queries("short.test", RecordType::MX), 2);
    assert_eq!(hosts(&answer).1[0].addrs, [ip("127.0.0.13")]);
}

#[tokio::test]
async fn min_ttl_keeps_short_records_cached() {
    let server = AuthServer::start().await;
    let mut config = config(server.addr);
    config.min_ttl = Duration::from_secs(60);
    let resolver = MxResolver::new(&config).unwrap();
    resolver.resolve("short.test").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    resolver.resolve("short.test").await.unwrap();
    assert_eq!(server.queries("short.test", RecordType::MX), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lookups_of_one_domain_share_one_query() {
    let server = AuthServer::start().await;
    let resolver = resolver(server.addr);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let resolver = resolver.clone();
            tokio::spawn(async move { resolver.resolve("a.test").await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    assert!(answers.iter().all(|answer| Arc::ptr_eq(answer, &answers[0])));
    assert_eq!(server.queries("a.test", RecordType::MX), 1);
    assert_eq!(server.queries("mx1.a.test", RecordType::A), 1);
}

#[tokio::test]
async fn cache_is_bounded() {
    let server = AuthServer::start().await;
    let mut config = config(server.addr);
    config.cache_size = 2;
    let resolver = MxResolver::new(&config).unwrap();
    for domain in ["a.test", "b.test", "c.test", "implicit.test"] {
        resolver.resolve(domain).await.unwrap();
    }
    assert_eq!(resolver.cached_domains(), 2);
}

#[test]
fn dns_config_reads_humantime_and_rejects_unknown_fields() {
    let config: DnsConfig = toml::from_str(
        "nameservers = [\"127.0.0.1:5353\"]\ntimeout = \"300ms\"\ntransient_ttl = \"10s\"\nmax_ttl = \"2h\"\n",
    )
    .unwrap();
    assert_eq!(config.nameservers, ["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]);
    assert_eq!(config.timeout, Duration::from_millis(300));
    assert_eq!(config.max_ttl, Duration::from_secs(7200));
    assert_eq!(config.attempts, DnsConfig::default().attempts);
    let err = toml::from_str::<DnsConfig>("nameserver = []").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

/// Regression: `volley send` asks for every recipient domain at once when a campaign starts.
/// Hickory sends each UDP query from a socket of its own, so with no bound 10,000 domains opened
/// tens of thousands of sockets (`Too many open files`) and built a backlog at the server longer
/// than the timeout (`request timed out`, thousands of recipients deferred). Lookups now wait for
/// one of `dns.max_concurrent_queries` permits; same-domain lookups still share one query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_distinct_domains_resolves_without_errors() {
    const DOMAINS: usize = 5_000;
    let zone = BenchZone::new(DOMAINS, 100, vec![Ipv4Addr::new(127, 0, 0, 10)]);
    let origin = Name::from_ascii(format!("{}.", zone.origin)).unwrap();
    let server = AuthServer::serve(origin, zone.records().expect("bench zone")).await;
    let resolver = MxResolver::new(&DnsConfig {
        nameservers: vec![server.addr],
        ..DnsConfig::default()
    })
    .unwrap();

    // Every domain twice, the second round while the first is still in flight.
    let lookups: Vec<_> = (0..2 * DOMAINS)
        .map(|i| {
            let resolver = resolver.clone();
            let domain = zone.domain(i % DOMAINS);
            tokio::spawn(async move { resolver.resolve(&domain).await })
        })
        .collect();
    let mut errors = BTreeMap::<String, usize>::new();
    for (i, lookup) in lookups.into_iter().enumerate() {
        match lookup.await.unwrap() {
            Ok(answer) => {
                let site = MxSite::from_hosts(zone.mx_hosts(zone.site_of(i % DOMAINS)));
                assert_eq!(answer.site(), Some(&site), "{}", zone.domain(i % DOMAINS));
            }
            Err(e) => {
                let reason = e.to_string().replace(e.domain(), "<domain>");
                *errors.entry(reason).or_default() += 1;
            }
        }
    }
    assert!(errors.is_empty(), "failed lookups by reason: {errors:#?}");
    assert_eq!(
        server.queries_of_type(RecordType::MX),
        DOMAINS,
        "each domain is asked for once although looked up twice at the same time"
    );
}
