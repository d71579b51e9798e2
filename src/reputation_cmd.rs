//! `volley reputation show` and `volley reputation resume`: the holds the reputation guards
//! placed (a campaign paused, or a source IP taken off a provider group) and lifting one.
//!
//! Holds are files in `<state_dir>/holds/`, so this works whether or not a `volley send` or
//! `volley serve` is running on the same state directory: a running process sees a lifted
//! hold within about a second and sends again. Blocking file work: runs off the runtime.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use volley_scheduler::reputation::{read_overrides, write_override, Hold, HoldDir, Scope};

/// Arguments of `volley reputation`.
#[derive(clap::Args)]
pub struct ReputationArgs {
    #[command(subcommand)]
    action: Action,
    /// The operator configuration (its `state_dir` holds the holds).
    #[arg(long, global = true, default_value = "volley.toml")]
    config: PathBuf,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every hold: what is held, which rate crossed which threshold, over how many messages,
    /// since when.
    #[command(after_help = "Example:\n  volley reputation show --json")]
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift a hold: the campaign sends again, or the source IP takes mail for the provider
    /// group again (its rate window starts over); with `--ip` alone, let a blocklisted IP send
    /// although listed, until its listings clear.
    #[command(
        after_help = "Examples:\n  volley reputation resume --campaign news\n  volley reputation resume --ip 192.0.2.10 --provider gmail\n  \
                      volley reputation resume --ip 192.0.2.10   # send although blocklisted"
    )]
    Resume {
        /// The held campaign.
        #[arg(long, conflicts_with_all = ["ip", "provider"], required_unless_present = "ip")]
        campaign: Option<String>,
        /// The held source IP: with `--provider`, its route's hold; alone, its blocklist pause.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// The provider group the IP is held off (`gmail`, `microsoft`, `yahoo`, `other`, or a
        /// group of the warm-up settings).
        #[arg(long, requires = "ip")]
        provider: Option<String>,
    },
}

/// Runs the command: `Ok(false)` when there was no such hold to lift.
pub fn run(args: ReputationArgs) -> anyhow::Result<bool> {
    let (config, _) = crate::warmup_cmd::load_config(args.config)?;
    let dir = HoldDir::new(&config.state_dir);
    match args.action {
        Action::Show { json } => {
            let holds = list(&dir);
            let overrides = read_overrides(&dir);
            if json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
            } else if holds.is_empty() {
                println!("no holds ({})", dir.path().display());
            } else {
                for h in &holds {
                    println!("{}: held since {}: {}", h.scope, h.since, h.reason());
                }
            }
            if !json {
                for ip in overrides {
                    println!("source IP {ip}: sends although blocklisted (operator override)");
                }
            }
            Ok(true)
        }
        Action::Resume {
            campaign: None,
            ip: Some(ip),
            provider: None,
        } => {
            write_override(&dir, ip).with_context(|| format!("cannot override the listing of {ip}"))?;
            println!(
                "{ip} sends although blocklisted, until its listings clear (a running volley takes this within a second)"
            );
            Ok(true)
        }
        Action::Resume { campaign, ip, provider } => {
            let scope = match (campaign, ip, provider) {
                (Some(campaign), _, _) => Scope::Campaign { campaign },
                (None, Some(source_ip), Some(provider)) => Scope::Route { source_ip, provider },
                _ => bail!("name a campaign (--campaign) or a source IP and provider group (--ip, --provider)"),
            };
            if dir
                .lift(&scope)
                .with_context(|| format!("cannot lift the hold on {scope}"))?
            {
                println!("lifted the hold on {scope}");
                Ok(true)
            } else {
                let held: Vec<String> = list(&dir).iter().map(|h| h.scope.to_string()).collect();
                let held = if held.is_empty() {
                    "nothing is held".to_string()
                } else {
                    format!("held: {}", held.join("; "))
                };
                eprintln!("no hold on {scope} ({held})");
                Ok(false)
            }
        }
    }
}

fn list(dir: &HoldDir) -> Vec<Hold> {
    let (holds, errors) = dir.list();
    for e in errors {
        eprintln!("warning: {e}");
    }
    holds
}
