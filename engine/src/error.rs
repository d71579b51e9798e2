//! Session errors that classify themselves, so policy code never matches on strings.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::phase::Phase;
use crate::smtp::command::CommandError;
use crate::smtp::reply::{Reply, ReplyError};

/// Why an SMTP session or transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The source IP could not be bound (not configured on this host?).
    #[error("cannot bind source address {source_ip}: {error}")]
    Bind {
        /// The source IP.
        source_ip: IpAddr,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// The TCP connection could not be opened.
    #[error("cannot connect from {source_ip} to {mx}: {error}")]
    Connect {
        /// The source IP.
        source_ip: IpAddr,
        /// The destination address.
        mx: SocketAddr,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// A phase took longer than its timeout (RFC 5321 §4.5.3.2).
    #[error("timed out after {after:?} during {phase}")]
    Timeout {
        /// The phase that timed out.
        phase: Phase,
        /// The timeout that expired.
        after: Duration,
    },
    /// The server closed the connection.
    #[error("connection closed by the server during {phase}")]
    Closed {
        /// The phase in which the close was noticed.
        phase: Phase,
    },
    /// A read or write failed.
    #[error("I/O error during {phase}: {error}")]
    Io {
        /// The phase.
        phase: Phase,
        /// The OS error.
        #[source]
        error: io::Error,
    },
    /// The server sent something that is not an SMTP reply.
    #[error("bad reply during {phase}: {error}")]
    Protocol {
        /// The phase.
        phase: Phase,
        /// What was wrong with the reply.
        #[source]
        error: ReplyError,
    },
    /// The server answered a session-level command (greeting, EHLO, STARTTLS) negatively.
    #[error("server refused {phase}: {reply}")]
    Rejected {
        /// The phase.
        phase: Phase,
        /// The server's reply.
        reply: Reply,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {mx} failed: {reason}")]
    Tls {
        /// The MX host name.
        mx: String,
        /// The TLS library's message.
        reason: String,
    },
    /// The TLS policy is `required` but the server does not offer STARTTLS.
    #[error("TLS is required but {mx} does not offer STARTTLS")]
    TlsNotOffered {
        /// The MX host name.
        mx: String,
    },
    /// The recipient domain's MTA-STS policy (`enforce`, RFC 8461 §5) refused the session:
    /// the MX host is not in the policy, offers no STARTTLS, or its certificate does not
    /// verify. Nothing was sent.
    #[error("MTA-STS enforce for {domain}: {failure}")]
    MtaSts {
        /// The policy domain.
        domain: std::sync::Arc<str>,
        /// What failed, naming the MX host.
        failure: crate::mta_sts::StsFailure,
    },
    /// An address or name that cannot be put into a command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The message is larger than the server's advertised SIZE (RFC 1870).
    #[error("message of {size} octets exceeds the server's SIZE limit of {limit}")]
    TooBig {
        /// The message size.
        size: u64,
        /// The advertised limit.
        limit: u64,
    },
}

/// Lower-case texts of greeting refusals that are volume or reputation throttles (see
/// [`SessionError::is_throttle_at_greeting`]): Yahoo's `[TSS0x]`/`[TS0x]` codes and the
/// wording providers use for deferrals by volume, rate or complaints.
const THROTTLE_TEXTS: &[&str] = &[
    "[tss0",
    "[ts0",
    "temporarily deferred",
    "unexpected volume",
    "user complaints",
    "rate limit",
    "rate-limit",
    "too many messages",
];

/// Lower-case texts that name a connection count: such a refusal is a cap, whatever else the
/// text says.
const CONNECTION_COUNT_TEXTS: &[&str] = &["connection", "concurrent", "sessions"];

/// Whether a 4xx reply's text names the receiver's cap on connections from one client:
/// "too many" connections, concurrent sessions… (Postfix's `421 4.7.0 Error: too many
/// connections from 192.0.2.1`, Exim's `Too many concurrent SMTP connections from this IP`).
/// The receiver is up and serving someone else on this address — another node, another MTA
/// behind the same NAT: a reason to wait for a slot, not to call the host down.
pub fn names_connection_cap(code: u16, text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    code / 100 == 4 && text.contains("too many") && CONNECTION_COUNT_TEXTS.iter().any(|t| text.contains(t))
}

impl SessionError {
    /// The phase in which the error happened.
    pub fn phase(&self) -> Phase {
        match self {
            SessionError::Bind { .. } | SessionError::Connect { .. } => Phase::Connect,
            SessionError::Timeout { phase, .. }
            | SessionError::Closed { phase }
            | SessionError::Io { phase, .. }
            | SessionError::Protocol { phase, .. }
            | SessionError::Rejected { phase, .. } => *phase,
            SessionError::Tls { .. } | SessionError::TlsNotOffered { .. } | SessionError::MtaSts { .. } => {
                Phase::StartTls
            }
            SessionError::Command(_) => Phase::RcptTo,
            SessionError::TooBig { .. } => Phase::MailFrom,
        }
    }

    /// Whether the STARTTLS upgrade broke down (handshake error, a timeout, a close or an
    /// unreadable reply while upgrading): what opportunistic TLS answers by retrying in clear
    /// (RFC 7435 §3). Not a missing STARTTLS offer nor a refusal.
    pub fn is_starttls_failure(&self) -> bool {
        match self {
            SessionError::Tls { .. } => true,
            SessionError::Timeout { phase, .. }
            | SessionError::Closed { phase }
            | SessionError::Io { phase, .. }
            | SessionError::Protocol { phase, .. } => *phase == Phase::StartTls,
            _ => false,
        }
    }

    /// Whether a new connection was turned away at its start the way a receiver at its
    /// connection cap does it: a transient (4xx) refusal of the greeting or EHLO ("421 4.7.0
    /// too many connections"), or the connection closed or reset before the greeting was
    /// complete, or refused at the TCP level. While other connections to the same host work,
    /// that is the host's limit, not its failure.
    pub fn is_connection_refusal(&self) -> bool {
        let at_greeting = |phase: &Phase| matches!(phase, Phase::Banner | Phase::Ehlo);
        let reset = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe
            )
        };
        match self {
            SessionError::Rejected { phase, reply } => at_greeting(phase) && reply.code / 100 == 4,
            SessionError::Closed { phase } => at_greeting(phase),
            SessionError::Io { phase, error } => at_greeting(phase) && reset(error),
            SessionError::Connect { error, .. } => error.kind() == io::ErrorKind::ConnectionRefused || reset(error),
            _ => false,
        }
    }

    /// Whether a refusal at the greeting (see [`SessionError::is_connection_refusal`]) is a
    /// receiver's volume or reputation throttle rather than its connection cap: a 4xx whose
    /// text says so (Yahoo's `421 4.7.0 [TSS04] Messages from … temporarily deferred due to
    /// unexpected volume or user complaints`, "rate limited", …) and does not speak of
    /// connections. Such a refusal comes at any number of open connections; it says nothing
    /// about how many the receiver allows.
    pub fn is_throttle_at_greeting(&self) -> bool {
        let SessionError::Rejected { phase, reply } = self else {
            return false;
        };
        if !matches!(phase, Phase::Banner | Phase::Ehlo) || reply.code / 100 != 4 {
            return false;
        }
        let text = reply.text.to_ascii_lowercase();
        !CONNECTION_COUNT_TEXTS.iter().any(|t| text.contains(t)) && THROTTLE_TEXTS.iter().any(|t| text.contains(t))
    }

    /// Whether this is a refusal at the greeting naming the receiver's cap on connections
    /// from this client (see [`names_connection_cap`]).
    pub fn is_connection_cap(&self) -> bool {
        matches!(self, SessionError::Rejected { phase: Phase::Banner | Phase::Ehlo, reply }
            if names_connection_cap(reply.code, &reply.text))
    }

    /// Whether trying again later may succeed (4xx replies, network trouble, missing TLS).
    pub fn is_transient(&self) -> bool {
        match self {
            SessionError::Rejected { reply, .. } => !reply.is_permanent(),
            SessionError::Command(_) | SessionError::TooBig { .. } => false,
            _ => true,
        }
    }

    /// Whether the sending side caused the failure — Volley's own configuration or the
    /// envelope sender, not the recipient: a source IP that cannot be bound, a message Volley
    /// refused to send because it exceeds the server's SIZE, `tls = "required"` against a host
    /// without STARTTLS (or an MX host failing the recipient domain's MTA-STS policy: the host
    /// is not down, Volley's policy refused it), or a refusal of MAIL FROM. Such a failure says
    /// nothing about the recipient's address and must not count against it.
    pub fn is_sender_fault(&self) -> bool {
        match self {
            SessionError::Bind { .. }
            | SessionError::TooBig { .. }
            | SessionError::TlsNotOffered { .. }
            | SessionError::MtaSts { .. } => true,
            SessionError::Rejected { phase, .. } => *phase == Phase::MailFrom,
            _ => false,
        }
    }

    /// Whether the connection (not the message) is at fault: another message would fail the
    /// same way on this connection, and the connection cannot be used any more.
    pub fn is_connection_fault(&self) -> bool {
        !self.was_due_to_message()
    }

    /// Whether the message itself caused the failure (an invalid address, too large).
    pub fn was_due_to_message(&self) -> bool {
        matches!(self, SessionError::Command(_) | SessionError::TooBig { .. })
    }

    /// The server's reply, when the error is one.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SessionError::Rejected { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_failures_include_timeouts_but_not_refusals() {
        let timeout = SessionError::Timeout {
            phase: Phase::StartTls,
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_starttls_failure(), "a stalled handshake is a failed one");
        let handshake = SessionError::Tls {
            mx: "mx.test".into(),
            reason: "bad record".into(),
        };
        assert!(handshake.is_starttls_failure());
        assert!(SessionError::Closed { phase: Phase::StartTls }.is_starttls_failure());
        assert!(!SessionError::Closed { phase: Phase::Ehlo }.is_starttls_failure());
        let not_offered = SessionError::TlsNotOffered { mx: "mx.test".into() };
        assert!(!not_offered.is_starttls_failure());
    }

    #[test]
    fn sender_side_failures_classify_as_such() {
        let reply = |code| Reply {
            code,
            enhanced: None,
            text: "no".into(),
        };
        let bind = SessionError::Bind {
            source_ip: "192.0.2.1".parse().unwrap(),
            error: io::Error::from(io::ErrorKind::AddrNotAvailable),
        };
        let sender = [
            bind,
            SessionError::TooBig { size: 10, limit: 5 },
            SessionError::TlsNotOffered { mx: "mx.test".into() },
            SessionError::Rejected {
                phase: Phase::MailFrom,
                reply: reply(530),
            },
        ];
        for e in &sender {
            assert!(e.is_sender_fault(), "{e}");
        }
        let recipient_or_remote = [
            SessionError::Rejected {
                phase: Phase::RcptTo,
                reply: reply(550),
            },
            SessionError::Closed { phase: Phase::DataEnd },
            SessionError::Timeout {
                phase: Phase::Connect,
                after: Duration::from_secs(1),
            },
        ];
        for e in &recipient_or_remote {
            assert!(!e.is_sender_fault(), "{e}");
        }
    }

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            enhanced: None,
            text: text.into(),
        }
    }

    #[test]
    fn connection_refusals_are_transient_turn_aways_at_the_greeting() {
        let too_many = SessionError::Rejected {
            phase: Phase::Banner,
            reply: reply(421, "4.7.0 too many connections"),
        };
        assert!(too_many.is_connection_refusal());
        let ehlo_421 = SessionError::Rejected {
            phase: Phase::Ehlo,
            reply: reply(421, "try later"),
        };
        assert!(ehlo_421.is_connection_refusal());
        assert!(SessionError::Closed { phase: Phase::Banner }.is_connection_refusal());
        let reset = SessionError::Io {
            phase: Phase::Banner,
            error: io::Error::from(io::ErrorKind::ConnectionReset),
        };
        assert!(reset.is_connection_refusal());
        // A permanent refusal, or trouble later in the session, is not a cap.
        let banned = SessionError::Rejected {
            phase: Phase::Banner,
            reply: reply(554, "no service"),
        };
        assert!(!banned.is_connection_refusal());
        assert!(!SessionError::Closed { phase: Phase::MailFrom }.is_connection_refusal());
        let timeout = SessionError::Timeout {
            phase: Phase::Banner,
            after: Duration::from_secs(1),
        };
        assert!(!timeout.is_connection_refusal(), "a silent host is not a cap");
    }

    #[test]
    fn volume_throttles_at_the_greeting_are_told_from_connection_caps() {
        let at_banner = |text: &str| SessionError::Rejected {
            phase: Phase::Banner,
            reply: reply(421, text),
        };
        let yahoo = at_banner(
            "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1",
        );
        assert!(yahoo.is_connection_refusal() && yahoo.is_throttle_at_greeting());
        assert!(at_banner("4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred").is_throttle_at_greeting());
        assert!(at_banner("4.7.28 Our system has detected an unusual rate limit breach").is_throttle_at_greeting());
        for cap in [
            "4.7.0 Too many concurrent SMTP connections from this IP address; please try again later.",
            "4.7.0 mx.test Error: too many connections from 192.0.2.1",
            "Too many concurrent SMTP connections; please try again later.",
            "4.7.0 rate limit: too many sessions",
            "try later",
        ] {
            assert!(!at_banner(cap).is_throttle_at_greeting(), "{cap}");
        }
        let later = SessionError::Rejected {
            phase: Phase::RcptTo,
            reply: reply(421, "4.7.0 [TSS04] temporarily deferred"),
        };
        assert!(!later.is_throttle_at_greeting(), "only at the greeting");
    }

    /// A refusal naming the receiver's cap on this client's connections is told from other
    /// refusals at the greeting, as an error and as the status its deliveries get.
    #[test]
    fn a_refusal_naming_the_connection_cap_is_recognised() {
        let at_banner = |code: u16, text: &str| SessionError::Rejected {
            phase: Phase::Banner,
            reply: reply(code, text),
        };
        for cap in [
            "4.7.0 smtpd.receiver.test Error: too many connections from 127.0.0.2",
            "4.7.0 Too many concurrent SMTP connections from this IP address; please try again later.",
            "Too many sessions",
        ] {
            let e = at_banner(421, cap);
            assert!(e.is_connection_cap(), "{cap}");
            assert!(crate::RecipientStatus::from_error(&e).is_connection_cap(), "{cap}");
        }
        for other in [
            "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
            "4.3.2 Service shutting down, closing connection",
            "try later",
        ] {
            assert!(!at_banner(421, other).is_connection_cap(), "{other}");
        }
        assert!(
            !at_banner(554, "too many connections").is_connection_cap(),
            "a 5xx is not a cap to wait out"
        );
        let later = SessionError::Rejected {
            phase: Phase::MailFrom,
            reply: reply(421, "too many connections"),
        };
        assert!(!later.is_connection_cap(), "only at the greeting");
    }
}
