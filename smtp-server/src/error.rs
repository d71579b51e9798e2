//! Errors of a session: everything the session answers on its own with a 4xx/5xx, and the
//! driver's misuse of the decision API.

use crate::auth::SaslError;
use crate::command::{CommandError, Verb};
use crate::reply::{EnhancedCode, Reply};

/// A command the session refused on its own; [`SessionError::reply`] was already written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The line is not a valid command (500/501/555).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// MAIL (or AUTH) before EHLO/HELO (503 5.5.1).
    #[error("{verb} before EHLO/HELO")]
    GreetFirst {
        /// The command.
        verb: Verb,
    },
    /// MAIL inside a transaction (503 5.5.1).
    #[error("nested MAIL command")]
    NestedMail,
    /// RCPT, DATA or BDAT without a transaction (503 5.5.1).
    #[error("{verb} without MAIL")]
    NeedMail {
        /// The command.
        verb: Verb,
    },
    /// DATA or BDAT with no accepted recipient (RFC 2920 §3.1: 554 5.5.1).
    #[error("{verb} with no valid recipient")]
    NoRecipients {
        /// The command.
        verb: Verb,
    },
    /// DATA after BDAT chunks, or with `BODY=BINARYMIME` (RFC 3030 §3; 503 5.5.1).
    #[error("DATA in a transaction that needs BDAT")]
    DataAfterBdat,
    /// A command this session does not offer: BDAT without CHUNKING, STARTTLS or AUTH not
    /// configured (502 5.5.1).
    #[error("{verb} not implemented")]
    NotOffered {
        /// The command.
        verb: Verb,
    },
    /// STARTTLS under TLS (503 5.5.1).
    #[error("TLS already active")]
    TlsActive,
    /// STARTTLS or AUTH inside a transaction (503 5.5.1).
    #[error("{verb} inside a mail transaction")]
    TransactionInProgress {
        /// The command.
        verb: Verb,
    },
    /// A second AUTH (RFC 4954 §4; 503 5.5.1).
    #[error("already authenticated")]
    AlreadyAuthenticated,
    /// AUTH with a mechanism not offered (504 5.5.4).
    #[error("unrecognized authentication mechanism")]
    UnknownMechanism,
    /// AUTH before STARTTLS where it needs TLS (RFC 4954 §6; 538 5.7.11).
    #[error("AUTH requires TLS")]
    EncryptionRequired,
    /// MAIL before STARTTLS where the listener requires TLS (530 5.7.0).
    #[error("MAIL requires TLS")]
    TlsRequired,
    /// MAIL before AUTH where the listener requires it (RFC 4954 §6; 530 5.7.0).
    #[error("MAIL requires authentication")]
    AuthRequired,
    /// The AUTH exchange failed: cancelled (501 5.0.0) or malformed (501 5.5.2).
    #[error(transparent)]
    Sasl(#[from] SaslError),
    /// RCPT beyond the recipient limit (RFC 5321 §4.5.3.1.10; 452 4.5.3).
    #[error("too many recipients")]
    TooManyRecipients,
    /// A `SIZE=` declaration (at MAIL) or content (at its end) above the limit (RFC 1870;
    /// 552 5.3.4). The transaction is over.
    #[error("message size exceeds the limit (at {verb})")]
    MessageTooBig {
        /// MAIL (declaration), DATA or BDAT (content).
        verb: Verb,
    },
    /// The driver asked for the next event without answering the previous decision; the
    /// session answered 451 4.3.0 in its place.
    #[error("the driver did not answer a decision")]
    DecisionMissing,
}

impl SessionError {
    /// The command refused, when known.
    pub fn verb(&self) -> Option<Verb> {
        match self {
            SessionError::Command(e) => e.verb(),
            SessionError::GreetFirst { verb }
            | SessionError::NeedMail { verb }
            | SessionError::NoRecipients { verb }
            | SessionError::NotOffered { verb }
            | SessionError::TransactionInProgress { verb }
            | SessionError::MessageTooBig { verb } => Some(*verb),
            SessionError::NestedMail | SessionError::TlsRequired | SessionError::AuthRequired => Some(Verb::Mail),
            SessionError::DataAfterBdat => Some(Verb::Data),
            SessionError::TlsActive => Some(Verb::StartTls),
            SessionError::AlreadyAuthenticated
            | SessionError::UnknownMechanism
            | SessionError::EncryptionRequired
            | SessionError::Sasl(_) => Some(Verb::Auth),
            SessionError::TooManyRecipients => Some(Verb::Rcpt),
            SessionError::DecisionMissing => None,
        }
    }

    /// A syntax error (the line did not parse), as opposed to a refusal in context.
    pub fn is_syntax(&self) -> bool {
        matches!(self, SessionError::Command(_))
    }

    /// The reply: 4xx for [`TooManyRecipients`](Self::TooManyRecipients) and
    /// [`DecisionMissing`](Self::DecisionMissing), 5xx otherwise.
    pub fn reply(&self) -> Reply {
        let seq = |text| Reply::new(503, EnhancedCode::new(5, 5, 1), text);
        match self {
            SessionError::Command(e) => e.reply(),
            SessionError::GreetFirst { .. } => seq("Error: send HELO/EHLO first"),
            SessionError::NestedMail => seq("Error: nested MAIL command"),
            SessionError::NeedMail { .. } => seq("Error: need MAIL command"),
            SessionError::NoRecipients { .. } => {
                Reply::new(554, EnhancedCode::new(5, 5, 1), "Error: no valid recipients")
            }
            SessionError::DataAfterBdat => seq("Error: this transaction needs BDAT"),
            SessionError::NotOffered { .. } => {
                Reply::new(502, EnhancedCode::new(5, 5, 1), "Error: command not implemented")
            }
            SessionError::TlsActive => seq("Error: TLS already active"),
            SessionError::TransactionInProgress { .. } => seq("Error: MAIL transaction in progress"),
            SessionError::AlreadyAuthenticated => seq("Error: already authenticated"),
            SessionError::UnknownMechanism => {
                Reply::new(504, EnhancedCode::new(5, 5, 4), "Unrecognized authentication mechanism")
            }
            SessionError::EncryptionRequired => Reply::new(
                538,
                EnhancedCode::new(5, 7, 11),
                "Encryption required for requested authentication mechanism",
            ),
            SessionError::TlsRequired => {
                Reply::new(530, EnhancedCode::new(5, 7, 0), "Must issue a STARTTLS command first")
            }
            SessionError::AuthRequired => Reply::new(530, EnhancedCode::new(5, 7, 0), "Authentication required"),
            SessionError::Sasl(SaslError::Cancelled) => {
                Reply::new(501, EnhancedCode::new(5, 0, 0), "Authentication cancelled")
            }
            SessionError::Sasl(SaslError::Malformed) => {
                Reply::new(501, EnhancedCode::new(5, 5, 2), "Malformed authentication response")
            }
            SessionError::TooManyRecipients => {
                Reply::new(452, EnhancedCode::new(4, 5, 3), "Error: too many recipients")
            }
            SessionError::MessageTooBig { .. } => Reply::new(
                552,
                EnhancedCode::new(5, 3, 4),
                "Message size exceeds fixed maximum message size",
            ),
            SessionError::DecisionMissing => crate::reply::LOCAL_ERROR,
        }
    }
}

/// The driver answered when no decision was pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no decision is pending: the last event was answered already or needed no answer")]
pub struct NoPendingDecision;
