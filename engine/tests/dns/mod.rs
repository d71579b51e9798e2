//! DNS servers on loopback for the MX tests: a real hickory authoritative server for the zone
//! `test.` (UDP and TCP on one ephemeral port, counting the queries it answers), a hand-rolled
//! UDP server that answers every query with SERVFAIL, and one that never answers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::authority::{Catalog, ZoneType};
use hickory_server::proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// TTL of every record except the `short.test` ones.
const TTL: u32 = 300;

fn name(text: &str) -> Name {
    Name::from_str(text).expect("test zone names are valid")
}

fn rec(owner: &str, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(name(owner), ttl, rdata)
}

fn mx(pref: u16, host: &str) -> RData {
    RData::MX(MX::new(pref, name(host)))
}

fn a(ip: [u8; 4]) -> RData {
    RData::A(A(Ipv4Addr::from(ip)))
}

/// The records of zone `test.` (see the module docs of `mx_resolve.rs` for what each is for).
fn zone_records() -> Vec<Record> {
    let soa = SOA::new(name("ns.test."), name("hostmaster.test."), 1, 3600, 600, 86400, 60);
    vec![
        rec("test.", TTL, RData::SOA(soa)),
        rec("a.test.", TTL, mx(20, "mx2.a.test.")),
        rec("a.test.", TTL, mx(10, "mx1.a.test.")),
        rec("mx1.a.test.", TTL, a([127, 0, 0, 10])),
        rec("mx2.a.test.", TTL, a([127, 0, 0, 11])),
        // Same hosts as a.test, spelled in upper case: same site.
        rec("b.test.", TTL, mx(10, "MX1.A.TEST.")),
        rec("b.test.", TTL, mx(20, "mx2.a.test.")),
        rec("c.test.", TTL, mx(10, "mx1.a.test.")),
        rec("implicit.test.", TTL, a([127, 0, 0, 12])),
        rec("nullmx.test.", TTL, mx(0, ".")),
        rec("deadmx.test.", TTL, mx(10, "nowhere.test.")),
        rec(
            "nowhere.test.",
            TTL,
            RData::TXT(TXT::new(vec!["no address here".into()])),
        ),
        rec(
            "noaddr.test.",
            TTL,
            RData::TXT(TXT::new(vec!["exists, no MX, no A".into()])),
        ),
        rec("v6.test.", TTL, mx(10, "mx6.v6.test.")),
        rec("mx6.v6.test.", TTL, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
        rec("dual.test.", TTL, mx(10, "mx.dual.test.")),
        rec("mx.dual.test.", TTL, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
        rec("mx.dual.test.", TTL, a([127, 0, 0, 14])),
        rec("iplit.test.", TTL, mx(10, "127.0.0.15.")),
        rec("short.test.", 1, mx(10, "mx.short.test.")),
        rec("mx.short.test.", 1, a([127, 0, 0, 13])),
    ]
}

/// Zone `test.` for one MTA-STS domain `<label>.test`: MX `mx.<label>.test` at `mx_ip`, the
/// policy host `mta-sts.<label>.test` at `policy_ip`, `_mta-sts` with `v=STSv1; id=<id>` and
/// `_smtp._tls` with `v=TLSRPTv1; rua=mailto:tls@<label>.test`.
#[allow(dead_code)] // for the MTA-STS tests only
pub fn mta_sts_zone(label: &str, mx_ip: [u8; 4], policy_ip: [u8; 4], id: &str) -> Vec<Record> {
    let soa = SOA::new(name("ns.test."), name("hostmaster.test."), 1, 3600, 600, 86400, 60);
    let txt = |text: String| RData::TXT(TXT::new(vec![text]));
    vec![
        rec("test.", TTL, RData::SOA(soa)),
        rec(&format!("{label}.test."), TTL, mx(10, &format!("mx.{label}.test."))),
        rec(&format!("mx.{label}.test."), TTL, a(mx_ip)),
        rec(&format!("mta-sts.{label}.test."), TTL, a(policy_ip)),
        rec(&format!("_mta-sts.{label}.test."), 1, txt(format!("v=STSv1; id={id}"))),
        rec(
            &format!("_smtp._tls.{label}.test."),
            TTL,
            txt(format!("v=TLSRPTv1; rua=mailto:tls@{label}.test")),
        ),
    ]
}

/// Every query the authoritative server answered: (lowercase name without dot, type).
type QueryLog = Arc<Mutex<Vec<(String, RecordType)>>>;

/// Records each query, then lets the catalog answer it.
struct CountingCatalog {
    catalog: Catalog,
    log: QueryLog,
}

#[async_trait::async_trait]
impl RequestHandler for CountingCatalog {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, response: R) -> ResponseInfo {
        for query in request.queries() {
            let qname = query.name().to_string().trim_end_matches('.').to_ascii_lowercase();
            self.log.lock().unwrap().push((qname, query.query_type()));
        }
        self.catalog.handle_request(request, response).await
    }
}

/// The authoritative server for `test.` on 127.0.0.1, UDP and TCP on the same ephemeral port.
pub struct AuthServer {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    log: QueryLog,
    server: ServerFuture<CountingCatalog>,
}

impl AuthServer {
    /// Serves zone `test.` (see [`zone_records`]).
    pub async fn start() -> AuthServer {
        AuthServer::serve(name("test."), zone_records()).await
    }

    /// Serves `records` as the zone `origin`, e.g. a generated `volley_bench::dns::BenchZone`.
    pub async fn serve(origin: Name, records: Vec<Record>) -> AuthServer {
        let mut authority = InMemoryAuthority::empty(origin.clone(), ZoneType::Primary, false);
        for record in records {
            authority.upsert_mut(record, 1);
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(origin), vec![Arc::new(authority)]);
        let log = QueryLog::default();
        let mut server = ServerFuture::new(CountingCatalog {
            catalog,
            log: log.clone(),
        });
        let (udp, tcp) = bind_udp_and_tcp().await;
        let addr = udp.local_addr().unwrap();
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        AuthServer { addr, log, server }
    }

    /// How many queries for (`qname`, `rtype`) the server has answered.
    pub fn queries(&self, qname: &str, rtype: RecordType) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| n == qname && *t == rtype)
            .count()
    }

    /// How many queries of type `rtype`, for any name, the server has answered.
    pub fn queries_of_type(&self, rtype: RecordType) -> usize {
        self.log.lock().unwrap().iter().filter(|(_, t)| *t == rtype).count()
    }

    /// All queries answered so far.
    pub fn total_queries(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Stops answering (sockets closed).
    pub async fn shutdown(mut self) {
        self.server.shutdown_gracefully().await.expect("dns server shutdown");
    }
}

