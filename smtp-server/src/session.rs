//! The sans-IO server session: the driver appends what the client sent to
//! [`Session::input_mut`], pulls [`Event`]s with [`Session::next_event`], answers the events
//! that need a decision ([`Session::accept`], [`Session::reply`], [`Session::reply_with`]), and
//! writes [`Session::output`] when the session asks for input ([`Event::NeedInput`]).
//!
//! Pipelining (RFC 2920 §3.2): replies of a group are gathered in the output and flushed
//! when the input runs dry; commands after DATA (or BDAT) are not looked at before the
//! content has ended. Every command line yields one event and one reply (BDAT yields
//! [`Event::Bdat`] for its line and its answering event after its octets); message content
//! yields [`Event::Content`] events, which are not answered.

use std::sync::Arc;

use bytes::{Buf, BytesMut};

use crate::auth::{self, Exchange, Step};
use crate::command::{self, Command, CommandError, MailParams, Path, RcptParams, Verb, MAX_AUTH_LINE};
use crate::config::SessionConfig;
use crate::data::{DotReader, DotStep};
use crate::error::{NoPendingDecision, SessionError};
use crate::reply::{self, is_success, Reply};

mod event;
pub use event::Event;

/// A decision the session waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Ehlo { extended: bool },
    Mail,
    Rcpt,
    Data,
    BdatChunk,
    MessageEnd,
    StartTls,
    Auth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Waiting for the driver's answer.
    Decision(Pending),
    /// Reading DATA content.
    Data,
    /// Reading a BDAT chunk (RFC 3030 §2): `remaining` of its `size` octets still to come.
    Chunk {
        size: u64,
        remaining: u64,
        last: bool,
        /// Content events are emitted (a valid transaction within the size limit).
        deliver: bool,
    },
    /// Inside an AUTH exchange, waiting for the client's next response line.
    Auth(Exchange),
    /// STARTTLS accepted, waiting for the handshake.
    Tls,
    /// Over.
    Closed,
}

/// The mail transaction (RFC 5321 §3.3).
#[derive(Debug, Default)]
struct Transaction {
    /// MAIL was accepted and the transaction is not finished.
    active: bool,
    /// Recipients accepted.
    recipients: usize,
    /// BDAT chunks were sent (DATA is then refused, RFC 3030 §3).
    chunked: bool,
    /// `BODY=BINARYMIME` was declared (only BDAT may follow, RFC 3030 §3).
    binary: bool,
    /// Content octets so far.
    size: u64,
    /// The content went past the size limit.
    oversized: bool,
}

/// Everything but the input buffer, so that an event can borrow the input while the state
/// changes.
#[derive(Debug)]
struct Core {
    config: Arc<SessionConfig>,
    out: Vec<u8>,
    phase: Phase,
    tls: bool,
    greeted: bool,
    authenticated: bool,
    transaction: Transaction,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    /// The MAIL awaiting its decision declared `BODY=BINARYMIME`.
    binary_declared: bool,
    dot: DotReader,
}

/// One client's SMTP session. See the module docs for the driving loop.
#[derive(Debug)]
pub struct Session {
    input: BytesMut,
    /// Input octets the last event borrowed; consumed at the next [`Session::next_event`].
    consume: usize,
    core: Core,
}

