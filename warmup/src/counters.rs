//! Daily and hourly send counters per (source IP, provider group), behind a trait so a budget
//! survives a restart: an embedded store (a JSON file in the state directory) here, a shared
//! Redis store for cluster-wide budgets in the scheduler (`volley_scheduler::warmup_counters`).
//! Increments are commutative and reads name their (day, hour) window, so the trait maps onto
//! `INCRBY` on keys like `warmup:{ip}:{group}:d:{day}`.
//!
//! A store shared by several processes ([`CounterStore::shared`]) must also make the two
//! decisions that cannot be made from one process's memory atomic: "is there budget left, and
//! if so count this message" ([`CounterStore::take`]) and "may the pair send now at its smoothed
//! rate" ([`CounterStore::pace`], a GCRA decision on state every process sees).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::curve::Caps;
use crate::day::{hour_of, UtcDay};
use crate::rate::Rate;

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

impl Counts {
    /// These counts with `n` more messages in both the day and the hour.
    pub fn plus(self, n: u64) -> Counts {
        Counts {
            day: self.day.saturating_add(n),
            hour: self.hour.saturating_add(n),
        }
    }
}

/// The answer of [`CounterStore::take`]: counted, or which cap is spent. Each carries the
/// window's counts as the store saw them (after the increment for `Ok`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Under both caps: the message is counted.
    Ok(Counts),
    /// The daily cap is spent; nothing counted.
    DailySpent(Counts),
    /// The hourly cap is spent (the daily one is not); nothing counted.
    HourlySpent(Counts),
}

impl Taken {
    /// The verdict for `counts` under `caps`, before counting: `None` when there is room.
    pub fn spent(counts: Counts, caps: Caps) -> Option<Taken> {
        if counts.day >= caps.daily {
            Some(Taken::DailySpent(counts))
        } else if counts.hour >= caps.hourly {
            Some(Taken::HourlySpent(counts))
        } else {
            None
        }
    }

    /// The counts carried.
    pub fn counts(self) -> Counts {
        match self {
            Taken::Ok(c) | Taken::DailySpent(c) | Taken::HourlySpent(c) => c,
        }
    }
}

/// The answer of [`CounterStore::pace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// The store does not pace: the caller uses its local limiter.
    Local,
    /// The shared limiter lets one message through now.
    Allowed,
    /// The shared limiter refuses; ask again after this long.
    Wait(Duration),
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
    /// A shared backend could not be reached or failed a command (connection refused or
    /// dropped, timeout, script error). It may heal by itself; until it does, capped pairs
    /// do not send.
    #[error("warm-up counters {store}: {op} failed: {source}")]
    Unavailable {
        /// The backend, as logs may show it (a Redis URL with the password redacted).
        store: String,
        /// What was being done (`connect`, `take`, `pace`, `load`, `flush`).
        op: &'static str,
        /// The backend's error (never carries a password).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CounterError {
    /// True when the store could not be reached and may come back by itself (the caller waits
    /// and retries); false for a file that cannot be used, which needs an operator.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CounterError::Unavailable { .. })
    }
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

    /// Atomically checks `caps` against the window's counts and, when both have room, counts
    /// one message. A shared store must make the check and the increment one step, so that
    /// processes sharing an IP never exceed its caps together. The default, for a store used
    /// by one process: load, compare, add.
    fn take(&mut self, ip: IpAddr, provider: &str, window: Window, caps: Caps) -> Result<Taken, CounterError> {
        let counts = self.load(ip, provider, window)?;
        if let Some(spent) = Taken::spent(counts, caps) {
            return Ok(spent);
        }
        self.add(ip, provider, window, 1)?;
        Ok(Taken::Ok(counts.plus(1)))
    }

    /// A smoothing decision shared by every process using the store: a GCRA limiter at `rate`
    /// letting `burst` messages through at once after an idle period, evaluated at the
    /// caller's `now` (which may be a compressed test clock). The default, [`Pacing::Local`],
    /// leaves smoothing to the caller's own limiter.
    fn pace(
        &mut self,
        ip: IpAddr,
        provider: &str,
        rate: Rate,
        burst: NonZeroU32,
        now: SystemTime,
    ) -> Result<Pacing, CounterError> {
        let _ = (ip, provider, rate, burst, now);
        Ok(Pacing::Local)
    }

    /// True when other processes may count on the same keys: the caller must then ask
    /// [`CounterStore::take`] for every capped message instead of trusting counts in memory.
    fn shared(&self) -> bool {
        false
    }
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
