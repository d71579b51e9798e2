//! An SMTP client session: connect from a source IP, greeting, EHLO (HELO fallback), STARTTLS,
//! and the reply reader shared by every phase. Transactions are in [`super::transaction`].

use std::future::Future;
use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::command;
use super::ehlo::Capabilities;
use super::reply::{parse_reply, Reply, ReplyParse};
use crate::error::SessionError;
use crate::mta_sts::{self, SessionCheck, StsFailure, StsMode};
use crate::phase::Phase;
use crate::route::{MxHost, SourceIp};
use crate::stream::SmtpStream;
use crate::timeouts::Timeouts;
use crate::tls::{TlsClient, TlsPolicy};

/// What a session needs to open a connection.
#[derive(Clone, Debug)]
pub struct SessionParams {
    /// Per-phase timeouts.
    pub timeouts: Timeouts,
    /// TLS context and policy.
    pub tls: TlsClient,
    /// Cap on one reply's size (bounds memory per connection).
    pub max_reply_size: usize,
}

/// An open SMTP session, ready for transactions.
pub struct SmtpSession {
    pub(super) stream: SmtpStream,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: Vec<u8>,
    pub(super) caps: Capabilities,
    pub(super) timeouts: Timeouts,
    pub(super) max_reply_size: usize,
    /// A transaction was left unfinished: send RSET before the next MAIL FROM.
    pub(super) needs_rset: bool,
    tls_active: bool,
    banner: Reply,
    mx: MxHost,
    /// What the route's MTA-STS policy (`testing`) found wrong with this session.
    sts_failure: Option<StsFailure>,
}

impl SmtpSession {
    /// Connects from `source` to `mx`, reads the greeting, introduces itself with the source
    /// IP's EHLO name (HELO when EHLO is refused) and upgrades with STARTTLS per the policy.
    /// `skip_starttls` (opportunistic only) stays in clear after a failed handshake elsewhere.
    /// Under an MTA-STS policy the MX host and its certificate are checked too
    /// ([`SessionError::MtaSts`] under `enforce`), and the verdict goes to the policy's
    /// report channel.
    pub async fn connect(
        source: &SourceIp,
        mx: &MxHost,
        params: &SessionParams,
        skip_starttls: bool,
    ) -> Result<SmtpSession, SessionError> {
        let result = SmtpSession::open(source, mx, params, skip_starttls).await;
        // A connection in clear after a failed handshake: that failure was reported already.
        let sts = params.tls.mta_sts().filter(|_| !skip_starttls);
        if let Some((route, Some(context))) = sts {
            let failure = match &result {
                Ok(session) => Some(session.sts_failure.clone()),
                Err(e) => mta_sts::failure_of(e, &mx.name).map(Some),
            };
            if let (Some(failure), Some(checks)) = (failure, &context.checks) {
                let _ = checks.send(SessionCheck {
                    route: route.clone(),
                    mx: mx.name.clone(),
                    mx_ip: mx.addr.ip(),
                    source_ip: source.ip,
                    failure,
                });
            }
        }
        result
    }

