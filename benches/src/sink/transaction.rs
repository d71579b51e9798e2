//! The mail transaction (RFC 5321 §3.3): MAIL, RCPT, DATA and the final reply, with the
//! faults and canned replies that apply to each.

use std::sync::atomic::Ordering;

use super::canned::Stage;
use super::command::Path;
use super::faults::{chance, DropPoint};
use super::reply;
use super::session::{domain_of, Flow, Session};
use super::stats::bump;
use super::Shared;

/// Recipients accepted per transaction; RFC 5321 §4.5.3.1.8 requires at least 100.
pub(crate) const MAX_RECIPIENTS: usize = 1000;

impl Session {
    pub(super) fn mail(&mut self, sender: &Path<'_>, size: Option<u64>, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        bump(&shared.counters.mail_commands);
        if !self.greeted {
            reply::push(out, reply::GREET_FIRST);
            return Flow::Continue;
        }
        if self.envelope.active {
            reply::push(out, reply::NESTED_MAIL);
            return Flow::Continue;
        }
        // RFC 1870 §6.1: a declared size above the limit is refused at MAIL.
        if size.is_some_and(|size| size > shared.config.max_message_size as u64) {
            reply::push(out, reply::TOO_BIG);
            return Flow::Continue;
        }
        self.envelope.reset();
        let drop_at = DropPoint::draw(shared.config.drop_pct);
        if drop_at == Some(DropPoint::Mail) {
            return self.drop_connection(shared, false);
        }
        if let Some(canned) = shared.canned.pick(Stage::Mail, "") {
            bump(&shared.counters.canned_replies);
            let vars = self.placeholders(sender.address());
            reply::push_canned(out, &canned.text, &vars);
            if canned.is_positive() {
                self.envelope.active = true;
                self.envelope.drop_at = drop_at;
            }
            return if canned.closes(Stage::Mail) {
                Flow::Close
            } else {
                Flow::Continue
            };
        }
        self.envelope.active = true;
        self.envelope.drop_at = drop_at;
        reply::push(out, reply::SENDER_OK);
        Flow::Continue
    }

