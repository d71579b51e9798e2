//! # volley-warmup
//!
//! Sending policy with no sockets: how fast each source IP may send to each mailbox provider
//! today. The scheduler asks [`Budgets::choose`] which IP of a pool may take the next message
//! for a provider group, and reports throttling replies with [`Budgets::observe`].
//!
//! ## Layout
//! - [`rate`] — human-readable rates (`"50/s"`, `"1000/h"`) parsed and validated.
//! - [`limiter`] — a governor (GCRA) limiter built from a [`rate::Rate`], answering "may I send
//!   now, or how long until I may".
//! - [`day`] — UTC calendar days (`YYYY-MM-DD`) and hours, without a date crate.
//! - [`clock`] — one settable clock for the calendar and the limiters (compressed time in tests).
//! - [`provider`] — provider groups (gmail, microsoft, yahoo, other) recognised from MX hosts.
//! - [`curve`] — warm-up curves: per day, daily and hourly caps per provider group (TOML files
//!   under `config/warmup/`).
//! - [`ipstate`] — each source IP's warm-up settings: warm, or a curve and a start date.
//! - [`backoff`] — reply patterns that slow down or suspend an (IP, provider) pair, and its
//!   recovery after a quiet period.
//! - [`counters`] — daily/hourly counters behind a store trait, with an embedded file store so a
//!   restart does not reset a budget; a shared store (Redis, in the scheduler) also takes budget
//!   atomically and paces pairs for every process that shares an IP.
//! - [`secret_url`] — configured URLs that print with their password redacted.
//! - [`budget`] — [`Budgets`]: caps, counters, smoothing limiters and backoff per (IP, provider),
//!   and overflow across a pool's IPs.
//! - [`turns`] — smooth weighted round robin: whose turn it is among a pool's IPs.
//! - [`plan`] — the planner: when a campaign's recipients per provider group will have been
//!   sent, by driving [`Budgets`] over simulated time.
//! - [`config`] — the `[warmup]` section of volley.toml.

pub mod backoff;
pub mod budget;
pub mod clock;
pub mod config;
pub mod counters;
pub mod curve;
pub mod day;
pub mod ipstate;
pub mod limiter;
pub mod plan;
pub mod provider;
pub mod rate;
pub mod secret_url;
pub mod turns;

pub use backoff::{BackoffAction, BackoffRules};
pub use budget::{Budgets, IpIndex, Wait, WaitReason, WaitStats};
pub use clock::{ManualClock, WarmupClock};
pub use config::{CounterBackend, WarmupConfig};
pub use counters::{CounterError, CounterStore, Counts, FileCounterStore, MemoryCounterStore, Pacing, Taken, Window};
pub use curve::{Caps, Curve, CurveError, CurveSet};
pub use day::UtcDay;
pub use ipstate::{day_of, IpWarmup, WarmupState};
pub use limiter::SendLimiter;
pub use plan::{plan, Plan, PlanError, PlanInput, PlanIp, ProviderPlan};
pub use provider::{ProviderConfig, Providers};
pub use rate::{Rate, RateError};
pub use secret_url::{redact_url, SecretUrl};
pub use turns::WeightedTurns;
