//! `volley cluster publish|work|status|pause|resume|cancel`: one campaign sent by several
//! nodes through Redis (`[cluster]` in the configuration; see the scheduler's `cluster`
//! module).
//!
//! Exit codes: 0 when `publish` published the whole file or `work` saw the campaign complete
//! — or when the campaign was cancelled (not an error) —, 1 when stopped before that
//! (SIGINT/SIGTERM; rerun to continue), 2 on an error (a resume of a cancelled campaign).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use volley_scheduler::cluster::{self, CampaignState, ClusterError, Keys, Store};
use volley_scheduler::config::SendConfig;

/// Arguments of `volley cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Publish a campaign: its definition and its recipients in chunks (once, from any node;
    /// rerun to continue after an interruption).
    #[command(after_help = "Example:\n  volley cluster publish campaigns/news.toml --config volley.toml")]
    Publish {
        /// The campaign definition (TOML).
        campaign: PathBuf,
        /// The operator configuration (its `[cluster]` table).
        #[arg(long, default_value = "volley.toml")]
        config: PathBuf,
    },
    /// Send chunks of a published campaign from this node until every chunk is acknowledged.
    #[command(
        after_help = "Example:\n  volley cluster work news-2026-12 --config volley.toml --summary-json node-a.json"
    )]
    Work {
        /// The campaign id.
        campaign: String,
        /// The operator configuration: `[cluster] node_id`, this node's source IPs and state
        /// directory.
        #[arg(long, default_value = "volley.toml")]
        config: PathBuf,
        /// Write this node's report as JSON to this file.
        #[arg(long)]
        summary_json: Option<PathBuf>,
    },
    /// A campaign's progress and outcome counts across all nodes, as JSON.
    #[command(
        after_help = "Examples:\n  volley cluster status news-2026-12\n  volley cluster status news-2026-12 --memory"
    )]
    Status {
        /// The campaign id.
        campaign: String,
        /// The operator configuration (its `[cluster]` table).
        #[arg(long, default_value = "volley.toml")]
        config: PathBuf,
        /// Add Redis memory figures (`INFO memory`, `MEMORY USAGE` of each key).
        #[arg(long)]
        memory: bool,
    },
    /// Pause a campaign on every node: nothing new is sent, no chunk is taken, leases are
    /// kept. Prints the status.
    #[command(after_help = "Example:\n  volley cluster pause news-2026-12 --config volley.toml")]
    Pause(StateArgs),
    /// Resume a paused campaign on every node. Prints the status.
    #[command(after_help = "Example:\n  volley cluster resume news-2026-12 --config volley.toml")]
    Resume(StateArgs),
    /// Cancel a campaign on every node (final): nodes stop their chunks and return, the
    /// publisher stops. Prints the status.
    #[command(after_help = "Example:\n  volley cluster cancel news-2026-12 --config volley.toml")]
    Cancel(StateArgs),
}

/// Arguments of `volley cluster pause|resume|cancel`.
#[derive(clap::Args)]
struct StateArgs {
    /// The campaign id.
    campaign: String,
    /// The operator configuration (its `[cluster]` table).
    #[arg(long, default_value = "volley.toml")]
    config: PathBuf,
}

fn load(path: &Path) -> anyhow::Result<(SendConfig, cluster::ClusterConfig)> {
    let config = SendConfig::load(path).context("refusing to start: the configuration is invalid")?;
    let cluster = config
        .cluster
        .clone()
        .ok_or(ClusterError::NotConfigured)
        .with_context(|| path.display().to_string())?;
    Ok((config, cluster))
}

/// Runs `volley cluster`; `Ok(false)` when `publish` was stopped before the end or `work`
/// before the campaign was complete.
pub async fn run(args: ClusterArgs) -> anyhow::Result<bool> {
    match args.action {
        Action::Publish { campaign, config } => {
            let (config, cluster) = load(&config)?;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let watcher = tokio::spawn(async move {
                crate::send::terminated().await;
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            let (dirs, state_dir) = (config.template_dirs.clone(), config.state_dir.clone());
            let path = campaign.clone();
            let published = tokio::task::spawn_blocking(move || {
                cluster::publish::publish(&path, &dirs, &state_dir, &cluster, &stop)
            })
            .await
            .context("publisher stopped")?
            .with_context(|| format!("publishing {}", campaign.display()))?;
            watcher.abort();
            println!("{}", serde_json::to_string_pretty(&published)?);
            Ok(published.complete || published.cancelled)
        }
        Action::Work {
            campaign,
            config,
            summary_json,
        } => {
            let (config, _) = load(&config)?;
            let report = cluster::work::work(&campaign, &config, None, crate::send::interrupted())
                .await
                .with_context(|| format!("cluster campaign {campaign}"))?;
            let json = serde_json::to_vec_pretty(&report)?;
            if let Some(path) = summary_json {
                std::fs::write(&path, &json).with_context(|| path.display().to_string())?;
            }
            println!("{}", String::from_utf8_lossy(&json));
            Ok(report.complete || report.cancelled)
        }
        Action::Status {
            campaign,
            config,
            memory,
        } => {
            let (_, cluster) = load(&config)?;
            tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
                let keys = Keys::new(&campaign);
                let store = Store::for_campaign(&cluster.redis, &keys)?;
                let status = store.status(&campaign, &keys)?;
                let mut json = serde_json::to_value(&status)?;
                if memory {
                    let (used, keys) = store.memory(&keys)?;
                    json["memory"] = serde_json::json!({ "used_memory": used, "keys": keys });
                }
                println!("{}", serde_json::to_string_pretty(&json)?);
                Ok(true)
            })
            .await
            .context("status stopped")?
        }
        Action::Pause(args) => set_state(args, CampaignState::Paused).await,
        Action::Resume(args) => set_state(args, CampaignState::Running).await,
        Action::Cancel(args) => set_state(args, CampaignState::Cancelled).await,
    }
}

/// Sets the campaign's state and prints its status.
async fn set_state(args: StateArgs, to: CampaignState) -> anyhow::Result<bool> {
    let (_, cluster) = load(&args.config)?;
    let id = args.campaign;
    tokio::task::spawn_blocking(move || -> anyhow::Result<bool> {
        let status =
            cluster::control::set(&cluster.redis, &id, to).with_context(|| format!("cluster campaign {id}"))?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        Ok(true)
    })
    .await
    .context("stopped")?
}