async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener) {
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// A UDP-only "server" on loopback that answers with SERVFAIL or not at all, counting queries.
pub struct ScriptedUdp {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl ScriptedUdp {
    /// Answers every query with RCODE=2 (SERVFAIL), echoing the ID and question.
    pub async fn servfail() -> ScriptedUdp {
        ScriptedUdp::start(true).await
    }

    /// Reads queries and never answers (resolver timeouts).
    pub async fn silent() -> ScriptedUdp {
        ScriptedUdp::start(false).await
    }

    async fn start(answer: bool) -> ScriptedUdp {
        let socket = UdpSocket::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
                counter.fetch_add(1, Ordering::SeqCst);
                if let (true, Some(reply)) = (answer, servfail_reply(&buf[..len])) {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        ScriptedUdp { addr, received, task }
    }

    /// Queries received so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// RFC 1035 §4.1: header with the query's ID, QR=1, opcode and RD copied, RCODE=2, and the first
/// question copied; no answer, authority or additional records (so no EDNS OPT either).
fn servfail_reply(query: &[u8]) -> Option<Vec<u8>> {
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None; // compression pointers do not occur in a question we sent
        }
        end += len;
    }
    end += 4; // QTYPE, QCLASS
    if end > query.len() {
        return None;
    }
    let mut reply = Vec::with_capacity(end);
    reply.extend_from_slice(&query[..2]);
    reply.push(0x80 | (query[2] & 0x79));
    reply.push(0x02);
    reply.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    reply.extend_from_slice(&query[12..end]);
    Some(reply)
}
