//! Daily and hourly send counters per (source IP, provider group), behind a trait so a budget
//! survives a restart: an embedded store (a JSON file in the state directory) here, a shared
//! Redis store for cluster-wide budgets later. Increments are commutative and reads name their
//! (day, hour) window, so the trait maps onto `INCRBY` on keys like `warmup:{ip}:{group}:{day}`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::day::{hour_of, UtcDay};

/// The file the embedded store keeps in its directory.
pub const COUNTERS_FILE: &str = "warmup-counters.json";

/// A counting window: one UTC day and one UTC hour within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// The UTC day.
    pub day: UtcDay,
    /// The UTC hour, as hours since the Unix epoch (see [`crate::day::hour_of`]).
    pub hour: u64,
}

impl Window {
    /// The window containing `t`.
    pub fn of(t: SystemTime) -> Window {
        Window {
            day: UtcDay::of(t),
            hour: hour_of(t),
        }
    }
}

/// Messages counted in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// In the window's day.
    pub day: u64,
    /// In the window's hour.
    pub hour: u64,
}

/// Counters that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a counters file.
    #[error("{path}: not a warm-up counters file: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// Where daily and hourly counts live.
pub trait CounterStore: Send {
    /// The counts of (ip, provider) in `window` (zero for a window never counted).
    fn load(&mut self, ip: IpAddr, provider: &str, window: Window) -> Result<Counts, CounterError>;

    /// Counts `n` more messages in `window`. Stores may batch: the increment is durable after
    /// the next [`CounterStore::flush`] that writes.
    fn add(&mut self, ip: IpAddr, provider: &str, window: Window, n: u64) -> Result<(), CounterError>;

    /// Makes increments durable: when `force`, now; otherwise when the store's interval has
    /// passed since its last write.
    fn flush(&mut self, now: SystemTime, force: bool) -> Result<(), CounterError>;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    ip: IpAddr,
    provider: String,
    day: UtcDay,
    hour: u64,
    day_count: u64,
    hour_count: u64,
}

/// Counters in memory only: the latest window of each (ip, provider).
#[derive(Clone, Debug, Default)]
pub struct MemoryCounterStore {
    entries: HashMap<(IpAddr, String), Entry>,
}

impl CounterStore for MemoryCounterStore {
    fn load(&mut self, ip: IpAddr, provider: &str, window: Window) -> Result<Counts, CounterError> {
        Ok(match self.entries.get(&(ip, provider.to_string())) {
            Some(e) if e.day == window.day => Counts {
                day: e.day_count,
                hour: if e.hour == window.hour { e.hour_count } else { 0 },
            },
            _ => Counts::default(),
        })
    }

    fn add(&mut self, ip: IpAddr, provider: &str, window: Window, n: u64) -> Result<(), CounterError> {
        let entry = self.entries.entry((ip, provider.to_string())).or_insert_with(|| Entry {
            ip,
            provider: provider.to_string(),
            day: window.day,
            hour: window.hour,
            day_count: 0,
            hour_count: 0,
        });
        if window.day > entry.day {
            (entry.day, entry.day_count) = (window.day, 0);
        }
        if window.hour > entry.hour {
            (entry.hour, entry.hour_count) = (window.hour, 0);
        }
        // Increments for an older window than the latest one kept are dropped: they no longer
        // limit anything.
        if window.day == entry.day {
            entry.day_count += n;
        }
        if window.hour == entry.hour {
            entry.hour_count += n;
        }
        Ok(())
    }

    fn flush(&mut self, _now: SystemTime, _force: bool) -> Result<(), CounterError> {
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct CountersFile {
    entries: Vec<Entry>,
}

/// The embedded store: counters in memory, written to `<dir>/warmup-counters.json` (temp file
/// and rename, so a crash leaves the old or the new file) at most every `flush_every`, and on
/// a forced flush or drop.
#[derive(Debug)]
pub struct FileCounterStore {
    path: PathBuf,
    flush_every: Duration,
    memory: MemoryCounterStore,
    dirty: bool,
    last_write: Option<SystemTime>,
}

impl FileCounterStore {
    /// Opens the store in `dir` (created if missing), reading counts a previous run left.
    pub fn open(dir: &Path, flush_every: Duration) -> Result<FileCounterStore, CounterError> {
        let path = dir.join(COUNTERS_FILE);
        let io = |source| CounterError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut memory = MemoryCounterStore::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: CountersFile = serde_json::from_slice(&bytes).map_err(|source| CounterError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
                for e in file.entries {
                    memory.entries.insert((e.ip, e.provider.clone()), e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        Ok(FileCounterStore {
            path,
            flush_every,
            memory,
            dirty: false,
            last_write: None,
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self) -> Result<(), CounterError> {
        let io = |source| CounterError::Io {
            path: self.path.clone(),
            source,
        };
        let mut entries: Vec<Entry> = self.memory.entries.values().cloned().collect();
        entries.sort_by(|a, b| (a.ip, &a.provider).cmp(&(b.ip, &b.provider)));
        let json = serde_json::to_vec_pretty(&CountersFile { entries }).map_err(|e| io(e.into()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.dirty = false;
        Ok(())
    }
}

impl CounterStore for FileCounterStore {
    fn load(&mut self, ip: IpAddr, provider: &str, window: Window) -> Result<Counts, CounterError> {
        self.memory.load(ip, provider, window)
    }

    fn add(&mut self, ip: IpAddr, provider: &str, window: Window, n: u64) -> Result<(), CounterError> {
        self.dirty = true;
        self.memory.add(ip, provider, window, n)
    }

    fn flush(&mut self, now: SystemTime, force: bool) -> Result<(), CounterError> {
        let due = self
            .last_write
            .is_none_or(|last| now.duration_since(last).unwrap_or_default() >= self.flush_every);
        if !self.dirty || !(force || due) {
            return Ok(());
        }
        self.last_write = Some(now);
        self.write()
    }
}

impl Drop for FileCounterStore {
    fn drop(&mut self) {
        if self.dirty {
            // Best effort: the caller who needs the error flushes with `force` before dropping.
            let _ = self.write();
        }
    }
}
