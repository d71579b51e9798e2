//! `volley report`: an accounting log turned into one offline HTML page — outcomes, throughput
//! over time, per provider group and source IP, warm-up budget use, bounce categories,
//! latency, busiest sites and domains — with SVG charts drawn by plotters.
//!
//! - `aggregate.rs` — one streaming pass over the log into totals.
//! - `feedback.rs` — the reports that came back after delivery (`feedback.jsonl`) as complaint,
//!   unsubscribe and bounce rates.
//! - `charts.rs` — the SVG charts (log axes, legends beside the plot; also used by
//!   `volley warmup plot`).
//! - `page.rs` — the HTML page.
//! - `warmup.rs` — the warm-up section: deliveries against each day's cap.

mod aggregate;
pub(crate) mod charts;
mod feedback;
mod page;
mod warmup;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

pub use aggregate::Totals;
pub use warmup::WarmupCaps;

/// `volley report` arguments.
#[derive(Args)]
pub struct ReportArgs {
    /// The accounting log (`<state_dir>/<campaign>/accounting.jsonl`); several logs make one
    /// report (the nodes of a cluster campaign each write their own).
    #[arg(required = true)]
    pub logs: Vec<PathBuf>,
    /// Where to write the page.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// The operator configuration the run used: the warm-up section then shows each day's cap
    /// and the share of it used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The feedback log (asynchronous bounces, complaints, unsubscribes) whose rates the page
    /// shows. Without it: `feedback.jsonl` beside the accounting log, when there is one.
    #[arg(long)]
    pub feedback: Option<PathBuf>,
}

/// Writes the report of the accounting log `log` to `out`, with the rates of the feedback log
/// `feedback` (default: the one beside `log`); returns what was read.
pub fn write(log: &Path, feedback: Option<&Path>, out: &Path, caps: Option<&WarmupCaps>) -> anyhow::Result<Totals> {
    write_all(&[log], feedback, out, caps)
}

/// Like [`write`] over several accounting logs read as one; the default feedback log is the
/// one beside the first.
pub fn write_all(
    logs: &[&Path],
    feedback: Option<&Path>,
    out: &Path,
    caps: Option<&WarmupCaps>,
) -> anyhow::Result<Totals> {
    let Some(log) = logs.first() else {
        anyhow::bail!("no accounting log given");
    };
    let totals = Totals::read_all(logs)?;
    let feedback_path = feedback.map_or_else(|| feedback::beside(log), Path::to_path_buf);
    let returned = feedback::Feedback::read(&feedback_path)?;
    if feedback.is_some() && returned.is_none() {
        anyhow::bail!("feedback log {} does not exist", feedback_path.display());
    }
    if let Some((line, why)) = returned.as_ref().and_then(|f| f.first_malformed.as_ref()) {
        eprintln!(
            "volley report: {}: line(s) skipped, the first is line {line}: {why}",
            feedback_path.display()
        );
    }
    let names: Vec<String> = logs.iter().map(|l| l.display().to_string()).collect();
    let html = page::render(&totals, &names.join(", "), returned.as_ref(), caps)?;
    std::fs::write(out, html).with_context(|| format!("writing {}", out.display()))?;
    Ok(totals)
}

/// `volley report`: writes the page and says where; a log with malformed lines still gives a
/// page (the lines are named in it and here).
pub fn run(args: &ReportArgs) -> anyhow::Result<bool> {
    let caps = match &args.config {
        Some(path) => Some(caps_of(path)?),
        None => None,
    };
    let logs: Vec<&Path> = args.logs.iter().map(PathBuf::as_path).collect();
    let totals = write_all(&logs, args.feedback.as_deref(), &args.out, caps.as_ref())?;
    println!(
        "wrote {}: {} lines, {} final outcomes",
        args.out.display(),
        totals.lines,
        totals.all.finals()
    );
    if let Some((line, why)) = &totals.first_malformed {
        eprintln!(
            "volley report: {}: {} line(s) skipped, the first is line {line}: {why}",
            names_of(&args.logs),
            totals.malformed
        );
    }
    Ok(totals.lines > 0 && totals.malformed < totals.lines)
}

fn names_of(logs: &[PathBuf]) -> String {
    logs.iter()
        .map(|l| l.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The warm-up caps of the configuration at `path`.
fn caps_of(path: &Path) -> anyhow::Result<WarmupCaps> {
    let config = volley_scheduler::config::SendConfig::load(path).context("the configuration is invalid")?;
    let policy = config.warmup_policy(path).context("the warm-up settings are invalid")?;
    Ok(WarmupCaps::new(&config, &policy))
}
