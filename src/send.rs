//! `volley send <campaign.toml>... [--config volley.toml] [--summary-json path]`.

use std::path::PathBuf;

use anyhow::Context;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;

/// Arguments of `volley send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The campaign definition (TOML). Several campaigns run together over one pool of
    /// connections; where they meet at a site, the higher `priority` sends first.
    #[arg(required = true)]
    campaigns: Vec<PathBuf>,
    /// The operator configuration.
    #[arg(long, default_value = "volley.toml")]
    config: PathBuf,
    /// Write the summary as JSON to this file (an array of summaries for several campaigns).
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics while sending (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Live progress on stderr: a bar on a terminal, JSON status lines otherwise (auto).
    #[arg(long, value_enum, default_value = "auto")]
    progress: crate::progress::Mode,
    /// How often a JSON status line is printed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    progress_every: std::time::Duration,
}

/// Resolves on Ctrl-C or SIGTERM, telling the operator the run stops and how to resume it.
pub async fn interrupted() {
    terminated().await;
    eprintln!("volley: stopping — waiting for the deliveries on the wire; rerun the same command to resume");
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the campaign; `Ok(true)` when every recipient has a final outcome, `Ok(false)` when it
/// was interrupted or recipients still wait for a retry (rerunning resumes).
pub async fn run(args: SendArgs) -> anyhow::Result<bool> {
    let config_path = args.config;
    let config = SendConfig::load(&config_path).with_context(|| "refusing to start: the configuration is invalid")?;
    let mut campaigns = Vec::with_capacity(args.campaigns.len());
    for path in &args.campaigns {
        campaigns.push(
            Campaign::load_with(path, &config.template_dirs).context("refusing to start: the campaign is invalid")?,
        );
    }
    for campaign in &campaigns {
        // With warming IPs in the pool, the budgets decide when each provider is done: say so.
        if let Err(e) = print_eta(&config, &config_path, campaign).await {
            eprintln!("volley: no warm-up estimate for campaign {}: {e:#}", campaign.id());
        }
    }
    let refs: Vec<&Campaign> = campaigns.iter().collect();
    let ids: Vec<&str> = campaigns.iter().map(Campaign::id).collect();
    let live = std::sync::Arc::new(volley_scheduler::live::Live::default());
    let metrics = match args.metrics {
        Some(addr) => Some(crate::metrics::serve(addr, live.clone()).await?),
        None => None,
    };
    let progress = crate::progress::Progress::start(live.clone(), args.progress, args.progress_every);
    let result = volley_scheduler::send::run_observed(&refs, &config, interrupted(), live).await;
    if let Some(progress) = progress {
        progress.finish().await;
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    let summaries = result.with_context(|| format!("campaign {} failed", ids.join(", ")))?;
    let caps = crate::report::warmup_caps(&config, &config_path);
    for summary in &summaries {
        crate::report::print(summary, 10);
        crate::report::write_html(summary, caps.as_ref());
    }
    if let Some(path) = &args.summary_json {
        let json = match summaries.as_slice() {
            [one] => serde_json::to_vec_pretty(one),
            many => serde_json::to_vec_pretty(many),
        }
        .context("serialising the summary")?;
        std::fs::write(path, json).with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    let mut complete = true;
    for summary in summaries.iter().filter(|s| !s.complete) {
        complete = false;
        eprintln!(
            "volley: campaign {} stopped with {} recipients waiting; rerun to resume",
            summary.campaign, summary.deferred
        );
    }
    Ok(complete)
}

/// Prints, when the campaign's pool has warming IPs, the planner's estimate of when each
/// provider group's share will be done (the same prediction as `volley plan`).
async fn print_eta(config: &SendConfig, config_path: &std::path::Path, campaign: &Campaign) -> anyhow::Result<()> {
    let policy = config.warmup_policy(config_path)?;
    let pool = config.pool(campaign.pool()).map_err(anyhow::Error::msg)?;
    let warming = policy.states.iter().any(|(ip, state)| {
        matches!(state, volley_warmup::WarmupState::Warming { .. }) && pool.iter().any(|s| s.address == *ip)
    });
    if !warming {
        return Ok(());
    }
    // What earlier runs finished is not waiting for budget: only the rest is estimated.
    let (dir, recipients, column) = (
        config.state_dir.join(campaign.id()),
        campaign.recipients().to_path_buf(),
        campaign.email_column().to_string(),
    );
    let counts = tokio::task::spawn_blocking(move || crate::plan_cmd::count_left(&dir, &recipients, &column)).await??;
    if counts.finished > 0 {
        eprintln!(
            "volley: campaign {}: earlier runs finished {} recipient(s); the estimate covers the rest",
            campaign.id(),
            counts.finished
        );
    }
    let planned = crate::plan_cmd::plan_campaign(
        config,
        &policy,
        campaign,
        &counts,
        std::time::Duration::from_secs(86_400),
        volley_warmup::plan::DEFAULT_MAX_DAYS,
    )
    .await?;
    for p in &planned.plan.providers {
        let when = p.finish.map_or_else(
            || format!("not within {} days", planned.plan.max_days),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        );
        eprintln!(
            "volley: campaign {}: {} {} recipient(s), warm-up estimate: done {when} ({} wait for budget)",
            campaign.id(),
            p.provider,
            p.recipients,
            p.waiting
        );
    }
    Ok(())
}
