//! What the intake makes of one message: events about messages we sent, or a quarantine
//! verdict. Each event has a stable [`EventId`], so a report received twice is counted once.

use std::sync::Arc;

use ring::digest;
use volley_engine::smtp::reply::EnhancedCode;
use volley_engine::{Disposition, Phase, RecipientStatus};

use crate::token::Token;

/// What a bounce does to the suppression list (the bounce rules' action).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SuppressAction {
    /// Suppress the address at once (hard bounce).
    Suppress,
    /// Count a soft bounce.
    Soft,
    /// Never suppress.
    None,
}

/// A bounce's category and suppression action, as the bounce rules give them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BounceClass {
    /// The bounce category (`bad-mailbox`, `quota-issues`, …).
    pub category: String,
    /// What it does to the suppression list.
    pub action: SuppressAction,
}

/// Classifies a remote failure the way synchronous replies are classified (the scheduler's
/// bounce rules implement it), so that there is one classifier for both.
pub trait BounceClassifier {
    /// The class of `status`.
    fn classify(&self, status: &RecipientStatus) -> BounceClass;
}

/// A failure as a reported status: the RFC 3463 code, the SMTP reply code when the report
/// quotes one, and the diagnostic text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReportedStatus {
    /// RFC 3463 status, e.g. `5.1.1` (DSN `Status:`, or found in the text).
    pub status: Option<String>,
    /// The SMTP reply code quoted by the report (`Diagnostic-Code: smtp; 550 …`).
    pub code: Option<u16>,
    /// The diagnostic text (`Diagnostic-Code`, or the bounce's explanation).
    pub diagnostic: String,
}

impl ReportedStatus {
    /// The status as the engine would have reported it synchronously. A report without an SMTP
    /// reply code gets `x50` of its status class (RFC 3464 §2.3.4: the status class says
    /// permanent or transient), so that rules conditioned on `5xx` apply to it as to a reply.
    pub fn to_recipient_status(&self, permanent: bool) -> RecipientStatus {
        let enhanced = self
            .status
            .as_deref()
            .and_then(|s| EnhancedCode::parse_prefix(s).map(|(code, _)| code));
        let class = enhanced.map_or(if permanent { 5 } else { 4 }, |e| u16::from(e.class));
        RecipientStatus {
            disposition: if permanent {
                Disposition::Bounced
            } else {
                Disposition::Deferred
            },
            phase: Phase::DataEnd,
            code: Some(self.code.unwrap_or(class * 100 + 50)),
            enhanced,
            text: Arc::from(self.diagnostic.as_str()),
            maybe_delivered: false,
            sender_fault: false,
        }
    }
}

/// The message an event is about, as far as the report tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The verified token (VERP address, or the reported message's return path).
    pub token: Option<Token>,
    /// The original recipient's address, lower-cased (from the report's fields).
    pub recipient: Option<String>,
    /// The original message's Message-ID, without `<>` (from the returned headers).
    pub message_id: Option<String>,
}

/// One thing a report says about one message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EventKind {
    /// The message failed after it was accepted (DSN `Action: failed`, or a plain bounce).
    Bounce {
        /// The reported status.
        status: ReportedStatus,
        /// Its class under the bounce rules.
        class: BounceClass,
        /// The MTA that reported it (`Reporting-MTA` / `Remote-MTA`), when named.
        mta: Option<String>,
        /// Always true: the bounce came after the SMTP conversation.
        #[serde(rename = "async")]
        asynchronous: bool,
    },
    /// Delivery is delayed (`Action: delayed`): recorded only.
    Delayed {
        /// The reported status.
        status: ReportedStatus,
    },
    /// `Action: delivered`, `relayed` or `expanded`: recorded only.
    Notice {
        /// The DSN action, lower-cased.
        action: String,
        /// The reported status.
        status: ReportedStatus,
    },
    /// An ARF report of type `abuse` or `fraud`: the recipient complained.
    Complaint {
        /// `abuse` or `fraud`.
        feedback_type: String,
        /// The reporter (`User-Agent`), when given.
        user_agent: Option<String>,
    },
    /// An ARF report of another type (`not-spam`, `virus`, `auth-failure`, `other`): recorded.
    Report {
        /// The feedback type.
        feedback_type: String,
    },
    /// An unsubscribe: a message to an `unsubscribe+<token>` address, or a POST to the
    /// one-click endpoint (RFC 8058).
    Unsubscribe {
        /// How it arrived.
        via: UnsubscribeVia,
    },
}

