//! `volley plan <campaign.toml> [--config F] [--json] [--every 1d]`: predicts, from the
//! campaign pool's warm-up budgets, when each provider group's share of the campaign will have
//! been sent, what waits for budget and which IPs carry how much per day. Recipients earlier
//! runs of the campaign finished are left out (a rerun skips them). Sends nothing; the
//! only sockets are MX lookups when `[dns]` is configured.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, Context};
use serde::Serialize;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::plan_input::{classify, count_domains_left, DomainCounts, Unresolved};
use volley_scheduler::routing::{Router, Routes};
use volley_scheduler::send::state::finished_lines;
use volley_warmup::plan::{reason_name, Plan, PlanInput, PlanIp, DEFAULT_MAX_DAYS};
use volley_warmup::WarmupState;

/// Arguments of `volley plan`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// The campaign definition (TOML).
    campaign: PathBuf,
    /// The operator configuration.
    #[arg(long, default_value = "volley.toml")]
    config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The reporting period (`1d`, `1h`…); periods are aligned on UTC days/hours.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Days simulated at most; a provider not done by then is reported unfinished.
    #[arg(long, default_value_t = DEFAULT_MAX_DAYS)]
    max_days: u32,
}

/// What `--json` prints: the recipients' counts and the plan's fields.
#[derive(Serialize)]
struct Report<'a> {
    campaign: &'a str,
    pool: &'a str,
    rows: u64,
    rejected: u64,
    duplicates: u64,
    /// Recipients earlier runs of the campaign finished: not in the plan.
    finished: u64,
    domains: usize,
    unresolved: &'a [Unresolved],
    #[serde(flatten)]
    plan: &'a Plan,
}

/// Runs the command.
pub async fn run(args: PlanArgs) -> anyhow::Result<bool> {
    let PlanArgs {
        campaign,
        config,
        json,
        every,
        max_days,
    } = args;
    // Config, campaign and the recipient stream: blocking file work.
    let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (config, config_path) = crate::warmup_cmd::load_config(config)?;
        let campaign = Campaign::load_with(&campaign, &config.template_dirs)
            .context("refusing to start: the campaign is invalid")?;
        let policy = config
            .warmup_policy(&config_path)
            .context("refusing to start: the warm-up settings are invalid")?;
        let counts = count_left(
            &config.state_dir.join(campaign.id()),
            campaign.recipients(),
            campaign.email_column(),
        )
        .with_context(|| format!("reading the recipients of campaign {}", campaign.id()))?;
        Ok((config, campaign, policy, counts))
    })
    .await
    .map_err(|e| anyhow!("volley plan stopped: {e}"))??;
    let (config, campaign, policy, counts) = loaded;

    let planned = plan_campaign(&config, &policy, &campaign, &counts, every, max_days).await?;
    let (plan, classified) = (planned.plan, planned.classified);

    if json {
        let report = Report {
            campaign: campaign.id(),
            pool: campaign.pool(),
            rows: counts.rows,
            rejected: counts.rejected,
            duplicates: counts.duplicates,
            finished: counts.finished,
            domains: counts.per_domain.len(),
            unresolved: &classified.unresolved,
            plan: &plan,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&campaign, &counts, &classified.unresolved, &plan);
    }
    Ok(true)
}

fn print_text(campaign: &Campaign, counts: &DomainCounts, unresolved: &[Unresolved], plan: &Plan) {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    println!(
        "campaign {} on pool {}, starting {} (warm-up clock)",
        campaign.id(),
        campaign.pool(),
        time(plan.start)
    );
    let recipients: u64 = counts.per_domain.values().sum();
    println!(
        "recipients: {recipients} in {} domain(s); {} rejected row(s), {} duplicate(s) not counted",
        counts.per_domain.len(),
        counts.rejected,
        counts.duplicates
    );
    if counts.finished > 0 {
        println!(
            "earlier runs finished {} recipient(s): the plan covers the rest",
            counts.finished
        );
    }
    if !unresolved.is_empty() {
        let n: u64 = unresolved.iter().map(|u| u.recipients).sum();
        println!(
            "unresolved: {n} recipient(s) in {} domain(s), counted by domain name:",
            unresolved.len()
        );
        for u in unresolved.iter().take(10) {
            println!("  {} ({}, {}): {}", u.domain, u.recipients, u.provider, u.reason);
        }
    }
    for p in &plan.providers {
        match (p.finish, p.finish_after_s) {
            (Some(finish), Some(after)) => println!(
                "{}: {} recipient(s), done {} (after {})",
                p.provider,
                p.recipients,
                time(finish),
                humantime::format_duration(Duration::from_secs(after.round() as u64))
            ),
            _ => println!(
                "{}: {} recipient(s), NOT done within {} days ({} sent)",
                p.provider, p.recipients, plan.max_days, p.sent
            ),
        }
        let until = p.finish.map_or_else(|| "beyond the plan".to_string(), time);
        match (p.waiting, p.held_by) {
            (0, _) => println!("  all at once"),
            (n, held) => println!(
                "  {} at once, {n} wait for budget (mostly the {}) until {until}",
                p.at_once,
                held.unwrap_or(reason_name(volley_warmup::WaitReason::Rate))
            ),
        }
        println!("  per IP: {}", shares(&p.per_ip));
        for period in &p.periods {
            println!("  {}: {} ({})", time(period.start), period.sent, shares(&period.per_ip));
        }
    }
}

