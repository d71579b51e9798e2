//! Errors raised while generating the bench zone or starting its DNS server.

use std::net::{IpAddr, SocketAddr};

/// Everything that can go wrong before the bench DNS server answers its first query.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listen address is not a loopback address; the bench server never listens elsewhere.
    #[error("refusing to listen on {addr}: the bench DNS server binds loopback addresses only (127.0.0.0/8, ::1)")]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// An MX host address is not a loopback address, which would steer bench mail off the machine.
    #[error("refusing MX address {ip}: bench MX hosts must resolve to loopback addresses (127.0.0.0/8)")]
    MxIpNotLoopback {
        /// The address given.
        ip: IpAddr,
    },
    /// An A or AAAA record of a test zone names an address off loopback.
    #[error("refusing {name} -> {ip}: test zone addresses must be loopback (127.0.0.0/8, ::1)")]
    AddressNotLoopback {
        /// The owner name.
        name: String,
        /// The address given.
        ip: IpAddr,
    },
    /// The zone has domains but no sites to point their MX records at.
    #[error("{domains} domains need at least one site (sites = 0)")]
    NoSites {
        /// How many domains were asked for.
        domains: usize,
    },
    /// The zone has sites but no address for their MX hosts.
    #[error("the zone needs at least one MX address (--mx-ip)")]
    NoMxIps,
    /// The origin is not a valid DNS name, or a generated name under it is not.
    #[error("invalid zone name {name:?}: {reason}")]
    InvalidName {
        /// The name (the origin, or a generated owner name).
        name: String,
        /// The parser's reason.
        reason: String,
    },
    /// hickory refused a generated record (should not happen: every owner has one record type).
    #[error("the zone refused the generated record {record}")]
    RecordRefused {
        /// The record, printed.
        record: String,
    },
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({protocol}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// With port 0, no port was found free for both UDP and TCP.
    #[error("no port on {ip} is free for both UDP and TCP (tried {attempts} ephemeral ports)")]
    NoSharedPort {
        /// The listen address.
        ip: IpAddr,
        /// How many ports were tried.
        attempts: usize,
    },
}
