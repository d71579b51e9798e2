//! [`Report`]: the figures of one run, its consistency checks, and the human table.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::ideal::Ideal;
use super::latency::{LogFigures, Percentiles};
use super::postfix_peer::PostfixRun;
use super::recipients::GroupCount;
use super::sink_plan::plan;
use super::spec::{DkimMode, Scenario};
use crate::SinkStats;

/// The fields of volley's `--summary-json` read here.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VolleySummary {
    /// Rows read from the recipient file.
    pub rows: u64,
    /// Distinct valid recipients (delivered + deferred + bounced + suppressed).
    pub recipients: u64,
    /// Accepted by their server.
    pub delivered: u64,
    /// Still waiting for a retry when the run stopped.
    pub deferred: u64,
    /// Failed permanently.
    pub bounced: u64,
    /// Skipped: on the suppression list.
    pub suppressed: u64,
    /// Rows refused.
    pub rejected: u64,
    /// Rows that repeated an earlier address.
    pub duplicates: u64,
    /// Temporary failures recorded.
    pub deferrals: u64,
    /// Attempts after the first.
    pub retried: u64,
    /// Attempts broken after the final dot (the message may have arrived).
    pub maybe_duplicates: u64,
    /// SMTP connections opened.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Volley's own run time, seconds.
    pub elapsed_s: f64,
    /// Volley's own delivered messages per second.
    pub msgs_per_s: f64,
    /// Every recipient has a final outcome.
    pub complete: bool,
    /// The accounting log (relative to the work directory when relative).
    pub accounting_log: PathBuf,
}

/// CPU and memory of a process (or of the sinks together).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// User-mode CPU seconds.
    pub user_s: f64,
    /// Kernel CPU seconds.
    pub sys_s: f64,
    /// User + kernel.
    pub cpu_s: f64,
    /// CPU seconds per 1,000 delivered messages.
    pub cpu_s_per_1000_msgs: f64,
    /// Peak resident set size (`ru_maxrss`), MiB; for the sinks, the largest.
    pub peak_rss_mib: f64,
}

/// One consistency check of a run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// The figures compared.
    pub detail: String,
}

/// Everything one `volley-bench run` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The scenario file, or the built-in default.
    pub scenario_file: PathBuf,
    /// The scenario as run (overrides applied).
    pub scenario: Scenario,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// The 1, 5 and 15 minute load averages when the run started (`/proc/loadavg`): the
    /// machine may be shared.
    pub load_average: Option<String>,
    /// The volley binary.
    pub volley: PathBuf,
    /// The work directory, when kept (`--keep`).
    pub work_dir: Option<PathBuf>,
    /// Recipients written per domain group.
    pub groups: Vec<GroupCount>,
    /// Volley's summary.
    pub summary: VolleySummary,
    /// Seconds from starting `volley send` to reaping it.
    pub wall_s: f64,
    /// Delivered messages / `wall_s`.
    pub msgs_per_s: f64,
    /// The `volley send` process.
    pub volley_usage: Usage,
    /// Delivery latency and outcomes from the accounting log.
    pub log: LogFigures,
    /// The sinks' counters, added up.
    pub sink: SinkStats,
    /// Each sink's counters.
    pub per_sink: Vec<SinkStats>,
    /// The sink processes, together (peak RSS: the largest).
    pub sink_usage: Usage,
    /// The ideal completion time from the receivers' limits (`ideal.rs`).
    pub ideal: Ideal,
    /// `wall_s / ideal.seconds`, when the limits bound the run.
    pub vs_ideal: Option<f64>,
    /// The same mix delivered by a private Postfix relay (`--peer postfix`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postfix: Option<PostfixRun>,
    /// Consistency checks.
    pub checks: Vec<Check>,
    /// Whether every check holds.
    pub ok: bool,
}

/// The consistency checks of a run: the list is accounted for, every recipient has an
/// outcome, and the sinks accepted what volley says was delivered.
pub fn checks(scenario: &Scenario, summary: &VolleySummary, log: &LogFigures, sink: &SinkStats) -> Vec<Check> {
    let n = scenario.recipients;
    let s = summary;
    let mut out = Vec::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        out.push(Check {
            name: name.to_owned(),
            ok,
            detail,
        });
    };
    check(
        "volley send completed",
        s.complete && s.deferred == 0,
        format!("complete = {}, deferred = {}", s.complete, s.deferred),
    );
    let sum = s.delivered + s.deferred + s.bounced + s.suppressed + s.rejected + s.duplicates;
    check(
        "outcomes add up to the list",
        s.rows == n && sum == n,
        format!(
            "rows {} / generated {n}; delivered {} + deferred {} + bounced {} + suppressed {} + rejected {} + duplicates {} = {sum}",
            s.rows, s.delivered, s.deferred, s.bounced, s.suppressed, s.rejected, s.duplicates
        ),
    );
    check(
        "every recipient has one final outcome in the accounting log",
        log.with_final_outcome == n && log.several_final_outcomes == 0 && log.delivered == s.delivered,
        format!(
            "{} of {n} with a final outcome, {} with several; {} delivered lines vs summary {}",
            log.with_final_outcome, log.several_final_outcomes, log.delivered, s.delivered
        ),
    );
    // A connection broken after the dot may have delivered a message that is retried: the
    // sinks may count up to `maybe_duplicates` more than volley.
    check(
        "sinks accepted what volley delivered",
        sink.recipients >= s.delivered && sink.recipients <= s.delivered + s.maybe_duplicates,
        format!(
            "sink accepted {} recipients ({} messages); volley delivered {} (maybe-duplicates {})",
            sink.recipients, sink.messages, s.delivered, s.maybe_duplicates
        ),
    );
    out
}

