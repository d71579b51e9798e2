//! Warm-up counters for `[warmup] counters`: the embedded file store, or [`RedisCounterStore`],
//! which several Volley processes share so that processes sending from the same source IP share
//! one budget (cluster-wide caps and smoothing).
//!
//! ## Keys
//! - `{prefix}:warmup:{ip}:{provider}:d:{YYYY-MM-DD}` — messages counted on a UTC day (expires
//!   after 2 days).
//! - `{prefix}:warmup:{ip}:{provider}:h:{hour}` — messages counted in a UTC hour, numbered as
//!   hours since the Unix epoch (expires after 2 hours).
//! - `{prefix}:warmup:{ip}:{provider}:tat` — the GCRA theoretical arrival time of the pair's
//!   smoothing limiter, in microseconds on the callers' clock (expires once in the past).
//!
//! ## Round trips
//! A capped pair costs two per message: [`CounterStore::pace`] (`pace.lua`, GCRA) and
//! [`CounterStore::take`] (`take.lua`: compare with both caps, increment both only if under
//! both). Warm pairs are not limited by counts: [`CounterStore::add`] buffers, and
//! [`CounterStore::flush`] sends the buffered increments as one `MULTI` pipeline at most every
//! `flush_every`. The keys of one pair are not hash-tagged: one Redis (or a primary with
//! replicas), not Redis Cluster.
//!
//! ## Outages
//! Blocking (the redis crate's sync connection, with 1 s connect and I/O timeouts), so a dead
//! Redis holds the dispatcher for at most about a second: a connection that fails is dropped and
//! the next call opens a new one, and after a failed connect, calls within the next second fail
//! at once instead of waiting for another timeout. Errors are
//! [`CounterError::Unavailable`] with the URL redacted; budgets do not send capped messages
//! meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Client, Connection, RedisResult, Script};
use volley_warmup::counters::{CounterError, CounterStore, Counts, Pacing, Taken, Window};
use volley_warmup::{redact_url, Caps, CounterBackend, FileCounterStore, Rate, UtcDay, WarmupConfig};

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may take.
const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connect, calls fail at once for this long.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// Day counters outlive their day by a day.
const DAY_KEY_TTL_SECS: u64 = 2 * 86_400;
/// Hour counters outlive their hour by an hour.
const HOUR_KEY_TTL_SECS: u64 = 2 * 3600;

/// `[warmup] counters` cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum WarmupCountersError {
    /// A `[warmup]` setting is missing or invalid.
    #[error("{field} = {value}: {message}")]
    Config {
        /// The field path (`warmup.redis`, `warmup.key_prefix`).
        field: &'static str,
        /// The value as configured (passwords redacted), or `(absent)`.
        value: String,
        /// Why it is refused.
        message: String,
    },
    /// The Redis URL cannot be parsed.
    #[error("invalid warm-up counters redis URL {url}: {source}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// The parser's complaint.
        #[source]
        source: redis::RedisError,
    },
    /// The embedded store's file cannot be used.
    #[error(transparent)]
    Store(#[from] CounterError),
}

/// The Redis URL the warm-up counters use: `None` for the embedded store; with
/// `counters = "redis"`, `[warmup] redis`, else `[suppression] redis`, else an error naming
/// `warmup.redis`.
pub fn redis_url<'a>(
    config: &'a WarmupConfig,
    suppression_redis: Option<&'a str>,
) -> Result<Option<&'a str>, WarmupCountersError> {
    match config.counters {
        CounterBackend::Embedded => Ok(None),
        CounterBackend::Redis => match config.redis.as_ref().map(|u| u.expose()).or(suppression_redis) {
            Some(url) => Ok(Some(url)),
            None => Err(WarmupCountersError::Config {
                field: "warmup.redis",
                value: "(absent)".into(),
                message: "counters = \"redis\" needs a Redis URL: set [warmup] redis or [suppression] redis".into(),
            }),
        },
    }
}

/// The counter store `[warmup]` asks for: [`FileCounterStore`] in `state_dir`, or a
/// [`RedisCounterStore`] on [`redis_url`]. Does not connect to Redis yet.
pub fn open(
    config: &WarmupConfig,
    suppression_redis: Option<&str>,
    state_dir: &Path,
) -> Result<Box<dyn CounterStore>, WarmupCountersError> {
    match redis_url(config, suppression_redis)? {
        None => Ok(Box::new(FileCounterStore::open(state_dir, config.flush_every)?)),
        Some(url) => Ok(Box::new(RedisCounterStore::open(
            url,
            &config.key_prefix,
            config.flush_every,
        )?)),
    }
}

