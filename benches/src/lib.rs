//! Volley's benchmark harness. It holds the **smart sink**: an SMTP server that
//! receives what Volley sends in tests, the demo and benchmarks, counts it without storing
//! bodies, and injects faults (tempfails, permfails, drops, latency, connection limits,
//! provider-style canned replies) on request. It is built to take well over 20,000
//! messages per second on two cores so that it is never the bottleneck.
//!
//! # Layout
//!
//! - [`sink`] — the public face: [`Sink::start`] returns a [`SinkHandle`] (address,
//!   certificate, stats, per-recipient counts, shutdown).
//!   - `sink/config.rs` — [`SinkConfig`]: what is advertised and which faults are injected.
//!   - `sink/args.rs` — [`SinkArgs`]: the `volley sink` flags, resolved into a config.
//!   - `sink/canned.rs` — [`CannedReply`] and [`Stage`]: provider-style replies loaded from
//!     TOML, domain patterns, reply-text checks.
//!   - `sink/command.rs` — sans-IO parsing of one command line into a borrowed command.
//!   - `sink/session.rs` — the sans-IO session: bytes in, replies out, next step for the
//!     connection (continue, close, drop, STARTTLS); line-length limits; EHLO/HELO/STARTTLS.
//!   - `sink/transaction.rs` — MAIL, RCPT, DATA and the final reply, with faults applied.
//!   - `sink/data.rs` — finding `CRLF.CRLF` in streamed content without copying it.
//!   - `sink/reply.rs` — reply texts with enhanced status codes; placeholder rendering.
//!   - `sink/faults.rs` — percentage draws and drop points.
//!   - `sink/share.rs` — recipient shares chosen by a stable hash of the address
//!     (greylisting, complaints, late bounces).
//!   - `sink/greylist.rs` — `--greylist`: the first RCPT per client network deferred.
//!   - `sink/feedback.rs` — `--complain`, `--bounce-later`: ARF complaints and DSNs sent
//!     after the 250 to the message's return path (`feedback/report.rs` writes them,
//!     `feedback/sender.rs` delivers them with the engine's SMTP client, with retries).
//!   - `sink/fault_plan.rs` — [`Fault`] and [`TlsFault`]: configured reply and STARTTLS
//!     faults (`--fault`, `--tls-fault`), their parser and the bytes they send.
//!   - `sink/stats.rs` — [`SinkStats`], atomic counters, sharded per-address counts.
//!   - `sink/tls.rs` — the self-signed certificate and rustls acceptor.
//!   - `sink/server.rs` — accept loop, connection limit, the per-connection
//!     read → process → (latency) → single write loop.
//!   - `sink/error.rs` — [`SinkError`].
//! - [`dns`] — a loopback authoritative DNS server for a generated zone of recipient domains
//!   and MX sites ([`dns::BenchZone`], [`dns::BenchDns::start`]), for benchmarks that resolve
//!   MX like production does; [`dns::TxtZone`] serves TXT records (DKIM keys) and
//!   [`dns::verifier_for`] points mail-auth's verifier at such a server.
//! - [`exim`] — [`exim::EximServer`]: a private Exim daemon (unpacked from Debian's packages,
//!   not installed) receiving on a loopback port with its connection limits, discarding mail.
//! - [`postfix`] — [`PostfixSink`]: Postfix's `smtp-sink` on a loopback port, dumping every
//!   transaction to a file, and [`Dumped`]: one transaction parsed (envelope, message as CRLF
//!   bytes), for interop and DKIM end-to-end tests.
//! - [`policy_host`] — [`policy_host::PolicyHost`]: an HTTPS server on loopback answering every
//!   request alike (an MTA-STS policy host), with certificates from a [`policy_host::TestCa`].
//! - [`redis`] — [`RedisServer`]: a throwaway `redis-server` on a loopback port for tests
//!   (start, stop, restart on the same port).
//! - [`scenario`] — `volley-bench run`: a [`scenario::Scenario`] (recipients, domain mix,
//!   message size, DKIM, source IPs, sink faults) run end to end against `volley sink` and
//!   `volley send` children: msg/s, delivery latency percentiles, CPU per 1,000 messages, peak
//!   RSS, consistency checks.
//! - `src/bin/volley-bench.rs` — the `volley-bench` command (`volley-bench dns ...`,
//!   `volley-bench run ...`).

#![warn(missing_docs)]

pub mod dns;
pub mod exim;
pub mod policy_host;
pub mod postfix;
pub mod postfix_smtpd;
pub mod redis;
pub mod scenario;
pub mod sink;

pub use postfix::{Dumped, PostfixSink};

/// An error and its causes, each once, joined by `: ` — library errors often repeat their
/// source's text in their own message, and `{:#}` would print it twice. Used by the `volley`
/// and `volley-bench` binaries for what they print on failure.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}
pub use redis::RedisServer;
pub use sink::{
    late_bounce_diagnostic, CannedReply, Fault, FaultKind, FaultStage, FeedbackKind, Sink, SinkArgs, SinkConfig,
    SinkError, SinkHandle, SinkStats, Stage, TlsFault, TlsFaultKind,
};
