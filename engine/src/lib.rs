//! # volley-engine
//!
//! Delivery machinery that knows nothing of campaigns. Input: an envelope, a prepared message
//! and a route (source IP -> MX host). Output: one [`outcome::RecipientStatus`] per recipient,
//! sent back as a value on a channel.
//!
//! ## Layout
//! - [`smtp::reply`] — sans-IO reply parser: multi-line replies, RFC 3463 enhanced codes,
//!   size caps; "need more bytes" is [`smtp::reply::ReplyParse::Incomplete`], not an error.
//! - [`smtp::ehlo`] — EHLO reply -> typed [`smtp::ehlo::Capabilities`].
//! - [`smtp::command`] — command encoding into a caller's buffer (one write per pipelined group).
//! - [`smtp::dot`] — DATA payload: CRLF normalisation, dot-stuffing, 1000-octet lines; the
//!   un-stuffed content for BDAT without a copy.
//! - [`smtp::session`] — async session: bind source IP, greeting, EHLO/HELO, STARTTLS.
//! - [`smtp::transaction`] — MAIL/RCPT/DATA for a message or a batch of them; local checks,
//!   the lockstep path, per-recipient verdicts. Its private `pipeline` sibling sends a batch
//!   at one round trip per message under PIPELINING (RFC 2920 §3.1: a message's content goes
//!   with the next envelope) or CHUNKING (RFC 3030: one `BDAT LAST` group per message).
//! - [`pool`] — connection pools keyed by (source IP, MX host, destination policy), workers on
//!   demand; a worker sends what is already queued for its connection as one batch.
//!   [`pool::policy`] holds a destination's connection settings and its cap over all routes.
//! - [`mx`] — MX resolution (RFC 5321 §5.1, RFC 7505 null MX) with a coalescing TTL cache;
//!   domains with the same MX hosts share an [`mx::MxSite`].
//! - [`mta_sts`] — MTA-STS (RFC 8461): policy discovery, HTTPS fetch, cache, MX patterns, the
//!   verified TLS a policy route's sessions use, and per-session verdicts for TLS reports.
//! - [`dkim`] — DKIM signing: keys loaded and self-checked at start, a signing thread pool,
//!   key generation.
//! - [`tls`], [`stream`] — rustls client context (one, shared, so reconnects resume TLS
//!   sessions) and the plain/TLS stream.
//! - [`error`], [`outcome`], [`phase`], [`timeouts`], [`route`], [`config`] — the vocabulary.
//!
//! ## Why our own codec rather than `smtp-proto`
//! `smtp-proto` is a good parser, but its client (`mail-send`) reads each reply into a fresh
//! buffer, which loses the bytes of the next reply under PIPELINING; its reply type does not carry
//! the size caps we need per connection; and the codec here is a few hundred lines with property
//! tests. Owning it lets the pipelined path keep unread bytes and avoid per-reply allocation
//! beyond the reply text itself.

pub mod config;
pub mod dkim;
pub mod dnsbl;
pub mod error;
pub mod mta_sts;
pub mod mx;
pub mod outcome;
pub mod phase;
pub mod pool;
pub mod route;
pub mod smtp;
pub mod stream;
pub mod timeouts;
pub mod tls;

pub use config::SmtpConfig;
pub use error::SessionError;
pub use outcome::{Disposition, RecipientStatus};
pub use phase::Phase;
pub use pool::policy::{RoutePolicy, TotalCap};
pub use pool::{Delivery, DeliveryPool, DeliveryReport, PoolStats, RouteLimits};
pub use route::{MxHost, RouteKey, SourceIp};
pub use smtp::dot::DataPayload;
pub use smtp::transaction::Envelope;
