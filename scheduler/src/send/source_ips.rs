//! The source IPs checked at start: each configured address must be bindable on this host.
//! `volley send` refuses to start otherwise ([`super::SendError::UnbindableSourceIps`]);
//! `volley serve` marks such an IP unusable ([`OnUnbindable::MarkUnusable`]) and sends from
//! the others — never deferring recipients for a local problem.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::config::SourceIpConfig;

/// A configured source IP this host cannot bind.
#[derive(Debug)]
pub struct Unbindable {
    /// Its position in `source_ips`.
    pub index: usize,
    /// The address.
    pub address: IpAddr,
    /// The OS error of the bind.
    pub error: std::io::Error,
}

impl std::fmt::Display for Unbindable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "source_ips[{}].address = {}: cannot be bound on this host: {}",
            self.index, self.address, self.error
        )
    }
}

/// What a service does with source IPs it cannot bind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnUnbindable {
    /// Refuse to start, naming them (`volley send`).
    #[default]
    Refuse,
    /// Leave them out of every pool and report them (`volley serve`).
    MarkUnusable,
}

/// Binds a TCP socket to `(ip, 0)` the way the engine does before connecting (nothing is sent).
pub fn bind_probe(ip: IpAddr) -> std::io::Result<()> {
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))
}

/// The configured source IPs this host cannot bind, in configuration order.
pub fn unbindable(ips: &[SourceIpConfig]) -> Vec<Unbindable> {
    ips.iter()
        .enumerate()
        .filter_map(|(index, s)| {
            bind_probe(s.address).err().map(|error| Unbindable {
                index,
                address: s.address,
                error,
            })
        })
        .collect()
}

/// The message of [`super::SendError::UnbindableSourceIps`].
pub(crate) fn describe(ips: &[Unbindable]) -> String {
    let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
    format!(
        "{}; add the address to an interface of this host or remove it from the configuration",
        list.join("; ")
    )
}

/// Source IPs marked unusable, with why.
pub type Unusable = HashMap<IpAddr, String>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn loopback_binds_and_a_documentation_address_does_not() {
        let ips = [
            SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), "a.test"),
            SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), "b.test"),
        ];
        let bad = unbindable(&ips);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].index, bad[0].address.to_string()), (1, "192.0.2.1".to_string()));
        assert!(describe(&bad).starts_with("source_ips[1].address = 192.0.2.1: cannot be bound"));
    }
}
