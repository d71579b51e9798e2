//! [`RedisStore`]: the shared store (see the module docs of [`crate::suppression`] for the
//! key layout).
//!
//! Blocking (the redis crate's sync connections), so it must be called from OS threads, never
//! from a tokio runtime thread. Connections are pooled; one that fails is dropped, and the next
//! call opens a new one, so an outage heals by itself once Redis is back.

use std::sync::Mutex;
use std::time::Duration;

use redis::{Client, Connection};
use serde::Serialize;

use super::embedded::{parse_entry, parse_soft, to_json};
use super::entry::{normalise, Entry, SoftPolicy, SoftRecord, Update, SOFT_REASON_HEAD, SOFT_SOURCE};
use super::error::redact_url;
use super::{SuppressionError, SuppressionStore};

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one reply may take (a batch of 500 is far below this).
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// `HSCAN ... COUNT` for exports.
const SCAN_COUNT: usize = 1000;

/// The Redis-backed store.
pub struct RedisStore {
    client: Client,
    url: String,
    prefix: String,
    policy: SoftPolicy,
    batch: usize,
    script: redis::Script,
    idle: Mutex<Vec<Connection>>,
}

/// The payload of a soft bounce for the Lua script.
#[derive(Serialize)]
struct SoftPayload<'a> {
    at: u64,
    code: Option<u16>,
    enhanced: Option<&'a str>,
    reason: &'a str,
    head: &'a str,
    tail: String,
    entry: Entry,
}

impl RedisStore {
    /// A store on `url` with keys under `prefix`. Does not connect yet.
    pub fn open(url: &str, prefix: &str, policy: SoftPolicy, batch: usize) -> Result<RedisStore, SuppressionError> {
        let redacted = redact_url(url);
        let client = Client::open(url).map_err(|source| SuppressionError::InvalidUrl {
            url: redacted.clone(),
            source,
        })?;
        Ok(RedisStore {
            client,
            url: redacted,
            prefix: prefix.to_owned(),
            policy,
            batch: batch.max(1),
            script: redis::Script::new(include_str!("redis/apply.lua")),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `{prefix}:suppressed:{scope}`.
    pub fn suppressed_key(&self, scope: &str) -> String {
        format!("{}:suppressed:{scope}", self.prefix)
    }

    /// `{prefix}:soft:{scope}`.
    pub fn soft_key(&self, scope: &str) -> String {
        format!("{}:soft:{scope}", self.prefix)
    }

    fn err(&self, op: &'static str, source: redis::RedisError) -> SuppressionError {
        SuppressionError::Redis {
            url: self.url.clone(),
            op,
            source,
        }
    }

    /// Runs `f` on a pooled connection (opening one if none is idle). The connection goes
    /// back to the pool only if `f` succeeded.
    fn with_connection<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, SuppressionError> {
        let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let mut con = match pooled {
            Some(con) => con,
            None => {
                let con = self
                    .client
                    .get_connection_with_timeout(CONNECT_TIMEOUT)
                    .map_err(|e| self.err("connect", e))?;
                con.set_read_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| self.err("connect", e))?;
                con.set_write_timeout(Some(IO_TIMEOUT))
                    .map_err(|e| self.err("connect", e))?;
                con
            }
        };
        let value = f(&mut con).map_err(|e| self.err(op, e))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(con);
        }
        Ok(value)
    }

    fn apply_chunk(&self, updates: &[Update]) -> Result<(), SuppressionError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(self.policy.limit).arg(self.policy.window_secs());
        for update in updates {
            let scope = update.scope();
            invocation.key(self.suppressed_key(scope)).key(self.soft_key(scope));
            let address = normalise(update.address());
            let (op, payload) = match update {
                Update::Suppress { entry, .. } => ("s", to_json(entry)),
                Update::SoftBounce {
                    code,
                    enhanced,
                    reason,
                    at,
                    ..
                } => {
                    let enhanced = enhanced.as_deref();
                    let payload = SoftPayload {
                        at: *at,
                        code: *code,
                        enhanced,
                        reason,
                        head: SOFT_REASON_HEAD,
                        tail: self.policy.reason_tail(*code, enhanced, reason),
                        entry: Entry::new("", SOFT_SOURCE, *at).with_codes(*code, enhanced.map(str::to_owned)),
                    };
                    ("b", to_json(&payload))
                }
                Update::ForgetSoft { .. } => ("f", String::new()),
                Update::Remove { .. } => ("r", String::new()),
            };
            invocation.arg(op).arg(address).arg(payload);
        }
        self.with_connection("apply", |con| invocation.invoke::<i64>(con))
            .map(drop)
    }
}

impl SuppressionStore for RedisStore {
    fn check(&self, scopes: &[&str], addresses: &[&str]) -> Result<Vec<Option<(String, Entry)>>, SuppressionError> {
        let mut out = Vec::with_capacity(addresses.len());
        if scopes.is_empty() {
            out.resize(addresses.len(), None);
            return Ok(out);
        }
        let keys: Vec<String> = scopes.iter().map(|s| self.suppressed_key(s)).collect();
        for chunk in addresses.chunks(self.batch) {
            let chunk: Vec<String> = chunk.iter().map(|a| normalise(a)).collect();
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("HMGET").arg(key).arg(&chunk);
            }
            let replies: Vec<Vec<Option<Vec<u8>>>> = self.with_connection("check", |con| pipe.query(con))?;
            for (i, address) in chunk.iter().enumerate() {
                let hit = scopes.iter().zip(&replies).find_map(|(scope, reply)| {
                    let json = reply.get(i)?.as_ref()?;
                    let entry = parse_entry(&String::from_utf8_lossy(json), scope, address);
                    Some((scope.to_string(), entry))
                });
                out.push(hit);
            }
        }
        Ok(out)
    }

    fn apply(&self, updates: &[Update]) -> Result<(), SuppressionError> {
        for chunk in updates.chunks(self.batch) {
            self.apply_chunk(chunk)?;
        }
        Ok(())
    }

    fn soft(&self, scope: &str, address: &str) -> Result<Option<SoftRecord>, SuppressionError> {
        let key = self.soft_key(scope);
        let address = normalise(address);
        let json: Option<Vec<u8>> =
            self.with_connection("soft", |con| redis::cmd("HGET").arg(&key).arg(&address).query(con))?;
        Ok(json.and_then(|j| parse_soft(&String::from_utf8_lossy(&j))))
    }

    fn export(&self, scope: &str, visit: &mut dyn FnMut(&str, &Entry)) -> Result<u64, SuppressionError> {
        let key = self.suppressed_key(scope);
        let mut cursor = 0u64;
        let mut n = 0;
        loop {
            let (next, flat): (u64, Vec<Vec<u8>>) = self.with_connection("export", |con| {
                redis::cmd("HSCAN")
                    .arg(&key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query(con)
            })?;
            for pair in flat.chunks_exact(2) {
                let address = String::from_utf8_lossy(&pair[0]);
                let entry = parse_entry(&String::from_utf8_lossy(&pair[1]), scope, &address);
                visit(&address, &entry);
                n += 1;
            }
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }

    fn len(&self, scope: &str) -> Result<u64, SuppressionError> {
        let key = self.suppressed_key(scope);
        self.with_connection("len", |con| redis::cmd("HLEN").arg(&key).query(con))
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
