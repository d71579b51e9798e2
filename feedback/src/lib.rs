//! # volley-feedback
//!
//! What comes back after a message has left: asynchronous bounces (RFC 3464 DSNs and plain-text
//! notices from older MTAs), feedback-loop complaints (RFC 5965 ARF) and unsubscribes, each
//! tied to the message it is about by a signed token. No sockets: the inbound listener hands
//! a message and its envelope to [`Intake::process`] and acts on the [`Feedback`].
//!
//! ## Layout
//! - [`key`] — the HMAC keys (key file or environment variable; never printed).
//! - [`token`] — the token codec: campaign tag, recipient line, source IP, kind, truncated
//!   HMAC-SHA256, lower-case base32.
//! - [`verp`] — `bounces+<token>@<bounce domain>` return paths, built and read back.
//! - [`fields`] — header-style field blocks (the body of a delivery-status part).
//! - [`returned`] — the identifying headers of a returned or reported message.
//! - [`dsn`] — RFC 3464 / RFC 6533 delivery status notifications.
//! - [`arf`] — RFC 5965 feedback reports (mail-auth's parser).
//! - [`plain`] — non-standard plain-text bounces (qmail, Exim, Gmail…).
//! - [`event`] — [`Feedback`]: events with stable ids, or a quarantine reason; the
//!   [`BounceClassifier`] trait the scheduler's bounce rules implement.
//! - [`intake`] — one message in, [`Feedback`] out; bounded, never panics.
//! - [`quarantine`] — the quarantine directory (raw message + JSON reason, fsync'd).

pub mod arf;
pub mod dsn;
pub mod event;
pub mod fields;
pub mod intake;
pub mod key;
pub mod plain;
pub mod quarantine;
pub mod returned;
pub mod token;
pub mod verp;

pub use event::{
    BounceClass, BounceClassifier, Event, EventId, EventKind, Feedback, Origin, QuarantineReason, ReportedStatus,
    SuppressAction, UnsubscribeVia,
};
pub use intake::{InboundEnvelope, Intake, DEFAULT_MAX_MESSAGE_BYTES};
pub use key::{KeyError, Keyring};
pub use quarantine::{Quarantine, QuarantineError};
pub use token::{CampaignTag, Token, TokenError, TokenKind};
