//! The tokio driver: runs a [`Session`] over a stream, asks a [`Handler`] for every
//! decision, and enforces the RFC 5321 §4.5.3.2 server timeouts.
//!
//! ```text
//! read ─► session.input ─► next_event ─► handler (async) ─► accept/reply ─► output
//!   ▲                          │ NeedInput: write the output (one write per group)
//!   └──────────────────────────┘ TlsHandshake: handshake, then on over TLS
//! ```
//!
//! The final reply of a message is sent only once [`Handler::message`] has returned, so a
//! listener whose messages must be durable before their 250 writes them there. Connection
//! caps, per-IP limits and the slow-down after bad AUTH attempts are the listener's: take
//! the permit before calling [`serve`], sleep in [`Handler::auth`] before returning a
//! failure.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::auth::Credentials;
use crate::command::{MailParams, Path, RcptParams};
use crate::reply::{self, Reply};
use crate::session::{Event, Session};

/// Server timeouts (RFC 5321 §4.5.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for the next command (§4.5.3.2.7: at least 5 minutes).
    pub command: Duration,
    /// Waiting for the next block of message content (the client's own DATA block timeout
    /// is 3 minutes, §4.5.3.2.5; the server waits at least as long).
    pub content: Duration,
    /// Writing a group of replies to a client that does not read.
    pub write: Duration,
    /// The TLS handshake after STARTTLS.
    pub handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            command: Duration::from_secs(300),
            content: Duration::from_secs(300),
            write: Duration::from_secs(300),
            handshake: Duration::from_secs(30),
        }
    }
}

/// The answer to a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The session's positive reply (see [`Session::accept`]).
    Accept,
    /// This reply (positive or not; a 421 closes the connection).
    Reply(Reply),
}

/// The listener's policy. Every method has a permissive default except [`Handler::message`]
/// (where the message goes) and [`Handler::auth`] (which refuses: no credentials are valid
/// unless the listener checks them).
pub trait Handler: Send {
    /// EHLO or HELO.
    fn ehlo(&mut self, _domain: &str, _extended: bool) -> impl Future<Output = Decision> + Send {
        async { Decision::Accept }
    }

    /// MAIL FROM, after the session's own checks.
    fn mail(&mut self, _sender: Path<'_>, _params: MailParams<'_>) -> impl Future<Output = Decision> + Send {
        async { Decision::Accept }
    }

    /// RCPT TO, after the session's own checks (e.g. 550 for a domain the listener does not
    /// serve).
    fn rcpt(&mut self, _recipient: Path<'_>, _params: RcptParams<'_>) -> impl Future<Output = Decision> + Send {
        async { Decision::Accept }
    }

    /// The complete message (dot-unstuffed, or the BDAT chunks joined). The reply is sent
    /// when the returned future completes: make the message durable first.
    fn message(&mut self, content: &[u8], chunked: bool) -> impl Future<Output = Decision> + Send;

    /// AUTH credentials. A listener slows repeated failures down by sleeping here.
    fn auth(&mut self, _credentials: &Credentials) -> impl Future<Output = Decision> + Send {
        async { Decision::Reply(reply::AUTH_FAILED) }
    }
}

/// Why [`serve`] stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Reading or writing the connection failed.
    #[error("connection i/o: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    /// The handshake took longer than [`Timeouts::handshake`].
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// STARTTLS was accepted but no acceptor was given (a configuration error).
    #[error("STARTTLS accepted without a TLS acceptor")]
    NoAcceptor,
}

impl DriverError {
    /// The client went away or misbehaved, as opposed to a local problem.
    pub fn is_peer(&self) -> bool {
        !matches!(self, DriverError::NoAcceptor)
    }
}

/// How [`serve_stream`] ended.
#[derive(Debug)]
pub enum End<S> {
    /// The session is over and the stream shut down.
    Closed,
    /// STARTTLS was accepted (its 220 written): hand the stream to the TLS handshake, call
    /// [`Session::tls_established`], serve again.
    StartTls(S),
}

/// Serves a plaintext TCP connection to its end: writes `greeting`, runs the session, and
/// performs STARTTLS with `tls` when the session accepts it (the session's config offers
/// STARTTLS only if the listener has an acceptor).
pub async fn serve<H: Handler>(
    stream: TcpStream,
    session: &mut Session,
    handler: &mut H,
    greeting: &Reply,
    tls: Option<&TlsAcceptor>,
    timeouts: &Timeouts,
) -> Result<(), DriverError> {
    session.greet(greeting);
    let stream = match serve_stream(stream, session, handler, timeouts).await? {
        End::Closed => return Ok(()),
        End::StartTls(stream) => stream,
    };
    let acceptor = tls.ok_or(DriverError::NoAcceptor)?;
    let tls_stream = handshake(stream, acceptor, timeouts).await?;
    session.tls_established();
    match serve_stream(tls_stream, session, handler, timeouts).await? {
        // RFC 3207 §4.2: no second STARTTLS (the session refuses it).
        End::Closed | End::StartTls(_) => Ok(()),
    }
}

