//! # volley-smtp-server
//!
//! Server-side SMTP (RFC 5321) for Volley's listeners: the smart sink (`volley sink`), and
//! the inbound (DSN/ARF) and submission listeners. The core is sans-IO, like the
//! engine's client codec: bytes in, events and reply bytes out, no tokio, no sockets. The
//! policy — who may send, what is accepted, where a message goes — stays with the driver,
//! which answers each event that needs a decision.
//!
//! ## Layout
//! - [`command`] — one command line -> [`command::Command`] (EHLO … AUTH, MAIL/RCPT
//!   parameters SIZE, BODY, SMTPUTF8, RET, ENVID, NOTIFY, ORCPT), typed
//!   [`command::CommandError`]s that carry their 500/501/555 reply.
//! - [`session`] — the state machine: [`Session::next_event`] yields [`Event`]s, the driver
//!   answers with [`Session::accept`] / [`Session::reply`]. Sequencing (503), PIPELINING
//!   (RFC 2920: replies batched until the input runs dry), SIZE (RFC 1870), the recipient
//!   limit, CHUNKING (RFC 3030), STARTTLS resets (RFC 3207), AUTH PLAIN/LOGIN (RFC 4954).
//! - `data` (private) — the DATA end marker and dot-unstuffing, streaming, no copy.
//! - [`auth`] — SASL decoding: [`auth::Credentials`], the check is the driver's.
//! - [`reply`] — [`Reply`] with RFC 3463 enhanced codes, multi-line rendering, the standard
//!   replies.
//! - [`config`] — [`SessionConfig`]: advertised extensions and limits, the EHLO reply.
//! - [`error`] — [`SessionError`]: what the session refused on its own, with its reply.
//! - [`driver`] (feature `tokio`, on by default) — runs a session over a tokio stream with
//!   the RFC 5321 §4.5.3.2 server timeouts, calling an async [`driver::Handler`]; the final
//!   reply waits for the handler, so a message can be made durable before its 250;
//!   [`driver::serve`] for a plaintext port (with STARTTLS), [`driver::serve_implicit_tls`]
//!   for an implicit-TLS port (RFC 8314, submission on 465).
//!
//! ## Driving a session
//! ```
//! use std::sync::Arc;
//! use volley_smtp_server::{Event, Session, SessionConfig};
//!
//! let mut session = Session::new(Arc::new(SessionConfig::default()), false);
//! session.input_mut().extend_from_slice(b"EHLO client.test\r\nQUIT\r\n");
//! loop {
//!     match session.next_event() {
//!         Event::Ehlo { .. } => session.accept().expect("a decision is pending"),
//!         Event::NeedInput | Event::Closed => break,
//!         _ => {}
//!     }
//! }
//! assert!(session.output().ends_with(b"221 2.0.0 Bye\r\n"));
//! ```

pub mod auth;
pub mod command;
pub mod config;
mod data;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod error;
pub mod reply;
pub mod session;

pub use auth::Credentials;
pub use command::{Path, Verb};
pub use config::{AuthMechanism, SessionConfig};
pub use error::{NoPendingDecision, SessionError};
pub use reply::{EnhancedCode, Reply};
pub use session::{Event, Session};
