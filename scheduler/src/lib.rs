//! # volley-scheduler
//!
//! Campaign policy: reads a campaign, streams its recipients, personalises and builds each
//! message, picks a source IP and a route, hands deliveries to the engine's connection pool and
//! records one accounting line per attempt.
//!
//! ## Layout
//! - [`address`] — recipient address validation and normalisation.
//! - [`template`] — `{{column}}` templates parsed once, rendered per recipient.
//! - [`campaign`] — the campaign definition (TOML), validated at load.
//! - [`recipients`] — streamed CSV/JSONL recipient reader; bad rows become [`recipients::RejectedRow`]s.
//! - [`rejects`] — the rejects file (JSONL), one line per refused row.
//! - [`message`] — builds the RFC 5322 message for one recipient (mail-builder).
//! - [`lineset`] — sets of recipient-file lines as bitmaps (finished, duplicate).
//! - [`live`] — live counters of running campaigns (progress displays, metrics).
//! - [`config`] — `volley.toml`: state directory, source IPs, routes, `[smtp]`.
//! - [`routing`] — routing overrides (domain or `*` -> `ip:port`).
//! - [`destinations`] — per-destination policy (`[[destination]]` blocks, built-in ones for the
//!   big providers): connection settings and a rate per source IP, resolved per site.
//! - [`tls_reports`] — TLS reports (RFC 8460) of sessions under MTA-STS policies, per domain
//!   and day, written to the state directory.
//! - [`rotation`] — smooth weighted round robin over source IPs.
//! - [`shaping`] — warm-up budgets per source IP and provider group, shared by the campaigns of a run.
//! - [`site_backoff`] — adaptive backoff per (source IP, MX site) from throttling replies.
//! - [`send`] — the run: producer thread -> dispatcher -> engine pool -> accounting.
//! - [`queues`] — queue control: queues by site, domain, source IP or provider group;
//!   suspend, resume, retry now, bounce, purge (suspensions kept in the state directory).
//! - [`plan_input`] — a campaign's recipients counted per provider group, for the warm-up planner.
//! - [`outcome`] — accounting outcomes.
//! - [`bounces`] — bounce classification rules (category and suppression action per outcome).
//! - [`accounting`] — the accounting log (JSONL, one line per attempt).
//! - [`summary`] — the end-of-run summary (`--summary-json`).
//! - [`suppression`] — the suppression store (Redis or embedded redb), buffered writer, checks, CSV.
//! - [`inject`] — messages injected one at a time (submission, HTTP): the check every one
//!   passes and the [`inject::Injector`] a listener hands them to.
//! - [`listen`] — accepting TCP connections under caps (the HTTP and SMTP listeners).
//! - [`submission`] — the SMTP submission listener (587 STARTTLS, 465 implicit TLS): AUTH
//!   against the users file, per-user From domains and rate, messages handed to an
//!   [`inject::Injector`].
//! - [`unsubscribe`] — Volley's one-click unsubscribe endpoint (RFC 8058) and the signed
//!   `List-Unsubscribe` link and address of each message.
//! - [`warmup_counters`] — where warm-up counters live: the embedded file, or Redis shared by
//!   every process sending from the same IPs (atomic take, GCRA pacing in Lua).

pub mod address;
pub mod campaign;
pub mod message;
pub mod recipients;
pub mod rejects;
pub mod template;
pub mod tls_reports;

pub mod accounting;
pub mod api_config;
pub mod blocklists;
pub mod bounces;
pub mod cluster;
pub mod config;
pub mod destinations;
pub mod inbound;
pub mod inject;
pub mod lineset;
pub mod listen;
pub mod live;
pub mod outcome;
pub mod plan_input;
pub mod queues;
pub mod reputation;
pub mod rotation;
pub mod routing;
pub mod send;
pub mod server_tls;
pub mod shaping;
pub mod site_backoff;
pub mod spool;
pub mod submission;
pub mod summary;
pub mod suppression;
pub mod unsubscribe;
pub mod warmup_counters;
