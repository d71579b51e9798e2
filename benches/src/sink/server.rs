//! Sockets: the accept loop, the connection limit, and the per-connection read → process →
//! (latency) → write loop around the sans-IO [`Session`]. Unlike the generic driver of
//! `volley-smtp-server`, this loop injects faults into the I/O itself: delays, drops, a
//! stop in reading, spoiled TLS handshakes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout, Instant};

use super::client_limit::{ClientLimit, ClientSlot};
use super::fault_plan::TlsFaultKind;
use super::reply;
use super::session::{Flow, Session};
use super::stats::bump;
use super::Shared;

/// RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for the next command.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on the STARTTLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer growth step; the buffer grows (or is compacted) whenever less than
/// `MIN_READ` bytes are free. Small enough that thousands of idle connections stay cheap,
/// large enough that a 4 KB message arrives in one read.
const READ_BUFFER: usize = 16 * 1024;
const MIN_READ: usize = 4 * 1024;

/// Listen backlog. A burst of connections beyond the backlog is answered with SYN cookies,
/// and a client whose final ACK is then dropped believes it is connected while the server
/// never sees it; in a server-speaks-first protocol both wait forever. The kernel caps this
/// at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listening socket (with `SO_REUSEADDR`, like `TcpListener::bind`) and a deep
/// backlog.
/// Receive buffer of accepted sockets when a `stop-reading` fault is configured: small, so
/// that a client writing to a sink that stopped reading blocks soon.
const STOP_READING_RCVBUF: u32 = 8 * 1024;

pub(crate) fn listen(addr: SocketAddr, small_buffers: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if small_buffers {
        // Inherited by accepted sockets; set before listen so the window starts small.
        socket.set_recv_buffer_size(STOP_READING_RCVBUF)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until shutdown is signalled (or every handle is dropped). Each
/// connection task holds a clone of `done` so that shutdown can wait for them all.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Option<Arc<Semaphore>>,
    per_client: Option<Arc<ClientLimit>>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::debug!(error = %e, "sink: accept failed");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "sink: cannot set TCP_NODELAY");
        }
        let permit = match &limit {
            None => None,
            Some(semaphore) => match Arc::clone(semaphore).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    bump(&shared.counters.connections_refused);
                    tokio::spawn(refuse(stream, done.clone()));
                    continue;
                }
            },
        };
        let slot = match &per_client {
            None => None,
            Some(limit) => match limit.try_take(peer.ip()) {
                Some((slot, open)) => {
                    let peak = &shared.counters.peak_connections_per_client;
                    peak.fetch_max(open as u64, std::sync::atomic::Ordering::Relaxed);
                    Some(slot)
                }
                None => {
                    bump(&shared.counters.connections_refused);
                    tokio::spawn(refuse(stream, done.clone()));
                    continue;
                }
            },
        };
        let connection = Connection::new(Arc::clone(&shared), peer, shutdown.clone());
        tokio::spawn(connection.serve(stream, (permit, slot), done.clone()));
    }
    tracing::debug!("sink: accept loop stopped");
}

/// Answers a connection beyond `max_connections` with 421 and closes it.
async fn refuse(mut stream: TcpStream, _done: mpsc::Sender<()>) {
    let _ = stream.write_all(reply::TOO_MANY_CONNECTIONS).await;
    let _ = stream.shutdown().await;
}

/// Why a connection loop returned.
enum End<S> {
    /// The connection is finished.
    Closed,
    /// STARTTLS was accepted: hand the plaintext stream to the TLS handshake.
    StartTls(S),
}

