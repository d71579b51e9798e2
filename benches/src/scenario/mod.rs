//! `volley-bench run`: a benchmark **scenario** — a recipient list with a realistic domain mix,
//! a message size, DKIM off/RSA/Ed25519, a number of source IPs, TLS, sink processes and their
//! faults — run end to end against real `volley sink` children and a real `volley send`
//! child, with the figures that matter: msg/s, delivery latency percentiles (hdrhistogram),
//! CPU seconds per 1,000 messages and peak RSS (from `wait4`), and consistency checks.
//!
//! - `spec.rs` — [`Scenario`] (TOML, `deny_unknown_fields`), defaults, validation, [`Overrides`].
//! - `domains.rs` — [`DomainGroup`]: one `[[domains]]` entry (`domain` or `pattern` + `count`).
//! - `recipients.rs` — the seeded, weighted recipient CSV and the padded body.
//! - `workdir.rs` — `campaign.toml`, `volley.toml` (routes per group to its sink), DKIM key.
//! - `sink_plan.rs` — which sink process serves which domain groups, with which settings.
//! - `sinks.rs` — the `volley sink` children: ready line, SIGINT, final counters.
//! - `process.rs` — `wait4`: exit status, CPU time and peak RSS of a child.
//! - `latency.rs` — the accounting log: outcomes per recipient, latency histograms.
//! - `ideal.rs` — [`Ideal`]: the completion time the receivers' limits allow, per sink.
//! - `postfix_peer.rs` — `--peer postfix`: the same mix through a private Postfix relay.
//! - `report.rs` — [`Report`], its checks and the human table.
//! - `run.rs` — [`run`]: everything above in order.

mod domains;
mod error;
mod ideal;
mod latency;
mod postfix_peer;
mod process;
mod recipients;
mod report;
mod run;
mod sink_plan;
mod sinks;
mod spec;
mod workdir;

pub use domains::DomainGroup;
pub use error::ScenarioError;
pub use ideal::{Ideal, SinkBound};
pub use latency::{read_log, LogFigures, Percentiles};
pub use postfix_peer::PostfixRun;
pub use recipients::{apportion, assign_groups, body, write_recipients, GroupCount};
pub use report::{Check, Report, Usage, VolleySummary};
pub use run::{default_volley, run, Peer, RunOptions};
pub use sink_plan::{plan, PlannedSink};
pub use spec::{CannedSpec, DkimMode, Overrides, Scenario, SinkSpec, BUILTIN_NAME, DEFAULT_SCENARIO};
