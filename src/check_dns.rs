//! `volley check-dns`: the DNS a receiver reads about this sender — SPF of every sending
//! domain for every source IP, each DKIM selector against its private key, DMARC policy and
//! alignment, FCrDNS of every source IP, the bounce domain's MX — asked of the configured
//! nameservers (`[dns]`), one line per check (`volley_dnscheck`). Also the `--dns` section of
//! `volley check-config`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use volley_dnscheck::{worst, Check, CheckPlan, SourceIpName, Status};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;

/// `volley check-dns` arguments.
#[derive(Args)]
pub struct CheckDnsArgs {
    /// The operator configuration: source IPs, `[[dkim]]` keys, `[dns]` nameservers.
    #[arg(long, default_value = "volley.toml")]
    pub config: PathBuf,
    /// Campaigns whose From and envelope sender domains are checked too.
    pub campaigns: Vec<PathBuf>,
    /// The domain DSNs are sent to (the bounce domain of the feedback loop): checked for an MX.
    #[arg(long)]
    pub bounce_domain: Option<String>,
    /// Time to wait for each DNS answer, e.g. `2s`; without it, `dns.timeout` (5s unless set).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Print a JSON array of checks instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks and prints them; `Ok(false)` when any check fails.
pub async fn run(args: CheckDnsArgs) -> anyhow::Result<bool> {
    let checks = checks(
        &args.config,
        &args.campaigns,
        args.bounce_domain.as_deref(),
        args.timeout,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for check in &checks {
            println!("{check}");
        }
        println!("{}", summary(&checks));
    }
    Ok(worst(&checks) != Status::Fail)
}

/// The `--dns` section of `volley check-config` (called off the runtime's worker threads):
/// prints the checks and returns how many failed; an error that stops the checks counts as one.
pub fn section(config: &Path, campaigns: &[PathBuf]) -> usize {
    println!("dns checks (volley check-dns):");
    let result = tokio::runtime::Handle::current().block_on(checks(config, campaigns, None, None));
    match result {
        Ok(checks) => {
            for check in &checks {
                println!("{check}");
            }
            println!("{}", summary(&checks));
            checks.iter().filter(|c| c.status == Status::Fail).count()
        }
        Err(e) => {
            println!("ERROR  dns: {e:#}");
            1
        }
    }
}

async fn checks(
    config_path: &Path,
    campaigns: &[PathBuf],
    bounce_domain: Option<&str>,
    timeout: Option<Duration>,
) -> anyhow::Result<Vec<Check>> {
    // The file's own values only: each key is read by its own DKIM check, so one unusable key
    // is one failed check rather than an error that stops the others.
    let config =
        SendConfig::load_unchecked(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let plan = plan(&config, campaigns, bounce_domain)?;
    let mut dns = config.dns.clone().unwrap_or_default();
    if let Some(timeout) = timeout {
        dns.timeout = timeout;
    }
    Ok(volley_dnscheck::run(&plan, &dns).await?)
}

/// The sending domains (the `[[dkim]]` keys' domains, then each campaign's From and envelope
/// sender domains), the keys, the source IPs and the bounce domain.
fn plan(config: &SendConfig, campaigns: &[PathBuf], bounce_domain: Option<&str>) -> anyhow::Result<CheckPlan> {
    let mut plan = CheckPlan {
        dkim: config.dkim.clone(),
        source_ips: config
            .source_ips
            .iter()
            .map(|s| SourceIpName {
                ip: s.address,
                ehlo_name: s.ehlo_name.clone(),
            })
            .collect(),
        bounce_domain: bounce_domain.map(str::to_owned),
        ..CheckPlan::default()
    };
    for key in &config.dkim {
        plan.add_domain(&key.domain, None);
    }
    for path in campaigns {
        let campaign = Campaign::load_with(path, &config.template_dirs)
            .with_context(|| format!("reading campaign {}", path.display()))?;
        plan.add_domain(
            campaign.from().address.domain(),
            Some(campaign.envelope_from().domain()),
        );
    }
    Ok(plan)
}

/// `12 checks: 9 pass, 2 warn, 1 fail`.
fn summary(checks: &[Check]) -> String {
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    format!(
        "{} checks: {} pass, {} warn, {} fail",
        checks.len(),
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    )
}
