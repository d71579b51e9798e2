//! Per-recipient outcomes: what the engine reports for every recipient it was given.

use std::sync::Arc;

use crate::error::SessionError;
use crate::phase::Phase;
use crate::smtp::reply::{EnhancedCode, Reply};

/// The engine's verdict for one recipient of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// 2xx after the final dot: the receiving server took responsibility.
    Delivered,
    /// 4xx or a connection problem: try again later.
    Deferred,
    /// 5xx: permanent failure.
    Bounced,
}

/// One recipient's result: the disposition and the reply (or local error) behind it.
#[derive(Clone, Debug)]
pub struct RecipientStatus {
    /// Delivered, deferred or bounced.
    pub disposition: Disposition,
    /// The phase that decided it.
    pub phase: Phase,
    /// The server's reply code, when a reply decided it.
    pub code: Option<u16>,
    /// The enhanced status code, when the server sent one.
    pub enhanced: Option<EnhancedCode>,
    /// The reply text (lines joined by spaces) or the local error message.
    pub text: Arc<str>,
    /// True when the connection failed after the whole message and the final dot were sent but
    /// before the reply (the RFC 1047 window): the message may have been delivered, so a retry
    /// can produce a duplicate.
    pub maybe_delivered: bool,
    /// The sending side caused it (see [`SessionError::is_sender_fault`]; a reply to MAIL
    /// FROM is about the sender): it says nothing about the recipient's address.
    pub sender_fault: bool,
}

impl RecipientStatus {
    /// Whether a refusal at the greeting decided it that names the receiver's cap on
    /// connections from this client (see [`crate::error::names_connection_cap`]): the host is
    /// up, serving others on this address.
    pub fn is_connection_cap(&self) -> bool {
        matches!(self.phase, Phase::Banner | Phase::Ehlo)
            && self
                .code
                .is_some_and(|code| crate::error::names_connection_cap(code, &self.text))
    }

    /// The status a reply gives in `phase`: 2xx delivered (only meaningful after the final
    /// dot), 4xx deferred, 5xx bounced; anything unexpected (a 3xx where none belongs) deferred.
    pub fn from_reply(phase: Phase, reply: &Reply) -> RecipientStatus {
        let disposition = if reply.is_positive() && phase == Phase::DataEnd {
            Disposition::Delivered
        } else if reply.is_permanent() {
            Disposition::Bounced
        } else {
            Disposition::Deferred
        };
        RecipientStatus {
            disposition,
            phase,
            code: Some(reply.code),
            enhanced: reply.enhanced,
            text: Arc::from(reply.text.replace('\n', " ")),
            maybe_delivered: false,
            sender_fault: phase == Phase::MailFrom,
        }
    }

    /// The status a local or connection error gives: transient errors defer, permanent ones
    /// (an address that cannot be sent, a message over the SIZE limit) bounce. A message over
    /// the SIZE limit gets RFC 3463 `5.3.4` (message too big for system).
    pub fn from_error(error: &SessionError) -> RecipientStatus {
        if let Some(reply) = error.reply() {
            let mut status = RecipientStatus::from_reply(error.phase(), reply);
            status.sender_fault |= error.is_sender_fault();
            return status;
        }
        let enhanced = match error {
            SessionError::TooBig { .. } => Some(EnhancedCode {
                class: 5,
                subject: 3,
                detail: 4,
            }),
            // RFC 3463 §3.8 X.7.5: cryptographic failure (temporary: the policy may change).
            SessionError::MtaSts { .. } => Some(EnhancedCode {
                class: 4,
                subject: 7,
                detail: 5,
            }),
            _ => None,
        };
        RecipientStatus {
            disposition: if error.is_transient() {
                Disposition::Deferred
            } else {
                Disposition::Bounced
            },
            phase: error.phase(),
            code: None,
            enhanced,
            text: Arc::from(error.to_string()),
            maybe_delivered: false,
            sender_fault: error.is_sender_fault(),
        }
    }
}
