//! [`Event`]: what a session hands its driver.

use crate::auth::Credentials;
use crate::command::{MailParams, Path, RcptParams};
use crate::error::SessionError;

/// What the session has for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The input is used up: write the output (the replies of the group), read more.
    NeedInput,
    /// STARTTLS was accepted: write the output (the 220), run the TLS handshake on the same
    /// connection, then call [`Session::tls_established`](crate::Session::tls_established).
    TlsHandshake,
    /// The session is over (QUIT, a 421, a refused greeting): write the output, close.
    Closed,

    /// Decision: EHLO (`extended`) or HELO. [`Session::accept`](crate::Session::accept) sends the capabilities.
    Ehlo {
        /// The client's name.
        domain: &'a str,
        /// EHLO rather than HELO.
        extended: bool,
    },
    /// Decision: MAIL FROM, sequencing and size already checked.
    Mail {
        /// The reverse-path.
        sender: Path<'a>,
        /// Its parameters (only advertised ones get here).
        params: MailParams<'a>,
    },
    /// Decision: RCPT TO, sequencing and the recipient limit already checked.
    Rcpt {
        /// The forward-path.
        recipient: Path<'a>,
        /// Its parameters.
        params: RcptParams<'a>,
    },
    /// Decision: DATA with at least one accepted recipient; a 354 starts the content.
    Data,
    /// Message content, dot-unstuffed (DATA) or as sent (BDAT chunks), in order. Not a
    /// command: needs no answer.
    Content(&'a [u8]),
    /// Not answered yet: a BDAT command (RFC 3030 §2). Its `size` octets follow as
    /// [`Event::Content`] (when the transaction can take them), then its answer comes as
    /// [`Event::BdatChunk`], [`Event::MessageEnd`] (`last`) or [`Event::Rejected`].
    Bdat {
        /// Octets of the chunk.
        size: u64,
        /// `LAST` was given.
        last: bool,
    },
    /// Decision: a BDAT chunk that is not the last has been read (its octets came as
    /// [`Event::Content`]).
    BdatChunk {
        /// Octets of this chunk.
        size: u64,
    },
    /// Decision: the content ended (the final dot, or the last BDAT chunk) within the size
    /// limit. The final reply; the transaction is over whatever it says. A driver that must
    /// make the message durable first does so before answering.
    MessageEnd {
        /// Content octets (after dot-unstuffing).
        size: u64,
        /// Sent with BDAT rather than DATA.
        chunked: bool,
    },
    /// Decision: STARTTLS; a 220 switches the session to [`Event::TlsHandshake`].
    StartTls,
    /// Decision: AUTH with decoded credentials; a 235 authenticates the session. A driver
    /// slows down repeated failures (RFC 4954 §4 leaves it to the server).
    Auth(Credentials),

    /// Answered: RSET (the transaction is reset).
    Rset,
    /// Answered: NOOP.
    Noop,
    /// Answered: HELP.
    Help,
    /// Answered: VRFY (252).
    Vrfy {
        /// What the client asked about.
        argument: &'a str,
    },
    /// Answered: QUIT (221); [`Event::Closed`] follows.
    Quit,
    /// Answered: a line of an AUTH exchange got the next 334 challenge.
    AuthChallenge,
    /// Answered: a command the session refused on its own (its error reply was written).
    Rejected(SessionError),
}

impl Event<'_> {
    /// Whether the driver must answer this event before the next one.
    pub fn needs_decision(&self) -> bool {
        matches!(
            self,
            Event::Ehlo { .. }
                | Event::Mail { .. }
                | Event::Rcpt { .. }
                | Event::Data
                | Event::BdatChunk { .. }
                | Event::MessageEnd { .. }
                | Event::StartTls
                | Event::Auth(_)
        )
    }
}
