//! Cluster mode: one campaign sent by several Volley nodes, coordinated through Redis.
//!
//! ```text
//! volley cluster publish ──XADD chunk──► volley:{id}:chunks (stream, group `nodes`)
//!  reads the file once, dedups,          │ XREADGROUP / XAUTOCLAIM (lease)
//!  at most max_outstanding chunks        ▼
//!                           volley cluster work (each node): a chunk becomes a local
//!                           JSONL file + a chunk campaign on the node's SendService;
//!                           when every row has a final outcome: merge into the node's
//!                           accounting log, then one script sets the done bits, counts
//!                           outcomes once, XACK + XDEL
//! ```
//!
//! # Layout
//! - [`ClusterConfig`]: the `[cluster]` table of `volley.toml`.
//! - `keys`: the Redis keys of a campaign, hash-tagged `volley:{<id>}:…` (one Cluster slot).
//! - `store`: the Redis commands and scripts (stream, group, done bitmap, counts).
//! - `chunk`: a chunk's rows, the node-local chunk directory, merging its accounting log.
//! - `shared_rows`: a chunk of a file in `shared_dir`: byte offsets and a digest instead of
//!   values, read by each node from its own mount.
//! - [`publish`]: splitting a campaign into chunks, with back-pressure.
//! - [`work`]: a node's loop: claim, send, acknowledge, renew leases, reclaim the dead's.
//! - [`control`]: the campaign's state (running, paused, cancelled), set from any node and
//!   applied by every node to the chunks it sends.
//! - `registry`: the set of active campaigns `volley serve` nodes work.
//!
//! A recipient's identity is its line in the original recipient file; the done bitmap has one
//! bit per line, set when a node has logged its final outcome, so a reclaimed chunk skips
//! what is done and outcome counts are taken once per recipient.

use std::time::Duration;

mod chunk;
pub mod control;
mod done_bits;
mod keys;
pub mod limits;
pub mod publish;
mod registry;
mod shared_rows;
mod store;
pub mod work;

pub use control::{CampaignState, CHECK_EVERY};
pub use keys::Keys;
pub use registry::Registry;
pub use store::{ClusterStatus, Entry, Store};

/// `[cluster]`: this node's part in a cluster of Volley nodes.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The Redis that coordinates the nodes, `redis://host:port/db` (or `rediss://`).
    pub redis: String,
    /// This node's name in the consumer group: 1-64 of `[A-Za-z0-9._-]`, unique per node
    /// (a node restarted under the same name takes back its pending chunks).
    pub node_id: String,
    /// Recipients per chunk.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Chunks published and not yet acknowledged at most: the publisher waits above it, so
    /// the stream's memory is bounded whatever the list size.
    #[serde(default = "default_max_outstanding")]
    pub max_outstanding: usize,
    /// A chunk whose node has not renewed its lease for this long is claimed by another node
    /// (nodes renew every third of it). Longer than a Redis failover, shorter than an outage
    /// you would wait for.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// Chunks one node sends at once.
    #[serde(default = "default_chunks_in_flight")]
    pub chunks_in_flight: usize,
    /// Chunks one node keeps besides those while they wait only for the retries of deferred
    /// recipients (greylisting, 4xx): a parked chunk holds neither a `chunks_in_flight` slot
    /// nor the publisher's `max_outstanding`; its node retries it on schedule (or, if it
    /// dies, the node that takes it over). 0: a chunk holds its slot until every row is final.
    #[serde(default = "default_parked_chunks")]
    pub parked_chunks: usize,
    /// How long a completed campaign's keys stay in Redis (for `volley cluster status`) before
    /// Redis deletes them; set by the first node that sees the campaign complete.
    #[serde(default = "default_keep", with = "humantime_serde")]
    pub keep: Duration,
    /// Share learned connection limits with the other nodes sending from the same source IP
    /// (see `cluster::limits`): each publishes its open connections once a second.
    #[serde(default = "default_share_limits")]
    pub share_limits: bool,
    /// A directory every node can read (a shared mount; absolute): a campaign whose recipient
    /// file is inside it is published as byte ranges of that file, not as rows, and each node
    /// reads the rows from its own mount (which may be at another path). Unset: chunks carry
    /// their rows.
    #[serde(default)]
    pub shared_dir: Option<std::path::PathBuf>,
}

