//! A loopback authoritative DNS server for a generated zone, so that `volley send` can be
//! benchmarked with real MX resolution: thousands of recipient domains over a chosen number of
//! MX sites, every MX host resolving to a loopback sink.
//!
//! ```no_run
//! # async fn demo() -> Result<(), volley_bench::dns::DnsError> {
//! use std::net::Ipv4Addr;
//! use volley_bench::dns::{BenchDns, BenchZone};
//! let zone = BenchZone::new(10_000, 100, vec![Ipv4Addr::new(127, 0, 0, 10)]);
//! let dns = BenchDns::start("127.0.0.1:0".parse().unwrap(), &zone).await?;
//! println!("dns on {}; d0 is {}", dns.local_addr(), zone.domain(0));
//! dns.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The `volley-bench dns` command runs it from the shell (see `benches/dns-run.sh`).
//!
//! # Layout
//!
//! - `dns/zone.rs` — [`BenchZone`]: the naming scheme and the generated records (SOA, two MX per
//!   domain, one A per MX host; TTL 3600).
//! - `dns/txt.rs` — [`TxtZone`]: TXT records only (DKIM keys for signing tests), served by
//!   [`BenchDns::start_txt`].
//! - `dns/records.rs` — [`RecordZone`]: hand-written TXT, A, AAAA, MX and PTR records (a
//!   sender's SPF/DKIM/DMARC, reverse DNS), served by [`BenchDns::start_zones`].
//! - `dns/server.rs` — [`BenchDns::start`]: loopback-only UDP + TCP on one port, hickory's
//!   authoritative catalog; [`BenchDnsHandle`].
//! - `dns/error.rs` — [`DnsError`].

mod dynamic;
mod error;
mod records;
mod server;
mod txt;
mod zone;

pub use dynamic::DynamicDns;
pub use error::DnsError;
pub use records::{RecordZone, ZoneRecord};
pub use server::{BenchDns, BenchDnsHandle};
pub use txt::{verifier_for, TxtZone};
pub use zone::{BenchZone, DEFAULT_ORIGIN, PRIMARY_PREFERENCE, SECONDARY_PREFERENCE, TTL};
