//! `volley` — the command line on top of the scheduler, engine and sink.
//!
//! ## Layout
//! - `main.rs` — argument parsing and dispatch; errors printed with their context chain.
//! - `send.rs` — `volley send`: run a campaign, print and write the summary.
//! - `serve/` — `volley serve`: the HTTP control API (launch, watch, pause, resume, cancel,
//!   IPs, suppression, queues) over one long-lived send service.
//! - `queue_cmd.rs` — `volley queue`: queue control (show, suspend, resume, retry, bounce,
//!   purge) through `volley serve`'s API.
//! - `progress.rs` — live progress of `volley send` (a terminal display, JSON lines otherwise)
//!   and of `volley serve`'s campaigns; `progress_bars.rs` — the terminal display, fitted to
//!   its width.
//! - `metrics.rs` — Prometheus `/metrics` of a running `volley send` (`--metrics ADDR`).
//! - `demo.rs` — `volley demo`: the whole pipeline on loopback with an in-process sink.
//! - `report.rs` — the human-readable end-of-run report.
//! - `suppress.rs` — `volley suppress`: the suppression list by hand (add, remove, check,
//!   import, export).
//! - `user_cmd.rs` — `volley user add/remove/list`: the submission listener's users.
//! - `dkim.rs` — `volley dkim keygen`: a new DKIM key, its DNS record and `[[dkim]]` entry.
//! - `warmup_cmd.rs` — `volley warmup show`: each source IP's warm-up day, caps and usage.
//! - `warmup_plot.rs` — `volley warmup plot`: the curves and the IPs' positions as SVG.
//! - `plan_cmd.rs` — `volley plan`: when a campaign's share of each provider group will be sent.
//! - `check_config.rs` — `volley check-config`: every pre-send check, each problem named.
//! - `check_dns.rs` — `volley check-dns`: SPF, DKIM, DMARC, FCrDNS and bounce MX in live DNS.
//! - `check_destination.rs` — `volley check-config --destination`: which `[[destination]]`
//!   blocks apply to a domain or MX host, and every effective setting with its source.
//! - `numbers.rs` — thousands separators, axis labels and percentages for reports and charts.
//! - `html_report/` — `volley report`: an accounting log as an HTML page with SVG charts (also
//!   written at the end of `volley send` and `volley demo`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check_config;
mod check_destination;
mod check_dns;
mod cluster_cmd;
mod demo;
mod dkim;
mod html_report;
mod inbound_cmd;
mod memory;
mod metrics;
mod numbers;
mod plan_cmd;
mod progress;
mod progress_bars;
mod queue_cmd;
mod report;
mod reputation_cmd;
mod send;
mod serve;
mod suppress;
mod user_cmd;
mod warmup_cmd;
mod warmup_plot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Volley: a high-throughput bulk-email sending engine.
#[derive(Parser)]
#[command(name = "volley", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a campaign to completion.
    #[command(
        after_help = "Examples:\n  volley send campaigns/news.toml --config volley.toml --summary-json summary.json\n  \
                            volley send a.toml b.toml --progress json --progress-every 30s --metrics 127.0.0.1:9464"
    )]
    Send(send::SendArgs),
    /// Run the whole pipeline on loopback against an in-process sink (no Redis, no DNS).
    #[command(after_help = "Example:\n  volley demo --recipients 10000 --dir demo-out")]
    Demo(demo::DemoArgs),
    /// Manage the suppression list: add, remove, check, import, export.
    #[command(
        after_help = "Examples:\n  volley suppress add someone@example.com --reason complaint\n  \
                            volley suppress import unsubscribes.csv --list news\n  \
                            volley suppress check someone@example.com --list news"
    )]
    Suppress(suppress::SuppressArgs),
    /// DKIM keys: generate one and print the DNS record to publish.
    #[command(
        after_help = "Example:\n  volley dkim keygen --domain example.com --selector s2026 --algorithm ed25519 --out s2026.pem"
    )]
    Dkim(dkim::DkimArgs),
    /// Warm-up: each source IP's day, caps and usage today (`show`), the curves as SVG (`plot`).
    #[command(after_help = "Examples:\n  volley warmup show 127.0.0.3\n  volley warmup plot --out warmup.svg")]
    Warmup(warmup_cmd::WarmupArgs),
    /// Predict when a campaign's recipients per provider group will be sent under warm-up
    /// budgets (sends nothing).
    #[command(
        after_help = "Examples:\n  volley plan campaigns/news.toml\n  volley plan campaigns/news.toml --every 1h --json"
    )]
    Plan(plan_cmd::PlanArgs),
    /// Serve the HTTP control API (bearer token from `[api]`): launch, watch, pause, resume and
    /// cancel campaigns that share one pool; source IPs; the suppression list.
    #[command(
        after_help = "Example:\n  volley serve --config volley.toml --listen 127.0.0.1:8025\n  \
                            curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8025/campaigns"
    )]
    Serve(serve::ServeArgs),
    /// Check a configuration (and campaigns) without sending: keys, IPs, curves, Redis.
    #[command(
        after_help = "Examples:\n  volley check-config --config volley.toml campaigns/news.toml\n  \
                            volley check-config --config volley.toml --destination gmail.com"
    )]
    CheckConfig(check_config::CheckArgs),
    /// Check the sender's DNS: SPF for every source IP, DKIM records against the keys, DMARC
    /// policy and alignment, reverse DNS (FCrDNS) of every source IP, the bounce domain's MX.
    #[command(
        after_help = "Examples:\n  volley check-dns --config volley.toml campaigns/news.toml\n  \
                            volley check-dns --config volley.toml --bounce-domain bounces.example.com --json"
    )]
    CheckDns(check_dns::CheckDnsArgs),
    /// Turn an accounting log into an HTML report with charts (readable offline).
    #[command(after_help = "Example:\n  volley report state/news/accounting.jsonl --out news.html")]
    Report(html_report::ReportArgs),
    /// The inbound SMTP listener for bounces (DSN), complaints (ARF) and mailed unsubscribes:
    /// every report suppresses and is logged per campaign ([inbound] and [feedback]).
    #[command(after_help = "Example:\n  volley inbound --config volley.toml --listen 0.0.0.0:25")]
    Inbound(inbound_cmd::InboundArgs),
    /// Reputation holds: a campaign or a (source IP, provider group) the complaint or
    /// hard-bounce guard stopped; show them, lift one.
    #[command(
        after_help = "Examples:\n  volley reputation show\n  volley reputation resume --campaign news\n  \
                            volley reputation resume --ip 192.0.2.10 --provider gmail"
    )]
    Reputation(reputation_cmd::ReputationArgs),
    /// Users of the submission listener (SMTP AUTH for applications): add, remove, list.
    #[command(
        after_help = "Examples:\n  volley user add shop --from-domain shop.example.com --rate 10/s\n  \
                            volley user list\n  volley user remove shop"
    )]
    User(user_cmd::UserArgs),
    /// Queue control through a running `volley serve`: queues by site, domain, source IP or
    /// provider group; suspend, resume, retry now, bounce or purge a scope.
    #[command(
        after_help = "Examples:\n  volley queue show --by site\n  volley queue suspend --domain example.com\n  \
                            volley queue purge --domain example.com --reason \"stale offer\""
    )]
    Queue(queue_cmd::QueueArgs),
    /// Run the smart SMTP sink (fault injection) for tests, benchmarks and dry runs.
    #[command(after_help = "Examples:\n  volley sink --listen 127.0.0.1:2525\n  \
                            volley sink --listen 127.0.0.1:2525 --tempfail 10 --latency 20ms --canned config/sink/providers.toml")]
    Sink(volley_bench::SinkArgs),
    /// One campaign over several nodes through Redis: publish it once, work on it from every
    /// node, read its status, pause, resume or cancel it from any ([cluster] in the
    /// configuration).
    #[command(
        after_help = "Examples:\n  volley cluster publish campaigns/news.toml --config volley.toml\n  \
                            volley cluster work news --config volley.toml\n  volley cluster status news\n  \
                            volley cluster pause news"
    )]
    Cluster(cluster_cmd::ClusterArgs),
}