    pub(super) fn rcpt(&mut self, recipient: &Path<'_>, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        if !self.envelope.active {
            reply::push(out, reply::NEED_MAIL);
            return Flow::Continue;
        }
        self.envelope.rcpt_commands += 1;
        if self.envelope.drop_at == Some(DropPoint::Rcpt) && self.envelope.rcpt_commands == 1 {
            return self.drop_connection(shared, false);
        }
        if self.envelope.recipient_count() >= MAX_RECIPIENTS {
            reply::push(out, reply::TOO_MANY_RECIPIENTS);
            return Flow::Continue;
        }
        let Path::Mailbox { local, domain, .. } = *recipient else {
            // The parser never yields a null forward-path; answer as it would.
            reply::push(out, "501 5.1.3 Bad recipient address syntax");
            return Flow::Continue;
        };
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
            reply::push(out, super::greylist::GREYLISTED);
            return Flow::Continue;
        }
        if let Some(canned) = shared.canned.pick(Stage::Rcpt, domain) {
            bump(&shared.counters.canned_replies);
            reply::push_canned(out, &canned.text, &self.placeholders(recipient.address()));
            if canned.is_positive() {
                self.envelope.push_recipient(local, domain);
            }
            return if canned.closes(Stage::Rcpt) {
                Flow::Close
            } else {
                Flow::Continue
            };
        }
        if chance(shared.config.tempfail_pct) {
            bump(&shared.counters.rcpt_tempfails);
            reply::push(out, reply::TEMPFAIL);
        } else if chance(shared.config.permfail_pct) {
            bump(&shared.counters.rcpt_permfails);
            reply::push(out, reply::PERMFAIL);
        } else {
            self.envelope.push_recipient(local, domain);
            reply::push(out, reply::RECIPIENT_OK);
        }
        Flow::Continue
    }

    pub(super) fn data(&mut self, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        if !self.envelope.active {
            reply::push(out, reply::NEED_MAIL);
            return Flow::Continue;
        }
        // RFC 2920 §3.1: a pipelined DATA after only failed RCPTs gets 554, not 354.
        if self.envelope.recipient_count() == 0 {
            reply::push(out, reply::NO_RECIPIENTS);
            return Flow::Continue;
        }
        if self.envelope.drop_at == Some(DropPoint::Data) {
            return self.drop_connection(shared, false);
        }
        reply::push(out, reply::START_DATA);
        self.begin_data();
        Flow::Continue
    }

    /// A BDAT chunk's octets have all been read (RFC 3030 §2): its reply. A chunk outside a
    /// transaction, or of one without an accepted recipient, was read and is discarded; the
    /// last chunk ends the transaction whatever its reply.
    pub(super) fn finish_chunk(&mut self, last: bool, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        bump(&shared.counters.bdat_chunks);
        let size = self.envelope.chunk_octets;
        if !self.envelope.active {
            reply::push(out, reply::NEED_MAIL);
            return Flow::Continue;
        }
        if self.envelope.recipient_count() == 0 {
            reply::push(out, reply::NO_RECIPIENTS);
            if last {
                self.envelope.reset();
            }
            return Flow::Continue;
        }
        // Where DATA would have been dropped instead of its 354: at the first chunk.
        if self.envelope.drop_at == Some(DropPoint::Data) {
            return self.drop_connection(shared, false);
        }
        if !last {
            reply::push(out, reply::CHUNK_OK);
            return Flow::Continue;
        }
        self.finish_message(size, shared, out)
    }

    /// Counts the octets of a BDAT chunk into the transaction (before `finish_chunk`).
    pub(super) fn add_chunk_octets(&mut self, octets: u64) {
        self.envelope.chunk_octets = self.envelope.chunk_octets.saturating_add(octets);
    }

    /// The content has ended (the dot was read, or the last BDAT chunk): the final reply of
    /// the transaction. `size` is the content's size in octets.
    pub(super) fn finish_message(&mut self, size: u64, shared: &Shared, out: &mut Vec<u8>) -> Flow {
        if self.envelope.drop_at == Some(DropPoint::AfterDot) {
            return self.drop_connection(shared, true);
        }
        let mut flow = Flow::Continue;
        if size > shared.config.max_message_size as u64 {
            // RFC 1870 §6.2: the content is read to the end, then refused.
            reply::push(out, reply::TOO_BIG);
        } else {
            let first = self.envelope.recipients().next().unwrap_or("");
            match shared.canned.pick(Stage::Data, domain_of(first)) {
                Some(canned) => {
                    bump(&shared.counters.canned_replies);
                    reply::push_canned(out, &canned.text, &self.placeholders(first));
                    if canned.is_positive() {
                        self.accept(shared);
                    }
                    if canned.closes(Stage::Data) {
                        flow = Flow::Close;
                    }
                }
                None => {
                    self.accept(shared);
                    let id = shared.queue_ids.fetch_add(1, Ordering::Relaxed);
                    reply::push_queued(out, id);
                }
            }
        }
        self.envelope.reset();
        flow
    }

    /// Counts an accepted message. Called when its 2xx is queued for the next write, so the
    /// counts are visible by the time the client reads the reply.
    fn accept(&self, shared: &Shared) {
        let counters = &shared.counters;
        bump(&counters.messages);
        let recipients = self.envelope.recipient_count() as u64;
        counters.recipients.fetch_add(recipients, Ordering::Relaxed);
        if shared.config.count_addresses {
            for address in self.envelope.recipients() {
                shared.addresses.add(address);
            }
        }
    }

    fn drop_connection(&mut self, shared: &Shared, after_data: bool) -> Flow {
        bump(&shared.counters.drops);
        if after_data {
            bump(&shared.counters.drops_after_data);
        }
        tracing::debug!(peer = %self.peer, after_data, "sink: injected connection drop");
        self.envelope.reset();
        Flow::Drop
    }
}
