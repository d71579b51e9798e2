//! [`BenchDns::start`]: binds UDP and TCP on one loopback port and serves a [`BenchZone`] with
//! hickory's authoritative [`Catalog`]. UDP is served by several SO_REUSEPORT sockets with
//! large receive buffers: `volley send` resolves thousands of domains at once when a campaign
//! starts; with one socket and the default buffer the kernel dropped part of that burst
//! (RcvbufErrors), and 18-33% of a 100k-recipient run was deferred with `request timed out`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::authority::Catalog;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::store::in_memory::InMemoryAuthority;
use hickory_server::ServerFuture;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

use super::{BenchZone, DnsError, RecordZone, TxtZone};

/// Idle time after which a TCP client connection is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Ephemeral ports tried when the caller asks for port 0 and UDP's pick is taken for TCP.
const SHARED_PORT_ATTEMPTS: usize = 50;

/// Starts bench DNS servers. See [`BenchDns::start`].
#[derive(Debug)]
pub struct BenchDns;

impl BenchDns {
    /// Generates `zone` and serves it on `listen` over UDP and TCP (the same port; with port 0 an
    /// ephemeral port free for both). `listen` must be a loopback address. Returns once the
    /// sockets are bound and the zone is loaded; the server runs on the current tokio runtime
    /// until [`BenchDnsHandle::shutdown`] or the handle is dropped.
    pub async fn start(listen: SocketAddr, zone: &BenchZone) -> Result<BenchDnsHandle, DnsError> {
        serve(
            listen,
            vec![(zone.origin_name()?, zone.authority()?)],
            zone.domains,
            zone.sites,
        )
    }

    /// Serves the TXT records of `zone` on `listen` (loopback only), like [`BenchDns::start`].
    /// The handle reports 0 domains and 0 sites.
    pub async fn start_txt(listen: SocketAddr, zone: &TxtZone) -> Result<BenchDnsHandle, DnsError> {
        serve(listen, vec![(zone.origin_name()?, zone.authority()?)], 0, 0)
    }

    /// Serves every zone of `zones` (each its own origin, e.g. `test` and `127.in-addr.arpa`) on
    /// `listen` (loopback only), like [`BenchDns::start`]. Names under none of the origins are
    /// refused. The handle reports 0 domains and 0 sites.
    pub async fn start_zones(listen: SocketAddr, zones: &[RecordZone]) -> Result<BenchDnsHandle, DnsError> {
        let authorities = zones
            .iter()
            .map(|zone| Ok((zone.origin_name()?, zone.authority()?)))
            .collect::<Result<Vec<_>, DnsError>>()?;
        serve(listen, authorities, 0, 0)
    }
}

/// Binds `listen` (loopback only) and serves each `(origin, authority)` zone on the current
/// tokio runtime.
fn serve(
    listen: SocketAddr,
    zones: Vec<(Name, InMemoryAuthority)>,
    domains: usize,
    sites: usize,
) -> Result<BenchDnsHandle, DnsError> {
    if !listen.ip().is_loopback() {
        return Err(DnsError::NotLoopback { addr: listen });
    }
    let mut catalog = Catalog::new();
    for (origin, authority) in zones {
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(authority)]);
    }

    let sockets = bind(listen)?;
    let addr = sockets.tcp.local_addr().map_err(|source| DnsError::Bind {
        addr: listen,
        protocol: "tcp",
        source,
    })?;
    let mut server = ServerFuture::new(catalog);
    for udp in sockets.udp {
        server.register_socket(udp);
    }
    server.register_listener(sockets.tcp, TCP_TIMEOUT);
    Ok(BenchDnsHandle {
        addr,
        domains,
        sites,
        server,
    })
}

/// A running bench DNS server.
pub struct BenchDnsHandle {
    addr: SocketAddr,
    domains: usize,
    sites: usize,
    server: ServerFuture<Catalog>,
}

impl std::fmt::Debug for BenchDnsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchDnsHandle")
            .field("addr", &self.addr)
            .field("domains", &self.domains)
            .field("sites", &self.sites)
            .finish_non_exhaustive()
    }
}

impl BenchDnsHandle {
    /// Where the server listens, UDP and TCP.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of recipient domains in the zone.
    pub fn domains(&self) -> usize {
        self.domains
    }

    /// Number of MX sites in the zone.
    pub fn sites(&self) -> usize {
        self.sites
    }

    /// Stops accepting queries and waits for the in-flight ones.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::warn!(addr = %self.addr, "bench DNS server shutdown: {e}");
        }
    }
}

/// UDP sockets on the one port (SO_REUSEPORT; the kernel spreads queries over them by source
/// address and port). Each has its own receive queue and receive loop, so a burst of thousands of
/// MX queries (a campaign starting over 10,000 domains) is queued rather than dropped.
const UDP_SOCKETS: usize = 4;

/// Receive buffer asked for on each UDP socket; Linux caps it at `net.core.rmem_max`.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// The UDP sockets and the TCP listener, all on one address.
struct Sockets {
    udp: Vec<UdpSocket>,
    tcp: TcpListener,
}

/// UDP and TCP on the same address; with port 0, retries until an ephemeral port is free for both.
fn bind(listen: SocketAddr) -> Result<Sockets, DnsError> {
    if listen.port() != 0 {
        return bind_port(listen).map_err(|(protocol, source)| DnsError::Bind {
            addr: listen,
            protocol,
            source,
        });
    }
    for _ in 0..SHARED_PORT_ATTEMPTS {
        // Let the kernel pick a UDP port, then try to claim it for everything.
        let probe = udp_socket(listen).map_err(|source| DnsError::Bind {
            addr: listen,
            protocol: "udp",
            source,
        })?;
        let addr = probe.local_addr().map_err(|source| DnsError::Bind {
            addr: listen,
            protocol: "udp",
            source,
        })?;
        drop(probe);
        match bind_port(addr) {
            Ok(sockets) => return Ok(sockets),
            Err((_, e)) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err((protocol, source)) => return Err(DnsError::Bind { addr, protocol, source }),
        }
    }
    Err(DnsError::NoSharedPort {
        ip: listen.ip(),
        attempts: SHARED_PORT_ATTEMPTS,
    })
}

/// [`UDP_SOCKETS`] UDP sockets and a TCP listener on `addr` (a fixed port).
fn bind_port(addr: SocketAddr) -> Result<Sockets, (&'static str, io::Error)> {
    let udp = (0..UDP_SOCKETS)
        .map(|_| udp_socket(addr))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| ("udp", e))?;
    let tcp = std::net::TcpListener::bind(addr)
        .and_then(|tcp| {
            tcp.set_nonblocking(true)?;
            TcpListener::from_std(tcp)
        })
        .map_err(|e| ("tcp", e))?;
    Ok(Sockets { udp, tcp })
}

/// One non-blocking UDP socket on `addr` with SO_REUSEPORT and a large receive buffer.
fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_recv_buffer_size(UDP_RECV_BUFFER)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
