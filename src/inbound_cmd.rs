//! `volley inbound`: the inbound listener for bounces, complaints and unsubscribes
//! (`[inbound]` and `[feedback]` in volley.toml) and the one-click unsubscribe endpoint
//! (`[unsubscribe]`), on their own, until Ctrl-C or SIGTERM. `volley serve` runs the same
//! beside its campaigns when they are configured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use volley_scheduler::config::SendConfig;
use volley_scheduler::inbound::{Applier, InboundService};
use volley_scheduler::reputation::Guards;
use volley_scheduler::suppression::{open_store, SuppressionStore};
use volley_scheduler::unsubscribe::{UnsubscribeCounters, UnsubscribeService};

/// Arguments of `volley inbound`.
#[derive(clap::Args)]
pub struct InboundArgs {
    /// The operator configuration.
    #[arg(long, default_value = "volley.toml")]
    config: PathBuf,
    /// Listen here instead of `[inbound] listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// Runs the listeners until interrupted.
pub async fn run(args: InboundArgs) -> anyhow::Result<bool> {
    let mut config = SendConfig::load(&args.config).context("refusing to start: the configuration is invalid")?;
    if let (Some(listen), Some(inbound)) = (args.listen, config.inbound.as_mut()) {
        inbound.listen = listen;
    }
    if config.inbound.is_none() && config.unsubscribe.is_none() {
        anyhow::bail!(
            "refusing to start: {} has neither [inbound] nor [unsubscribe]",
            args.config.display()
        );
    }
    let store = open_store(&config.suppression, &config.state_dir).context("opening the suppression list")?;
    let services = FeedbackServices::start(&config, store, None, Arc::default(), "volley inbound").await?;
    crate::send::terminated().await;
    drop(services);
    Ok(true)
}

/// The inbound listener and the unsubscribe endpoint, each when configured, acting through
/// one [`Applier`] (so a mailed and a clicked unsubscribe of one recipient count once).
/// They stop when this is dropped.
pub struct FeedbackServices {
    _inbound: Option<InboundService>,
    _unsubscribe: Option<UnsubscribeService>,
}

impl FeedbackServices {
    /// Starts what `config` asks for; `who` prefixes the lines saying where they listen.
    pub async fn start(
        config: &SendConfig,
        store: Arc<dyn SuppressionStore>,
        guards: Option<Arc<Guards>>,
        counters: Arc<UnsubscribeCounters>,
        who: &str,
    ) -> anyhow::Result<FeedbackServices> {
        if config.inbound.is_none() && config.unsubscribe.is_none() {
            return Ok(FeedbackServices {
                _inbound: None,
                _unsubscribe: None,
            });
        }
        // Reads every feedback log's event ids: only when something will use it.
        let applier = Arc::new(Applier::for_config(config, store, guards));
        let inbound = match &config.inbound {
            Some(_) => {
                let inbound = InboundService::start_with(config, applier.clone())
                    .await
                    .context("refusing to start the inbound listener")?;
                eprintln!("{who}: inbound SMTP on {}", inbound.local_addr());
                Some(inbound)
            }
            None => None,
        };
        let unsubscribe = match &config.unsubscribe {
            Some(settings) => {
                let endpoint = UnsubscribeService::start(config, applier, counters)
                    .await
                    .context("refusing to start the unsubscribe endpoint")?;
                let scheme = if settings.tls_cert.is_some() { "https" } else { "http" };
                eprintln!(
                    "{who}: one-click unsubscribe endpoint on {scheme}://{} (public, no bearer token)",
                    endpoint.local_addr()
                );
                Some(endpoint)
            }
            None => None,
        };
        Ok(FeedbackServices {
            _inbound: inbound,
            _unsubscribe: unsubscribe,
        })
    }
}