/// Serves a connection to an implicit-TLS port (RFC 8314 §3.3, submission on 465): the TLS
/// handshake first, then `greeting` and the session, which must have been created with
/// `tls` set (it then offers no STARTTLS and refuses one).
pub async fn serve_implicit_tls<H: Handler>(
    stream: TcpStream,
    session: &mut Session,
    handler: &mut H,
    greeting: &Reply,
    acceptor: &TlsAcceptor,
    timeouts: &Timeouts,
) -> Result<(), DriverError> {
    let tls_stream = handshake(stream, acceptor, timeouts).await?;
    session.greet(greeting);
    match serve_stream(tls_stream, session, handler, timeouts).await? {
        End::Closed | End::StartTls(_) => Ok(()),
    }
}

/// The server side of a TLS handshake within [`Timeouts::handshake`].
async fn handshake(
    stream: TcpStream,
    acceptor: &TlsAcceptor,
    timeouts: &Timeouts,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, DriverError> {
    match timeout(timeouts.handshake, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Ok(tls_stream),
        Ok(Err(e)) => Err(DriverError::Handshake(e)),
        Err(_) => Err(DriverError::HandshakeTimeout),
    }
}

/// Runs the session over `stream` until it closes or accepts STARTTLS. The greeting (if
/// any) must already be in the session's output.
pub async fn serve_stream<S, H>(
    mut stream: S,
    session: &mut Session,
    handler: &mut H,
    timeouts: &Timeouts,
) -> Result<End<S>, DriverError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: Handler,
{
    let mut message = Vec::new();
    loop {
        let decision = match session.next_event() {
            Event::NeedInput => {
                flush(&mut stream, session, timeouts).await?;
                let wait = if session.in_content() {
                    timeouts.content
                } else {
                    timeouts.command
                };
                let input = session.input_mut();
                if input.capacity() - input.len() < 4096 {
                    input.reserve(16 * 1024);
                }
                match timeout(wait, stream.read_buf(input)).await {
                    Ok(Ok(0)) => return Ok(End::Closed),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => {
                        session.close_with(&reply::TIMEOUT);
                        flush(&mut stream, session, timeouts).await?;
                        let _ = stream.shutdown().await;
                        return Ok(End::Closed);
                    }
                }
                continue;
            }
            Event::TlsHandshake => {
                flush(&mut stream, session, timeouts).await?;
                return Ok(End::StartTls(stream));
            }
            Event::Closed => {
                flush(&mut stream, session, timeouts).await?;
                let _ = stream.shutdown().await;
                return Ok(End::Closed);
            }
            Event::Content(bytes) => {
                message.extend_from_slice(bytes);
                continue;
            }
            Event::Ehlo { domain, extended } => handler.ehlo(domain, extended).await,
            Event::Mail { sender, params } => handler.mail(sender, params).await,
            Event::Rcpt { recipient, params } => handler.rcpt(recipient, params).await,
            Event::Data | Event::BdatChunk { .. } => Decision::Accept,
            Event::MessageEnd { chunked, .. } => {
                let decision = handler.message(&message, chunked).await;
                message.clear();
                decision
            }
            Event::StartTls => Decision::Accept,
            Event::Auth(credentials) => handler.auth(&credentials).await,
            Event::Bdat { .. }
            | Event::Rset
            | Event::Noop
            | Event::Help
            | Event::Vrfy { .. }
            | Event::Quit
            | Event::AuthChallenge
            | Event::Rejected(_) => continue,
        };
        // The decision answers the event just handled, so one is always pending here.
        let _answered = match decision {
            Decision::Accept => session.accept(),
            Decision::Reply(reply) => session.reply(&reply),
        };
    }
}

/// Writes the gathered replies in one write.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    timeouts: &Timeouts,
) -> Result<(), DriverError> {
    if session.output().is_empty() {
        return Ok(());
    }
    let write = async {
        stream.write_all(session.output()).await?;
        stream.flush().await
    };
    match timeout(timeouts.write, write).await {
        Ok(result) => result?,
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read its replies").into()),
    }
    session.clear_output();
    Ok(())
}