    async fn open(
        source: &SourceIp,
        mx: &MxHost,
        params: &SessionParams,
        skip_starttls: bool,
    ) -> Result<SmtpSession, SessionError> {
        command::check_helo_name(&source.ehlo_name)?;
        let mut sts_failure = None;
        if let Some((route, _)) = params.tls.mta_sts() {
            if !route.allows(&mx.name) {
                let failure = route.mx_failure(&mx.name);
                if route.mode == StsMode::Enforce {
                    return Err(SessionError::MtaSts {
                        domain: route.domain.clone(),
                        failure,
                    });
                }
                sts_failure = Some(failure);
            }
        }
        let stream = open_tcp(source, mx.addr, &params.timeouts).await?;
        let mut session = SmtpSession {
            stream: SmtpStream::Plain(stream),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
            caps: Capabilities::default(),
            timeouts: params.timeouts.clone(),
            max_reply_size: params.max_reply_size,
            needs_rset: false,
            tls_active: false,
            banner: Reply {
                code: 0,
                enhanced: None,
                text: String::new(),
            },
            mx: mx.clone(),
            sts_failure,
        };
        let banner = session.read_reply(Phase::Banner).await?;
        if banner.code != 220 {
            return Err(SessionError::Rejected {
                phase: Phase::Banner,
                reply: banner,
            });
        }
        session.banner = banner;
        session.hello(&source.ehlo_name).await?;
        let policy = params.tls.policy();
        let offered = session.caps.starttls;
        let sts = params.tls.mta_sts().map(|(route, _)| route);
        match policy {
            TlsPolicy::Disabled => {}
            TlsPolicy::Opportunistic if !offered || skip_starttls => {
                if !offered && sts.is_some() {
                    let failure = mta_sts::no_starttls(&mx.name);
                    session.sts_failure.get_or_insert(failure);
                }
            }
            TlsPolicy::Required if !offered => {
                // Leave politely: the host is fine, it just cannot carry this policy.
                session.quit().await;
                return Err(match sts.filter(|r| r.mode == StsMode::Enforce) {
                    Some(route) => SessionError::MtaSts {
                        domain: route.domain.clone(),
                        failure: mta_sts::no_starttls(&mx.name),
                    },
                    None => SessionError::TlsNotOffered {
                        mx: mx.name.to_string(),
                    },
                });
            }
            TlsPolicy::Opportunistic | TlsPolicy::Required => session.starttls(source, &params.tls).await?,
        }
        Ok(session)
    }

    /// The capabilities from the last EHLO.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// Whether the TLS session was resumed from an earlier connection (RFC 8446 §2.2) rather
    /// than negotiated in a full handshake; false in clear.
    pub fn is_tls_resumed(&self) -> bool {
        match &self.stream {
            SmtpStream::Tls(tls) => tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            _ => false,
        }
    }

    /// The server's greeting.
    pub fn banner(&self) -> &Reply {
        &self.banner
    }

    /// The MX host this session talks to.
    pub fn mx(&self) -> &MxHost {
        &self.mx
    }

    /// Sends QUIT and waits briefly for the reply; errors are ignored (we are leaving).
    pub async fn quit(mut self) {
        self.wbuf.clear();
        command::quit(&mut self.wbuf);
        let _ = self.round_trip(Phase::Quit).await;
        let _ = self.stream.shutdown().await;
    }

    /// EHLO, falling back to HELO when the server refuses EHLO with a 5xx (RFC 5321 §3.2).
    async fn hello(&mut self, name: &str) -> Result<(), SessionError> {
        self.wbuf.clear();
        command::ehlo(&mut self.wbuf, name);
        let reply = self.round_trip(Phase::Ehlo).await?;
        if reply.is_positive() {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(SessionError::Rejected {
                phase: Phase::Ehlo,
                reply,
            });
        }
        self.wbuf.clear();
        command::helo(&mut self.wbuf, name);
        let reply = self.round_trip(Phase::Ehlo).await?;
        if !reply.is_positive() {
            return Err(SessionError::Rejected {
                phase: Phase::Ehlo,
                reply,
            });
        }
        self.caps = Capabilities::default();
        Ok(())
    }