/// Counters and smoothing state of every (source IP, provider group) pair in Redis, shared by
/// every process that uses the same URL and prefix.
pub struct RedisCounterStore {
    link: Link,
    prefix: String,
    flush_every: Duration,
    take_script: Script,
    pace_script: Script,
    /// Increments not yet sent, per (ip, provider, window).
    pending: HashMap<(IpAddr, String, Window), u64>,
    last_flush: Option<SystemTime>,
}

impl std::fmt::Debug for RedisCounterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounterStore")
            .field("url", &self.link.url)
            .field("prefix", &self.prefix)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// One lazily (re)opened connection.
struct Link {
    client: Client,
    /// The URL with the password redacted, for errors.
    url: String,
    con: Option<Connection>,
    /// When the last connect failed, and why.
    failed: Option<(Instant, String)>,
}

impl Link {
    fn unavailable(
        &self,
        op: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> CounterError {
        CounterError::Unavailable {
            store: self.url.clone(),
            op,
            source: source.into(),
        }
    }

    fn connect(&mut self) -> Result<&mut Connection, CounterError> {
        if let Some((at, why)) = &self.failed {
            if at.elapsed() < RECONNECT_AFTER {
                return Err(self.unavailable("connect", format!("{why} (retried within a second)")));
            }
        }
        if self.con.is_none() {
            let opened = self
                .client
                .get_connection_with_timeout(CONNECT_TIMEOUT)
                .and_then(|con| {
                    con.set_read_timeout(Some(IO_TIMEOUT))?;
                    con.set_write_timeout(Some(IO_TIMEOUT))?;
                    Ok(con)
                });
            match opened {
                Ok(con) => {
                    self.failed = None;
                    self.con = Some(con);
                }
                Err(e) => {
                    self.failed = Some((Instant::now(), e.to_string()));
                    return Err(self.unavailable("connect", e));
                }
            }
        }
        self.con.as_mut().ok_or_else(|| CounterError::Unavailable {
            store: self.url.clone(),
            op: "connect",
            source: "no connection".into(),
        })
    }

    /// Runs `f` on the connection; a failure drops it, so the next call reconnects.
    fn run<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, CounterError> {
        let con = self.connect()?;
        match f(con) {
            Ok(value) => Ok(value),
            Err(e) => {
                self.con = None;
                Err(self.unavailable(op, e))
            }
        }
    }
}

impl RedisCounterStore {
    /// A store on `url` with keys under `{prefix}:warmup:`, sending warm pairs' increments at
    /// most every `flush_every`. Does not connect yet.
    pub fn open(url: &str, prefix: &str, flush_every: Duration) -> Result<RedisCounterStore, WarmupCountersError> {
        let redacted = redact_url(url);
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c == '*') {
            return Err(WarmupCountersError::Config {
                field: "warmup.key_prefix",
                value: format!("{prefix:?}"),
                message: "must be non-empty, without spaces or '*'".into(),
            });
        }
        let client = Client::open(url).map_err(|source| WarmupCountersError::InvalidUrl {
            url: redacted.clone(),
            source,
        })?;
        Ok(RedisCounterStore {
            link: Link {
                client,
                url: redacted,
                con: None,
                failed: None,
            },
            prefix: prefix.to_owned(),
            flush_every,
            take_script: Script::new(include_str!("warmup_counters/take.lua")),
            pace_script: Script::new(include_str!("warmup_counters/pace.lua")),
            pending: HashMap::new(),
            last_flush: None,
        })
    }

    /// `{prefix}:warmup:{ip}:{provider}:d:{YYYY-MM-DD}`.
    pub fn day_key(&self, ip: IpAddr, provider: &str, day: UtcDay) -> String {
        format!("{}:d:{day}", self.pair_key(ip, provider))
    }

    /// `{prefix}:warmup:{ip}:{provider}:h:{hours since the epoch}`.
    pub fn hour_key(&self, ip: IpAddr, provider: &str, hour: u64) -> String {
        format!("{}:h:{hour}", self.pair_key(ip, provider))
    }

    /// `{prefix}:warmup:{ip}:{provider}:tat`.
    pub fn tat_key(&self, ip: IpAddr, provider: &str) -> String {
        format!("{}:tat", self.pair_key(ip, provider))
    }

