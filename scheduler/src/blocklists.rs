//! Blocklist monitoring (`[blocklists]`): every source IP is looked up in the configured DNSBL
//! zones at start and every `interval`, through the `[dns]` nameservers (or the system's). A
//! listing is logged, shown (progress, `GET /ips`, `GET /reputation`, the metric
//! `volley_source_ip_listed`) and, with `on_listed = "pause"`, keeps the IP from sending until
//! the listing clears or an operator overrides it (`volley reputation resume --ip`); the other
//! IPs carry its traffic. An answer that is not a listing (refused, rate limited, rewritten,
//! timed out) keeps the zone's last known state for that IP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use volley_engine::dnsbl::{check, BlocklistZone, ZoneAnswer};

use crate::reputation::{Guards, Listing, OnListed};

/// `[blocklists]` in `volley.toml`. Without the table nothing is looked up.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlocklistConfig {
    /// The zones (`[[blocklists.zones]]` with `zone`, optional `key` and `refused`). Default:
    /// `zen.spamhaus.org`, `b.barracudacentral.org`, `bl.spamcop.net` — each with its terms
    /// (Spamhaus answers only non-public resolvers at low volume without a DQS key;
    /// Barracuda needs the querying resolver registered).
    #[serde(default = "default_zones")]
    pub zones: Vec<BlocklistZone>,
    /// How often every source IP is looked up again (default 10 minutes; at least 1 second).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// `pause` (default): a listed IP sends nothing until the listing clears or an operator
    /// overrides it; `warn`: shown and logged only.
    #[serde(default)]
    pub on_listed: OnListed,
}

fn default_zones() -> Vec<BlocklistZone> {
    ["zen.spamhaus.org", "b.barracudacentral.org", "bl.spamcop.net"]
        .into_iter()
        .map(BlocklistZone::new)
        .collect()
}

fn default_interval() -> Duration {
    Duration::from_secs(600)
}

impl BlocklistConfig {
    /// Every value that parses but cannot work: (field, value, reason).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        if self.zones.is_empty() {
            out.push((
                "blocklists.zones".to_string(),
                "[]".to_string(),
                "name at least one zone, or remove [blocklists]".to_string(),
            ));
        }
        for (i, z) in self.zones.iter().enumerate() {
            if let Some(reason) = z.problem() {
                out.push((format!("blocklists.zones[{i}].zone"), z.zone.clone(), reason));
            }
        }
        if self.interval < Duration::from_secs(1) {
            out.push((
                "blocklists.interval".to_string(),
                humantime::format_duration(self.interval).to_string(),
                "must be at least 1s".to_string(),
            ));
        }
        out
    }
}

/// Looks every IP up in every zone once, and tells `guards`.
pub async fn check_all(
    config: &BlocklistConfig,
    resolver: &volley_engine::dnsbl::TokioResolver,
    ips: &[IpAddr],
    guards: &Guards,
) {
    let checked: Vec<String> = config.zones.iter().map(|z| z.zone.clone()).collect();
    let previous = guards.listings();
    for &ip in ips {
        let answers = futures_util::future::join_all(
            config
                .zones
                .iter()
                .map(|z| async move { (z, check(resolver, z, ip).await) }),
        )
        .await;
        let before = previous.iter().find(|v| v.source_ip == ip);
        let mut listed = Vec::new();
        for (zone, answer) in answers {
            match answer {
                ZoneAnswer::Listed { codes } => listed.push(Listing {
                    zone: zone.zone.clone(),
                    codes,
                    since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                }),
                ZoneAnswer::NotListed => {}
                ZoneAnswer::Unknown(why) => {
                    tracing::info!(
                        "blocklists: {ip} on {}: not known ({why}); the last state stands",
                        zone.zone
                    );
                    if let Some(was) = before.and_then(|v| v.listed.iter().find(|l| l.zone == zone.zone)) {
                        listed.push(was.clone());
                    }
                }
            }
        }
        guards.set_listings(ip, &checked, listed, config.on_listed);
    }
}

/// Checks at once and then every `interval`, until the task is aborted.
pub fn spawn_monitor(
    config: BlocklistConfig,
    resolver: volley_engine::dnsbl::TokioResolver,
    ips: Vec<IpAddr>,
    guards: Arc<Guards>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            check_all(&config, &resolver, &ips, &guards).await;
        }
    })
}