    /// STARTTLS, the handshake, and EHLO again (RFC 3207 §4.2: forget what was learnt before).
    async fn starttls(&mut self, source: &SourceIp, tls: &TlsClient) -> Result<(), SessionError> {
        self.wbuf.clear();
        command::starttls(&mut self.wbuf);
        let reply = self.round_trip(Phase::StartTls).await?;
        if reply.code != 220 {
            if tls.policy() == TlsPolicy::Required {
                return Err(SessionError::Rejected {
                    phase: Phase::StartTls,
                    reply,
                });
            }
            // Opportunistic: carry on in clear (e.g. 454 TLS not available).
            if tls.mta_sts().is_some() {
                self.sts_failure.get_or_insert(mta_sts::no_starttls(&self.mx.name));
            }
            return Ok(());
        }
        if !self.rbuf.is_empty() {
            // Bytes after the 220 were sent in clear before the handshake: accepting them would
            // let an attacker inject replies into the encrypted session (CVE-2011-0411 class).
            return Err(SessionError::Tls {
                mx: self.mx.name.to_string(),
                reason: "server sent data after its STARTTLS reply, before the handshake".into(),
            });
        }
        let SmtpStream::Plain(tcp) = std::mem::replace(&mut self.stream, SmtpStream::Gone) else {
            return Err(SessionError::Tls {
                mx: self.mx.name.to_string(),
                reason: "STARTTLS on a TLS session".into(),
            });
        };
        let name = TlsClient::server_name(&self.mx.name, self.mx.addr.ip());
        // Under MTA-STS the certificate is verified for the MX host name: `enforce` fails the
        // handshake, `testing` keeps the verdict (RFC 8461 §4.2, §5).
        let (connector, verdict, enforce) = match tls.mta_sts() {
            Some((route, Some(context))) if route.mode == StsMode::Enforce => {
                (context.tls.enforce(), None, Some(route))
            }
            // A client built without MTA-STS contexts cannot verify: never a silent downgrade.
            Some((route, None)) if route.mode == StsMode::Enforce => {
                return Err(SessionError::MtaSts {
                    domain: route.domain.clone(),
                    failure: StsFailure {
                        kind: mta_sts::FailureKind::ValidationFailure,
                        detail: format!("no verified TLS context to check {}", self.mx.name),
                    },
                })
            }
            Some((_, Some(context))) => {
                let (connector, verdict) = context.tls.testing();
                (connector, Some(verdict), None)
            }
            _ => (tls.connector().clone(), None, None),
        };
        let handshake = connector.connect(name, tcp);
        let stream = match tokio::time::timeout(self.timeouts.starttls, handshake).await {
            Err(_) => {
                return Err(SessionError::Timeout {
                    phase: Phase::StartTls,
                    after: self.timeouts.starttls,
                })
            }
            Ok(Err(e)) => {
                if let Some(route) = enforce {
                    return Err(SessionError::MtaSts {
                        domain: route.domain.clone(),
                        failure: crate::mta_sts::tls::handshake_failure(&self.mx.name, &e),
                    });
                }
                return Err(SessionError::Tls {
                    mx: self.mx.name.to_string(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(s)) => s,
        };
        if let Some(failure) = verdict.and_then(|v| v.failure(&self.mx.name)) {
            self.sts_failure.get_or_insert(failure);
        }
        self.stream = SmtpStream::Tls(Box::new(stream));
        self.tls_active = true;
        self.hello(&source.ehlo_name).await
    }

    /// Writes `wbuf` and reads one reply.
    pub(super) async fn round_trip(&mut self, phase: Phase) -> Result<Reply, SessionError> {
        self.write_wbuf(phase).await?;
        self.read_reply(phase).await
    }

    /// Writes everything in `wbuf` within the phase's timeout.
    pub(super) async fn write_wbuf(&mut self, phase: Phase) -> Result<(), SessionError> {
        let limit = self.timeouts.for_phase(phase);
        let stream = &mut self.stream;
        let wbuf = &self.wbuf;
        with_timeout(phase, limit, write_flushed(stream, wbuf)).await
    }

    /// Writes `bytes` (message content) within the data-block timeout.
    pub(super) async fn write_bytes(&mut self, bytes: &[u8], phase: Phase) -> Result<(), SessionError> {
        let limit = self.timeouts.for_phase(phase);
        with_timeout(phase, limit, write_flushed(&mut self.stream, bytes)).await
    }

    /// Writes message content and the commands in `wbuf` as one pipelined group (RFC 2920
    /// §3.1 lets content lead a group; RFC 3030 puts it after `BDAT`), in a vectored write:
    /// no copy of the content, and the server sees the group together.
    pub(super) async fn write_with_content(
        &mut self,
        content: &[u8],
        order: ContentOrder,
        phase: Phase,
    ) -> Result<(), SessionError> {
        let limit = self.timeouts.for_phase(phase);
        let wbuf = self.wbuf.as_slice();
        let (first, second) = match order {
            ContentOrder::BeforeCommands => (content, wbuf),
            ContentOrder::AfterCommands => (wbuf, content),
        };
        with_timeout(phase, limit, write_flushed_pair(&mut self.stream, first, second)).await
    }

    /// Reads one reply, keeping any bytes after it for the next call (pipelining).
    pub(super) async fn read_reply(&mut self, phase: Phase) -> Result<Reply, SessionError> {
        let limit = self.timeouts.for_phase(phase);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match parse_reply(&self.rbuf, self.max_reply_size) {
                Ok(ReplyParse::Complete { reply, consumed }) => {
                    let _ = self.rbuf.split_to(consumed);
                    return Ok(reply);
                }
                Ok(ReplyParse::Incomplete) => {}
                Err(error) => return Err(SessionError::Protocol { phase, error }),
            }
            self.rbuf.reserve(4096);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await;
            match read {
                Err(_) => return Err(SessionError::Timeout { phase, after: limit }),
                Ok(Err(error)) => return Err(SessionError::Io { phase, error }),
                Ok(Ok(0)) => return Err(SessionError::Closed { phase }),
                Ok(Ok(_)) => {}
            }
        }
    }
}

async fn with_timeout<F>(phase: Phase, limit: std::time::Duration, io: F) -> Result<(), SessionError>
where
    F: Future<Output = std::io::Result<()>>,
{
    match tokio::time::timeout(limit, io).await {
        Err(_) => Err(SessionError::Timeout { phase, after: limit }),
        Ok(Err(error)) => Err(SessionError::Io { phase, error }),
        Ok(Ok(())) => Ok(()),
    }
}

/// Binds the source IP (port chosen by the OS) and connects to the MX address.
async fn open_tcp(
    source: &SourceIp,
    mx: SocketAddr,
    timeouts: &Timeouts,
) -> Result<tokio::net::TcpStream, SessionError> {
    let bind_err = |error| SessionError::Bind {
        source_ip: source.ip,
        error,
    };
    let socket = if source.ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_err)?;
    socket.bind(SocketAddr::new(source.ip, 0)).map_err(bind_err)?;
    let stream = match tokio::time::timeout(timeouts.connect, socket.connect(mx)).await {
        Err(_) => {
            return Err(SessionError::Timeout {
                phase: Phase::Connect,
                after: timeouts.connect,
            })
        }
        Ok(Err(error)) => {
            return Err(SessionError::Connect {
                source_ip: source.ip,
                mx,
                error,
            })
        }
        Ok(Ok(s)) => s,
    };
    stream.set_nodelay(true).map_err(|error| SessionError::Io {
        phase: Phase::Connect,
        error,
    })?;
    Ok(stream)
}

/// Where the content goes in a group written by [`SmtpSession::write_with_content`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ContentOrder {
    /// The end of the previous message's DATA content, then the next commands.
    BeforeCommands,
    /// `BDAT n LAST` (and the envelope before it), then its chunk.
    AfterCommands,
}

/// [`write_flushed`] of `first` then `second`, with vectored writes while both have bytes
/// left (tokio has no `write_all_vectored`).
async fn write_flushed_pair(stream: &mut SmtpStream, mut first: &[u8], mut second: &[u8]) -> std::io::Result<()> {
    while !first.is_empty() || !second.is_empty() {
        let written = if first.is_empty() {
            stream.write(second).await?
        } else if second.is_empty() {
            stream.write(first).await?
        } else {
            let parts = [std::io::IoSlice::new(first), std::io::IoSlice::new(second)];
            stream.write_vectored(&parts).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_first = written.min(first.len());
        first = &first[from_first..];
        second = &second[written - from_first..];
    }
    stream.flush().await
}

/// Writes `bytes` and flushes: over TLS, `write_all` is done once rustls holds the plaintext,
/// and records it could not yet hand to a full socket stay in its buffer until a flush. Without
/// it the end of a message could wait there while both sides wait for each other.
async fn write_flushed(stream: &mut SmtpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}
