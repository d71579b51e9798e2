//! `[reputation]`: the guards' window, minimum sample and thresholds, and their checks.

use std::time::Duration;

/// `[reputation]` in `volley.toml`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReputationConfig {
    /// Whether the guards run (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How far back the rates look (default 24h, the span Gmail's and Yahoo's published spam
    /// rates are stated over).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Fewest messages in the window before a rate is judged: deliveries + hard bounces for the
    /// bounce rate, deliveries for the complaint rate (default 1000).
    #[serde(default = "default_min_sample")]
    pub min_sample: u64,
    /// Highest spam-complaint rate, in percent of delivered messages (default 0.3: Gmail's and
    /// Yahoo's 2024 bulk-sender requirement is to stay below 0.3 %).
    #[serde(default = "default_max_complaint_rate")]
    pub max_complaint_rate: f64,
    /// Highest hard-bounce rate, in percent of messages with a final answer (default 5; a
    /// list bouncing more than that is old or bought, and receivers read it that way).
    #[serde(default = "default_max_hard_bounce_rate")]
    pub max_hard_bounce_rate: f64,
    /// Guard each campaign (a hold pauses it). Default true.
    #[serde(default = "yes")]
    pub campaigns: bool,
    /// Guard each (source IP, provider group) route (a hold takes the IP off the provider).
    /// Default true.
    #[serde(default = "yes")]
    pub routes: bool,
}

fn yes() -> bool {
    true
}
fn default_window() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_min_sample() -> u64 {
    1000
}
fn default_max_complaint_rate() -> f64 {
    0.3
}
fn default_max_hard_bounce_rate() -> f64 {
    5.0
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            enabled: true,
            window: default_window(),
            min_sample: default_min_sample(),
            max_complaint_rate: default_max_complaint_rate(),
            max_hard_bounce_rate: default_max_hard_bounce_rate(),
            campaigns: true,
            routes: true,
        }
    }
}

impl ReputationConfig {
    /// Every value that parses but cannot work: (field, value, reason).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (field, rate) in [
            ("reputation.max_complaint_rate", self.max_complaint_rate),
            ("reputation.max_hard_bounce_rate", self.max_hard_bounce_rate),
        ] {
            if !(rate > 0.0 && rate <= 100.0) {
                out.push((
                    field.to_string(),
                    rate.to_string(),
                    "a percentage above 0 and at most 100 (0.3 means 0.3 %)".to_string(),
                ));
            }
        }
        if self.min_sample == 0 {
            out.push((
                "reputation.min_sample".to_string(),
                "0".to_string(),
                "must be at least 1".to_string(),
            ));
        }
        if self.window < Duration::from_secs(1) {
            out.push((
                "reputation.window".to_string(),
                humantime::format_duration(self.window).to_string(),
                "must be at least 1s".to_string(),
            ));
        }
        out
    }
}
