//! The suppression store: every hard bounce is recorded and never mailed again; operators load
//! unsubscribe and complaint lists.
//!
//! Addresses are stored lowercased (`local@domain`). Each entry lives in a **scope**: `global`
//! ([`GLOBAL`]) or a named list/tenant (`"newsletter"`, `"tenant-a"`). A check for a campaign
//! consults `global` and the campaign's list scope; the first scope that holds the address wins.
//!
//! The API is blocking: callers are OS threads (the producer thread, the writer thread, the
//! CLI). Never call a store from a tokio runtime thread — the Redis backend does blocking socket
//! I/O and the embedded backend fsyncs.
//!
//! ## Backends
//! - **Redis** (`[suppression] redis = "redis://..."`), shared by any number of volley processes.
//!   Layout, with `{prefix}` defaulting to `volley`:
//!   - `{prefix}:suppressed:{scope}` — HASH: address -> [`Entry`] JSON
//!     (`{"reason","code","enhanced","category","first","last","count","source"}`, unix seconds).
//!   - `{prefix}:soft:{scope}` — HASH: address -> [`SoftRecord`] JSON
//!     (`{"at":[unix seconds of the soft bounces inside the window],"code","enhanced","reason"}`);
//!     the field is deleted when the address is promoted to suppressed or removed.
//!
//!   Lookups are one pipelined `HMGET` per scope per batch of addresses (one round trip per
//!   batch). Writes go through one Lua script per batch (`EVALSHA`, falling back to loading the
//!   script), so merging entries and soft-bounce counting/promotion are atomic across processes.
//!   A failed connection is dropped and re-opened on the next call.
//! - **Embedded** (the default): `<state_dir>/suppression.redb` (redb), tables `suppressed` and
//!   `soft` keyed by `(scope, address)` with the same JSON values. One process opens it at a
//!   time (a second one gets [`SuppressionError::Locked`]); that process answers for it on
//!   `<state_dir>/suppression.sock`, which [`open_shared`] (`volley suppress`) falls back to,
//!   so the list can be edited while a campaign runs.
//!
//! ## Layout
//! - `suppression/entry.rs` — [`Entry`], [`Update`], [`SoftRecord`], the merge and soft-bounce rules.
//! - `suppression/config.rs` — [`SuppressionConfig`] (`[suppression]`), [`OnUnavailable`].
//! - `suppression/error.rs` — [`SuppressionError`], [`redact_url`].
//! - `suppression/redis.rs` — [`RedisStore`] and its Lua script.
//! - `suppression/embedded.rs` — [`EmbeddedStore`] (redb).
//! - `suppression/control.rs` — the embedded store's control socket and [`RemoteStore`].
//! - `suppression/late.rs` — [`LateSuppressions`]: what others added during a run.
//! - `suppression/writer.rs` — [`SuppressionWriter`]: buffered, retrying, spilling writes.
//! - `suppression/mark.rs` — [`WrittenMark`]: how far a campaign's accounting log is in the
//!   store; replaying the rest on start.
//! - `suppression/checker.rs` — [`Checker`]: fail-closed (or fail-open) batched checks.
//! - `suppression/csv.rs` — CSV [`export_csv`] / [`import_csv`].
//! - `suppression/backoff.rs` — exponential backoff shared by the writer and the checker.

use std::path::Path;
use std::sync::Arc;

mod backoff;
mod checker;
mod config;
mod control;
mod csv;
mod embedded;
mod entry;
mod error;
mod late;
pub mod mark;
mod redis;
mod writer;

pub use self::redis::RedisStore;
pub use checker::{Checker, Stopped};
pub use config::{OnUnavailable, SuppressionConfig};
pub use control::{RemoteStore, CONTROL_SOCKET};
pub use csv::{export_csv, import_csv, import_csv_reader, unix_to_rfc3339, ImportOptions, ImportReport, InvalidRow};
pub use embedded::EmbeddedStore;
pub use entry::{normalise, unix_now, valid_scope, Entry, SoftPolicy, SoftRecord, Update, GLOBAL};
pub use error::{redact_url, SuppressionError};
pub use late::LateSuppressions;
pub use mark::{WrittenMark, MARK_FILE};
pub use writer::{CloseReport, Origin, SuppressionWriter, SPILL_FILE};

