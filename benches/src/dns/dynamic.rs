//! [`DynamicDns`]: a loopback UDP DNS server whose A records a test changes while it runs — a
//! blocklist zone that lists a source IP mid-run and delists it later. Names without records
//! answer NXDOMAIN; answers carry TTL 0 so that resolvers ask again.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use volley_bench::dns::DynamicDns;
//! let dns = DynamicDns::start("127.0.0.1:0".parse().unwrap()).await?;
//! dns.set_a("2.0.0.127.bl.test", &["127.0.0.2".parse().unwrap()]);
//! dns.remove("2.0.0.127.bl.test");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_server::proto::op::{Message, MessageType, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

type Records = Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>;

/// A running dynamic DNS server; stops when dropped.
#[derive(Debug)]
pub struct DynamicDns {
    addr: SocketAddr,
    records: Records,
    queries: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn lock(records: &Records) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Ipv4Addr>>> {
    records.lock().unwrap_or_else(|e| e.into_inner())
}

impl DynamicDns {
    /// Binds `listen` (loopback only) and serves on the current tokio runtime.
    pub async fn start(listen: SocketAddr) -> io::Result<DynamicDns> {
        if !listen.ip().is_loopback() {
            return Err(io::Error::other(format!("{listen} is not a loopback address")));
        }
        let socket = UdpSocket::bind(listen).await?;
        let addr = socket.local_addr()?;
        let records: Records = Arc::default();
        let queries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn({
            let (records, queries) = (records.clone(), queries.clone());
            async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(answer) = answer(&buf[..n], &records) {
                        let _ = socket.send_to(&answer, peer).await;
                    }
                }
            }
        });
        Ok(DynamicDns {
            addr,
            records,
            queries,
            task,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the A records of `name`.
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        lock(&self.records).insert(key(name), ips.to_vec());
    }

    /// Removes `name` (NXDOMAIN from now on).
    pub fn remove(&self, name: &str) {
        lock(&self.records).remove(&key(name));
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for DynamicDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The response to one query packet (`None` for a packet that is not a query).
fn answer(packet: &[u8], records: &Records) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    if query.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_authoritative(true)
        .set_recursion_desired(query.recursion_desired());
    let q = query.queries().first()?.clone();
    let name = q.name().clone();
    let found = lock(records).get(&key(&name.to_ascii())).cloned();
    match found {
        None => {
            response.set_response_code(ResponseCode::NXDomain);
        }
        Some(ips) => {
            if q.query_type() == RecordType::A {
                for ip in ips {
                    response.add_answer(Record::from_rdata(name.clone(), 0, RData::A(A(ip))));
                }
            }
        }
    }
    response.add_query(q);
    response.to_vec().ok()
}
