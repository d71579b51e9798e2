//! Binding the submission ports and serving their connections: one set of caps over both
//! ports (`crate::listen`), the TLS acceptor from `tls_cert`/`tls_key`, a session per
//! connection (`require_auth` unless the client is in `relay_networks`), the STARTTLS port
//! through the driver's `serve`, the implicit-TLS port through `serve_implicit_tls`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use volley_smtp_server::driver::{serve, serve_implicit_tls, Timeouts};
use volley_smtp_server::reply::Reply;
use volley_smtp_server::{Session, SessionConfig};

use super::accounts::Accounts;
use super::handler::{Shared, SubmissionHandler};
use super::{SubmissionConfig, SubmissionError, SubmissionStats};
use crate::inject::Injector;
use crate::listen::{serve_capped, ConnectionCaps, TOO_MANY_CONNECTIONS};

/// The bound ports and their accepting tasks.
pub(super) struct Started {
    pub starttls_addr: Option<SocketAddr>,
    pub tls_addr: Option<SocketAddr>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a connection needs besides its handler.
struct Sessions {
    /// For clients that must AUTH.
    authenticated: Arc<SessionConfig>,
    /// For clients of `relay_networks`.
    relay: Arc<SessionConfig>,
    config: SubmissionConfig,
    tls: TlsAcceptor,
    greeting: Reply,
    timeouts: Timeouts,
}

impl Sessions {
    fn session(&self, peer: SocketAddr, tls: bool) -> (Session, bool) {
        let relay = self.config.is_relay_client(peer.ip());
        let config = if relay { &self.relay } else { &self.authenticated };
        (Session::new(config.clone(), tls), relay)
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SubmissionError> {
    let listen = |source| SubmissionError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// Reads the certificate and users, binds, and starts accepting.
pub(super) async fn start<I: Injector>(
    config: &SubmissionConfig,
    users: PathBuf,
    injector: Arc<I>,
    stats: Arc<SubmissionStats>,
) -> Result<Started, SubmissionError> {
    let tls = TlsAcceptor::from(Arc::new(super::server_tls(config)?));
    let accounts = Accounts::open(users.clone(), config.auth_cache)?;
    super::check_relay_user(config, accounts.current().keys().map(String::as_str), &users)?;
    let shared = Arc::new(Shared {
        accounts,
        injector,
        stats,
        relay_user: config.relay_user.clone(),
        max_auth_failures: config.max_auth_failures,
        auth_failure_delay: config.auth_failure_delay,
        auth_failure_max_delay: config.auth_failure_max_delay,
    });
    let sessions = Arc::new(Sessions {
        authenticated: Arc::new(config.session_config(true)),
        relay: Arc::new(config.session_config(false)),
        config: config.clone(),
        tls,
        greeting: Reply::owned(220, None, format!("{} ESMTP Volley submission", config.hostname)),
        timeouts: Timeouts {
            command: config.idle_timeout,
            content: config.idle_timeout,
            handshake: config.handshake_timeout,
            ..Timeouts::default()
        },
    });
    let caps = ConnectionCaps::new(config.max_connections, config.max_connections_per_ip);
    let mut started = Started {
        starttls_addr: None,
        tls_addr: None,
        tasks: Vec::new(),
    };
    // Both ports are bound before either accepts: a port that cannot be bound leaves nothing
    // running.
    let mut bound = Vec::new();
    for (addr, implicit) in [(config.listen, false), (config.listen_tls, true)] {
        if let Some(addr) = addr {
            bound.push((bind(addr).await?, implicit));
        }
    }
    for ((listener, local), implicit) in bound {
        if implicit {
            started.tls_addr = Some(local);
        } else {
            started.starttls_addr = Some(local);
        }
        let (shared, sessions) = (shared.clone(), sessions.clone());
        let accept = serve_capped(
            listener,
            caps.clone(),
            TOO_MANY_CONNECTIONS,
            "submission",
            move |stream, peer| connection(stream, peer, implicit, shared.clone(), sessions.clone()),
        );
        started.tasks.push(tokio::spawn(accept));
    }
    Ok(started)
}

/// One connection: the session, on the implicit-TLS port after the handshake.
async fn connection<I: Injector>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    implicit: bool,
    shared: Arc<Shared<I>>,
    sessions: Arc<Sessions>,
) {
    let (mut session, relay) = sessions.session(peer, implicit);
    let mut handler = SubmissionHandler::new(shared, peer, relay);
    let s = &sessions;
    let served = if implicit {
        serve_implicit_tls(stream, &mut session, &mut handler, &s.greeting, &s.tls, &s.timeouts).await
    } else {
        serve(
            stream,
            &mut session,
            &mut handler,
            &s.greeting,
            Some(&s.tls),
            &s.timeouts,
        )
        .await
    };
    if let Err(e) = served {
        tracing::debug!("submission: {peer}: {e}");
    }
}
