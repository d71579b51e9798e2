//! `volley inbound`: the inbound listener for bounces, complaints and unsubscribes on its own
//! (`[inbound]` and `[feedback]` in volley.toml), until Ctrl-C or SIGTERM. `volley serve` runs
//! the same listener beside its campaigns when `[inbound]` is set.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use volley_scheduler::config::SendConfig;
use volley_scheduler::inbound::InboundService;
use volley_scheduler::suppression::open_store;

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

/// Runs the listener until interrupted.
pub async fn run(args: InboundArgs) -> anyhow::Result<bool> {
    let mut config = SendConfig::load(&args.config).context("refusing to start: the configuration is invalid")?;
    if let (Some(listen), Some(inbound)) = (args.listen, config.inbound.as_mut()) {
        inbound.listen = listen;
    }
    let store = open_store(&config.suppression, &config.state_dir).context("opening the suppression list")?;
    let service = InboundService::start(&config, store, None)
        .await
        .context("refusing to start the inbound listener")?;
    eprintln!("volley inbound: listening on {}", service.local_addr());
    crate::send::terminated().await;
    service.stop();
    Ok(true)
}