impl Session {
    /// A session for a new connection; `tls` is true on an implicit-TLS port (RFC 8314),
    /// where the handshake came before the greeting.
    pub fn new(config: Arc<SessionConfig>, tls: bool) -> Self {
        Session {
            input: BytesMut::with_capacity(16 * 1024),
            consume: 0,
            core: Core {
                config,
                out: Vec::with_capacity(1024),
                phase: Phase::Command,
                tls,
                greeted: false,
                authenticated: false,
                transaction: Transaction::default(),
                discarding: false,
                binary_declared: false,
                dot: DotReader::default(),
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.core.config
    }

    /// The input buffer: the driver reads the client's bytes into it.
    pub fn input_mut(&mut self) -> &mut BytesMut {
        &mut self.input
    }

    /// Replies gathered and not yet written.
    pub fn output(&self) -> &[u8] {
        &self.core.out
    }

    /// The output buffer, for a driver that writes or rewrites replies itself (a banner, a
    /// fault-injecting test server). Its length marks where the next reply starts.
    pub fn output_mut(&mut self) -> &mut Vec<u8> {
        &mut self.core.out
    }

    /// Forgets the output once it was written.
    pub fn clear_output(&mut self) {
        self.core.out.clear();
    }

    /// The session runs under TLS (STARTTLS completed, or an implicit-TLS port).
    pub fn is_tls(&self) -> bool {
        self.core.tls
    }

    /// AUTH succeeded.
    pub fn is_authenticated(&self) -> bool {
        self.core.authenticated
    }

    /// Message content is being read (after a 354, or inside a BDAT chunk).
    pub fn in_content(&self) -> bool {
        matches!(self.core.phase, Phase::Data | Phase::Chunk { .. })
    }

    /// Whether EHLO or HELO was accepted (since the start or STARTTLS).
    pub fn is_greeted(&self) -> bool {
        self.core.greeted
    }

    /// Writes the greeting (RFC 5321 §4.3.1). Anything but 2xx ends the session (the
    /// driver closes after writing it).
    pub fn greet(&mut self, reply: &Reply) {
        self.core.write(reply);
        if !reply.is_success() {
            self.core.phase = Phase::Closed;
        }
    }

    /// Ends the session with `reply` (a 421 on shutdown or timeout) in place of whatever
    /// was pending.
    pub fn close_with(&mut self, reply: &Reply) {
        self.core.write(reply);
        self.core.phase = Phase::Closed;
    }

    /// RFC 3207 §4.2: the handshake is done; the session starts over without anything learnt
    /// before it (greeting, transaction, authentication), and plaintext that was pipelined
    /// after STARTTLS is discarded (§5).
    pub fn tls_established(&mut self) {
        let core = &mut self.core;
        core.tls = true;
        core.greeted = false;
        core.authenticated = false;
        core.transaction = Transaction::default();
        core.discarding = false;
        core.phase = Phase::Command;
        self.input.clear();
        self.consume = 0;
    }

    /// Answers the pending decision with the session's positive reply: the EHLO
    /// capabilities, `250 2.1.0`, `250 2.1.5`, `354`, `250 2.0.0`, `220 2.0.0`, `235 2.7.0`.
    pub fn accept(&mut self) -> Result<(), NoPendingDecision> {
        let Phase::Decision(pending) = self.core.phase else {
            return Err(NoPendingDecision);
        };
        let positive = match pending {
            Pending::Ehlo { extended } => {
                let core = &mut self.core;
                if extended {
                    core.config.write_ehlo(&mut core.out, core.tls);
                } else {
                    core.config.write_helo(&mut core.out);
                }
                self.decided(pending, 250);
                return Ok(());
            }
            Pending::Mail => reply::SENDER_OK,
            Pending::Rcpt => reply::RECIPIENT_OK,
            Pending::Data => reply::START_DATA,
            Pending::BdatChunk => reply::CHUNK_OK,
            Pending::MessageEnd => reply::OK,
            Pending::StartTls => reply::READY_FOR_TLS,
            Pending::Auth => reply::AUTH_OK,
        };
        self.core.write(&positive);
        self.decided(pending, positive.code());
        Ok(())
    }

    /// Answers the pending decision with `reply`. Its code decides what follows: 2xx lets
    /// the command take effect (354 for DATA, 220 for STARTTLS, 235 for AUTH), anything else
    /// refuses it, and 421 ends the session (RFC 5321 §3.8).
    pub fn reply(&mut self, reply: &Reply) -> Result<(), NoPendingDecision> {
        let enhanced = self.core.config.enhanced_status_codes;
        self.reply_with(reply.code(), |out| reply.write_to(out, enhanced))
    }

    /// Like [`Session::reply`], with the reply's bytes (every line and the final CRLF)
    /// appended by `write`; `code` must be the code written.
    pub fn reply_with(&mut self, code: u16, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), NoPendingDecision> {
        let Phase::Decision(pending) = self.core.phase else {
            return Err(NoPendingDecision);
        };
        write(&mut self.core.out);
        self.decided(pending, code);
        Ok(())
    }

    /// Applies the answer `code` to the pending command.
    fn decided(&mut self, pending: Pending, code: u16) {
        let core = &mut self.core;
        let ok = is_success(code);
        core.phase = Phase::Command;
        let t = &mut core.transaction;
        match pending {
            Pending::Ehlo { .. } => core.greeted = ok,
            Pending::Mail if ok => {
                *t = Transaction::default();
                t.active = true;
                t.binary = core.binary_declared;
            }
            Pending::Rcpt if ok => t.recipients += 1,
            Pending::Data if code == 354 => {
                t.size = 0;
                t.oversized = false;
                core.dot.start();
                core.phase = Phase::Data;
            }
            Pending::BdatChunk if !ok => *t = Transaction::default(),
            Pending::MessageEnd => *t = Transaction::default(),
            Pending::StartTls if code == 220 => {
                core.phase = Phase::Tls;
                self.input.clear();
                self.consume = 0;
            }
            Pending::Auth if code == 235 => core.authenticated = true,
            _ => {}
        }
        if code == 421 {
            core.phase = Phase::Closed;
        }
    }

    /// The next thing the driver must do. See [`Event`].
    pub fn next_event(&mut self) -> Event<'_> {
        self.input
            .advance(std::mem::take(&mut self.consume).min(self.input.len()));
        loop {
            let core = &mut self.core;
            match core.phase {
                Phase::Closed => return Event::Closed,
                Phase::Tls => return Event::TlsHandshake,
                Phase::Decision(pending) => {
                    let error = SessionError::DecisionMissing;
                    core.write(&error.reply());
                    self.decided(pending, error.reply().code());
                    return Event::Rejected(error);
                }
                Phase::Data => match core.dot.step(&self.input) {
                    DotStep::NeedMore => return Event::NeedInput,
                    DotStep::StuffedDot => self.input.advance(1),
                    DotStep::Content(n) => {
                        let t = &mut core.transaction;
                        t.size = t.size.saturating_add(n as u64);
                        t.oversized |= t.size > core.config.max_message_size;
                        if t.oversized {
                            self.input.advance(n);
                        } else {
                            self.consume = n;
                            return Event::Content(&self.input[..n]);
                        }
                    }
                    DotStep::End(n) => {
                        self.input.advance(n);
                        core.phase = Phase::Command;
                        return core.content_end(Verb::Data, true);
                    }
                },
                Phase::Chunk {
                    size,
                    remaining,
                    last,
                    deliver,
                } => {
                    if remaining == 0 {
                        core.phase = Phase::Command;
                        return core.chunk_end(size, last);
                    }
                    if self.input.is_empty() {
                        return Event::NeedInput;
                    }
                    let n = remaining.min(self.input.len() as u64);
                    core.phase = Phase::Chunk {
                        size,
                        remaining: remaining - n,
                        last,
                        deliver,
                    };
                    let t = &mut core.transaction;
                    t.size = t.size.saturating_add(n);
                    t.oversized |= t.size > core.config.max_message_size;
                    let n = n as usize;
                    if deliver && !t.oversized {
                        self.consume = n;
                        return Event::Content(&self.input[..n]);
                    }
                    self.input.advance(n);
                }
                Phase::Command | Phase::Auth(_) => {
                    let limit = if matches!(core.phase, Phase::Auth(_)) {
                        MAX_AUTH_LINE
                    } else {
                        core.config.max_command_line
                    };
                    let Some(newline) = memchr::memchr(b'\n', &self.input) else {
                        if self.input.len() >= limit {
                            // Too long already: answer now, skip the rest as it comes.
                            self.input.clear();
                            if !core.discarding {
                                core.discarding = true;
                                return core.line_too_long();
                            }
                        }
                        return Event::NeedInput;
                    };
                    let len = newline + 1;
                    if core.discarding {
                        core.discarding = false;
                        self.input.advance(len);
                        continue;
                    }
                    if len > limit {
                        self.input.advance(len);
                        return core.line_too_long();
                    }
                    // BDAT's line is consumed at once: its octets follow it directly.
                    if let Some(bdat) = command::parse_if_bdat(strip_cr(&self.input[..newline])) {
                        self.input.advance(len);
                        return match bdat
                            .map_err(SessionError::from)
                            .and_then(|(size, last)| core.bdat(size, last))
                        {
                            Ok((size, last)) => Event::Bdat { size, last },
                            Err(error) => core.reject(error),
                        };
                    }
                    self.consume = len;
                    let line = strip_cr(&self.input[..newline]);
                    return if let Phase::Auth(exchange) = &core.phase {
                        let exchange = exchange.clone();
                        core.auth_response(exchange, line)
                    } else {
                        core.command(line)
                    };
                }
            }
        }
    }
}

impl Core {
    fn write(&mut self, reply: &Reply) {
        reply.write_to(&mut self.out, self.config.enhanced_status_codes);
    }

