//! One mail transaction on an open session: MAIL FROM, RCPT TO for each recipient, DATA, the
//! content and the final reply — pipelined per RFC 2920 when the server offers it.
//!
//! Every recipient gets exactly one [`RecipientStatus`], whatever happens: a pipelined group of
//! N commands always yields N results, and recipients still open when the connection breaks
//! are deferred with the reason.

use super::command::{self, MailParams};
use super::dot::DataPayload;
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

impl SmtpSession {
    /// Sends one message to the envelope's recipients and returns one status per recipient.
    pub async fn send_message(&mut self, envelope: &Envelope, payload: &DataPayload) -> TransactionResult {
        let mut statuses: Vec<Option<RecipientStatus>> = vec![None; envelope.recipients.len()];
        // Refuse what cannot be sent before a byte goes out.
        if let Err(e) = command::check_path(&envelope.mail_from) {
            let mut status = RecipientStatus::from_error(&SessionError::Command(e));
            // The envelope sender cannot be sent: not the recipients' fault.
            status.sender_fault = true;
            return TransactionResult {
                statuses: vec![status; envelope.recipients.len()],
                connection_error: None,
            };
        }
        if !self.caps.accepts_size(payload.message_size()) {
            let limit = self.caps.size.unwrap_or(0);
            let status = RecipientStatus::from_error(&SessionError::TooBig {
                size: payload.message_size(),
                limit,
            });
            return TransactionResult {
                statuses: vec![status; envelope.recipients.len()],
                connection_error: None,
            };
        }
        let mut sendable = Vec::with_capacity(envelope.recipients.len());
        for (i, rcpt) in envelope.recipients.iter().enumerate() {
            match command::check_path(rcpt) {
                Ok(()) if !rcpt.is_empty() => sendable.push(i),
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
        let connection_error = if sendable.is_empty() {
            None
        } else {
            self.transact(envelope, payload, &sendable, &mut statuses).await.err()
        };
        if let Some(err) = &connection_error {
            let status = RecipientStatus::from_error(err);
            for s in statuses.iter_mut().filter(|s| s.is_none()) {
                *s = Some(status.clone());
            }
        }
        let statuses = statuses
            .into_iter()
            .map(|s| s.unwrap_or_else(|| RecipientStatus::from_error(&SessionError::Closed { phase: Phase::DataEnd })))
            .collect();
        TransactionResult {
            statuses,
            connection_error,
        }
    }

    /// The protocol exchange. Fills `statuses` for every recipient it decides; an `Err` means
    /// the connection is unusable and the undecided recipients share that error.
    async fn transact(
        &mut self,
        envelope: &Envelope,
        payload: &DataPayload,
        sendable: &[usize],
        statuses: &mut [Option<RecipientStatus>],
    ) -> Result<(), SessionError> {
        let params = MailParams {
            size: self.caps.size.map(|_| payload.message_size()),
            eight_bit: payload.is_eight_bit() && self.caps.eight_bit_mime,
            smtputf8: false,
        };
        let had_rset = std::mem::take(&mut self.needs_rset);
        // Until the final reply, an unfinished transaction must be reset before the next one.
        self.needs_rset = true;
        let (mail, rcpts, data) = if self.caps.pipelining {
            self.pipelined_envelope(envelope, params, sendable, had_rset).await?
        } else {
            self.lockstep_envelope(envelope, params, sendable, had_rset).await?
        };
        if !mail.is_positive() {
            let status = RecipientStatus::from_reply(Phase::MailFrom, &mail);
            for &i in sendable {
                statuses[i] = Some(status.clone());
            }
            // With MAIL refused nothing is open; but a confused server may still say 354.
            return self.abandon_data(data.as_ref()).await;
        }
        let mut accepted = Vec::with_capacity(sendable.len());
        for (&i, reply) in sendable.iter().zip(&rcpts) {
            if reply.is_positive() {
                accepted.push(i);
            } else {
                statuses[i] = Some(RecipientStatus::from_reply(Phase::RcptTo, reply));
            }
        }
        let data = match data {
            Some(d) => d,
            None => {
                // Lockstep without any accepted recipient: DATA was never sent.
                return Ok(());
            }
        };
        if accepted.is_empty() || data.code != 354 {
            if data.code != 354 {
                let status = RecipientStatus::from_reply(Phase::Data, &data);
                for &i in &accepted {
                    statuses[i] = Some(status.clone());
                }
            }
            return self.abandon_data(Some(&data)).await;
        }
        self.write_bytes(payload.wire_bytes(), Phase::DataBlock).await?;
        let fin = match self.read_reply(Phase::DataEnd).await {
            Ok(r) => r,
            Err(e) => {
                // RFC 1047: the whole message went out; delivery is unknown.
                let mut status = RecipientStatus::from_error(&e);
                status.maybe_delivered = true;
                for &i in &accepted {
                    statuses[i] = Some(status.clone());
                }
                return Err(e);
            }
        };
        let status = RecipientStatus::from_reply(Phase::DataEnd, &fin);
        for &i in &accepted {
            statuses[i] = Some(status.clone());
        }
        self.needs_rset = false;
        // A 421 answer to the dot decides the message and closes the connection.
        closing(Phase::DataEnd, fin).map(|_| ())
    }

    /// RFC 2920: [RSET] MAIL FROM, every RCPT TO and DATA in one write, then read every reply.
    async fn pipelined_envelope(
        &mut self,
        envelope: &Envelope,
        params: MailParams,
        sendable: &[usize],
        rset_first: bool,
    ) -> Result<(Reply, Vec<Reply>, Option<Reply>), SessionError> {
        self.wbuf.clear();
        if rset_first {
            command::rset(&mut self.wbuf);
        }
        command::mail_from(&mut self.wbuf, &envelope.mail_from, params);
        for &i in sendable {
            command::rcpt_to(&mut self.wbuf, &envelope.recipients[i]);
        }
        command::data(&mut self.wbuf);
        self.write_wbuf(Phase::MailFrom).await?;
        if rset_first {
            self.expect_rset().await?;
        }
        let mail = closing(Phase::MailFrom, self.read_reply(Phase::MailFrom).await?)?;
        let mut rcpts = Vec::with_capacity(sendable.len());
        for _ in sendable {
            rcpts.push(closing(Phase::RcptTo, self.read_reply(Phase::RcptTo).await?)?);
        }
        let data = closing(Phase::Data, self.read_reply(Phase::Data).await?)?;
        Ok((mail, rcpts, Some(data)))
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

    async fn expect_rset(&mut self) -> Result<(), SessionError> {
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

    /// Leaves a transaction that will carry no content. If the server nevertheless answered
    /// DATA with 354, RFC 2920 §3.1 has us end the (empty) data with a lone dot.
    async fn abandon_data(&mut self, data: Option<&Reply>) -> Result<(), SessionError> {
        if data.is_some_and(|d| d.code == 354) {
            self.write_bytes(b".\r\n", Phase::DataBlock).await?;
            self.read_reply(Phase::DataEnd).await?;
        }
        self.needs_rset = true;
        Ok(())
    }
}

/// RFC 5321 §3.8: a 421 reply to any command means the server is closing the channel. The
/// reply becomes the connection's error, so the recipients it left undecided get its code and
/// text (a deferral the scheduler's backoff can read), not a bare "connection closed", and the
/// connection is not used again.
fn closing(phase: Phase, reply: Reply) -> Result<Reply, SessionError> {
    if reply.code == 421 {
        Err(SessionError::Rejected { phase, reply })
    } else {
        Ok(reply)
    }
}
