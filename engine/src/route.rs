//! Where a delivery goes from and to: the source IP it is sent from and the MX host it is
//! sent to. Together they key the connection pool.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::pool::policy::RoutePolicy;

/// A local address mail is sent from, with the name it introduces itself with in EHLO (its
/// reverse-DNS name in production).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceIp {
    /// The address bound before connecting.
    pub ip: IpAddr,
    /// The EHLO name for connections from this address.
    pub ehlo_name: Arc<str>,
}

/// One MX host: its name (for SNI, logs and the accounting log) and the address to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MxHost {
    /// The host name (or the address as text when routed by IP).
    pub name: Arc<str>,
    /// The address and port to connect to.
    pub addr: SocketAddr,
}

/// The key of a connection pool: connections are shared by deliveries with the same source IP,
/// MX address and destination policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Sent from.
    pub source: SourceIp,
    /// Sent to.
    pub mx: MxHost,
    /// The destination's connection settings; `None`: the pool's `[smtp]` settings.
    pub policy: Option<Arc<RoutePolicy>>,
}

impl RouteKey {
    /// A route under the pool's own settings.
    pub fn new(source: SourceIp, mx: MxHost) -> RouteKey {
        RouteKey {
            source,
            mx,
            policy: None,
        }
    }
}