    fn reject<'a>(&mut self, error: impl Into<SessionError>) -> Event<'a> {
        let error = error.into();
        self.write(&error.reply());
        Event::Rejected(error)
    }

    fn answered<'a>(&mut self, reply: &Reply, event: Event<'a>) -> Event<'a> {
        self.write(reply);
        event
    }

    fn decision<'a>(&mut self, pending: Pending, event: Event<'a>) -> Event<'a> {
        self.phase = Phase::Decision(pending);
        event
    }

    fn line_too_long<'a>(&mut self) -> Event<'a> {
        if matches!(self.phase, Phase::Auth(_)) {
            self.phase = Phase::Command;
            return self.reject(auth::SaslError::Malformed);
        }
        self.reject(CommandError::LineTooLong)
    }

    fn command<'a>(&mut self, line: &'a [u8]) -> Event<'a> {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(error) => return self.reject(error),
        };
        match command {
            Command::Ehlo { domain } => self.ehlo(domain, true),
            Command::Helo { domain } => self.ehlo(domain, false),
            Command::Mail { sender, params } => self.mail(sender, params),
            Command::Rcpt { recipient, params } => self.rcpt(recipient, params),
            Command::Data => self.data(),
            // Handled before (`Command::Bdat` never gets here); answered like BDAT without
            // CHUNKING should it ever do.
            Command::Bdat { .. } => self.reject(SessionError::NotOffered { verb: Verb::Bdat }),
            Command::Rset => {
                self.transaction = Transaction::default();
                self.answered(&reply::OK, Event::Rset)
            }
            Command::Noop => self.answered(&reply::OK, Event::Noop),
            Command::Help => self.answered(&reply::HELP, Event::Help),
            Command::Vrfy { argument } => self.answered(&reply::VRFY, Event::Vrfy { argument }),
            Command::Quit => {
                self.phase = Phase::Closed;
                self.answered(&reply::BYE, Event::Quit)
            }
            Command::StartTls => self.starttls(),
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial),
        }
    }

    /// RFC 5321 §4.1.4: EHLO and HELO reset any transaction.
    fn ehlo<'a>(&mut self, domain: &'a str, extended: bool) -> Event<'a> {
        self.transaction = Transaction::default();
        self.decision(Pending::Ehlo { extended }, Event::Ehlo { domain, extended })
    }

    fn mail<'a>(&mut self, sender: Path<'a>, params: MailParams<'a>) -> Event<'a> {
        let config = Arc::clone(&self.config);
        if !self.greeted {
            return self.reject(SessionError::GreetFirst { verb: Verb::Mail });
        }
        if config.require_tls && !self.tls {
            return self.reject(SessionError::TlsRequired);
        }
        if config.require_auth && !self.authenticated {
            return self.reject(SessionError::AuthRequired);
        }
        if self.transaction.active {
            return self.reject(SessionError::NestedMail);
        }
        let offered = match params.body {
            Some(command::Body::EightBitMime) => config.eight_bit_mime,
            Some(command::Body::BinaryMime) => config.chunking,
            _ => true,
        } && (!params.smtputf8 || config.smtputf8)
            && (config.dsn || (params.ret.is_none() && params.envid.is_none()));
        if !offered {
            return self.reject(CommandError::UnknownParameter { verb: Verb::Mail });
        }
        // RFC 1870 §6.1: a declared size above the limit is refused at MAIL.
        if params.size.is_some_and(|size| size > config.max_message_size) {
            return self.reject(SessionError::MessageTooBig { verb: Verb::Mail });
        }
        self.binary_declared = params.body == Some(command::Body::BinaryMime);
        self.decision(Pending::Mail, Event::Mail { sender, params })
    }

    fn rcpt<'a>(&mut self, recipient: Path<'a>, params: RcptParams<'a>) -> Event<'a> {
        if !self.transaction.active {
            return self.reject(SessionError::NeedMail { verb: Verb::Rcpt });
        }
        if !self.config.dsn && (params.notify.is_some() || params.orcpt.is_some()) {
            return self.reject(CommandError::UnknownParameter { verb: Verb::Rcpt });
        }
        if self.transaction.recipients >= self.config.max_recipients {
            return self.reject(SessionError::TooManyRecipients);
        }
        self.decision(Pending::Rcpt, Event::Rcpt { recipient, params })
    }

    fn data<'a>(&mut self) -> Event<'a> {
        let t = &self.transaction;
        if !t.active {
            return self.reject(SessionError::NeedMail { verb: Verb::Data });
        }
        if t.chunked || t.binary {
            return self.reject(SessionError::DataAfterBdat);
        }
        // RFC 2920 §3.1: a pipelined DATA after only failed RCPTs gets 554, not 354.
        if t.recipients == 0 {
            return self.reject(SessionError::NoRecipients { verb: Verb::Data });
        }
        self.decision(Pending::Data, Event::Data)
    }

    /// RFC 3030 §2: the chunk's octets are read whatever the answer will be; the reply comes
    /// after them ([`Core::chunk_end`]).
    fn bdat(&mut self, size: u64, last: bool) -> Result<(u64, bool), SessionError> {
        if !self.config.chunking {
            return Err(SessionError::NotOffered { verb: Verb::Bdat });
        }
        let t = &mut self.transaction;
        let deliver = t.active && t.recipients > 0 && !t.oversized;
        if t.active {
            if !t.chunked {
                t.size = 0;
            }
            t.chunked = true;
        }
        self.phase = Phase::Chunk {
            size,
            remaining: size,
            last,
            deliver,
        };
        Ok((size, last))
    }

    fn chunk_end<'a>(&mut self, size: u64, last: bool) -> Event<'a> {
        let t = &self.transaction;
        if !t.active {
            return self.reject(SessionError::NeedMail { verb: Verb::Bdat });
        }
        if t.recipients == 0 {
            // RFC 3030 §2: after a failed chunk the transaction has failed; later chunks
            // would make a message with a hole in it.
            self.transaction = Transaction::default();
            return self.reject(SessionError::NoRecipients { verb: Verb::Bdat });
        }
        if !last && !t.oversized {
            return self.decision(Pending::BdatChunk, Event::BdatChunk { size });
        }
        self.content_end(Verb::Bdat, false)
    }

    /// The content is complete: 552 if it went past the limit (RFC 1870 §6.2: read to the
    /// end, then refused), else the final decision.
    fn content_end<'a>(&mut self, verb: Verb, dot: bool) -> Event<'a> {
        if self.transaction.oversized {
            self.transaction = Transaction::default();
            return self.reject(SessionError::MessageTooBig { verb });
        }
        let size = self.transaction.size;
        self.decision(Pending::MessageEnd, Event::MessageEnd { size, chunked: !dot })
    }

    fn starttls<'a>(&mut self) -> Event<'a> {
        if !self.config.starttls {
            return self.reject(SessionError::NotOffered { verb: Verb::StartTls });
        }
        if self.tls {
            return self.reject(SessionError::TlsActive);
        }
        if self.transaction.active {
            return self.reject(SessionError::TransactionInProgress { verb: Verb::StartTls });
        }
        self.decision(Pending::StartTls, Event::StartTls)
    }

    fn auth<'a>(&mut self, mechanism: &str, initial: Option<&str>) -> Event<'a> {
        if !self.config.offers_auth(self.tls) {
            return if self.config.auth.is_empty() {
                self.reject(SessionError::NotOffered { verb: Verb::Auth })
            } else {
                self.reject(SessionError::EncryptionRequired)
            };
        }
        if !self.greeted {
            return self.reject(SessionError::GreetFirst { verb: Verb::Auth });
        }
        if self.authenticated {
            return self.reject(SessionError::AlreadyAuthenticated);
        }
        if self.transaction.active {
            return self.reject(SessionError::TransactionInProgress { verb: Verb::Auth });
        }
        let Some(mechanism) = self
            .config
            .auth
            .iter()
            .copied()
            .find(|m| m.name().eq_ignore_ascii_case(mechanism))
        else {
            return self.reject(SessionError::UnknownMechanism);
        };
        self.auth_step(auth::begin(mechanism, initial))
    }

    fn auth_response<'a>(&mut self, exchange: Exchange, line: &[u8]) -> Event<'a> {
        self.phase = Phase::Command;
        let Ok(line) = std::str::from_utf8(line) else {
            return self.reject(auth::SaslError::Malformed);
        };
        self.auth_step(auth::continue_with(exchange, line))
    }

    fn auth_step<'a>(&mut self, step: Result<Step, auth::SaslError>) -> Event<'a> {
        match step {
            Err(error) => self.reject(error),
            Ok(Step::Challenge(next, challenge)) => {
                // RFC 4954 §4: "334" SP [base64] CRLF.
                self.out.extend_from_slice(b"334 ");
                self.out.extend_from_slice(challenge.as_bytes());
                self.out.extend_from_slice(b"\r\n");
                self.phase = Phase::Auth(next);
                Event::AuthChallenge
            }
            Ok(Step::Done(credentials)) => self.decision(Pending::Auth, Event::Auth(credentials)),
        }
    }
}

/// A line without its final CR.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests;
