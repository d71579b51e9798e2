//! `volley send <campaign.toml> [--config volley.toml] [--summary-json path]`.

use std::path::PathBuf;

use anyhow::Context;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;

/// Arguments of `volley send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The campaign definition (TOML).
    campaign: PathBuf,
    /// The operator configuration; default `volley.toml` in the current directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
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
    eprintln!("volley: stopping — waiting for the deliveries on the wire; rerun the same command to resume");
}

/// Runs the campaign; `Ok(true)` when every recipient has a final outcome, `Ok(false)` when it
/// was interrupted or recipients still wait for a retry (rerunning resumes).
pub async fn run(args: SendArgs) -> anyhow::Result<bool> {
    let config_path = args.config.unwrap_or_else(|| PathBuf::from("volley.toml"));
    let config = SendConfig::load(&config_path).with_context(|| "refusing to start: the configuration is invalid")?;
    let campaign = Campaign::load(&args.campaign).context("refusing to start: the campaign is invalid")?;
    let summary = volley_scheduler::send::run_until(&campaign, &config, interrupted())
        .await
        .with_context(|| format!("campaign {} failed", campaign.id()))?;
    crate::report::print(&summary, 10);
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("serialising the summary")?;
        std::fs::write(path, json).with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    if !summary.complete {
        eprintln!(
            "volley: campaign {} stopped with {} recipients waiting; rerun to resume",
            campaign.id(),
            summary.deferred
        );
    }
    Ok(summary.complete)
}
