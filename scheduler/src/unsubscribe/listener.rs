//! Accepting the public endpoint's connections: a permit of the connection cap is taken
//! before each accept (the mini-redis habit) and travels with the connection; the TLS
//! handshake runs in a task of its own; every connection has one deadline for everything
//! (handshake, request heads, bodies, keep-alive), after which its reads and writes fail and
//! hyper closes it — so a slow client holds a permit for a bounded time.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Connections that are ready for HTTP, for `axum::serve`.
pub(super) struct PublicListener {
    ready: mpsc::Receiver<(Connection, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl PublicListener {
    /// Starts accepting on `listener` (TLS with `tls`), at most `max_connections` at once,
    /// each for at most `lifetime`.
    pub fn new(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        max_connections: usize,
        lifetime: Duration,
    ) -> io::Result<PublicListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(max_connections));
        let accepting = tokio::spawn(accept_loop(listener, tls, permits, lifetime, tx));
        Ok(PublicListener {
            ready,
            local,
            accepting,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for PublicListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    permits: Arc<Semaphore>,
    lifetime: Duration,
    ready: mpsc::Sender<(Connection, SocketAddr)>,
) {
    while let Some((permit, tcp, peer)) = crate::listen::accept_permitted(&listener, &permits, "unsubscribe").await {
        let (tls, ready) = (tls.clone(), ready.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + lifetime;
            let stream = match tls {
                None => Stream::Plain(tcp),
                Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    Ok(Err(e)) => return tracing::debug!("unsubscribe: TLS handshake with {peer} failed: {e}"),
                    Err(_) => return tracing::debug!("unsubscribe: TLS handshake with {peer} timed out"),
                },
            };
            let connection = Connection {
                stream,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                _permit: permit,
            };
            let _ = ready.send((connection, peer)).await;
        });
    }
}

impl axum::serve::Listener for PublicListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop never ends while the listener lives; should it, accept nothing.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The client's IP address, for the rate limit (`ConnectInfo<Client>`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Client(pub IpAddr);

impl Connected<IncomingStream<'_, PublicListener>> for Client {
    fn connect_info(stream: IncomingStream<'_, PublicListener>) -> Client {
        Client(stream.remote_addr().ip())
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One accepted connection: its stream, its deadline, and its permit of the cap.
pub(super) struct Connection {
    stream: Stream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// An error once the deadline has passed (polling it also wakes the task then).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| io::Error::new(io::ErrorKind::TimedOut, "the connection's time is up"))
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
