//! The sans-IO SMTP server session: consumes the bytes a client sent, appends the replies to
//! a buffer and says what the connection must do next. Transaction commands (MAIL, RCPT,
//! DATA and the end of content) live in [`super::transaction`].

use std::net::IpAddr;

use bytes::{Buf, BytesMut};

use super::canned::Stage;
use super::command::{self, Command};
use super::data::DataScanner;
use super::fault_plan::{self, FaultKind, FaultStage};
use super::faults::DropPoint;
use super::reply::{self, Placeholders};
use super::stats::bump;
use super::Shared;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub(crate) const MAX_COMMAND_LINE: usize = 512;

/// What the connection does once the replies gathered so far are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Read more bytes.
    Continue,
    /// Close the connection (after QUIT, a 421, or a refused banner).
    Close,
    /// Close the connection at once: an injected drop. The command that triggered it gets
    /// no reply; replies to earlier commands of the batch are still written.
    Drop,
    /// Start the TLS handshake (RFC 3207); unread plaintext must be discarded.
    StartTls,
    /// An injected delay: wait this long before writing the replies gathered so far, then
    /// go on processing what was already read.
    Delay(std::time::Duration),
    /// An injected stop: write the replies gathered so far, then never read again.
    StopReading,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Command,
    Data,
    /// Inside a BDAT chunk (RFC 3030): `remaining` octets of it still to read.
    Chunk {
        remaining: u64,
        last: bool,
    },
}

/// Envelope of the transaction in progress. Buffers are kept across transactions so that a
/// steady-state transaction allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    /// MAIL was accepted and the transaction is not finished.
    pub(crate) active: bool,
    /// Where this transaction will be dropped, decided at MAIL.
    pub(crate) drop_at: Option<DropPoint>,
    /// RCPT commands seen in this transaction, accepted or not.
    pub(crate) rcpt_commands: usize,
    /// Octets of the BDAT chunks of this transaction so far (RFC 3030).
    pub(crate) chunk_octets: u64,
    /// Accepted recipients, concatenated; `ends[i]` is where the i-th one ends.
    addresses: String,
    ends: Vec<usize>,
}

impl Envelope {
    pub(crate) fn reset(&mut self) {
        self.active = false;
        self.drop_at = None;
        self.rcpt_commands = 0;
        self.chunk_octets = 0;
        self.addresses.clear();
        self.ends.clear();
    }

    /// Records an accepted recipient as `local@domain` with the domain lowercased.
    pub(crate) fn push_recipient(&mut self, local: &str, domain: &str) {
        let start = self.addresses.len();
        self.addresses.push_str(local);
        if !domain.is_empty() {
            self.addresses.push('@');
            let domain_start = self.addresses.len();
            self.addresses.push_str(domain);
            self.addresses[domain_start..].make_ascii_lowercase();
        }
        debug_assert!(self.addresses.len() > start);
        self.ends.push(self.addresses.len());
    }

    /// Number of accepted recipients.
    pub(crate) fn recipient_count(&self) -> usize {
        self.ends.len()
    }

    /// Accepted recipients, in order.
    pub(crate) fn recipients(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.addresses[start..end])
    }
}

/// Domain part of a normalised address, empty when it has none.
pub(crate) fn domain_of(address: &str) -> &str {
    address.rfind('@').map_or("", |at| &address[at + 1..])
}

/// One client's SMTP state.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) peer: IpAddr,
    tls: bool,
    /// EHLO or HELO was accepted since the start (or since STARTTLS).
    pub(crate) greeted: bool,
    mode: Mode,
    /// Skipping the rest of an over-long command line.
    discarding: bool,
    pub(crate) envelope: Envelope,
    pub(crate) data: DataScanner,
}

impl Session {
    /// A session for a new connection from `peer`.
    pub(crate) fn new(peer: IpAddr) -> Self {
        Session {
            peer,
            tls: false,
            greeted: false,
            mode: Mode::Command,
            discarding: false,
            envelope: Envelope::default(),
            data: DataScanner::default(),
        }
    }

