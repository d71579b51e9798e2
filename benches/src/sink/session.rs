//! The sink's layer over the sans-IO SMTP session of `volley-smtp-server`: the crate parses
//! commands, reads DATA and BDAT content and enforces the protocol's sequencing; this layer
//! answers its decisions the sink's way (canned replies, tempfail/permfail draws, drops,
//! counters) and spoils replies with the configured faults. The decisions on the mail
//! transaction live in [`super::transaction`].

use std::net::IpAddr;
use std::sync::Arc;

use volley_smtp_server::{Event, Reply, SessionConfig, SessionError, Verb};

use super::canned::{CompiledReply, Stage};
use super::fault_plan::{self, FaultKind, FaultStage};
use super::faults::DropPoint;
use super::reply::{self, Placeholders};
use super::stats::bump;
use super::Shared;

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
    /// Start the TLS handshake (RFC 3207); unread plaintext was discarded.
    StartTls,
    /// An injected delay: wait this long before writing the replies gathered so far, then
    /// go on processing what was already read.
    Delay(std::time::Duration),
    /// An injected stop: write the replies gathered so far, then never read again.
    StopReading,
}

/// The sink's view of the transaction in progress. Buffers are kept across transactions so
/// that a steady-state transaction allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    /// Where this transaction will be dropped, decided at MAIL.
    pub(crate) drop_at: Option<DropPoint>,
    /// RCPT commands seen in this transaction, accepted or not.
    pub(crate) rcpt_commands: usize,
    /// The BDAT chunk being read is the last one.
    pub(crate) last_chunk: bool,
    /// The address of the command being decided, as sent (for canned-reply placeholders).
    pub(crate) current: String,
    /// The accepted MAIL FROM address (empty for the null sender).
    pub(crate) sender: String,
    /// The message's header section, kept when the sink sends reports about it.
    pub(crate) headers: super::feedback::HeaderCapture,
    /// Accepted recipients, concatenated; `ends[i]` is where the i-th one ends.
    addresses: String,
    ends: Vec<usize>,
}

impl Envelope {
    pub(crate) fn reset(&mut self) {
        self.drop_at = None;
        self.rcpt_commands = 0;
        self.sender.clear();
        self.headers.clear();
        self.addresses.clear();
        self.ends.clear();
    }

    /// Records an accepted recipient as `local@domain` with the domain lowercased.
    pub(crate) fn push_recipient(&mut self, local: &str, domain: &str) {
        self.addresses.push_str(local);
        if !domain.is_empty() {
            self.addresses.push('@');
            let domain_start = self.addresses.len();
            self.addresses.push_str(domain);
            self.addresses[domain_start..].make_ascii_lowercase();
        }
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

/// Domain part of an address, empty when it has none.
pub(crate) fn domain_of(address: &str) -> &str {
    address.rfind('@').map_or("", |at| &address[at + 1..])
}

/// The session settings the sink's configuration implies.
pub(crate) fn smtp_config(config: &super::SinkConfig) -> SessionConfig {
    SessionConfig {
        hostname: config.hostname.clone(),
        pipelining: config.pipelining,
        max_message_size: config.max_message_size as u64,
        chunking: config.chunking,
        starttls: config.starttls,
        max_recipients: MAX_RECIPIENTS,
        ..SessionConfig::default()
    }
}

/// Recipients accepted per transaction; RFC 5321 §4.5.3.1.8 requires at least 100.
pub(crate) const MAX_RECIPIENTS: usize = 1000;

/// One client's SMTP state: the protocol session and the sink's envelope.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) peer: IpAddr,
    pub(crate) smtp: volley_smtp_server::Session,
    pub(crate) envelope: Envelope,
}

impl Session {
    /// A session for a new connection from `peer`.
    pub(crate) fn new(peer: IpAddr, config: Arc<SessionConfig>) -> Self {
        Session {
            peer,
            smtp: volley_smtp_server::Session::new(config, false),
            envelope: Envelope::default(),
        }
    }