/// The embedded database's file name inside the state directory.
pub const EMBEDDED_FILE: &str = "suppression.redb";

/// A suppression store. Blocking; see the module docs for why it must not be called from a
/// tokio runtime thread.
pub trait SuppressionStore: Send + Sync {
    /// For each address (in order), the first of `scopes` holding it and its entry, or `None`.
    /// One call per batch (e.g. 500 addresses).
    fn check(&self, scopes: &[&str], addresses: &[&str]) -> Result<Vec<Option<(String, Entry)>>, SuppressionError>;

    /// Applies the updates in order. Batches of up to `[suppression] batch` updates are atomic.
    fn apply(&self, updates: &[Update]) -> Result<(), SuppressionError>;

    /// The entry of one address in one scope.
    fn get(&self, scope: &str, address: &str) -> Result<Option<Entry>, SuppressionError> {
        Ok(self.check(&[scope], &[address])?.pop().flatten().map(|(_, e)| e))
    }

    /// The pending soft-bounce record of one address in one scope.
    fn soft(&self, scope: &str, address: &str) -> Result<Option<SoftRecord>, SuppressionError>;

    /// Calls `visit(address, entry)` for every entry of `scope` (in no particular order);
    /// returns how many were visited.
    fn export(&self, scope: &str, visit: &mut dyn FnMut(&str, &Entry)) -> Result<u64, SuppressionError>;

    /// How many addresses `scope` suppresses.
    fn len(&self, scope: &str) -> Result<u64, SuppressionError>;

    /// True when `scope` suppresses nothing.
    fn is_empty(&self, scope: &str) -> Result<bool, SuppressionError> {
        Ok(self.len(scope)? == 0)
    }

    /// Where the data lives, for messages: a redacted Redis URL or the database path.
    fn describe(&self) -> String;

    /// Suppressions other processes added while this one holds the store (embedded store:
    /// through its control socket), for a re-check right before sending.
    fn late(&self) -> Option<&LateSuppressions> {
        None
    }
}

/// Opens the configured store: Redis when `config.redis` is set, otherwise the embedded
/// `<state_dir>/suppression.redb` (the directory is created if missing). Validates `config`.
/// Redis is not contacted here; the first call connects.
pub fn open_store(config: &SuppressionConfig, state_dir: &Path) -> Result<Arc<dyn SuppressionStore>, SuppressionError> {
    config.validate()?;
    match &config.redis {
        Some(url) => Ok(Arc::new(RedisStore::open(
            url,
            &config.prefix,
            config.soft_policy(),
            config.batch,
        )?)),
        None => Ok(Arc::new(EmbeddedStore::open(
            &state_dir.join(EMBEDDED_FILE),
            config.soft_policy(),
        )?)),
    }
}

/// Like [`open_store`], but when another volley process holds the embedded store, reaches it
/// through that process's control socket (see `suppression/control.rs`). For short-lived
/// commands (`volley suppress`), not for runs: a run must not depend on another process
/// staying alive.
///
/// Opening and connecting are retried for up to [`SHARED_OPEN_WAIT`]: the holder may be
/// between locking the file and listening, or exiting (then the file becomes free).
pub fn open_shared(
    config: &SuppressionConfig,
    state_dir: &Path,
) -> Result<Arc<dyn SuppressionStore>, SuppressionError> {
    let deadline = std::time::Instant::now() + SHARED_OPEN_WAIT;
    loop {
        match open_store(config, state_dir) {
            Err(SuppressionError::Locked { path }) => {
                let socket = embedded::control_socket(&path);
                match RemoteStore::connect(&socket, &path) {
                    Ok(remote) => return Ok(Arc::new(remote)),
                    Err(SuppressionError::Io { source, .. }) if std::time::Instant::now() >= deadline => {
                        return Err(SuppressionError::HolderUnreachable { path, socket, source });
                    }
                    Err(SuppressionError::Io { .. }) => std::thread::sleep(std::time::Duration::from_millis(100)),
                    Err(other) => return Err(other),
                }
            }
            other => return other,
        }
    }
}

/// How long [`open_shared`] keeps trying when the store is locked but its holder does not
/// answer yet.
pub const SHARED_OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
