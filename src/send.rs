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

/// Runs the campaign; `Ok(true)` when every recipient has an outcome.
pub async fn run(args: SendArgs) -> anyhow::Result<bool> {
    let config_path = args.config.unwrap_or_else(|| PathBuf::from("volley.toml"));
    let config = SendConfig::load(&config_path).with_context(|| "refusing to start: the configuration is invalid")?;
    let campaign = Campaign::load(&args.campaign).context("refusing to start: the campaign is invalid")?;
    let summary = volley_scheduler::send::run(&campaign, &config)
        .await
        .with_context(|| format!("campaign {} failed", campaign.id()))?;
    crate::report::print(&summary, 10);
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("serialising the summary")?;
        std::fs::write(path, json).with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    Ok(true)
}
