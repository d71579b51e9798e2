//! The bench DNS server answers the generated zone over UDP and TCP: MX preferences 10/20, site
//! sharing every `sites` domains, round-robin MX addresses, NXDOMAIN outside the zone; and it
//! refuses to listen off loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use volley_bench::dns::{BenchDns, BenchDnsHandle, BenchZone, DnsError};
use volley_engine::mx::{DnsConfig, MxAnswer, MxError, MxRecord, MxResolver, MxSite};

const SITES: usize = 7;
const MX_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const MX_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

fn zone() -> BenchZone {
    BenchZone::new(1_000, SITES, vec![MX_A, MX_B])
}

async fn start(zone: &BenchZone) -> BenchDnsHandle {
    BenchDns::start("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .expect("bench DNS server starts on loopback")
}

/// Volley's own resolver, as `volley send` builds it (UDP, TCP on truncation).
fn mx_resolver(addr: SocketAddr) -> MxResolver {
    MxResolver::new(&DnsConfig {
        nameservers: vec![addr],
        ..DnsConfig::default()
    })
    .expect("resolver")
}

/// A hickory resolver that asks `addr` over TCP only.
fn tcp_resolver(addr: SocketAddr) -> TokioResolver {
    let servers = NameServerConfigGroup::from(vec![NameServerConfig::new(addr, Protocol::Tcp)]);
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.attempts = 1;
    TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, Vec::new(), servers),
        TokioConnectionProvider::default(),
    )
    .with_options(opts)
    .build()
}

async fn hosts_of(resolver: &MxResolver, domain: &str) -> (MxSite, Vec<MxRecord>) {
    match resolver.resolve(domain).await.expect(domain).as_ref() {
        MxAnswer::Hosts { site, hosts, implicit } => {
            assert!(!implicit, "{domain} has MX records");
            (site.clone(), hosts.clone())
        }
        MxAnswer::NullMx => panic!("{domain}: unexpected null MX"),
    }
}

#[tokio::test]
async fn mx_records_point_at_the_site_hosts_with_preferences_10_and_20() {
    let zone = zone();
    let dns = start(&zone).await;
    let resolver = mx_resolver(dns.local_addr());

    for i in [0, 1, 2, SITES, 999] {
        let domain = zone.domain(i);
        let site = zone.site_of(i);
        let [a, b] = zone.mx_hosts(site);
        let ip = IpAddr::V4(zone.mx_ip(site).unwrap());
        let (mx_site, hosts) = hosts_of(&resolver, &domain).await;
        assert_eq!(mx_site, MxSite::from_hosts([&a, &b]), "{domain}");
        let expected = vec![
            MxRecord {
                preference: 10,
                host: a.as_str().into(),
                addrs: vec![ip],
            },
            MxRecord {
                preference: 20,
                host: b.as_str().into(),
                addrs: vec![ip],
            },
        ];
        assert_eq!(hosts, expected, "{domain}");
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn domains_sites_apart_share_a_site_and_addresses_go_round_robin() {
    let zone = zone();
    let dns = start(&zone).await;
    let resolver = mx_resolver(dns.local_addr());

    let (site0, hosts0) = hosts_of(&resolver, "d0.bench.test").await;
    let (site_again, _) = hosts_of(&resolver, &format!("d{SITES}.bench.test")).await;
    let (site1, hosts1) = hosts_of(&resolver, "D1.Bench.Test").await;
    assert_eq!(site0.as_str(), "mx0a.sites.bench.test,mx0b.sites.bench.test");
    assert_eq!(site0, site_again);
    assert_ne!(site0, site1);
    assert_eq!(hosts0[0].addrs, [IpAddr::V4(MX_A)]);
    assert_eq!(hosts1[0].addrs, [IpAddr::V4(MX_B)]);
    dns.shutdown().await;
}

#[tokio::test]
async fn names_outside_the_zone_pattern_are_nxdomain() {
    let zone = zone();
    let dns = start(&zone).await;
    let resolver = mx_resolver(dns.local_addr());

    for domain in ["unknown.bench.test", "d1000.bench.test", "mx999a.sites.bench.test"] {
        let err = resolver.resolve(domain).await.expect_err(domain);
        assert!(matches!(err, MxError::NxDomain { .. }), "{domain}: {err}");
    }
    dns.shutdown().await;
}

#[tokio::test]
async fn answers_over_tcp_on_the_same_port() {
    let zone = zone();
    let dns = start(&zone).await;
    let resolver = tcp_resolver(dns.local_addr());

    let mx = resolver.mx_lookup("d3.bench.test.").await.expect("MX over TCP");
    let mut found: Vec<(u16, String)> = mx
        .iter()
        .map(|mx| (mx.preference(), mx.exchange().to_ascii()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (10, "mx3a.sites.bench.test.".to_owned()),
            (20, "mx3b.sites.bench.test.".to_owned())
        ]
    );
    let a = resolver
        .ipv4_lookup("mx3b.sites.bench.test.")
        .await
        .expect("A over TCP");
    let addrs: Vec<Ipv4Addr> = a.iter().map(|a| a.0).collect();
    assert_eq!(addrs, [MX_B]);
    let nx = resolver
        .mx_lookup("nope.bench.test.")
        .await
        .expect_err("NXDOMAIN over TCP");
    assert!(nx.is_nx_domain(), "{nx}");
    dns.shutdown().await;
}

#[tokio::test]
async fn records_carry_ttl_3600() {
    let zone = zone();
    let dns = start(&zone).await;
    let resolver = tcp_resolver(dns.local_addr());
    let mx = resolver.mx_lookup("d5.bench.test.").await.expect("MX");
    assert!(mx.as_lookup().records().iter().all(|r| r.ttl() == 3600));
    dns.shutdown().await;
}

#[tokio::test]
async fn refuses_to_listen_off_loopback() {
    let zone = zone();
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:53"] {
        let err = BenchDns::start(listen.parse().unwrap(), &zone).await.expect_err(listen);
        assert!(matches!(err, DnsError::NotLoopback { .. }), "{listen}: {err}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}

#[tokio::test]
async fn serves_a_fixed_port_when_asked() {
    // Take an ephemeral port from a first server, free it, and ask for it by number.
    let zone = zone();
    let first = start(&zone).await;
    let addr = first.local_addr();
    first.shutdown().await;
    let dns = BenchDns::start(addr, &zone).await.expect("fixed port");
    assert_eq!(dns.local_addr(), addr);
    let (site, _) = hosts_of(&mx_resolver(addr), "d2.bench.test").await;
    assert_eq!(site.as_str(), "mx2a.sites.bench.test,mx2b.sites.bench.test");
    dns.shutdown().await;
}