fn dkim_name(mode: DkimMode) -> &'static str {
    match mode {
        DkimMode::Off => "off",
        DkimMode::Rsa => "rsa",
        DkimMode::Ed25519 => "ed25519",
    }
}

fn latency_line(p: &Percentiles) -> String {
    format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (n = {})",
        p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, p.count
    )
}

impl Report {
    /// The human-readable table.
    pub fn render(&self) -> String {
        let sc = &self.scenario;
        let s = &self.summary;
        let mut out = String::new();
        let _ = writeln!(out, "volley-bench run — {}", self.scenario_file.display());
        let load = self.load_average.as_deref().unwrap_or("unknown");
        let _ = writeln!(out, "  started       {} (load average {load})", self.started_at);
        let _ = writeln!(
            out,
            "  scenario      {} recipients over {} domains in {} groups, {} B body, DKIM {}, {} source IP(s), TLS {}, {} sink(s)",
            sc.recipients,
            sc.domain_count(),
            sc.domains.len(),
            sc.message_size,
            dkim_name(sc.dkim),
            sc.source_ips,
            if sc.tls { "on" } else { "off" },
            plan(sc).len()
        );
        let mix: Vec<String> = self
            .groups
            .iter()
            .map(|g| format!("{} {} ({} domain(s))", g.name, g.recipients, g.domains))
            .collect();
        let _ = writeln!(out, "  mix           {}", mix.join(", "));
        for (index, sink) in plan(sc).iter().enumerate() {
            let flags = sc.sink_flags(sink.spec, Some(std::path::Path::new("FILE")));
            if !flags.is_empty() {
                let _ = writeln!(out, "  sink {index} flags {}", flags.join(" "));
            }
        }
        let _ = writeln!(
            out,
            "  outcomes      delivered {}, bounced {}, deferred {}, suppressed {}, rejected {}; deferrals {}, retried {}, connections {}",
            s.delivered, s.bounced, s.deferred, s.suppressed, s.rejected, s.deferrals, s.retried, s.connections_opened
        );
        let _ = writeln!(
            out,
            "  throughput    {:.0} msg/s (delivered / {:.2} s wall, process start to exit); volley's own {:.0} msg/s over {:.2} s",
            self.msgs_per_s, self.wall_s, s.msgs_per_s, s.elapsed_s
        );
        let _ = writeln!(
            out,
            "  latency       first attempt -> 2xx: {}",
            latency_line(&self.log.from_first_attempt)
        );
        let _ = writeln!(
            out,
            "                launch -> 2xx:        {}",
            latency_line(&self.log.since_launch)
        );
        let u = &self.volley_usage;
        let _ = writeln!(
            out,
            "  volley CPU    {:.2} s (user {:.2} + sys {:.2}) = {:.3} CPU-s per 1,000 messages",
            u.cpu_s, u.user_s, u.sys_s, u.cpu_s_per_1000_msgs
        );
        let _ = writeln!(out, "  volley RSS    peak {:.1} MiB", u.peak_rss_mib);
        let k = &self.sink;
        let _ = writeln!(
            out,
            "  sink          accepted {} recipients in {} messages; {} tempfails, {} permfails, {} drops, {} faults; CPU {:.2} s, peak RSS {:.1} MiB",
            k.recipients,
            k.messages,
            k.rcpt_tempfails,
            k.rcpt_permfails,
            k.drops,
            k.faults_injected + k.tls_faults_injected,
            self.sink_usage.cpu_s,
            self.sink_usage.peak_rss_mib
        );
        if let Some(ratio) = self.vs_ideal {
            let _ = writeln!(
                out,
                "  vs ideal      {:.2} s wall / {:.2} s ideal from the receivers' limits = {ratio:.2}x",
                self.wall_s, self.ideal.seconds
            );
            for b in self.ideal.sinks.iter().filter(|b| b.seconds > 0.0) {
                let _ = writeln!(
                    out,
                    "                sink {} ({}): {} messages + {:.0} deferred, {} connections, {} ms latency: {:.2} s",
                    b.sink,
                    b.groups.join(", "),
                    b.messages,
                    b.deferred,
                    b.connections.unwrap_or(0),
                    b.latency_s * 1000.0,
                    b.seconds
                );
            }
        }
        if let Some(p) = &self.postfix {
            let _ = writeln!(out, "{}", p.render(self.wall_s, self.ideal.seconds));
        }
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  check {mark}    {}: {}", c.name, c.detail);
        }
        if let Some(dir) = &self.work_dir {
            let _ = writeln!(out, "  work dir      {}", dir.display());
        }
        out
    }
}
