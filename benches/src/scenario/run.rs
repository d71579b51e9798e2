//! [`run`]: one scenario end to end — work directory, sinks, `volley send`, figures, checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use super::error::ScenarioError;
use super::ideal::Ideal;
use super::latency::read_log;
use super::postfix_peer;
use super::process::{failed, wait_with_usage, Exit};
use super::report::{checks, Report, Usage, VolleySummary};
use super::sink_plan::plan;
use super::sinks::SinkProcess;
use super::spec::Scenario;
use super::workdir::WorkDir;
use crate::SinkStats;

/// How a scenario is run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `volley` binary (its `sink`, `dkim keygen` and `send` subcommands are used).
    pub volley: PathBuf,
    /// Keep the work directory here (created; must be empty if it exists). Without it a
    /// temporary directory is used and removed.
    pub keep: Option<PathBuf>,
    /// Where the scenario came from (for the report).
    pub scenario_file: PathBuf,
    /// Print what is being done to stderr.
    pub verbose: bool,
    /// Also deliver the same mix with a peer, into fresh sinks with the same settings.
    pub peer: Option<Peer>,
}

/// A peer that delivers the same mix after volley (`volley-bench run --peer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// A private Postfix relay (`postfix_peer.rs`); needs root.
    Postfix,
}

/// The `volley` binary next to the running executable (the same target directory).
pub fn default_volley() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("volley")))
        .unwrap_or_else(|| PathBuf::from("volley"))
}

/// Runs `scenario`: writes the inputs, starts the sinks and `volley send`, waits for it,
/// stops the sinks and returns the figures and checks.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, ScenarioError> {
    if !options.volley.is_file() {
        return Err(ScenarioError::VolleyMissing {
            path: options.volley.clone(),
        });
    }
    // Absolute: `volley send` runs in the work directory.
    let volley = &std::fs::canonicalize(&options.volley).map_err(ScenarioError::io(&options.volley))?;
    let say = |text: &str| {
        if options.verbose {
            eprintln!("volley-bench: {text}");
        }
    };
    let (_temp, root) = work_root(options.keep.as_deref())?;
    let dir = WorkDir { root: root.clone() };
    let echo = toml::to_string(scenario).map_err(|e| ScenarioError::Output {
        path: root.join("scenario.toml"),
        line: None,
        reason: format!("cannot render the scenario: {e}"),
    })?;
    std::fs::write(root.join("scenario.toml"), echo).map_err(ScenarioError::io(root.join("scenario.toml")))?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "));

    say(&format!(
        "writing {} recipients and the inputs to {}",
        scenario.recipients,
        root.display()
    ));
    let groups = dir.write_inputs(scenario, volley)?;
    let sinks = start_sinks(scenario, volley, &root, "sink")?;
    let addrs: Vec<_> = sinks.iter().map(SinkProcess::addr).collect();
    say(&format!("sink(s) listening on {addrs:?}"));
    dir.write_config(scenario, &addrs)?;

    say("running volley send");
    let (exit, launched, wall_s) = send(&dir, volley, scenario)?;
    say(&format!(
        "volley send exited ({}) after {wall_s:.2} s; stopping the sink(s)",
        exit.status
    ));
    let mut per_sink = Vec::with_capacity(sinks.len());
    let mut sink = SinkStats::default();
    let (mut sink_cpu, mut sink_user, mut sink_sys, mut sink_rss) = (0.0, 0.0, 0.0, 0u64);
    for process in sinks {
        let stopped = process.stop()?;
        sink.add(&stopped.counts);
        per_sink.push(stopped.counts);
        sink_cpu += stopped.exit.cpu_s();
        sink_user += stopped.exit.user.as_secs_f64();
        sink_sys += stopped.exit.sys.as_secs_f64();
        sink_rss = sink_rss.max(stopped.exit.max_rss_kib);
    }

    let summary = read_summary(&dir.summary())?;
    let log_path = if summary.accounting_log.is_absolute() {
        summary.accounting_log.clone()
    } else {
        root.join(&summary.accounting_log)
    };
    let log = read_log(&log_path, launched, scenario.recipients)?;
    let delivered = summary.delivered;
    let per_1000 = |cpu: f64| {
        if delivered == 0 {
            0.0
        } else {
            cpu * 1000.0 / delivered as f64
        }
    };
    let volley_usage = Usage {
        user_s: exit.user.as_secs_f64(),
        sys_s: exit.sys.as_secs_f64(),
        cpu_s: exit.cpu_s(),
        cpu_s_per_1000_msgs: per_1000(exit.cpu_s()),
        peak_rss_mib: exit.max_rss_kib as f64 / 1024.0,
    };
    let sink_usage = Usage {
        user_s: sink_user,
        sys_s: sink_sys,
        cpu_s: sink_cpu,
        cpu_s_per_1000_msgs: per_1000(sink_cpu),
        peak_rss_mib: sink_rss as f64 / 1024.0,
    };
    let mut checks = checks(scenario, &summary, &log, &sink);
    let ideal = Ideal::of(scenario, &groups);
    let vs_ideal = ideal.duration().map(|d| wall_s / d.as_secs_f64());
    let postfix = match options.peer {
        Some(Peer::Postfix) => {
            say("delivering the same mix through a private Postfix relay");
            let run = postfix_peer::run(scenario, volley, &dir, &say)?;
            checks.push(run.check(summary.delivered));
            Some(run)
        }
        None => None,
    };
    let ok = checks.iter().all(|c| c.ok);
    Ok(Report {
        scenario_file: options.scenario_file.clone(),
        scenario: scenario.clone(),
        started_at,
        load_average,
        volley: volley.clone(),
        work_dir: options.keep.clone(),
        groups,
        msgs_per_s: if wall_s > 0.0 { delivered as f64 / wall_s } else { 0.0 },
        wall_s,
        summary,
        volley_usage,
        log,
        sink,
        per_sink,
        sink_usage,
        ideal,
        vs_ideal,
        postfix,
        checks,
        ok,
    })
}

