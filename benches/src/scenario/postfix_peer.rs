//! `volley-bench run --peer postfix`: after volley, the same mix — same recipients, same
//! message — delivered by a private Postfix relay into fresh sinks with the same settings.
//!
//! 1. Fresh sinks start (same flags as volley's). A private Postfix instance
//!    ([`PostfixSmtpd`]: own config, queue and log, loopback ports, never the system service)
//!    routes every recipient domain to its group's sink with `transport_maps`
//!    (`domain  :[127.0.0.1]:port`), and picks one of the scenario's source IPs per message
//!    (`sender_dependent_default_transport_maps = randmap:{src2,..}`, one `smtp` service bound
//!    to each address): the same client addresses volley rotates over.
//! 2. `volley send` injects the campaign into Postfix's smtpd, which puts every message on
//!    hold (`check_client_access static:HOLD`): nothing is delivered yet.
//! 3. The clock starts; `postsuper -H ALL` and `postqueue -f` release the queue; the clock stops
//!    when the queue is empty. Postfix starts with every message queued; volley started from
//!    the CSV.
//!
//! Postfix's concurrency feedback stays at its defaults (`initial_destination_concurrency = 5`,
//! `default_destination_concurrency_limit = 20`, positive and negative feedback
//! `1 / concurrency`, `default_destination_concurrency_failed_cohort_limit = 1`,
//! `smtp_connection_cache_on_demand = yes`). Its retry timing is set to the scenario's
//! `retry_after` (`minimal_backoff_time`, `maximal_backoff_time`, `queue_run_delay`), as volley's
//! is: its default of 300 s and more would decide the race alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::error::ScenarioError;
use super::process::{failed, wait_with_usage};
use super::report::{Check, VolleySummary};
use super::run::start_sinks;
use super::sink_plan::{plan, sink_of_groups};
use super::spec::Scenario;
use super::workdir::WorkDir;
use crate::postfix_smtpd::PostfixSmtpd;
use crate::SinkStats;

/// How long the injected messages may take to show up in the hold queue.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// What the Postfix relay did with the mix.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PostfixRun {
    /// Postfix's `mail_version`.
    pub version: String,
    /// Messages injected (held) before the clock started.
    pub held: u64,
    /// Seconds the injection took (not counted).
    pub injection_s: f64,
    /// Seconds from releasing the queue to the queue being empty.
    pub seconds: f64,
    /// `status=sent` lines in its log.
    pub sent: u64,
    /// `status=deferred` lines (attempts that failed temporarily).
    pub deferred: u64,
    /// `status=bounced` lines.
    pub bounced: u64,
    /// Whether the queue emptied before the scenario's timeout.
    pub completed: bool,
    /// The sinks' counters, added up.
    pub sink: SinkStats,
    /// The settings that differ from Postfix's defaults, `name = value`.
    pub settings: Vec<String>,
}

impl PostfixRun {
    /// The report's lines: Postfix's time against volley's and the ideal.
    pub fn render(&self, volley_s: f64, ideal_s: f64) -> String {
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "n/a".to_owned()
            }
        };
        format!(
            "  postfix       Postfix {} relay: {} held messages delivered in {:.2} s (release to empty queue; injection {:.2} s not counted) = {} ideal; volley {} faster\n                \
             log: {} sent, {} deferred, {} bounced; sinks accepted {} recipients{}",
            self.version,
            self.held,
            self.seconds,
            self.injection_s,
            ratio(self.seconds, ideal_s),
            ratio(self.seconds, volley_s),
            self.sent,
            self.deferred,
            self.bounced,
            self.sink.recipients,
            if self.completed { "" } else { "; TIMED OUT" }
        )
    }

    /// The check that Postfix delivered what volley delivered.
    pub fn check(&self, volley_delivered: u64) -> Check {
        Check {
            name: "Postfix delivered the same mix".to_owned(),
            ok: self.completed && self.sink.recipients == volley_delivered && self.held == volley_delivered,
            detail: format!(
                "held {}, sinks accepted {} (volley delivered {}), queue emptied: {}",
                self.held, self.sink.recipients, volley_delivered, self.completed
            ),
        }
    }
}

