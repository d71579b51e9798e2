//! Routing overrides: recipient domain -> the host that receives its mail. Exact domains win
//! over `*`. (MX resolution through DNS plugs in behind the same lookup.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use volley_engine::MxHost;

/// Parses a route target `ip:port` (IPv6 as `[::1]:25`).
pub fn parse_target(target: &str) -> Result<SocketAddr, String> {
    target
        .parse::<SocketAddr>()
        .map_err(|_| "expected ip:port, e.g. 127.0.0.1:2525 or [::1]:25".to_string())
}

/// The routing table built from the config's `[routes]`.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    exact: HashMap<String, MxHost>,
    fallback: Option<MxHost>,
}

impl Routes {
    /// Builds the table; targets must already be validated (see [`parse_target`]).
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<Routes, String> {
        let mut table = Routes::default();
        for (domain, target) in routes {
            let addr = parse_target(target).map_err(|e| format!("route {domain:?} = {target:?}: {e}"))?;
            let host = MxHost {
                name: Arc::from(target.as_str()),
                addr,
            };
            if domain == "*" {
                table.fallback = Some(host);
            } else {
                table.exact.insert(domain.to_ascii_lowercase(), host);
            }
        }
        Ok(table)
    }

    /// The host for a (lower-case) domain, if any route covers it.
    pub fn lookup(&self, domain: &str) -> Option<&MxHost> {
        self.exact.get(domain).or(self.fallback.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_wins_over_wildcard() {
        let routes = [
            ("*".to_string(), "127.0.0.1:25".to_string()),
            ("a.test".to_string(), "127.0.0.9:26".to_string()),
        ];
        let r = Routes::new(routes.iter().map(|(a, b)| (a, b))).unwrap_or_default();
        assert_eq!(r.lookup("a.test").map(|h| h.addr.port()), Some(26));
        assert_eq!(r.lookup("b.test").map(|h| h.addr.port()), Some(25));
        assert!(Routes::default().lookup("a.test").is_none());
        assert!(parse_target("localhost:25").is_err());
        assert!(parse_target("[::1]:25").is_ok());
    }
}