    /// Placeholder values for a canned reply about `rcpt`.
    pub(crate) fn placeholders<'a>(&self, rcpt: &'a str) -> Placeholders<'a> {
        Placeholders {
            ip: self.peer,
            rcpt,
            domain: domain_of(rcpt),
        }
    }

    /// The banner, or a connect-stage canned reply (which closes unless it is 2xx).
    pub(crate) fn greeting(&mut self, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        let start = out.len();
        let flow = self.banner(shared, out);
        inject(FaultStage::Greeting, start, flow, shared, out)
    }

    fn banner(&mut self, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        if let Some(canned) = shared.canned.pick(Stage::Connect, "") {
            bump(&shared.counters.canned_replies);
            reply::push_canned(out, &canned.text, &self.placeholders(""));
            if canned.closes(Stage::Connect) {
                return Flow::Close;
            }
        } else {
            out.extend_from_slice(&shared.greetings.banner);
        }
        Flow::Continue
    }

    /// Switches to reading message content, after a 354.
    pub(crate) fn begin_data(&mut self) {
        self.mode = Mode::Data;
        self.data.start();
    }

    /// Switches to reading the `size` octets of a BDAT chunk (RFC 3030 §2).
    pub(crate) fn begin_chunk(&mut self, size: u64, last: bool) {
        self.mode = Mode::Chunk { remaining: size, last };
    }

    /// RFC 3207 §4.2: after the handshake the session starts over, without any knowledge
    /// obtained from the client before it.
    pub(crate) fn restart_after_tls(&mut self) {
        self.tls = true;
        self.greeted = false;
        self.mode = Mode::Command;
        self.discarding = false;
        self.envelope.reset();
    }

    /// Processes every complete command (and message content) in `buf`, consuming it, and
    /// appends the replies to `out`. Stops early at anything but [`Flow::Continue`].
    pub(crate) fn process(&mut self, buf: &mut BytesMut, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        loop {
            if self.mode == Mode::Data {
                let Some(end) = self.data.scan(buf) else {
                    buf.clear();
                    return Flow::Continue;
                };
                buf.advance(end);
                self.mode = Mode::Command;
                let start = out.len();
                let flow = self.finish_message(self.data.message_size() as u64, shared, out);
                let flow = inject(FaultStage::DataEnd, start, flow, shared, out);
                if flow != Flow::Continue {
                    return flow;
                }
                continue;
            }
            if let Mode::Chunk { remaining, last } = self.mode {
                // Exactly the chunk's octets, however the reads split them; content is not
                // looked at (no dot-stuffing with BDAT).
                let take = remaining.min(buf.len() as u64);
                buf.advance(take as usize);
                self.add_chunk_octets(take);
                if take < remaining {
                    self.mode = Mode::Chunk {
                        remaining: remaining - take,
                        last,
                    };
                    return Flow::Continue;
                }
                self.mode = Mode::Command;
                let start = out.len();
                let flow = self.finish_chunk(last, shared, out);
                // The reply to the last chunk is the transaction's final reply.
                let stage = if last { FaultStage::DataEnd } else { FaultStage::Data };
                let flow = inject(stage, start, flow, shared, out);
                if flow != Flow::Continue {
                    return flow;
                }
                continue;
            }
            let Some(newline) = memchr::memchr(b'\n', buf) else {
                if buf.len() >= MAX_COMMAND_LINE {
                    // The line is already too long: answer now, skip the rest as it comes.
                    if !self.discarding {
                        bump(&shared.counters.commands);
                        reply::push(out, reply::LINE_TOO_LONG);
                    }
                    self.discarding = true;
                    buf.clear();
                }
                return Flow::Continue;
            };
            let line_len = newline + 1;
            if self.discarding {
                self.discarding = false;
                buf.advance(line_len);
                continue;
            }
            if line_len > MAX_COMMAND_LINE {
                bump(&shared.counters.commands);
                reply::push(out, reply::LINE_TOO_LONG);
                buf.advance(line_len);
                continue;
            }
            let line = &buf[..newline];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let flow = self.command(line, shared, out);
            buf.advance(line_len);
            if flow != Flow::Continue {
                return flow;
            }
        }
    }

    fn command(&mut self, line: &[u8], shared: &Shared, out: &mut Vec<u8>) -> Flow {
        bump(&shared.counters.commands);
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(rejection) => {
                reply::push(out, rejection.0);
                return Flow::Continue;
            }
        };
        let stage = match command {
            Command::Ehlo | Command::Helo => Some(FaultStage::Ehlo),
            Command::Mail { .. } => Some(FaultStage::Mail),
            Command::Rcpt { .. } => Some(FaultStage::Rcpt),
            Command::Data => Some(FaultStage::Data),
            _ => None,
        };
        let start = out.len();
        let flow = self.execute(command, shared, out);
        match stage {
            Some(stage) => inject(stage, start, flow, shared, out),
            None => flow,
        }
    }

    fn execute(&mut self, command: Command<'_>, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        match command {
            Command::Ehlo => self.ehlo(true, shared, out),
            Command::Helo => self.ehlo(false, shared, out),
            Command::Mail { sender, size } => self.mail(&sender, size, shared, out),
            Command::Rcpt { recipient } => self.rcpt(&recipient, shared, out),
            Command::Data => self.data(shared, out),
            Command::Bdat { .. } if !shared.config.chunking => {
                reply::push(out, reply::NOT_IMPLEMENTED);
                Flow::Continue
            }
            Command::Bdat { size, last } => {
                // Answered once the chunk's octets are in (`finish_chunk`).
                self.begin_chunk(size, last);
                Flow::Continue
            }
            Command::Rset => {
                self.envelope.reset();
                reply::push(out, reply::OK);
                Flow::Continue
            }
            Command::Noop => {
                reply::push(out, reply::OK);
                Flow::Continue
            }
            Command::Vrfy => {
                reply::push(out, reply::VRFY);
                Flow::Continue
            }
            Command::Help => {
                reply::push(out, reply::HELP);
                Flow::Continue
            }
            Command::Quit => {
                reply::push(out, reply::BYE);
                Flow::Close
            }
            Command::StartTls => self.starttls(shared, out),
        }
    }

    /// EHLO (`extended`) or HELO. RFC 5321 §4.1.4: either resets any transaction.
    fn ehlo(&mut self, extended: bool, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        self.envelope.reset();
        if extended && shared.config.refuse_ehlo {
            reply::push(out, reply::EHLO_REFUSED);
            return Flow::Continue;
        }
        if let Some(canned) = shared.canned.pick(Stage::Ehlo, "") {
            bump(&shared.counters.canned_replies);
            reply::push_canned(out, &canned.text, &self.placeholders(""));
            self.greeted = canned.is_positive();
            return if canned.closes(Stage::Ehlo) {
                Flow::Close
            } else {
                Flow::Continue
            };
        }
        self.greeted = true;
        let greetings = &shared.greetings;
        out.extend_from_slice(match (extended, self.tls) {
            (false, _) => &greetings.helo,
            (true, false) => &greetings.ehlo_plain,
            (true, true) => &greetings.ehlo_tls,
        });
        Flow::Continue
    }

    fn starttls(&mut self, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        let refusal = if !shared.config.starttls {
            Some(reply::TLS_UNAVAILABLE)
        } else if self.tls {
            Some(reply::TLS_ACTIVE)
        } else if self.envelope.active {
            Some(reply::TLS_IN_TRANSACTION)
        } else {
            None
        };
        match refusal {
            Some(text) => {
                reply::push(out, text);
                Flow::Continue
            }
            None => {
                reply::push(out, reply::READY_FOR_TLS);
                Flow::StartTls
            }
        }
    }
}