/// Runs the Postfix side of `scenario` in `dir` (after volley's run, whose inputs it reuses).
pub fn run(scenario: &Scenario, volley: &Path, dir: &WorkDir, say: &dyn Fn(&str)) -> Result<PostfixRun, ScenarioError> {
    let sinks = start_sinks(scenario, volley, &dir.root, "postfix-sink")?;
    let addrs: Vec<_> = sinks.iter().map(|s| s.addr()).collect();
    let transport = dir.root.join("postfix-transport");
    write_transport(scenario, &addrs, &transport)?;
    let retry = format!("{}s", scenario.retry_after().as_secs().max(1));
    let picks: Vec<String> = (0..scenario.source_ips).map(|i| format!("src{}", i + 2)).collect();
    let services: Vec<String> = (0..scenario.source_ips)
        .map(|i| {
            let n = u16::from(i) + 2;
            format!("src{n} unix - - n - - smtp -o smtp_bind_address=127.0.0.{n} -o smtp_helo_name=mta{n}.postfix.test")
        })
        .collect();
    let transport_map = format!("texthash:{}", transport.display());
    let randmap = format!("randmap:{{{}}}", picks.join(","));
    let tls = if scenario.tls { "may" } else { "none" };
    let settings: Vec<(&str, &str)> = vec![
        // A relay: deliver, do not discard (postfix_smtpd.rs makes a discarding receiver).
        ("default_transport", "smtp"),
        ("relay_transport", "smtp"),
        ("transport_maps", &transport_map),
        ("sender_dependent_default_transport_maps", &randmap),
        (
            "smtpd_recipient_restrictions",
            "check_client_access static:HOLD, permit_mynetworks, reject",
        ),
        ("smtp_tls_security_level", tls),
        // Back to Postfix's defaults where the throughput relay template raised them.
        ("default_destination_concurrency_limit", "20"),
        (
            "smtp_destination_concurrency_limit",
            "$default_destination_concurrency_limit",
        ),
        ("smtp_connection_cache_destinations", ""),
        // The scenario's retry wait, as volley's.
        ("minimal_backoff_time", &retry),
        ("maximal_backoff_time", &retry),
        ("queue_run_delay", &retry),
    ];
    let postfix_dir = dir.root.join("postfix");
    std::fs::create_dir_all(&postfix_dir).map_err(ScenarioError::io(&postfix_dir))?;
    let server =
        PostfixSmtpd::start_with_services(&postfix_dir, &settings, &services).map_err(|e| ScenarioError::Child {
            what: "private Postfix relay".to_owned(),
            reason: format!("did not start: {e}"),
            stderr_tail: String::new(),
        })?;
    let version = postconf(server.conf_dir(), "mail_version");
    say(&format!(
        "Postfix {version} relay on {}; injecting the campaign (held)",
        server.local_addr()
    ));

    let started = Instant::now();
    let injected = inject(scenario, volley, dir, server.local_addr())?;
    let queue = server.queue_dir().to_path_buf();
    let deadline = Instant::now() + HOLD_TIMEOUT;
    while count_files(&queue.join("hold")) < injected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = count_files(&queue.join("hold"));
    let injection_s = started.elapsed().as_secs_f64();
    say(&format!(
        "{held} messages held after {injection_s:.1} s; releasing the queue"
    ));

    let t0 = Instant::now();
    let conf = server.conf_dir().to_path_buf();
    postfix_command("postsuper", &conf, &["-H", "ALL"])?;
    postfix_command("postqueue", &conf, &["-f"])?;
    let deadline = t0 + scenario.timeout();
    let dirs = ["incoming", "active", "deferred", "hold", "maildrop"].map(|d| queue.join(d));
    let mut completed = false;
    while Instant::now() < deadline {
        if dirs.iter().all(|d| count_files(d) == 0) {
            completed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = t0.elapsed().as_secs_f64();
    let log = server.log();
    drop(server);
    let mut sink = SinkStats::default();
    for process in sinks {
        sink.add(&process.stop()?.counts);
    }
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count() as u64;
    Ok(PostfixRun {
        version,
        held,
        injection_s,
        seconds,
        sent: count("status=sent"),
        deferred: count("status=deferred"),
        bounced: count("status=bounced"),
        completed,
        sink,
        settings: settings
            .iter()
            .filter(|(name, _)| !name.starts_with("smtpd_") && *name != "transport_maps")
            .map(|(name, value)| format!("{name} = {value}"))
            .collect(),
    })
}

/// `transport_maps`: every domain of every group to its sink, the sender's domain discarded
/// (bounces would have nowhere to go).
fn write_transport(scenario: &Scenario, sinks: &[std::net::SocketAddr], path: &Path) -> Result<(), ScenarioError> {
    let of = sink_of_groups(&plan(scenario), scenario.domains.len());
    let mut map = BTreeMap::new();
    for (g, group) in scenario.domains.iter().enumerate() {
        let Some(addr) = sinks.get(of[g]) else { continue };
        for domain in group.domains() {
            map.insert(domain, format!(":[{}]:{}", addr.ip(), addr.port()));
        }
    }
    map.insert(super::workdir::SENDER_DOMAIN.to_owned(), "discard:".to_owned());
    let mut text = String::with_capacity(map.len() * 48);
    for (domain, next) in map {
        text.push_str(&domain);
        text.push(' ');
        text.push_str(&next);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(ScenarioError::io(path))
}

/// `volley send` of the campaign into Postfix's smtpd; returns the messages it delivered.
fn inject(
    scenario: &Scenario,
    volley: &Path,
    dir: &WorkDir,
    relay: std::net::SocketAddr,
) -> Result<u64, ScenarioError> {
    let what = "volley send (injection into Postfix)";
    let config = dir.root.join("postfix-inject.toml");
    let text = format!(
        "# Written by volley-bench run: inject the campaign into the Postfix relay.\n\
         state_dir = \"postfix-inject-state\"\n\
         [[source_ips]]\naddress = \"127.0.0.1\"\nehlo_name = \"inject.volley.test\"\n\
         [routes]\n\"*\" = \"{relay}\"\n\
         [smtp]\ntls = \"disabled\"\nmax_connections_per_host = 16\n\
         [retry]\nschedule = [\"1s\"]\n"
    );
    std::fs::write(&config, text).map_err(ScenarioError::io(&config))?;
    let stderr = dir.root.join("postfix-inject.stderr");
    let err = std::fs::File::create(&stderr).map_err(ScenarioError::io(&stderr))?;
    let mut child = Command::new(volley)
        .current_dir(&dir.root)
        .args(["send", "campaign.toml", "--config", "postfix-inject.toml"])
        .args(["--summary-json", "postfix-inject.json", "--progress", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|source| ScenarioError::Spawn {
            what: what.to_owned(),
            program: volley.to_path_buf(),
            source,
        })?;
    let exit = wait_with_usage(&mut child, Instant::now() + scenario.timeout())
        .map_err(|source| ScenarioError::Wait {
            what: format!("waiting for {what}"),
            source,
        })?
        .ok_or_else(|| failed(what, "timed out".to_owned(), &stderr))?;
    if !exit.status.success() {
        return Err(failed(what, format!("exited with {}", exit.status), &stderr));
    }
    let path = dir.root.join("postfix-inject.json");
    let text = std::fs::read_to_string(&path).map_err(ScenarioError::io(&path))?;
    let summary: VolleySummary = serde_json::from_str(&text).map_err(|e| ScenarioError::Output {
        path: path.clone(),
        line: Some(e.line()),
        reason: format!("not a summary: {e}"),
    })?;
    if summary.delivered != scenario.recipients {
        return Err(failed(
            what,
            format!("injected {} of {} messages", summary.delivered, scenario.recipients),
            &stderr,
        ));
    }
    Ok(summary.delivered)
}

/// Runs `program -c conf args` (postsuper, postqueue).
fn postfix_command(program: &str, conf: &Path, args: &[&str]) -> Result<(), ScenarioError> {
    let path = crate::postfix::find_program(program).unwrap_or_else(|| program.into());
    let out = Command::new(&path)
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .map_err(|source| ScenarioError::Spawn {
            what: program.to_owned(),
            program: path.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ScenarioError::Child {
            what: format!("{program} {}", args.join(" ")),
            reason: format!("exited with {}", out.status),
            stderr_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// `postconf -h name` of the instance, or `unknown`.
fn postconf(conf: &Path, name: &str) -> String {
    let path = crate::postfix::find_program("postconf").unwrap_or_else(|| "postconf".into());
    Command::new(path)
        .arg("-c")
        .arg(conf)
        .args(["-h", name])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Regular files under `dir`, recursively (Postfix hashes some queues into subdirectories).
fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}