fn shares(list: &[volley_warmup::plan::IpShare]) -> String {
    let parts: Vec<String> = list.iter().map(|s| format!("{} {}", s.ip, s.sent)).collect();
    parts.join(", ")
}

/// The recipients a run of the campaign whose state directory is `campaign_dir` still has to
/// send, per domain: the recipient file less rejected rows, duplicates and what earlier runs
/// finished (counted apart). Blocking file work.
pub fn count_left(campaign_dir: &Path, recipients: &Path, email_column: &str) -> anyhow::Result<DomainCounts> {
    let finished = finished_lines(campaign_dir, recipients)
        .with_context(|| format!("reading what earlier runs recorded in {}", campaign_dir.display()))?;
    let work = tempfile::tempdir().context("creating a scratch folder for the duplicate scan")?;
    Ok(count_domains_left(recipients, email_column, work.path(), &finished)?)
}

/// A campaign's plan and how its domains were classified.
pub struct Planned {
    /// The prediction.
    pub plan: Plan,
    /// Recipients per provider group, and the domains classified by name only.
    pub classified: volley_scheduler::plan_input::ProviderCounts,
}

/// Predicts `campaign` on its pool's warm-up budgets from the warm-up clock's now, with the
/// usage already counted today (shared by `volley plan` and the ETA `volley send` prints).
pub async fn plan_campaign(
    config: &volley_scheduler::config::SendConfig,
    policy: &volley_scheduler::config::WarmupPolicy,
    campaign: &Campaign,
    counts: &DomainCounts,
    every: Duration,
    max_days: u32,
) -> anyhow::Result<Planned> {
    let routes = Routes::new(&config.routes).map_err(|e| anyhow!("config routes: {e}"))?;
    let resolver = match &config.dns {
        Some(dns) => Some(volley_engine::mx::MxResolver::new(dns).context("config [dns]")?),
        None => None,
    };
    let router = Router::new(routes, resolver, config.mx_port);
    let classified = classify(&counts.per_domain, &router, &policy.providers, config.dns.is_some()).await;

    let pool = config
        .pool(campaign.pool())
        .map_err(|e| anyhow!("campaign {}: {e}", campaign.id()))?;
    let ips: Vec<PlanIp> = pool
        .iter()
        .filter(|s| s.weight > 0)
        .map(|s| PlanIp {
            ip: s.address,
            state: policy
                .states
                .iter()
                .find(|(ip, _)| *ip == s.address)
                .map_or(WarmupState::Warm, |(_, st)| st.clone()),
            rate: s.rate,
            weight: s.weight,
        })
        .collect();
    let start = config.warmup.clock().now();
    let addrs: Vec<IpAddr> = ips.iter().map(|ip| ip.ip).collect();
    let names: Vec<String> = classified.per_provider.keys().cloned().collect();
    let mut input = PlanInput::new(ips, policy.curves.clone(), classified.per_provider.clone(), start);
    input.used_today = crate::warmup_cmd::used_counts(config, &addrs, &names, start)?;
    input.every = every;
    input.max_days = max_days;
    // The simulation is CPU work: off the runtime's worker threads.
    let campaign_id = campaign.id().to_string();
    let pool_name = campaign.pool().to_string();
    let plan = tokio::task::spawn_blocking(move || volley_warmup::plan(&input))
        .await
        .map_err(|e| anyhow!("volley plan stopped: {e}"))?
        .with_context(|| format!("planning campaign {campaign_id} on pool {pool_name}"))?;

    Ok(Planned { plan, classified })
}