fn default_chunk_size() -> usize {
    1000
}
fn default_max_outstanding() -> usize {
    64
}
fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_chunks_in_flight() -> usize {
    2
}
fn default_parked_chunks() -> usize {
    256
}
fn default_share_limits() -> bool {
    true
}
fn default_keep() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl ClusterConfig {
    /// Checks the values: `Err((field, value, reason))`.
    pub fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        if !(self.redis.starts_with("redis://") || self.redis.starts_with("rediss://")) {
            return Err(("redis", self.redis.clone(), "must be a redis:// or rediss:// URL"));
        }
        if let Err(reason) = crate::campaign::check_id(&self.node_id) {
            return Err(("node_id", self.node_id.clone(), reason));
        }
        if self.chunk_size == 0 || self.chunk_size > 100_000 {
            return Err(("chunk_size", self.chunk_size.to_string(), "must be 1 to 100000"));
        }
        if self.max_outstanding == 0 {
            return Err(("max_outstanding", "0".into(), "must be at least 1"));
        }
        if self.lease < Duration::from_secs(1) {
            let value = humantime::format_duration(self.lease).to_string();
            return Err(("lease", value, "must be at least 1s"));
        }
        if self.chunks_in_flight == 0 {
            return Err(("chunks_in_flight", "0".into(), "must be at least 1"));
        }
        if self.keep < Duration::from_secs(1) {
            let value = humantime::format_duration(self.keep).to_string();
            return Err(("keep", value, "must be at least 1s"));
        }
        if let Some(dir) = &self.shared_dir {
            let value = dir.display().to_string();
            if !dir.is_absolute() {
                return Err(("shared_dir", value, "must be an absolute path"));
            }
            if !dir.is_dir() {
                return Err(("shared_dir", value, "is not a directory this node can read"));
            }
        }
        Ok(())
    }
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The configuration has no `[cluster]` table.
    #[error("the configuration has no [cluster] table (redis, node_id)")]
    NotConfigured,
    /// A Redis command failed.
    #[error("redis ({op}): {source}")]
    Redis {
        /// The operation, e.g. `XADD`.
        op: &'static str,
        /// The client error.
        source: redis::RedisError,
    },
    /// Redis holds something this node cannot read.
    #[error("redis key {key}: {reason}")]
    BadData {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The campaign was never published (or its keys were removed).
    #[error("campaign `{0}` is not published in this Redis")]
    UnknownCampaign(String),
    /// The campaign is cancelled: it cannot be paused or resumed (a cancel is final).
    #[error("campaign `{0}` is cancelled; a cancel is final (publish it again under a new id)")]
    Cancelled(String),
    /// The campaign is complete: there is nothing left to pause, resume or cancel.
    #[error("campaign `{0}` is complete: every chunk is acknowledged")]
    Complete(String),
    /// The campaign id is published with a different definition.
    #[error("campaign `{0}` is already published with a different definition; use a new id")]
    Republished(String),
    /// The campaign is refused (its file, its id).
    #[error(transparent)]
    Campaign(Box<crate::campaign::CampaignError>),
    /// The recipient file cannot be read.
    #[error(transparent)]
    Recipients(Box<crate::recipients::RecipientError>),
    /// A chunk could not be sent.
    #[error(transparent)]
    Send(Box<crate::send::SendError>),
    /// A chunk's rows cannot be read from the shared recipient file (`[cluster] shared_dir`).
    #[error("shared recipient file {}, bytes {bytes} (lines {lines}): {reason}", .path.display())]
    SharedFile {
        /// The file, in this node's shared directory.
        path: std::path::PathBuf,
        /// The chunk's bytes, `start-end`.
        bytes: String,
        /// The chunk's first and last line, `first-last`.
        lines: String,
        /// What is wrong.
        reason: String,
    },
    /// A file of the node failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<crate::campaign::CampaignError> for ClusterError {
    fn from(e: crate::campaign::CampaignError) -> Self {
        ClusterError::Campaign(Box::new(e))
    }
}

impl From<crate::recipients::RecipientError> for ClusterError {
    fn from(e: crate::recipients::RecipientError) -> Self {
        ClusterError::Recipients(Box::new(e))
    }
}

impl From<crate::send::SendError> for ClusterError {
    fn from(e: crate::send::SendError) -> Self {
        ClusterError::Send(Box::new(e))
    }
}

impl ClusterError {
    /// True when retrying later may succeed (Redis unreachable, a timeout).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClusterError::Redis { source, .. } if source.is_io_error() || source.is_timeout() || source.is_connection_dropped())
    }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}
