//! A batch of transactions over PIPELINING (RFC 2920) at one round trip per message.
//!
//! With DATA, the content of transaction i and the envelope of transaction i+1 go out in one
//! write (RFC 2920 §3.1: "the actual transfer of message content is explicitly allowed to be
//! the first command in a group"):
//!
//! ```text
//! C: [RSET] MAIL RCPT.. DATA            S: [250] 250 250.. 354
//! C: content(1) . MAIL RCPT.. DATA      S: 250(1) 250 250.. 354
//! C: content(n) .                       S: 250(n)
//! ```
//!
//! so n messages cost n + 1 round trips. With CHUNKING (RFC 3030), each message is one group
//! `[RSET] MAIL RCPT.. BDAT <size> LAST <content>` and one round trip.
//!
//! Reply accounting is exact: every command of a group has its reply read in order, a
//! refused MAIL or RCPT leaves the later replies of the group to read (the server answers a
//! BDAT after a failed envelope with an error, RFC 3030 §2), and when the connection breaks
//! the replies not read decide nothing: their recipients are deferred with the error.

use super::command;
use super::dot::DataPayload;
use super::reply::Reply;
use super::session::{ContentOrder, SmtpSession};
use super::transaction::{closing, envelope_verdict, mail_params, Content, Envelope, Outgoing, Progress, Transaction};
use crate::error::SessionError;
use crate::phase::Phase;

/// The command that ends a transaction's envelope.
#[derive(Clone, Copy)]
enum EnvelopeEnd {
    /// `DATA`: the content follows the 354.
    Data,
    /// `BDAT <size> LAST`: the content follows at once.
    BdatLast(u64),
}

/// A transaction whose content goes out with the next group.
struct Pending {
    message: usize,
    content: Content,
}

impl SmtpSession {
    /// DATA transactions, the content of each written together with the next envelope.
    pub(super) async fn data_batch(
        &mut self,
        messages: &[Outgoing<'_>],
        transactions: &[Transaction],
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        let mut pending: Option<Pending> = None;
        for t in transactions {
            let (envelope, payload) = messages[t.message];
            let rset = self.encode_envelope(envelope, payload, &t.recipients, EnvelopeEnd::Data);
            progress.written += 1;
            match &pending {
                Some(p) => {
                    let bytes = p.content.bytes(messages[p.message].1);
                    self.write_with_content(&bytes, ContentOrder::BeforeCommands, Phase::DataBlock)
                        .await?;
                }
                None => self.write_wbuf(Phase::MailFrom).await?,
            }
            if let Some(p) = pending.take() {
                self.final_reply(&p.content.accepted, &mut progress.statuses[p.message])
                    .await?;
                progress.finish(p.message);
            }
            let statuses = &mut progress.statuses[t.message];
            let (mail, rcpts) = self.read_envelope(rset, t.recipients.len()).await?;
            let data = closing(Phase::Data, self.read_reply(Phase::Data).await?)?;
            let accepted = envelope_verdict(&mail, &rcpts, &t.recipients, statuses);
            pending = self.data_verdict(&data, accepted, statuses).map(|content| Pending {
                message: t.message,
                content,
            });
            if pending.is_none() {
                progress.finish(t.message);
            }
        }
        if let Some(p) = pending {
            let bytes = p.content.bytes(messages[p.message].1);
            self.write_bytes(&bytes, Phase::DataBlock).await?;
            self.final_reply(&p.content.accepted, &mut progress.statuses[p.message])
                .await?;
            progress.finish(p.message);
        }
        Ok(())
    }

    /// BDAT transactions (RFC 3030): each one group, envelope and content, and one round trip.
    pub(super) async fn bdat_batch(
        &mut self,
        messages: &[Outgoing<'_>],
        transactions: &[Transaction],
        progress: &mut Progress,
    ) -> Result<(), SessionError> {
        for t in transactions {
            let (envelope, payload) = messages[t.message];
            // Unstuffed: BDAT carries the message octets as they are.
            let content = payload.content();
            let end = EnvelopeEnd::BdatLast(content.len() as u64);
            let rset = self.encode_envelope(envelope, payload, &t.recipients, end);
            progress.written += 1;
            self.write_with_content(&content, ContentOrder::AfterCommands, Phase::DataBlock)
                .await?;
            let statuses = &mut progress.statuses[t.message];
            let (mail, rcpts) = self.read_envelope(rset, t.recipients.len()).await?;
            let accepted = envelope_verdict(&mail, &rcpts, &t.recipients, statuses);
            // The chunk went out whatever the envelope replies were; its reply comes either way
            // and decides the accepted recipients.
            let reply = self.final_reply(&accepted, statuses).await?;
            self.needs_rset = accepted.is_empty() || !reply.is_positive();
            progress.finish(t.message);
        }
        Ok(())
    }

    /// Puts `[RSET] MAIL FROM, RCPT TO.., DATA | BDAT` into the write buffer. Returns whether
    /// RSET leads the group (its reply comes first). From here until the transaction's final
    /// reply, the next transaction needs a reset.
    fn encode_envelope(
        &mut self,
        envelope: &Envelope,
        payload: &DataPayload,
        recipients: &[usize],
        end: EnvelopeEnd,
    ) -> bool {
        let rset = std::mem::replace(&mut self.needs_rset, true);
        let params = mail_params(&self.caps, payload);
        self.wbuf.clear();
        if rset {
            command::rset(&mut self.wbuf);
        }
        command::mail_from(&mut self.wbuf, &envelope.mail_from, params);
        for &i in recipients {
            command::rcpt_to(&mut self.wbuf, &envelope.recipients[i]);
        }
        match end {
            EnvelopeEnd::Data => command::data(&mut self.wbuf),
            EnvelopeEnd::BdatLast(size) => command::bdat_last(&mut self.wbuf, size),
        }
        rset
    }

    /// Reads the replies to `[RSET] MAIL FROM` and `count` RCPT TO, in order.
    async fn read_envelope(&mut self, rset: bool, count: usize) -> Result<(Reply, Vec<Reply>), SessionError> {
        if rset {
            self.expect_rset().await?;
        }
        let mail = closing(Phase::MailFrom, self.read_reply(Phase::MailFrom).await?)?;
        let mut rcpts = Vec::with_capacity(count);
        for _ in 0..count {
            rcpts.push(closing(Phase::RcptTo, self.read_reply(Phase::RcptTo).await?)?);
        }
        Ok((mail, rcpts))
    }
}
