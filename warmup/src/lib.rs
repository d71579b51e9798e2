//! # volley-warmup
//!
//! Sending policy with no sockets: how fast a source IP may send. Today it holds the rate
//! vocabulary and the GCRA limiter per source IP; warm-up curves per mailbox provider, daily and
//! hourly budgets and adaptive backoff build on these.
//!
//! ## Layout
//! - [`rate`] — human-readable rates (`"50/s"`, `"1000/h"`) parsed and validated.
//! - [`limiter`] — a governor (GCRA) limiter built from a [`rate::Rate`], answering "may I send
//!   now, or how long until I may".

pub mod limiter;
pub mod rate;

pub use limiter::SendLimiter;
pub use rate::{Rate, RateError};
