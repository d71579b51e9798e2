//! Mail transactions on an open session: MAIL FROM, RCPT TO for each recipient, the content
//! and the final reply, for one message or a batch of messages already queued for the
//! connection.
//!
//! Without PIPELINING every command is a round trip (here). With it, the batch is sent in
//! groups that cost one round trip per message (the `pipeline` module).
//!
//! Every recipient gets exactly one [`RecipientStatus`], whatever happens: a pipelined group of
//! N commands always yields N results, and recipients still open when the connection breaks
//! are deferred with the reason.

use std::ops::Range;
use std::time::Instant;

use super::command::{self, MailParams};
use super::dot::DataPayload;
use super::ehlo::Capabilities;
use super::reply::Reply;
use super::session::SmtpSession;
use crate::error::SessionError;
use crate::outcome::RecipientStatus;
use crate::phase::Phase;

/// The envelope of one transaction (RFC 5321 §2.3.1).
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The reverse-path (bounce address); empty for the null sender `<>`.
    pub mail_from: String,
    /// The forward-paths.
    pub recipients: Vec<String>,
}

/// The result of one transaction.
#[derive(Debug)]
pub struct TransactionResult {
    /// One status per envelope recipient, in envelope order.
    pub statuses: Vec<RecipientStatus>,
    /// The connection failed and must not be reused; the error says why.
    pub connection_error: Option<SessionError>,
}

/// The result of [`SmtpSession::send_batch`].
#[derive(Debug)]
pub struct BatchResult {
    /// Per message of the batch, in order: one status per envelope recipient, in envelope
    /// order; `None` for a message of which nothing was sent because the connection broke
    /// first, or that a 421 to an earlier message's end of content left unprocessed (it can go
    /// out on another connection as if never tried).
    pub statuses: Vec<Option<Vec<RecipientStatus>>>,
    /// Per message: when its last reply was read (`None` when a broken connection decided it).
    pub finished: Vec<Option<Instant>>,
    /// Transactions attempted (a message with more recipients than the per-transaction cap
    /// takes several).
    pub transactions: usize,
    /// The connection failed and must not be reused; the error says why.
    pub connection_error: Option<SessionError>,
}

/// One message of a batch: its envelope and its prepared content.
pub type Outgoing<'a> = (&'a Envelope, &'a DataPayload);

/// One transaction of a batch: which message, and which of its recipients (indices into its
/// envelope) passed the local checks.
pub(super) struct Transaction {
    pub(super) message: usize,
    pub(super) recipients: Vec<usize>,
}

/// How far a batch got: per message, per recipient, the status once decided; and how many
/// of its transactions had their commands written (the others never reached the server).
pub(super) struct Progress {
    pub(super) statuses: Vec<Vec<Option<RecipientStatus>>>,
    pub(super) written: usize,
    /// Per message, when its latest transaction was decided.
    pub(super) finished: Vec<Option<Instant>>,
}

impl Progress {
    /// Notes that a transaction of `message` has its outcome.
    pub(super) fn finish(&mut self, message: usize) {
        self.finished[message] = Some(Instant::now());
    }
}

impl SmtpSession {
    /// Sends one message to the envelope's recipients and returns one status per recipient.
    pub async fn send_message(&mut self, envelope: &Envelope, payload: &DataPayload) -> TransactionResult {
        let batch = self.send_batch(&[(envelope, payload)], usize::MAX).await;
        let statuses = batch.statuses.into_iter().next().flatten();
        let statuses = statuses.unwrap_or_else(|| {
            let err = batch.connection_error.as_ref().map_or_else(
                || RecipientStatus::from_error(&SessionError::Closed { phase: Phase::MailFrom }),
                RecipientStatus::from_error,
            );
            vec![err; envelope.recipients.len()]
        });
        TransactionResult {
            statuses,
            connection_error: batch.connection_error,
        }
    }

