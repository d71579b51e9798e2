//! Helpers shared by the whole-run tests.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use volley_scheduler::config::SourceIpConfig;

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
