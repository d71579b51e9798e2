//! `volley-bench` — benchmark helpers that run beside `volley` as their own processes.
//!
//! - `volley-bench dns --listen 127.0.0.1:5353 --domains 10000 --sites 100 --mx-ip 127.0.0.10`:
//!   an authoritative DNS server on loopback (UDP and TCP) for the generated zone
//!   `d{i}.bench.test` -> MX 10 `mx{j}a.sites.bench.test`, MX 20 `mx{j}b.sites.bench.test`
//!   (`j = i % sites`) -> A `mx-ip` (round-robin by site). Prints
//!   `dns listening on ADDR (N domains, S sites)` once it answers, then runs until SIGINT/SIGTERM.
//!   With port 0 it picks a port free for both UDP and TCP and prints it.
//! - `volley-bench run [SCENARIO.toml] [--recipients N] [--dkim rsa] [--fault SPEC]... [--json F]`:
//!   runs a benchmark scenario end to end (`volley sink` and `volley send` children) and prints
//!   msg/s, delivery latency p50/p99, CPU seconds per 1,000 messages, peak RSS, the time
//!   against the ideal from the receivers' limits and checks; `--peer postfix` also delivers the
//!   mix through a private Postfix relay; see
//!   [`volley_bench::scenario`]. Exit 0 when every check holds, 1 when one fails, 2 on error.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use volley_bench::dns::{BenchDns, BenchZone};
use volley_bench::scenario::{self, DkimMode, Overrides, RunOptions, Scenario};

#[derive(Parser, Debug)]
#[command(name = "volley-bench", version, about = "Volley benchmark helpers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a generated zone of recipient domains and MX sites on loopback (UDP + TCP).
    Dns(DnsArgs),
    /// Run a benchmark scenario end to end: generate the list, start `volley sink` child(ren)
    /// and `volley send`, print msg/s, latency percentiles, CPU per 1,000 messages, peak RSS.
    Run(RunArgs),
}

/// `volley-bench run` flags; each given flag replaces the scenario file's value.
#[derive(Args, Debug)]
struct RunArgs {
    /// The scenario file (TOML); without it, the built-in default (benches/scenarios/default.toml).
    scenario: Option<PathBuf>,
    /// Recipients to generate.
    #[arg(long, value_name = "N")]
    recipients: Option<u64>,
    /// Text body size in bytes.
    #[arg(long, value_name = "BYTES")]
    message_size: Option<usize>,
    /// DKIM signing.
    #[arg(long, value_enum)]
    dkim: Option<DkimMode>,
    /// Source IPs (127.0.0.2 onwards).
    #[arg(long, value_name = "K")]
    source_ips: Option<u8>,
    /// Sink processes (domain group g goes to sink g % N).
    #[arg(long, value_name = "N")]
    sinks: Option<usize>,
    /// Seed of the recipient list's shuffle.
    #[arg(long)]
    seed: Option<u64>,
    /// Sinks do not offer STARTTLS; volley sends in clear.
    #[arg(long)]
    no_tls: bool,
    /// Percentage of RCPT the sinks answer 451.
    #[arg(long, value_name = "PCT")]
    tempfail: Option<f64>,
    /// Percentage of RCPT the sinks answer 550.
    #[arg(long, value_name = "PCT")]
    permfail: Option<f64>,
    /// Sink reply fault STAGE:KIND[:ARG][@PCT][#COUNT], repeatable (replaces the file's list).
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// Also write the figures as JSON to this file (`-`: stdout, the table then goes to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the work directory (inputs, configs, logs, state) here; must be empty.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// After volley, deliver the same mix with a peer into fresh sinks and compare
    /// (`postfix`: a private Postfix relay; needs root).
    #[arg(long, value_enum)]
    peer: Option<scenario::Peer>,
    /// The volley binary (default: `volley` next to this executable).
    #[arg(long, value_name = "PATH")]
    volley: Option<PathBuf>,
}

/// `volley-bench dns` flags.
#[derive(Args, Debug)]
struct DnsArgs {
    /// Loopback address to listen on, UDP and TCP (port 0: any port free for both).
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// Number of recipient domains, `d0.bench.test` .. `d{N-1}.bench.test`.
    #[arg(long, default_value_t = 10_000)]
    domains: usize,
    /// Number of MX sites; domain i uses site i % sites.
    #[arg(long, default_value_t = 100)]
    sites: usize,
    /// Address of the MX hosts (loopback); repeat to spread sites over several, round-robin.
    #[arg(long = "mx-ip", required = true)]
    mx_ips: Vec<Ipv4Addr>,
    /// Zone origin.
    #[arg(long, default_value = volley_bench::dns::DEFAULT_ORIGIN)]
    origin: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // Child processes and blocking waits: no async runtime.
        Command::Run(args) => {
            return match run_scenario(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("volley-bench: {}", render(&e));
                    ExitCode::from(2)
                }
            };
        }
        other => other,
    };
    // Two workers: the UDP receive loops keep draining while queries are answered.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("volley-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Dns(args) => run_dns(args).await,
            Command::Run(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once (library errors often repeat their source's text).
fn render(e: &anyhow::Error) -> String {
    volley_bench::error_chain(e.as_ref())
}

/// `volley-bench run`: `Ok(false)` when the run finished but a check failed.
fn run_scenario(args: RunArgs) -> anyhow::Result<bool> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path)?,
        None => Scenario::builtin()?,
    };
    scenario.apply(&Overrides {
        recipients: args.recipients,
        message_size: args.message_size,
        dkim: args.dkim,
        source_ips: args.source_ips,
        sinks: args.sinks,
        seed: args.seed,
        tls: args.no_tls.then_some(false),
        tempfail: args.tempfail,
        permfail: args.permfail,
        faults: args.faults,
    })?;
    let options = RunOptions {
        volley: args.volley.unwrap_or_else(scenario::default_volley),
        keep: args.keep,
        scenario_file: args.scenario.unwrap_or_else(|| PathBuf::from(scenario::BUILTIN_NAME)),
        verbose: true,
        peer: args.peer,
    };
    let report = scenario::run(&scenario, &options)?;
    let json = serde_json::to_string_pretty(&report).context("serialising the report")?;
    match args.json.as_deref() {
        Some(path) if path == std::path::Path::new("-") => {
            eprint!("{}", report.render());
            println!("{json}");
        }
        Some(path) => {
            print!("{}", report.render());
            std::fs::write(path, json + "\n").with_context(|| format!("writing the report to {}", path.display()))?;
        }
        None => print!("{}", report.render()),
    }
    Ok(report.ok)
}

async fn run_dns(args: DnsArgs) -> anyhow::Result<()> {
    let zone = BenchZone {
        domains: args.domains,
        sites: args.sites,
        mx_ips: args.mx_ips,
        origin: args.origin,
    };
    let dns = BenchDns::start(args.listen, &zone)
        .await
        .with_context(|| format!("starting the bench DNS server on {}", args.listen))?;
    println!(
        "dns listening on {} ({} domains, {} sites)",
        dns.local_addr(),
        dns.domains(),
        dns.sites()
    );
    shutdown_signal().await?;
    dns.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
