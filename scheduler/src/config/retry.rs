//! `[retry]`: when deferred recipients are tried again and when they are given up.

use std::time::Duration;

/// When deferred recipients are tried again and when they are given up.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Waits before the 2nd, 3rd, … attempt; the last one repeats. The default follows
    /// RFC 5321 §4.5.4.1 (retry interval at least 30 minutes): 30m, 1h, 2h, 4h, 4h, …
    #[serde(default = "default_schedule")]
    pub schedule: Vec<humantime_serde::Serde<Duration>>,
    /// Time from the first attempt after which a still-deferred recipient is given up and
    /// recorded `expired` (RFC 5321 §4.5.4.1: at least 4-5 days). Default 5 days.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// After a connection to an MX host fails, how long that host is skipped in favour of the
    /// site's other MX hosts. Default 1 minute.
    #[serde(default = "default_host_down", with = "humantime_serde")]
    pub host_down: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            schedule: default_schedule(),
            max_age: default_max_age(),
            host_down: default_host_down(),
        }
    }
}

impl RetryConfig {
    /// The wait before attempt `next` (2 = the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        let i = (next.saturating_sub(2) as usize).min(self.schedule.len().saturating_sub(1));
        self.schedule.get(i).map_or(Duration::from_secs(1800), |d| **d)
    }
}

fn default_schedule() -> Vec<humantime_serde::Serde<Duration>> {
    [30, 60, 120, 240]
        .into_iter()
        .map(|m| Duration::from_secs(m * 60).into())
        .collect()
}
fn default_max_age() -> Duration {
    Duration::from_secs(5 * 24 * 3600)
}
fn default_host_down() -> Duration {
    Duration::from_secs(60)
}
