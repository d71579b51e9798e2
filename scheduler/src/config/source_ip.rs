//! `[[source_ips]]`: one sending address, its weight, rate, pool and warm-up.

use std::net::IpAddr;

/// One source IP.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceIpConfig {
    /// The local address to bind before connecting.
    pub address: IpAddr,
    /// The name used in EHLO from this address (its PTR name in production).
    pub ehlo_name: String,
    /// Relative share of traffic in rotation (default 1; 0 takes the IP out of rotation).
    #[serde(default = "one")]
    pub weight: u32,
    /// Optional sending rate for this IP, e.g. `"50/s"` or `"10000/h"` (GCRA, governor). When
    /// the IP is at its rate, traffic goes to the next IP in rotation; when all are, sending
    /// waits.
    #[serde(default)]
    pub rate: Option<volley_warmup::Rate>,
    /// The named pool this IP belongs to; a campaign sends from the IPs of its `pool`
    /// (default `"default"`).
    #[serde(default = "default_pool")]
    pub pool: String,
    /// The warm-up curve this IP follows (`"conservative"`, `"standard"`, `"aggressive"`, or
    /// a file `<warmup.curves_dir>/<name>.toml`); needs `warmup_start`. Without it the IP is
    /// warm.
    #[serde(default)]
    pub warmup: Option<String>,
    /// Day 1 of the IP's warm-up (UTC, `YYYY-MM-DD`).
    #[serde(default)]
    pub warmup_start: Option<volley_warmup::UtcDay>,
    /// Says explicitly that the IP is warm (no caps); contradicts `warmup`.
    #[serde(default)]
    pub warm: bool,
}

impl SourceIpConfig {
    /// An IP in the default pool with weight 1 and no rate.
    pub fn new(address: IpAddr, ehlo_name: impl Into<String>) -> SourceIpConfig {
        SourceIpConfig {
            address,
            ehlo_name: ehlo_name.into(),
            weight: 1,
            rate: None,
            pool: DEFAULT_POOL.to_string(),
            warmup: None,
            warmup_start: None,
            warm: false,
        }
    }

    /// The IP's warm-up state: warm, or a curve since a start date.
    pub fn warmup_state(&self) -> Result<volley_warmup::WarmupState, volley_warmup::ipstate::IpWarmupError> {
        volley_warmup::IpWarmup {
            warmup: self.warmup.clone(),
            warmup_start: self.warmup_start,
            warm: self.warm,
        }
        .state()
    }
}

/// The pool name used when none is given.
pub const DEFAULT_POOL: &str = "default";

fn default_pool() -> String {
    DEFAULT_POOL.to_string()
}

fn one() -> u32 {
    1
}