/// Applies the first configured fault that strikes at `stage` to the reply written at
/// `out[start..]` by a command that returned `flow`. The command itself was carried out.
fn inject(stage: FaultStage, start: usize, flow: Flow, shared: &Shared, out: &mut Vec<u8>) -> Flow {
    if flow == Flow::Drop {
        return flow;
    }
    // A delay or a stop replaces the connection's next step, so it only applies when that
    // step was to go on reading (not after a closing reply or STARTTLS).
    let applies =
        |kind: FaultKind| flow == Flow::Continue || !matches!(kind, FaultKind::Delay(_) | FaultKind::StopReading);
    let Some(fault) = shared
        .config
        .faults
        .iter()
        .find(|f| applies(f.kind) && f.strikes(stage))
    else {
        return flow;
    };
    bump(&shared.counters.faults_injected);
    tracing::debug!(%stage, kind = ?fault.kind, "sink: injected fault");
    if let Some(bytes) = fault_plan::replacement(fault.kind) {
        out.truncate(start);
        out.extend_from_slice(&bytes);
        return flow;
    }
    match fault.kind {
        FaultKind::Delay(after) => Flow::Delay(after),
        FaultKind::Close => {
            out.truncate(start);
            Flow::Drop
        }
        FaultKind::Truncated => {
            // The first half of the reply: never its final CRLF.
            let len = out.len() - start;
            out.truncate(start + len / 2);
            Flow::Drop
        }
        FaultKind::StopReading => Flow::StopReading,
        FaultKind::Garbage | FaultKind::LongLine(_) | FaultKind::LongReply(_) => flow,
    }
}

#[cfg(test)]
mod tests;
