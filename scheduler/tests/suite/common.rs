//! Helpers shared by the whole-run tests.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use volley_scheduler::config::{FeedbackConfig, SendConfig, SourceIpConfig};
use volley_scheduler::inbound::InboundConfig;
use volley_scheduler::suppression::{SuppressionStore, GLOBAL};

/// Source IPs 127.0.0.`first`..=`last`, named `mta{i}.volley.test`.
pub fn source_ips(first: u8, last: u8) -> Vec<SourceIpConfig> {
    (first..=last)
        .map(|i| SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), format!("mta{i}.volley.test")))
        .collect()
}

/// Routes every domain (`*`) to `addr`.
pub fn route_all_to(addr: SocketAddr) -> BTreeMap<String, String> {
    [("*".to_string(), addr.to_string())].into_iter().collect()
}

/// The complete lines of a JSON-lines log (accounting, feedback) — a line still being written
/// is left for the next read; none when the log does not exist yet.
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The reason `address` is on the global suppression list, if it is.
pub fn suppression_reason(store: &Arc<dyn SuppressionStore>, address: &str) -> Option<String> {
    store
        .check(&[GLOBAL], &[address])
        .expect("check")
        .remove(0)
        .map(|(_, entry)| entry.reason)
}

/// A configuration with VERP return paths at `bounce_domain` (the key `1 <secret>` written to
/// `dir/keys`) and an inbound listener on a free loopback port; state in `dir/state`.
pub fn feedback_config(dir: &Path, secret: &str, bounce_domain: &str) -> SendConfig {
    std::fs::write(dir.join("keys"), format!("1 {secret}\n")).expect("key file");
    let feedback: FeedbackConfig = toml::from_str(&format!(
        "bounce_domain = \"{bounce_domain}\"\nkey_file = \"{}\"\n",
        dir.join("keys").display()
    ))
    .expect("feedback config");
    let inbound: InboundConfig = toml::from_str("listen = \"127.0.0.1:0\"\n").expect("inbound config");
    SendConfig {
        state_dir: dir.join("state"),
        feedback: Some(feedback),
        inbound: Some(inbound),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

/// What the live counters say campaign `id` delivered.
pub fn delivered(live: &volley_scheduler::live::Live, id: &str) -> u64 {
    live.snapshot()
        .iter()
        .find(|c| c.id == id)
        .map_or(0, |c| c.count(volley_scheduler::outcome::Outcome::Delivered))
}

/// Waits (30 s at most) until `done` holds; `what` names it in the failure.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
