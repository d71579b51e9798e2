//! The sink's decisions on the mail transaction (RFC 5321 §3.3): MAIL, RCPT, DATA, BDAT
//! chunks and the final reply, with the drops and canned replies that apply to each. The
//! protocol session has already checked sequencing, sizes and the recipient limit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::canned::Stage;
use super::faults::{chance, DropPoint};
use super::feedback::Job;
use super::reply;
use super::session::{domain_of, Flow, Session};
use super::stats::bump;
use super::Shared;

impl Session {
    /// MAIL FROM (its address is in `envelope.current`).
    pub(super) fn mail(&mut self, shared: &Shared) -> Flow {
        bump(&shared.counters.mail_commands);
        self.envelope.reset();
        let drop_at = DropPoint::draw(shared.config.drop_pct);
        if drop_at == Some(DropPoint::Mail) {
            return self.drop_connection(shared, false);
        }
        let flow = match shared.canned.pick(Stage::Mail, "") {
            Some(canned) => {
                let flow = self.answer_canned(canned, Stage::Mail, shared);
                if !canned.is_positive() {
                    return flow;
                }
                flow
            }
            None => {
                let _ = self.smtp.accept();
                Flow::Continue
            }
        };
        self.envelope.drop_at = drop_at;
        if shared.feedback.is_some() {
            let envelope = &mut self.envelope;
            envelope.sender.clone_from(&envelope.current);
        }
        flow
    }

    /// RCPT TO (its address is in `envelope.current`, the last `domain_len` octets being
    /// the domain).
    pub(super) fn rcpt(&mut self, domain_len: usize, shared: &Shared) -> Flow {
        self.envelope.rcpt_commands += 1;
        if self.envelope.drop_at == Some(DropPoint::Rcpt) && self.envelope.rcpt_commands == 1 {
            return self.drop_connection(shared, false);
        }
        let address = &self.envelope.current;
        let split = address.len() - domain_len.min(address.len());
        let domain = &address[split..];
        let local = address[..split].strip_suffix('@').unwrap_or(&address[..split]);
        if shared.config.count_addresses {
            shared
                .rcpt_addresses
                .add(&super::stats::normalize_address(&format!("{local}@{domain}")));
        }
        if shared
            .greylist
            .as_ref()
            .is_some_and(|g| g.defers(self.peer, local, domain))
        {
            bump(&shared.counters.rcpt_tempfails);
            return self.answer(&super::greylist::GREYLISTED);
        }
        if let Some(canned) = shared.canned.pick(Stage::Rcpt, domain) {
            let positive = canned.is_positive();
            let flow = self.answer_canned(canned, Stage::Rcpt, shared);
            if positive {
                self.accept_recipient(split);
            }
            return flow;
        }
        if chance(shared.config.tempfail_pct) {
            bump(&shared.counters.rcpt_tempfails);
            self.answer(&reply::TEMPFAIL)
        } else if chance(shared.config.permfail_pct) {
            bump(&shared.counters.rcpt_permfails);
            self.answer(&reply::PERMFAIL)
        } else {
            self.accept_recipient(split);
            let _ = self.smtp.accept();
            Flow::Continue
        }
    }

    /// Records `envelope.current` (its domain from `split`) as an accepted recipient.
    fn accept_recipient(&mut self, split: usize) {
        let envelope = &mut self.envelope;
        let current = std::mem::take(&mut envelope.current);
        let local = current[..split].strip_suffix('@').unwrap_or(&current[..split]);
        envelope.push_recipient(local, &current[split..]);
        envelope.current = current;
    }

    /// DATA, with at least one accepted recipient.
    pub(super) fn data(&mut self, shared: &Shared) -> Flow {
        if self.envelope.drop_at == Some(DropPoint::Data) {
            return self.drop_connection(shared, false);
        }
        let _ = self.smtp.accept();
        Flow::Continue
    }

    /// A BDAT chunk that is not the last, read in a valid transaction.
    pub(super) fn chunk(&mut self, shared: &Shared) -> Flow {
        // Where DATA would have been dropped instead of its 354: at the first chunk.
        if self.envelope.drop_at == Some(DropPoint::Data) {
            return self.drop_connection(shared, false);
        }
        let _ = self.smtp.accept();
        Flow::Continue
    }

    /// The content has ended (the dot, or the last BDAT chunk) within the size limit: the
    /// final reply of the transaction.
    pub(super) fn finish_message(&mut self, _size: u64, chunked: bool, shared: &Shared) -> Flow {
        match self.envelope.drop_at {
            Some(DropPoint::Data) if chunked => return self.drop_connection(shared, false),
            Some(DropPoint::AfterDot) => return self.drop_connection(shared, true),
            _ => {}
        }
        let mut flow = Flow::Continue;
        let first = self.envelope.recipients().next().unwrap_or("");
        match shared.canned.pick(Stage::Data, domain_of(first)) {
            Some(canned) => {
                if canned.is_positive() {
                    self.count_accepted(shared);
                }
                self.envelope.current.clear();
                let first = self.envelope.recipients().next().unwrap_or("").to_owned();
                self.envelope.current.push_str(&first);
                flow = self.answer_canned(canned, Stage::Data, shared);
            }
            None => {
                self.count_accepted(shared);
                let id = shared.queue_ids.fetch_add(1, Ordering::Relaxed);
                let _ = self.smtp.reply_with(250, |out| reply::push_queued(out, id));
            }
        }
        self.envelope.reset();
        flow
    }

    /// Counts an accepted message. Called when its 2xx is queued for the next write, so the
    /// counts are visible by the time the client reads the reply.
    fn count_accepted(&self, shared: &Shared) {
        let counters = &shared.counters;
        bump(&counters.messages);
        let recipients = self.envelope.recipient_count() as u64;
        counters.recipients.fetch_add(recipients, Ordering::Relaxed);
        if shared.config.count_addresses {
            for address in self.envelope.recipients() {
                shared.addresses.add(address);
            }
        }
        self.queue_feedback(shared);
    }

    /// Queues the complaints and late bounces due for the accepted message's recipients
    /// (`sink/feedback.rs`); the session does not wait for them.
    fn queue_feedback(&self, shared: &Shared) {
        let Some(outbox) = &shared.feedback else { return };
        let envelope = &self.envelope;
        if envelope.sender.is_empty() {
            // A report itself (null sender): nothing goes back (RFC 5321 §4.5.5).
            return;
        }
        let mut headers: Option<Arc<[u8]>> = None;
        for recipient in envelope.recipients() {
            let Some(kind) = shared.config.feedback_for(recipient) else {
                continue;
            };
            let headers = headers.get_or_insert_with(|| Arc::from(envelope.headers.bytes()));
            let job = Job {
                kind,
                return_path: envelope.sender.clone(),
                recipient: recipient.to_owned(),
                headers: Arc::clone(headers),
                client: self.peer,
                arrival: SystemTime::now(),
            };
            outbox.submit(job, &shared.counters);
        }
    }
}