    fn pair_key(&self, ip: IpAddr, provider: &str) -> String {
        format!("{}:warmup:{ip}:{provider}", self.prefix)
    }

    /// Increments of (ip, provider) not yet sent, in `window`'s day and hour.
    fn pending_in(&self, ip: IpAddr, provider: &str, window: Window) -> Counts {
        let mut counts = Counts::default();
        for ((p_ip, p_provider, w), n) in &self.pending {
            if *p_ip == ip && p_provider == provider && w.day == window.day {
                counts.day += n;
                if w.hour == window.hour {
                    counts.hour += n;
                }
            }
        }
        counts
    }
}

impl CounterStore for RedisCounterStore {
    fn load(&mut self, ip: IpAddr, provider: &str, window: Window) -> Result<Counts, CounterError> {
        let keys = [
            self.day_key(ip, provider, window.day),
            self.hour_key(ip, provider, window.hour),
        ];
        let (day, hour): (Option<u64>, Option<u64>) =
            self.link.run("load", |con| redis::cmd("MGET").arg(&keys).query(con))?;
        let pending = self.pending_in(ip, provider, window);
        Ok(Counts {
            day: day.unwrap_or(0) + pending.day,
            hour: hour.unwrap_or(0) + pending.hour,
        })
    }

    fn add(&mut self, ip: IpAddr, provider: &str, window: Window, n: u64) -> Result<(), CounterError> {
        *self.pending.entry((ip, provider.to_owned(), window)).or_default() += n;
        Ok(())
    }

    fn flush(&mut self, now: SystemTime, force: bool) -> Result<(), CounterError> {
        let due = self
            .last_flush
            .is_none_or(|last| now.duration_since(last).unwrap_or_default() >= self.flush_every);
        if self.pending.is_empty() || !(force || due) {
            return Ok(());
        }
        // Failed or not, the next attempt waits for the interval (or a forced flush).
        self.last_flush = Some(now);
        let mut pipe = redis::pipe();
        // MULTI/EXEC: a batch counts entirely or not at all, so a retry does not count twice.
        pipe.atomic();
        for ((ip, provider, window), n) in &self.pending {
            let day = self.day_key(*ip, provider, window.day);
            let hour = self.hour_key(*ip, provider, window.hour);
            pipe.incr(&day, *n).ignore();
            pipe.expire(&day, DAY_KEY_TTL_SECS as i64).ignore();
            pipe.incr(&hour, *n).ignore();
            pipe.expire(&hour, HOUR_KEY_TTL_SECS as i64).ignore();
        }
        self.link.run("flush", |con| pipe.query::<()>(con))?;
        self.pending.clear();
        Ok(())
    }

    fn take(&mut self, ip: IpAddr, provider: &str, window: Window, caps: Caps) -> Result<Taken, CounterError> {
        let day_key = self.day_key(ip, provider, window.day);
        let hour_key = self.hour_key(ip, provider, window.hour);
        let (verdict, day, hour): (u8, u64, u64) = self.link.run("take", |con| {
            self.take_script
                .key(&day_key)
                .key(&hour_key)
                .arg(caps.daily)
                .arg(caps.hourly)
                .arg(DAY_KEY_TTL_SECS)
                .arg(HOUR_KEY_TTL_SECS)
                .invoke(con)
        })?;
        let counts = Counts { day, hour };
        Ok(match verdict {
            0 => Taken::Ok(counts),
            2 => Taken::HourlySpent(counts),
            _ => Taken::DailySpent(counts),
        })
    }

    fn pace(
        &mut self,
        ip: IpAddr,
        provider: &str,
        rate: Rate,
        burst: NonZeroU32,
        now: SystemTime,
    ) -> Result<Pacing, CounterError> {
        let key = self.tat_key(ip, provider);
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let interval = micros(rate.interval()).max(1);
        let tolerance = interval.saturating_mul(u64::from(burst.get() - 1));
        let now = micros(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        let wait: u64 = self.link.run("pace", |con| {
            self.pace_script
                .key(&key)
                .arg(now)
                .arg(interval)
                .arg(tolerance)
                .invoke(con)
        })?;
        Ok(match wait {
            0 => Pacing::Allowed,
            us => Pacing::Wait(Duration::from_micros(us)),
        })
    }

    fn shared(&self) -> bool {
        true
    }
}

impl Drop for RedisCounterStore {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            // Best effort (bounded by the timeouts): a caller who needs the error flushes with
            // `force` before dropping.
            let _ = self.flush(SystemTime::now(), true);
        }
    }
}