    /// Placeholder values for a canned reply about `rcpt`.
    pub(crate) fn placeholders<'a>(peer: IpAddr, rcpt: &'a str) -> Placeholders<'a> {
        Placeholders {
            ip: peer,
            rcpt,
            domain: domain_of(rcpt),
        }
    }

    /// The banner, or a connect-stage canned reply (which closes unless it is 2xx).
    pub(crate) fn greeting(&mut self, shared: &Shared) -> Flow {
        let out = self.smtp.output_mut();
        let start = out.len();
        let mut flow = Flow::Continue;
        if let Some(canned) = shared.canned.pick(Stage::Connect, "") {
            bump(&shared.counters.canned_replies);
            reply::push_canned(out, &canned.text, &Self::placeholders(self.peer, ""));
            if canned.closes(Stage::Connect) {
                flow = Flow::Close;
            }
        } else {
            out.extend_from_slice(&shared.banner);
        }
        inject(FaultStage::Greeting, start, flow, shared, self.smtp.output_mut())
    }

    /// RFC 3207 §4.2: after the handshake the session starts over.
    pub(crate) fn restart_after_tls(&mut self) {
        self.smtp.tls_established();
        self.envelope.reset();
    }

    /// Answers the pending decision with a canned reply; its flow.
    pub(crate) fn answer_canned(&mut self, canned: &CompiledReply, stage: Stage, shared: &Shared) -> Flow {
        bump(&shared.counters.canned_replies);
        let (peer, current) = (self.peer, &self.envelope.current);
        let _ = self.smtp.reply_with(canned.code, |out| {
            reply::push_canned(out, &canned.text, &Self::placeholders(peer, current));
        });
        if canned.closes(stage) {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Answers the pending decision with `reply`.
    pub(crate) fn answer(&mut self, reply: &Reply) -> Flow {
        let _ = self.smtp.reply(reply);
        Flow::Continue
    }

    /// Processes every complete command (and message content) read so far, gathering the
    /// replies in the session's output. Stops early at anything but [`Flow::Continue`].
    pub(crate) fn process(&mut self, shared: &Shared) -> Flow {
        loop {
            let start = self.smtp.output().len();
            let counters = &shared.counters;
            let (stage, flow) = match self.smtp.next_event() {
                Event::NeedInput => return Flow::Continue,
                Event::Closed => return Flow::Close,
                Event::TlsHandshake => return Flow::StartTls,
                Event::Content(content) => {
                    if shared.feedback.is_some() {
                        self.envelope.headers.push(content);
                    }
                    continue;
                }
                Event::Ehlo { extended, .. } => {
                    bump(&counters.commands);
                    (Some(FaultStage::Ehlo), self.ehlo(extended, shared))
                }
                Event::Mail { sender, .. } => {
                    bump(&counters.commands);
                    self.envelope.current.clear();
                    self.envelope.current.push_str(sender.address());
                    (Some(FaultStage::Mail), self.mail(shared))
                }
                Event::Rcpt { recipient, .. } => {
                    bump(&counters.commands);
                    let envelope = &mut self.envelope;
                    envelope.current.clear();
                    envelope.current.push_str(recipient.address());
                    // The domain starts after the last '@' of the address as sent.
                    let domain_len = match recipient {
                        volley_smtp_server::Path::Mailbox { domain, .. } => domain.len(),
                        volley_smtp_server::Path::Null => 0,
                    };
                    (Some(FaultStage::Rcpt), self.rcpt(domain_len, shared))
                }
                Event::Data => {
                    bump(&counters.commands);
                    (Some(FaultStage::Data), self.data(shared))
                }
                Event::Bdat { last, .. } => {
                    bump(&counters.commands);
                    bump(&counters.bdat_chunks);
                    self.envelope.last_chunk = last;
                    continue;
                }
                Event::BdatChunk { .. } => (Some(FaultStage::Data), self.chunk(shared)),
                Event::MessageEnd { size, chunked } => {
                    (Some(FaultStage::DataEnd), self.finish_message(size, chunked, shared))
                }
                Event::StartTls => {
                    bump(&counters.commands);
                    (None, self.answer_accept())
                }
                Event::Auth(_) => {
                    // The sink offers no AUTH, so the session never gets here.
                    (None, self.answer(&volley_smtp_server::reply::AUTH_FAILED))
                }
                Event::Rset => {
                    bump(&counters.commands);
                    self.envelope.reset();
                    (None, Flow::Continue)
                }
                Event::Noop | Event::Help | Event::Vrfy { .. } | Event::Quit | Event::AuthChallenge => {
                    bump(&counters.commands);
                    (None, Flow::Continue)
                }
                Event::Rejected(error) => self.rejected(&error, start, shared),
            };
            let flow = match stage {
                Some(stage) => inject(stage, start, flow, shared, self.smtp.output_mut()),
                None => flow,
            };
            if flow != Flow::Continue {
                return flow;
            }
        }
    }

    fn answer_accept(&mut self) -> Flow {
        let _ = self.smtp.accept();
        Flow::Continue
    }

    /// A command the protocol session refused: counts it and names the stage whose faults
    /// apply to its reply (as if the sink had answered it).
    fn rejected(&mut self, error: &SessionError, start: usize, shared: &Shared) -> (Option<FaultStage>, Flow) {
        let counters = &shared.counters;
        let chunk_end = matches!(
            error,
            SessionError::NeedMail { verb: Verb::Bdat }
                | SessionError::NoRecipients { verb: Verb::Bdat }
                | SessionError::MessageTooBig { verb: Verb::Bdat }
        );
        let content_end = matches!(
            error,
            SessionError::MessageTooBig {
                verb: Verb::Data | Verb::Bdat
            }
        );
        // The end of DATA content is not a command line; the end of a chunk was counted
        // with its BDAT line.
        if !chunk_end && !content_end {
            bump(&counters.commands);
        }
        if !error.is_syntax() && error.verb() == Some(Verb::Mail) {
            bump(&counters.mail_commands);
        }
        if content_end || chunk_end {
            self.envelope.reset();
        }
        if content_end && self.envelope.drop_at == Some(DropPoint::AfterDot) {
            // The RFC 1047 window: the connection dies before the final reply.
            self.smtp.output_mut().truncate(start);
            return (None, self.drop_connection(shared, true));
        }
        let stage = match error.verb() {
            _ if error.is_syntax() => None,
            _ if chunk_end => Some(if self.envelope.last_chunk {
                FaultStage::DataEnd
            } else {
                FaultStage::Data
            }),
            Some(Verb::Data) if content_end => Some(FaultStage::DataEnd),
            Some(Verb::Ehlo | Verb::Helo) => Some(FaultStage::Ehlo),
            Some(Verb::Mail) => Some(FaultStage::Mail),
            Some(Verb::Rcpt) => Some(FaultStage::Rcpt),
            Some(Verb::Data) => Some(FaultStage::Data),
            _ => None,
        };
        (stage, Flow::Continue)
    }

    /// EHLO (`extended`) or HELO; the protocol session reset the transaction.
    fn ehlo(&mut self, extended: bool, shared: &Shared) -> Flow {
        self.envelope.reset();
        if extended && shared.config.refuse_ehlo {
            return self.answer(&reply::EHLO_REFUSED);
        }
        if let Some(canned) = shared.canned.pick(Stage::Ehlo, "") {
            self.envelope.current.clear();
            return self.answer_canned(canned, Stage::Ehlo, shared);
        }
        self.answer_accept()
    }

    pub(crate) fn drop_connection(&mut self, shared: &Shared, after_data: bool) -> Flow {
        bump(&shared.counters.drops);
        if after_data {
            bump(&shared.counters.drops_after_data);
        }
        tracing::debug!(peer = %self.peer, after_data, "sink: injected connection drop");
        self.envelope.reset();
        Flow::Drop
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
