//! [`Ideal`]: the shortest completion time the receivers' limits allow — what a sender that
//! always kept every allowed connection busy and wasted nothing would need. A run's
//! `actual / ideal` says how much of that the sender loses.
//!
//! Per sink `k` (one or more domain groups, `M` messages), with `L` its latency per reply
//! batch (one round trip), `S` source IPs, and `C` the connections it serves Volley at once:
//!
//! ```text
//! C      = min(max_connections, S x min(max_connections_per_client, volley's max_connections_per_host))
//! D      = M x (greylist% + the 4xx canned replies' rcpt/data percentages) / 100   deferred attempts
//! T_k    = 2 L                         greeting and EHLO of the first connections
//!        + (M + D) x L / C             one round trip per transaction on reused connections
//!        + retry_after  (when D > 0)   the last deferred recipients wait for their retry
//! ideal  = max over sinks of T_k
//! ```
//!
//! The retry wait is added, not overlapped: a sender cannot know which recipients a sink will
//! defer before it tries them, so the ones tried last wait `retry_after` after the first pass.
//! Not counted (so the ideal stays a lower bound): connections refused by connect-stage 421s,
//! reconnections after a 421, TLS, CPU. A sink without latency or without any cap has no
//! bound from its limits (`T_k` = 0).

use std::time::Duration;

use super::recipients::GroupCount;
use super::sink_plan::plan;
use super::spec::Scenario;

/// Volley's default `[smtp] max_connections_per_host`.
const VOLLEY_MAX_CONNECTIONS_PER_HOST: u64 = 32;

/// The bound of one sink.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SinkBound {
    /// The sink's index in the run.
    pub sink: usize,
    /// Its domain groups.
    pub groups: Vec<String>,
    /// Messages routed to it.
    pub messages: u64,
    /// Deferred attempts expected (greylisting and 4xx canned replies).
    pub deferred: f64,
    /// Connections it serves the sender at once (`None`: no cap).
    pub connections: Option<u64>,
    /// Its latency per reply batch, seconds.
    pub latency_s: f64,
    /// `T_k`, seconds.
    pub seconds: f64,
}

/// The ideal completion time of a scenario and its parts.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Ideal {
    /// The ideal, seconds (the largest sink bound).
    pub seconds: f64,
    /// Every sink's bound.
    pub sinks: Vec<SinkBound>,
}

impl Ideal {
    /// The ideal of `scenario` given the recipients written per group.
    pub fn of(scenario: &Scenario, groups: &[GroupCount]) -> Ideal {
        let ips = u64::from(scenario.source_ips);
        let per_host = volley_max_per_host(scenario);
        let retry = scenario.retry_after().as_secs_f64();
        let mut sinks = Vec::new();
        for (index, sink) in plan(scenario).iter().enumerate() {
            let spec = sink.spec;
            let messages: u64 = sink
                .groups
                .iter()
                .filter_map(|&g| groups.get(g))
                .map(|g| g.recipients)
                .sum();
            let deferring: f64 = spec.greylist
                + spec
                    .canned
                    .iter()
                    .filter(|c| c.code() / 100 == 4 && matches!(c.stage.as_str(), "rcpt" | "data"))
                    .map(|c| c.percent)
                    .sum::<f64>();
            let deferred = messages as f64 * deferring.min(100.0) / 100.0;
            let per_client = spec.max_connections_per_client.map(|c| ips * (c as u64).min(per_host));
            let connections = match (spec.max_connections.map(|c| c as u64), per_client) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let latency = spec.latency().as_secs_f64();
            let seconds = match connections {
                Some(c) if latency > 0.0 && messages > 0 => {
                    let wait = if deferred > 0.0 { retry } else { 0.0 };
                    2.0 * latency + (messages as f64 + deferred) * latency / c as f64 + wait
                }
                _ => 0.0,
            };
            sinks.push(SinkBound {
                sink: index,
                groups: sink
                    .groups
                    .iter()
                    .filter_map(|&g| scenario.domains.get(g))
                    .map(|g| g.name.clone())
                    .collect(),
                messages,
                deferred,
                connections,
                latency_s: latency,
                seconds,
            });
        }
        let seconds = sinks.iter().map(|s| s.seconds).fold(0.0, f64::max);
        Ideal { seconds, sinks }
    }

    /// The ideal as a duration, `None` when no sink bounds the run.
    pub fn duration(&self) -> Option<Duration> {
        (self.seconds > 0.0).then(|| Duration::from_secs_f64(self.seconds))
    }
}

/// Volley's `[smtp] max_connections_per_host` in the scenario's `volley_config`, or the default.
fn volley_max_per_host(scenario: &Scenario) -> u64 {
    scenario
        .volley_config
        .as_ref()
        .and_then(|c| c.get("smtp")?.get("max_connections_per_host")?.as_integer())
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(VOLLEY_MAX_CONNECTIONS_PER_HOST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_bound_follows_caps_latency_and_deferrals() {
        let text = "source_ips = 4\nretry_after = \"5s\"\n\
            [[domains]]\nname = \"big\"\nweight = 3\ndomain = \"big.test\"\n\
            [domains.sink]\nmax_connections_per_client = 5\nlatency = \"50ms\"\n\
            [[domains]]\nname = \"grey\"\nweight = 1\ndomain = \"grey.test\"\n\
            [domains.sink]\nmax_connections = 4\nmax_connections_per_client = 2\nlatency = \"100ms\"\ngreylist = 10\n\
            canned = [{ stage = \"data\", text = \"421 4.7.28 slow down\", percent = 10 }, \
                      { stage = \"connect\", text = \"421 4.7.0 busy\", percent = 50 }]\n\
            [[domains]]\nname = \"free\"\nweight = 1\ndomain = \"free.test\"\n";
        let s = Scenario::parse(text, Path::new("s.toml")).unwrap();
        let count = |name: &str, recipients| GroupCount {
            name: name.to_owned(),
            domains: 1,
            recipients,
        };
        let ideal = Ideal::of(&s, &[count("big", 6000), count("grey", 1000), count("free", 1000)]);
        // Sink 0 is the shared one ("free"): no latency, no cap, no bound.
        assert_eq!(ideal.sinks[0].seconds, 0.0);
        assert_eq!(ideal.sinks[0].connections, None);
        // big: 4 IPs x 5 = 20 connections; 0.1 s + 6000 x 0.05 / 20 = 15.1 s.
        assert_eq!(ideal.sinks[1].connections, Some(20));
        assert!((ideal.sinks[1].seconds - 15.1).abs() < 1e-9, "{:?}", ideal.sinks[1]);
        // grey: min(4, 4 x 2) = 4; 20 % deferred (connect 421s are not counted):
        // 0.2 + 1200 x 0.1 / 4 + 5 = 35.2 s.
        let grey = &ideal.sinks[2];
        assert_eq!((grey.connections, grey.deferred), (Some(4), 200.0));
        assert!((grey.seconds - 35.2).abs() < 1e-9, "{grey:?}");
        assert!((ideal.seconds - 35.2).abs() < 1e-9);
        // Volley's own per-host cap bounds a generous receiver.
        let mut capped = s.clone();
        capped.volley_config = Some(toml::from_str("[smtp]\nmax_connections_per_host = 3").unwrap());
        let ideal = Ideal::of(&capped, &[count("big", 6000), count("grey", 1000), count("free", 1000)]);
        assert_eq!(ideal.sinks[1].connections, Some(12));
    }
}
