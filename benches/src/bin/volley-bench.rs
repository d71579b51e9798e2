//! `volley-bench` — benchmark helpers that run beside `volley` as their own processes.
//!
//! - `volley-bench dns --listen 127.0.0.1:5353 --domains 10000 --sites 100 --mx-ip 127.0.0.10`:
//!   an authoritative DNS server on loopback (UDP and TCP) for the generated zone
//!   `d{i}.bench.test` -> MX 10 `mx{j}a.sites.bench.test`, MX 20 `mx{j}b.sites.bench.test`
//!   (`j = i % sites`) -> A `mx-ip` (round-robin by site). Prints
//!   `dns listening on ADDR (N domains, S sites)` once it answers, then runs until SIGINT/SIGTERM.
//!   With port 0 it picks a port free for both UDP and TCP and prints it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use volley_bench::dns::{BenchDns, BenchZone};

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
        match cli.command {
            Command::Dns(args) => run_dns(args).await,
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
