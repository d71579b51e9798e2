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

pub mod address;
pub mod campaign;
pub mod message;
pub mod recipients;
pub mod rejects;
pub mod template;