/// Starts the sink processes of `scenario`'s plan (output in `dir/<prefix>-<index>.*`), each
/// with its flags; canned replies are written to `dir/<prefix>-<index>.canned.toml`.
pub(crate) fn start_sinks(
    scenario: &Scenario,
    volley: &Path,
    dir: &Path,
    prefix: &str,
) -> Result<Vec<SinkProcess>, ScenarioError> {
    let planned = plan(scenario);
    let mut sinks = Vec::with_capacity(planned.len());
    for (index, sink) in planned.iter().enumerate() {
        let canned = dir.join(format!("{prefix}-{index}.canned.toml"));
        if !sink.spec.canned.is_empty() {
            std::fs::write(&canned, sink.spec.canned_file()).map_err(ScenarioError::io(&canned))?;
        }
        let flags = scenario.sink_flags(sink.spec, Some(&canned));
        sinks.push(SinkProcess::start(volley, dir, &format!("{prefix}-{index}"), &flags)?);
    }
    Ok(sinks)
}

/// The work directory: `keep` (created, must be empty) or a new temporary one (removed when
/// the returned guard drops).
fn work_root(keep: Option<&Path>) -> Result<(Option<tempfile::TempDir>, PathBuf), ScenarioError> {
    match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(ScenarioError::io(dir))?;
            let mut entries = std::fs::read_dir(dir).map_err(ScenarioError::io(dir))?;
            if entries.next().is_some() {
                return Err(ScenarioError::Invalid {
                    file: PathBuf::from("<command line>"),
                    field: "--keep".to_owned(),
                    value: dir.display().to_string(),
                    reason: "the directory is not empty (a reused state directory would resume, not send)".to_owned(),
                });
            }
            let root = std::fs::canonicalize(dir).map_err(ScenarioError::io(dir))?;
            Ok((None, root))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("volley-bench-run.")
                .tempdir()
                .map_err(ScenarioError::io(std::env::temp_dir()))?;
            let root = temp.path().to_path_buf();
            Ok((Some(temp), root))
        }
    }
}

/// Runs `volley send` in the work directory; returns its exit and usage, when it was launched
/// and its wall time (start to reaped).
fn send(dir: &WorkDir, volley: &Path, scenario: &Scenario) -> Result<(Exit, SystemTime, f64), ScenarioError> {
    let what = "volley send";
    let stdout = dir.root.join("volley.stdout");
    let stderr = dir.root.join("volley.stderr");
    let out = std::fs::File::create(&stdout).map_err(ScenarioError::io(&stdout))?;
    let err = std::fs::File::create(&stderr).map_err(ScenarioError::io(&stderr))?;
    let mut command = Command::new(volley);
    command
        .current_dir(&dir.root)
        .args([
            "send",
            "campaign.toml",
            "--config",
            "volley.toml",
            "--summary-json",
            "summary.json",
        ])
        .args(["--progress", "off"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let launched = SystemTime::now();
    let start = Instant::now();
    let mut child = command.spawn().map_err(|source| ScenarioError::Spawn {
        what: what.to_owned(),
        program: volley.to_path_buf(),
        source,
    })?;
    let exit = wait_with_usage(&mut child, start + scenario.timeout()).map_err(|source| ScenarioError::Wait {
        what: format!("waiting for {what}"),
        source,
    })?;
    let Some(exit) = exit else {
        return Err(failed(
            what,
            format!("was killed after the scenario's timeout ({})", scenario.timeout),
            &stderr,
        ));
    };
    let wall_s = exit.at.duration_since(start).as_secs_f64();
    // 0: complete; 1: ran, but recipients still wait for a retry (a failed check says so).
    if !matches!(exit.status.code(), Some(0 | 1)) {
        return Err(failed(what, format!("exited with {}", exit.status), &stderr));
    }
    Ok((exit, launched, wall_s))
}

fn read_summary(path: &Path) -> Result<VolleySummary, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(ScenarioError::io(path))?;
    serde_json::from_str(&text).map_err(|e| ScenarioError::Output {
        path: path.to_path_buf(),
        line: Some(e.line()),
        reason: format!("not a single campaign's summary: {e}"),
    })
}
