//! `volley warmup show [<ip>|<pool>]` and `volley warmup plot --out F`: where each source IP
//! stands in its warm-up, today's caps and usage per provider group, and the curves as a chart.
//!
//! "Today" is the warm-up clock's (`[warmup] clock_start`/`speed`); usage is read from the
//! counter store `[warmup] counters` names (`<state_dir>/warmup-counters.json`, or Redis)
//! without writing it. Blocking
//! file work: this runs outside the async runtime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Context};
use serde::Serialize;
use volley_scheduler::config::{SendConfig, SourceIpConfig, WarmupPolicy};
use volley_scheduler::warmup_counters;
use volley_warmup::counters::{Counts, Window, COUNTERS_FILE};
use volley_warmup::{day_of, Caps, UtcDay, WarmupState};

/// Arguments of `volley warmup`.
#[derive(clap::Args)]
pub struct WarmupArgs {
    #[command(subcommand)]
    action: Action,
    /// The operator configuration.
    #[arg(long, global = true, default_value = "volley.toml")]
    config: PathBuf,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Per source IP: warm, or its curve and day; per provider group today's caps and usage.
    #[command(
        after_help = "Examples:\n  volley warmup show\n  volley warmup show 127.0.0.3 --json\n  volley warmup show bulk"
    )]
    Show {
        /// A source IP or a pool name (without it: every source IP).
        target: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Draw the daily cap per provider group vs warm-up day of the curves the IPs use (every
    /// shipped curve when none is used), with each warming IP's position today, as SVG.
    #[command(after_help = "Example:\n  volley warmup plot --out warmup.svg")]
    Plot {
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs the command.
pub fn run(args: WarmupArgs) -> anyhow::Result<bool> {
    let (config, config_path) = load_config(args.config)?;
    let policy = config
        .warmup_policy(&config_path)
        .context("refusing to start: the warm-up settings are invalid")?;
    let now = config.warmup.clock().now();
    match args.action {
        Action::Show { target, json } => show(&config, &policy, target.as_deref(), now, json),
        Action::Plot { out } => crate::warmup_plot::write(&config, &policy, now, &out),
    }
}

/// The configuration at `path`, validated.
pub fn load_config(path: PathBuf) -> anyhow::Result<(SendConfig, PathBuf)> {
    let config = SendConfig::load(&path).context("refusing to start: the configuration is invalid")?;
    Ok((config, path))
}

/// What each (IP, provider group) pair sent in the window of `now`, from the counter store
/// `[warmup] counters` names (the embedded file, or Redis); zeros when the embedded store has
/// no file yet (nothing is created).
pub fn used_counts(
    config: &SendConfig,
    ips: &[IpAddr],
    providers: &[String],
    now: SystemTime,
) -> anyhow::Result<HashMap<(IpAddr, String), Counts>> {
    let dir = &config.state_dir;
    let mut used = HashMap::new();
    let redis = config.suppression.redis.as_deref();
    let embedded = warmup_counters::redis_url(&config.warmup, redis)?.is_none();
    if embedded && !dir.join(COUNTERS_FILE).exists() {
        return Ok(used);
    }
    let mut store = warmup_counters::open(&config.warmup, redis, dir).context("opening the warm-up counters")?;
    for ip in ips {
        for provider in providers {
            let counts = store
                .load(*ip, provider, Window::of(now))
                .with_context(|| format!("reading the warm-up counters of {ip} / {provider}"))?;
            used.insert((*ip, provider.clone()), counts);
        }
    }
    Ok(used)
}

/// The source IPs `target` names: all, one IP, or a pool's; an unknown name is an error that
/// lists the IPs and pools there are.
pub fn select<'a>(config: &'a SendConfig, target: Option<&str>) -> anyhow::Result<Vec<&'a SourceIpConfig>> {
    let Some(target) = target else {
        return Ok(config.source_ips.iter().collect());
    };
    if let Ok(ip) = target.parse::<IpAddr>() {
        let found: Vec<_> = config.source_ips.iter().filter(|s| s.address == ip).collect();
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let found: Vec<_> = config.source_ips.iter().filter(|s| s.pool == target).collect();
    if found.is_empty() {
        let ips: Vec<String> = config.source_ips.iter().map(|s| s.address.to_string()).collect();
        let mut pools: Vec<&str> = config.source_ips.iter().map(|s| s.pool.as_str()).collect();
        pools.sort_unstable();
        pools.dedup();
        bail!(
            "no source IP or pool named `{target}` (source IPs: {}; pools: {})",
            ips.join(", "),
            pools.join(", ")
        );
    }
    Ok(found)
}

/// One IP as `show` reports it.
#[derive(Serialize)]
struct IpReport {
    ip: IpAddr,
    pool: String,
    /// `warm`, `warming`, `finished` (past the curve's last day) or `not started`.
    status: &'static str,
    curve: Option<String>,
    start: Option<UtcDay>,
    day: Option<u32>,
    last_day: Option<u32>,
    today: UtcDay,
    providers: Vec<PairReport>,
}

#[derive(Serialize)]
struct PairReport {
    provider: String,
    /// Today's caps; `null`: no cap.
    daily: Option<u64>,
    hourly: Option<u64>,
    used_today: u64,
    used_this_hour: u64,
}

fn show(
    config: &SendConfig,
    policy: &WarmupPolicy,
    target: Option<&str>,
    now: SystemTime,
    json: bool,
) -> anyhow::Result<bool> {
    let ips = select(config, target)?;
    let names = policy.providers.names();
    let addrs: Vec<IpAddr> = ips.iter().map(|s| s.address).collect();
    let used = used_counts(config, &addrs, names, now)?;
    let today = UtcDay::of(now);
    let mut reports = Vec::with_capacity(ips.len());
    for source in ips {
        let state = policy
            .states
            .iter()
            .find(|(ip, _)| *ip == source.address)
            .map_or(WarmupState::Warm, |(_, s)| s.clone());
        reports.push(report(source, &state, policy, today, names, &used));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(true);
    }
    println!("warm-up clock: {}", humantime::format_rfc3339_seconds(now));
    for r in &reports {
        let status = match (r.status, &r.curve, r.start, r.day, r.last_day) {
            ("warming", Some(c), Some(s), Some(d), Some(m)) => format!("curve {c}, day {d} of {m} (started {s})"),
            ("not started", Some(c), Some(s), _, _) => format!("curve {c}, starts {s}"),
            ("finished", Some(c), Some(s), _, Some(m)) => format!("warm: curve {c} ended after day {m} (started {s})"),
            _ => "warm".to_string(),
        };
        println!("{} (pool {}): {status}", r.ip, r.pool);
        for p in &r.providers {
            let caps = match (p.daily, p.hourly) {
                (Some(d), Some(h)) => format!("daily cap {d}, hourly cap {h}"),
                _ => "no cap".to_string(),
            };
            println!(
                "  {:<10} {caps}; used today {}, this hour {}",
                p.provider, p.used_today, p.used_this_hour
            );
        }
    }
    Ok(true)
}

fn report(
    source: &SourceIpConfig,
    state: &WarmupState,
    policy: &WarmupPolicy,
    today: UtcDay,
    names: &[String],
    used: &HashMap<(IpAddr, String), Counts>,
) -> IpReport {
    // The curve and today's day on it, for a warming IP.
    let on_curve = match state {
        WarmupState::Warm => None,
        WarmupState::Warming { curve, start } => Some((curve, *start, day_of(*start, today))),
    };
    let loaded = on_curve.and_then(|(c, _, _)| policy.curves.get(c));
    let last_day = loaded.map(|c| c.last_day());
    let status = match (on_curve, last_day) {
        (None, _) => "warm",
        (Some((_, _, 0)), _) => "not started",
        (Some((_, _, day)), Some(last)) if day > last => "finished",
        _ => "warming",
    };
    let caps = |p: &str| -> Option<Caps> { loaded.zip(on_curve).and_then(|(c, (_, _, day))| c.caps(day, p)) };
    let providers = names
        .iter()
        .map(|p| {
            let caps = caps(p);
            let counts = used.get(&(source.address, p.clone())).copied().unwrap_or_default();
            PairReport {
                provider: p.clone(),
                daily: caps.map(|c| c.daily),
                hourly: caps.map(|c| c.hourly),
                used_today: counts.day,
                used_this_hour: counts.hour,
            }
        })
        .collect();
    IpReport {
        ip: source.address,
        pool: source.pool.clone(),
        status,
        curve: on_curve.map(|(c, _, _)| c.clone()),
        start: on_curve.map(|(_, s, _)| s),
        day: on_curve.map(|(_, _, d)| d),
        last_day,
        today,
        providers,
    }
}