/// Async worker threads for `command`, when volley chooses (`None`: tokio's default, one per
/// core, or `TOKIO_WORKER_THREADS` when the operator set it). Sending (`send`, `serve`) leaves
/// one core to the threads that read the recipient file and render every message (and sign it,
/// with DKIM on its own pool): on 2 cores one async worker used ~8 % less CPU per message than
/// two for the same throughput (benches/RESULTS.md, 2026-12-01). `demo` runs the sink in the
/// same process and keeps every core.
fn async_workers(command: &Command, operator_set: bool) -> Option<usize> {
    if operator_set || !matches!(command, Command::Send(_) | Command::Serve(_)) {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(cores.saturating_sub(1).max(1))
}

fn main() -> ExitCode {
    let huge_pages = memory::transparent_huge_pages_off();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    tracing::debug!(?huge_pages, "transparent huge pages");
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = async_workers(&cli.command, std::env::var_os("TOKIO_WORKER_THREADS").is_some()) {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Send(args) => send::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Inbound(args) => inbound_cmd::run(args).await,
            Command::Sink(args) => run_sink(args).await,
            Command::Queue(args) => queue_cmd::run(args).await,
            Command::Cluster(args) => cluster_cmd::run(args).await,
            // Blocking store calls: off the runtime's worker threads.
            Command::Suppress(args) => match tokio::task::spawn_blocking(move || suppress::run(args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley suppress stopped: {e}")),
            },
            // Blocking file reads: off the runtime's worker threads.
            Command::Warmup(args) => match tokio::task::spawn_blocking(move || warmup_cmd::run(args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley warmup stopped: {e}")),
            },
            Command::Plan(args) => plan_cmd::run(args).await,
            Command::CheckDns(args) => check_dns::run(args).await,
            // Small file reads and writes: off the runtime's worker threads.
            Command::Reputation(args) => match tokio::task::spawn_blocking(move || reputation_cmd::run(args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley reputation stopped: {e}")),
            },
            // File reads, test binds and Redis round trips: off the runtime's worker threads.
            Command::CheckConfig(args) => match tokio::task::spawn_blocking(move || check_config::run(&args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley check-config stopped: {e}")),
            },
            // One pass over a possibly large file: off the runtime's worker threads.
            Command::Report(args) => match tokio::task::spawn_blocking(move || html_report::run(&args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley report stopped: {e}")),
            },
            // Password hashing is CPU work: off the runtime's worker threads.
            Command::User(args) => match tokio::task::spawn_blocking(move || user_cmd::run(args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley user stopped: {e}")),
            },
            // Key generation is CPU work: off the runtime's worker threads.
            Command::Dkim(args) => match tokio::task::spawn_blocking(move || dkim::run(args)).await {
                Ok(result) => result,
                Err(e) => Err(anyhow::anyhow!("volley dkim stopped: {e}")),
            },
        }
    });
    exit_code(result)
}

/// 0 when the command succeeded, 1 when it ran but its check failed, 2 on an error.
fn exit_code(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", render(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each once: library errors often repeat their source in their own
/// message, and `{:#}` would print that text twice.
fn render(e: &anyhow::Error) -> String {
    volley_bench::error_chain(e.as_ref())
}

async fn run_sink(args: volley_bench::SinkArgs) -> anyhow::Result<bool> {
    // Ctrl-C or SIGTERM (a supervisor's or a benchmark script's stop).
    let stats = args.run(send::terminated()).await?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("store s.redb is in use")]
    struct Locked;

    #[derive(Debug, thiserror::Error)]
    #[error("suppression list: {0}")]
    struct Wrapper(#[from] Locked);

    /// Regression: "campaign x failed: suppression list: store s.redb is in use: store s.redb
    /// is in use" — a cause repeated by its wrapper's message is printed once.
    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let e = anyhow::Error::from(Wrapper(Locked)).context("campaign x failed");
        assert_eq!(
            super::render(&e),
            "campaign x failed: suppression list: store s.redb is in use"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::render(&plain), "outer: inner");
    }

    /// Regression (issue 17): `--help` texts gave no example, and some defaults only in prose
    /// (`default volley.toml`) where clap shows none. Every command's help has an example, and
    /// an argument whose help mentions a default has one that clap shows (`[default: …]`).
    #[test]
    fn every_help_shows_an_example_and_its_defaults() {
        fn walk(cmd: &clap::Command, path: &str, problems: &mut Vec<String>) {
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let name = format!("{path} {}", sub.get_name());
                let after = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
                if !after.contains("Example") {
                    problems.push(format!("{name}: no example"));
                }
                for arg in sub.get_arguments() {
                    if !arg.get_action().takes_values() {
                        continue;
                    }
                    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    if help.to_lowercase().contains("default") && arg.get_default_values().is_empty() {
                        problems.push(format!("{name} {}: a default in prose only: {help}", arg.get_id()));
                    }
                }
                walk(sub, &name, problems);
            }
        }
        use clap::CommandFactory;
        let mut cli = super::Cli::command();
        cli.build();
        let mut problems = Vec::new();
        walk(&cli, "volley", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn sending_leaves_a_core_to_the_rendering_threads_unless_the_operator_chose() {
        use clap::Parser;
        let command = |args: &[&str]| super::Cli::try_parse_from(args).map(|c| c.command).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let send = command(&["volley", "send", "c.toml"]);
        assert_eq!(super::async_workers(&send, false), Some(cores.saturating_sub(1).max(1)));
        assert_eq!(super::async_workers(&send, true), None, "TOKIO_WORKER_THREADS wins");
        let demo = command(&["volley", "demo"]);
        assert_eq!(
            super::async_workers(&demo, false),
            None,
            "the demo's sink shares the runtime"
        );
    }
}