    /// Sends messages already queued for this connection, in transactions of at most
    /// `max_recipients` recipients. With PIPELINING, each message costs one round trip: the
    /// end of a message's DATA content goes with the next transaction's MAIL/RCPT/DATA (RFC
    /// 2920 §3.1), so n messages cost n + 1; with CHUNKING too, each message is one group
    /// `MAIL, RCPT..., BDAT <size> LAST` and its content (RFC 3030). Without PIPELINING,
    /// each command is a round trip.
    pub async fn send_batch(&mut self, messages: &[Outgoing<'_>], max_recipients: usize) -> BatchResult {
        let mut statuses: Vec<Vec<Option<RecipientStatus>>> = messages
            .iter()
            .map(|(envelope, _)| vec![None; envelope.recipients.len()])
            .collect();
        let mut transactions = Vec::new();
        let mut attempted = 0;
        for (message, (envelope, payload)) in messages.iter().enumerate() {
            let count = envelope.recipients.len();
            for start in (0..count).step_by(max_recipients.max(1)) {
                let range = start..count.min(start.saturating_add(max_recipients));
                attempted += 1;
                let recipients = precheck(&self.caps, envelope, payload, range, &mut statuses[message]);
                if !recipients.is_empty() {
                    transactions.push(Transaction { message, recipients });
                }
            }
        }
        let mut progress = Progress {
            finished: vec![None; statuses.len()],
            statuses,
            written: 0,
        };
        let outcome = if !self.caps.pipelining {
            self.lockstep_batch(messages, &transactions, &mut progress).await
        } else if self.caps.chunking {
            self.bdat_batch(messages, &transactions, &mut progress).await
        } else {
            self.data_batch(messages, &transactions, &mut progress).await
        };
        let connection_error = outcome.err();
        // A message whose first transaction was never written is untouched: nothing of it
        // reached the server. Only a broken connection leaves such messages.
        let mut untouched = vec![false; messages.len()];
        if connection_error.is_some() {
            for t in transactions.iter().skip(progress.written) {
                untouched[t.message] = true;
            }
            for t in transactions.iter().take(progress.written) {
                untouched[t.message] = false;
            }
        }
        // A 421 to the end of a message's content closes the channel right there (RFC 5321
        // §3.8): what was pipelined behind it was not processed, and no reply came for it. Such
        // messages are untouched too (the one that got the 421 is decided by it).
        if matches!(&connection_error, Some(SessionError::Rejected { phase: Phase::DataEnd, reply }) if reply.code == 421)
        {
            for (message, statuses) in progress.statuses.iter().enumerate() {
                if statuses.iter().all(Option::is_none) {
                    untouched[message] = true;
                }
            }
        }
        let fallback = match &connection_error {
            Some(err) => RecipientStatus::from_error(err),
            None => RecipientStatus::from_error(&SessionError::Closed { phase: Phase::DataEnd }),
        };
        let statuses = progress
            .statuses
            .into_iter()
            .zip(untouched)
            .map(|(message, untouched)| {
                (!untouched).then(|| {
                    message
                        .into_iter()
                        .map(|s| s.unwrap_or_else(|| fallback.clone()))
                        .collect()
                })
            })
            .collect();
        BatchResult {
            statuses,
            finished: progress.finished,
            transactions: attempted,
            connection_error,
        }
    }

    /// Without PIPELINING: every transaction in turn, one command per round trip.
    async fn lockstep_batch(
        &mut self,
        messages: &[Outgoing<'_>],
        transactions: &[Transaction],
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        for t in transactions {
            progress.written += 1;
            let (envelope, payload) = messages[t.message];
            let statuses = &mut progress.statuses[t.message];
            let had_rset = std::mem::take(&mut self.needs_rset);
            // Until the final reply, an unfinished transaction must be reset before the next.
            self.needs_rset = true;
            let params = mail_params(&self.caps, payload);
            let (mail, rcpts, data) = self
                .lockstep_envelope(envelope, params, &t.recipients, had_rset)
                .await?;
            let accepted = envelope_verdict(&mail, &rcpts, &t.recipients, statuses);
            // DATA was not sent when MAIL was refused or no recipient was accepted.
            let content = data.and_then(|data| self.data_verdict(&data, accepted, statuses));
            if let Some(content) = content {
                let bytes = content.bytes(payload);
                self.write_bytes(&bytes, Phase::DataBlock).await?;
                self.final_reply(&content.accepted, statuses).await?;
            }
            progress.finish(t.message);
        }
        Ok(())
    }

    /// Without PIPELINING: one command, one reply. DATA is not sent (its reply is `None`) when
    /// MAIL FROM was refused or no recipient was accepted.
    async fn lockstep_envelope(
        &mut self,
        envelope: &Envelope,
        params: MailParams,
        sendable: &[usize],
        rset_first: bool,
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), SessionError> {
        if rset_first {
            self.wbuf.clear();
            command::rset(&mut self.wbuf);
            self.write_wbuf(Phase::Rset).await?;
            self.expect_rset().await?;
        }
        self.wbuf.clear();
        command::mail_from(&mut self.wbuf, &envelope.mail_from, params);
        let mail = closing(Phase::MailFrom, self.round_trip(Phase::MailFrom).await?)?;
        if !mail.is_positive() {
            return Ok((mail, Vec::new(), None));
        }
        let mut rcpts = Vec::with_capacity(sendable.len());
        for &i in sendable {
            self.wbuf.clear();
            command::rcpt_to(&mut self.wbuf, &envelope.recipients[i]);
            rcpts.push(closing(Phase::RcptTo, self.round_trip(Phase::RcptTo).await?)?);
        }
        if !rcpts.iter().any(Reply::is_positive) {
            return Ok((mail, rcpts, None));
        }
        self.wbuf.clear();
        command::data(&mut self.wbuf);
        let data = closing(Phase::Data, self.round_trip(Phase::Data).await?)?;
        Ok((mail, rcpts, Some(data)))
    }

    pub(super) async fn expect_rset(&mut self) -> Result<(), SessionError> {
        let reply = self.read_reply(Phase::Rset).await?;
        if reply.is_positive() {
            Ok(())
        } else {
            Err(SessionError::Rejected {
                phase: Phase::Rset,
                reply,
            })
        }
    }

    /// What follows the reply to DATA: the message content when the server said 354 and a
    /// recipient was accepted; a lone dot (RFC 2920 §3.1) when it said 354 anyway; nothing
    /// otherwise, the accepted recipients then taking the DATA reply.
    pub(super) fn data_verdict(
        &mut self,
        data: &Reply,
        accepted: Vec<usize>,
        statuses: &mut [Option<RecipientStatus>],
    ) -> Option<Content> {
        if data.code == 354 && !accepted.is_empty() {
            // The final reply, whatever it says, ends the transaction.
            self.needs_rset = false;
            return Some(Content {
                lone_dot: false,
                accepted,
            });
        }
        self.needs_rset = true;
        if data.code != 354 {
            let status = RecipientStatus::from_reply(Phase::Data, data);
            for &i in &accepted {
                statuses[i] = Some(status.clone());
            }
            return None;
        }
        Some(Content {
            lone_dot: true,
            accepted: Vec::new(),
        })
    }

    /// Reads the reply to the end of the content (final dot or `BDAT LAST`); it decides the
    /// `accepted` recipients. When the connection fails instead, the whole message went out and
    /// its fate is unknown (RFC 1047): they are deferred, marked `maybe_delivered`.
    pub(super) async fn final_reply(
        &mut self,
        accepted: &[usize],
        statuses: &mut [Option<RecipientStatus>],
    ) -> Result<Reply, SessionError> {
        let reply = match self.read_reply(Phase::DataEnd).await {
            Ok(reply) => reply,
            Err(e) => {
                let mut status = RecipientStatus::from_error(&e);
                status.maybe_delivered = true;
                for &i in accepted {
                    statuses[i] = Some(status.clone());
                }
                return Err(e);
            }
        };
        let status = RecipientStatus::from_reply(Phase::DataEnd, &reply);
        for &i in accepted {
            statuses[i] = Some(status.clone());
        }
        // A 421 answer to the end of the content decides the message and closes the connection.
        closing(Phase::DataEnd, reply)
    }
}

/// What goes after a 354: the message (for its `accepted` recipients), or a lone dot.
pub(super) struct Content {
    pub(super) lone_dot: bool,
    pub(super) accepted: Vec<usize>,
}

impl Content {
    /// The bytes to send: the stuffed message with its terminator, or `.\r\n`.
    pub(super) fn bytes(&self, payload: &DataPayload) -> bytes::Bytes {
        if self.lone_dot {
            bytes::Bytes::from_static(b".\r\n")
        } else {
            payload.wire_bytes().clone()
        }
    }
}

/// MAIL FROM parameters for a payload: SIZE when advertised, BODY=8BITMIME when needed and
/// offered.
pub(super) fn mail_params(caps: &Capabilities, payload: &DataPayload) -> MailParams {
    MailParams {
        size: caps.size.map(|_| payload.message_size()),
        eight_bit: payload.is_eight_bit() && caps.eight_bit_mime,
        smtputf8: false,
    }
}

/// Refuses what cannot be sent before a byte goes out: an unusable reverse-path or a message
/// over the SIZE limit decide every recipient in `range`, an unusable forward-path its own.
/// Returns the recipients that can be sent.
fn precheck(
    caps: &Capabilities,
    envelope: &Envelope,
    payload: &DataPayload,
    range: Range<usize>,
    statuses: &mut [Option<RecipientStatus>],
) -> Vec<usize> {
    // The envelope sender cannot be sent: not the recipients' fault.
    let sender_fault = command::check_path(&envelope.mail_from).is_err();
    let refused = if let Err(e) = command::check_path(&envelope.mail_from) {
        Some(SessionError::Command(e))
    } else if !caps.accepts_size(payload.message_size()) {
        Some(SessionError::TooBig {
            size: payload.message_size(),
            limit: caps.size.unwrap_or(0),
        })
    } else {
        None
    };
    if let Some(err) = refused {
        let mut status = RecipientStatus::from_error(&err);
        status.sender_fault |= sender_fault;
        for s in &mut statuses[range] {
            *s = Some(status.clone());
        }
        return Vec::new();
    }
    let mut sendable = Vec::with_capacity(range.len());
    for i in range {
        match command::check_path(&envelope.recipients[i]) {
            Ok(()) if !envelope.recipients[i].is_empty() => sendable.push(i),
            Ok(()) => {
                statuses[i] = Some(RecipientStatus::from_error(&SessionError::Command(
                    command::CommandError::InvalidAddress {
                        address: String::new(),
                        reason: "empty recipient",
                    },
                )))
            }
            Err(e) => statuses[i] = Some(RecipientStatus::from_error(&SessionError::Command(e))),
        }
    }
    sendable
}

/// Decides the recipients the MAIL and RCPT replies refuse and returns those accepted (none
/// when MAIL was refused: then every recipient takes its reply).
pub(super) fn envelope_verdict(
    mail: &Reply,
    rcpts: &[Reply],
    sendable: &[usize],
    statuses: &mut [Option<RecipientStatus>],
) -> Vec<usize> {
    if !mail.is_positive() {
        let status = RecipientStatus::from_reply(Phase::MailFrom, mail);
        for &i in sendable {
            statuses[i] = Some(status.clone());
        }
        return Vec::new();
    }
    let mut accepted = Vec::with_capacity(sendable.len());
    for (&i, reply) in sendable.iter().zip(rcpts) {
        if reply.is_positive() {
            accepted.push(i);
        } else {
            statuses[i] = Some(RecipientStatus::from_reply(Phase::RcptTo, reply));
        }
    }
    accepted
}

/// RFC 5321 §3.8: a 421 reply to any command means the server is closing the channel. The
/// reply becomes the connection's error, so the recipients it left undecided get its code and
/// text (a deferral the scheduler's backoff can read), not a bare "connection closed", and the
/// connection is not used again.
pub(super) fn closing(phase: Phase, reply: Reply) -> Result<Reply, SessionError> {
    if reply.code == 421 {
        Err(SessionError::Rejected { phase, reply })
    } else {
        Ok(reply)
    }
}