/// One client connection: the session (which holds the read and write buffers).
struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    session: Session,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    fn new(shared: Arc<Shared>, peer: SocketAddr, shutdown: watch::Receiver<bool>) -> Self {
        Connection {
            session: Session::new(peer.ip(), Arc::clone(&shared.smtp)),
            shared,
            peer,
            shutdown,
        }
    }

    /// Serves the connection to its end. `_permit` and `_done` are held for the duration.
    async fn serve(
        mut self,
        stream: TcpStream,
        _permits: (Option<OwnedSemaphorePermit>, Option<ClientSlot>),
        _done: mpsc::Sender<()>,
    ) {
        bump(&self.shared.counters.connections);
        let shared = Arc::clone(&self.shared);
        let flow = self.session.greeting(&shared);
        let stream = match self.run(stream, flow).await {
            Ok(End::StartTls(stream)) => stream,
            Ok(End::Closed) => return,
            Err(e) => {
                tracing::debug!(error = %e, peer = %self.peer, "sink: connection error");
                return;
            }
        };
        let mut stream = stream;
        let mut acceptor = &shared.tls.acceptor;
        if let Some(fault) = shared.config.tls_faults.iter().find(|f| f.strikes()) {
            bump(&shared.counters.tls_faults_injected);
            tracing::debug!(kind = ?fault.kind, peer = %self.peer, "sink: injected TLS fault");
            match fault.kind {
                TlsFaultKind::WrongName => acceptor = &shared.tls_wrong_name.acceptor,
                kind => {
                    self.spoil_handshake(&mut stream, kind).await;
                    return;
                }
            }
        }
        let handshake = acceptor.accept(stream);
        let tls = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, peer = %self.peer, "sink: TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "sink: TLS handshake timed out");
                return;
            }
        };
        bump(&shared.counters.tls_handshakes);
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            bump(&shared.counters.tls_resumed);
        }
        self.session.restart_after_tls();
        if let Err(e) = self.run(tls, Flow::Continue).await {
            tracing::debug!(error = %e, peer = %self.peer, "sink: TLS connection error");
        }
    }

    /// Spoils a STARTTLS handshake (`Garbage`, `Close`, `Stall`), then drops the connection.
    async fn spoil_handshake(&mut self, stream: &mut TcpStream, kind: TlsFaultKind) {
        let mut hello = [0u8; 512];
        match kind {
            TlsFaultKind::Garbage => {
                // In answer to the ClientHello, where a ServerHello is due.
                let _ = timeout(HANDSHAKE_TIMEOUT, stream.read(&mut hello)).await;
                let _ = stream.write_all(b"this is not TLS\r\n\x00\xff\x15\x03").await;
                let _ = stream.shutdown().await;
            }
            TlsFaultKind::Close => {
                let _ = timeout(HANDSHAKE_TIMEOUT, stream.read(&mut hello)).await;
            }
            TlsFaultKind::Stall(after) => {
                let _ = timeout(HANDSHAKE_TIMEOUT, stream.read(&mut hello)).await;
                tokio::select! {
                    () = sleep(after) => {}
                    _ = self.shutdown.changed() => {}
                }
            }
            TlsFaultKind::WrongName => {}
        }
    }

    /// The connection loop: write pending replies (after the configured latency, in one
    /// write), act on `flow`, read what the client sent, let the session process every
    /// complete command in it, repeat.
    async fn run<S>(&mut self, mut stream: S, mut flow: Flow) -> io::Result<End<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let shared = Arc::clone(&self.shared);
        let idle = sleep(IDLE_TIMEOUT);
        tokio::pin!(idle);
        loop {
            if let Flow::Delay(after) = flow {
                tokio::select! {
                    () = sleep(after) => {}
                    _ = self.shutdown.changed() => return Ok(End::Closed),
                }
            }
            if !self.session.smtp.output().is_empty() {
                // Counted before the write, so a client that has read the replies sees it.
                bump(&shared.counters.reply_flushes);
                let latency = shared.config.latency;
                let replies = self.session.smtp.output();
                let write = async {
                    if !latency.is_zero() {
                        sleep(latency).await;
                    }
                    stream.write_all(replies).await?;
                    stream.flush().await
                };
                idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                tokio::select! {
                    written = write => written?,
                    // A client that does not read must not hold up shutdown forever.
                    _ = self.shutdown.changed() => return Ok(End::Closed),
                    () = &mut idle => return Ok(End::Closed),
                }
                self.session.smtp.clear_output();
            }
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    let _ = stream.shutdown().await;
                    return Ok(End::Closed);
                }
                Flow::Drop => return Ok(End::Closed),
                Flow::Delay(_) => {
                    // Go on with the commands already read before reading more.
                    flow = self.session.process(&shared);
                    continue;
                }
                Flow::StopReading => {
                    // Hold the connection without reading until shutdown or the idle limit.
                    tokio::select! {
                        _ = self.shutdown.changed() => {}
                        () = &mut idle => {}
                    }
                    return Ok(End::Closed);
                }
                // RFC 3207 §5: the session discarded plaintext pipelined after STARTTLS.
                Flow::StartTls => return Ok(End::StartTls(stream)),
            }
            let read_buf = self.session.smtp.input_mut();
            if read_buf.capacity() - read_buf.len() < MIN_READ {
                read_buf.reserve(READ_BUFFER);
            }
            idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
            let read = tokio::select! {
                read = stream.read_buf(read_buf) => read?,
                _ = self.shutdown.changed() => {
                    let _ = stream.write_all(reply::SHUTTING_DOWN).await;
                    let _ = stream.shutdown().await;
                    return Ok(End::Closed);
                }
                () = &mut idle => {
                    let _ = stream.write_all(reply::TIMEOUT).await;
                    let _ = stream.shutdown().await;
                    return Ok(End::Closed);
                }
            };
            if read == 0 {
                return Ok(End::Closed);
            }
            flow = self.session.process(&shared);
        }
    }
}