/// How an unsubscribe arrived. Not part of the event's identity: the same recipient
/// unsubscribing by mail and by the link counts once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnsubscribeVia {
    /// Mail to the `mailto:` address of `List-Unsubscribe`.
    Mail,
    /// A POST to the HTTPS address of `List-Unsubscribe` (one-click, or the confirmation
    /// page's button).
    Http,
}

impl EventKind {
    /// The kind's name, as in the JSON form.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Bounce { .. } => "bounce",
            EventKind::Delayed { .. } => "delayed",
            EventKind::Notice { .. } => "notice",
            EventKind::Complaint { .. } => "complaint",
            EventKind::Report { .. } => "report",
            EventKind::Unsubscribe { .. } => "unsubscribe",
        }
    }

    /// The part of the kind that makes two events different (status, feedback type).
    fn identity(&self) -> String {
        match self {
            EventKind::Bounce { status, .. } | EventKind::Delayed { status } => {
                status.status.clone().unwrap_or_default()
            }
            EventKind::Notice { action, status } => format!("{action}/{}", status.status.as_deref().unwrap_or("")),
            EventKind::Complaint { feedback_type, .. } | EventKind::Report { feedback_type } => feedback_type.clone(),
            EventKind::Unsubscribe { .. } => String::new(),
        }
    }
}

/// A hash of what identifies an event (kind, message, status or feedback type), hex: the same
/// report received twice gives the same id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct EventId(pub String);

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// Stable identity, for counting a report once.
    pub id: EventId,
    /// The message it is about.
    pub origin: Origin,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event with its id computed from `origin` and `kind`. The token identifies the
    /// message when there is one; otherwise the recipient and Message-ID do.
    pub fn new(origin: Origin, kind: EventKind) -> Event {
        let message = match &origin.token {
            Some(t) => format!("{}/{}/{}", t.campaign, t.line, t.source_ip),
            None => format!(
                "{}/{}",
                origin.recipient.as_deref().unwrap_or(""),
                origin.message_id.as_deref().unwrap_or("")
            ),
        };
        let identity = format!("{}\0{message}\0{}", kind.name(), kind.identity());
        let hash = digest::digest(&digest::SHA256, identity.as_bytes());
        let id = hash.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        Event {
            id: EventId(id),
            origin,
            kind,
        }
    }
}

/// Why a message is kept in quarantine instead of producing events.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum QuarantineReason {
    /// Larger than the intake's limit (the message was not parsed).
    #[error("message of {size} bytes is over the {max} byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not parseable as an RFC 5322 / MIME message.
    #[error("not a parseable MIME message")]
    NotMime,
    /// A report whose machine-readable part is missing or broken.
    #[error("malformed {report}: {detail}")]
    Malformed {
        /// `delivery-status report`, `feedback report`.
        report: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Neither a DSN, an ARF report, a known plain-text bounce nor an unsubscribe.
    #[error("not a recognised bounce, feedback report or unsubscribe")]
    Unrecognised,
    /// A report about a message it does not identify (no token, no recipient).
    #[error("{report} names no message we can identify")]
    Unidentified {
        /// The kind of report.
        report: &'static str,
    },
    /// A token was present but refused (forged, corrupted, unknown key): never acted on.
    #[error("refused token in {place}: {error}")]
    BadToken {
        /// Where it was: `envelope recipient`, `reported return path`…
        place: &'static str,
        /// Why it was refused.
        error: String,
    },
}

/// What one inbound message amounts to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Feedback {
    /// Events to act on or record (at least one).
    Events {
        /// The events, in report order.
        events: Vec<Event>,
    },
    /// Kept aside for an operator, with the reason.
    Quarantine {
        /// Why.
        reason: QuarantineReason,
    },
}

impl Feedback {
    /// The events (none for a quarantined message).
    pub fn events(&self) -> &[Event] {
        match self {
            Feedback::Events { events } => events,
            Feedback::Quarantine { .. } => &[],
        }
    }

    /// The quarantine reason, if quarantined.
    pub fn quarantine_reason(&self) -> Option<&QuarantineReason> {
        match self {
            Feedback::Quarantine { reason } => Some(reason),
            Feedback::Events { .. } => None,
        }
    }
}
