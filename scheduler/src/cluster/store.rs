//! The Redis side of a cluster campaign: one connection per [`Store`], commands and scripts.
//! Calls block (a loopback or LAN round trip); async callers run them off the runtime.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::{Client, Connection, Value};

use super::control::{parse_state, CampaignState};
use super::keys::{Keys, GROUP};
use super::ClusterError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A chunk as read from the stream.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The stream entry id.
    pub id: String,
    /// The chunk's number (1-based, in publishing order).
    pub seq: u64,
    /// The rows (JSON, see `chunk::Rows`); `None` when the entry was deleted meanwhile.
    pub rows: Option<String>,
}

/// A campaign's progress as stored in Redis.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterStatus {
    /// The campaign id.
    pub campaign: String,
    /// The publisher's fields (`published`, `acked`, `rows`, …), without the definition.
    pub progress: BTreeMap<String, i64>,
    /// Outcome counts across nodes, each recipient counted once.
    pub counts: BTreeMap<String, i64>,
    /// Chunks pending per node (read or claimed, not acknowledged).
    pub pending: BTreeMap<String, i64>,
    /// Every chunk published and acknowledged.
    pub complete: bool,
    /// What the operator asked: `running`, `paused` or `cancelled`.
    pub state: CampaignState,
}

/// A connection to the coordinating Redis.
pub struct Store {
    url: String,
    /// The node the campaign's slot lives on (after a Redis Cluster `MOVED`), and its connection.
    con: Mutex<(Client, Option<Connection>)>,
    publish: redis::Script,
    finish: redis::Script,
    renew: redis::Script,
}

fn err(op: &'static str) -> impl FnOnce(redis::RedisError) -> ClusterError {
    move |source| ClusterError::Redis { op, source }
}

/// Bit `bit` (0: the most significant, as Redis numbers them) of byte `byte` of `bytes`; a
/// byte past the end (the bitmap is shorter) is zero.
fn bit(bytes: &[u8], byte: u64, bit: u64) -> bool {
    usize::try_from(byte)
        .ok()
        .and_then(|b| bytes.get(b))
        .is_some_and(|b| b & (0x80 >> bit) != 0)
}

/// Every chunk published (`published_all`) and acknowledged.
fn is_complete(published_all: Option<i64>, published: Option<i64>, acked: Option<i64>) -> bool {
    published_all == Some(1) && published.unwrap_or(0) <= acked.unwrap_or(0)
}

fn bad(key: &str, reason: impl Into<String>) -> ClusterError {
    ClusterError::BadData {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl Store {
    /// A store for `url` (connects on first use).
    pub fn open(url: &str) -> Result<Store, ClusterError> {
        Ok(Store {
            url: url.to_owned(),
            con: Mutex::new((Client::open(url).map_err(err("open"))?, None)),
            publish: redis::Script::new(include_str!("publish.lua")),
            finish: redis::Script::new(include_str!("finish.lua")),
            renew: redis::Script::new(include_str!("renew.lua")),
        })
    }

    /// A store for campaign `keys` at `url`, connected to the node that holds the campaign's
    /// slot (with Redis Cluster, a first single-key command follows the `MOVED` reply; the
    /// pipelines that come later cannot follow one themselves).
    pub fn for_campaign(url: &str, keys: &Keys) -> Result<Store, ClusterError> {
        Store::for_key(url, &keys.meta)
    }

    /// A store at `url` connected to the node that holds `key`'s slot (see
    /// [`Store::for_campaign`]).
    pub fn for_key(url: &str, key: &str) -> Result<Store, ClusterError> {
        let store = Store::open(url)?;
        let _: i64 = store.with("EXISTS", |con| redis::cmd("EXISTS").arg(key).query(con))?;
        Ok(store)
    }

    /// Runs `f` on the connection (opening it if needed). With Redis Cluster every key of a
    /// campaign is in one slot: a `MOVED`/`ASK` reply makes the store follow to the node
    /// named, once per call (the command was not executed, so repeating it is safe).
    pub(super) fn with<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let mut guard = self.con.lock().unwrap_or_else(|p| p.into_inner());
        let mut redirected = false;
        loop {
            let (client, con) = &mut *guard;
            if con.is_none() {
                let c = client
                    .get_connection_with_timeout(CONNECT_TIMEOUT)
                    .map_err(err("connect"))?;
                c.set_read_timeout(Some(IO_TIMEOUT)).map_err(err("connect"))?;
                c.set_write_timeout(Some(IO_TIMEOUT)).map_err(err("connect"))?;
                *con = Some(c);
            }
            let Some(c) = con.as_mut() else {
                return Err(bad("-", "no connection"));
            };
            let result = f(c);
            let Err(e) = &result else {
                return result.map_err(err(op));
            };
            if let (false, Some((node, _slot))) = (redirected, e.redirect_node()) {
                let url = redirect_url(&self.url, node);
                *guard = (Client::open(url.as_str()).map_err(err("redirect"))?, None);
                redirected = true;
                continue;
            }
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                *con = None;
            }
            return result.map_err(err(op));
        }
    }

    /// Stores the definition of a campaign and creates its consumer group. Returns the last
    /// line already published (0 for a new campaign). A different definition under the same
    /// id is refused.
    pub fn define(&self, id: &str, keys: &Keys, toml: &str, columns: &[String]) -> Result<u64, ClusterError> {
        let columns = serde_json::to_string(columns).map_err(|e| bad(&keys.meta, e.to_string()))?;
        let (new, stored_toml, stored_columns, through): (bool, Option<String>, Option<String>, Option<u64>) = self
            .with("define", |con| {
                redis::pipe()
                    .atomic()
                    .cmd("HSETNX")
                    .arg(&keys.meta)
                    .arg("toml")
                    .arg(toml)
                    .ignore()
                    .cmd("HSETNX")
                    .arg(&keys.meta)
                    .arg("columns")
                    .arg(&columns)
                    .cmd("HGET")
                    .arg(&keys.meta)
                    .arg("toml")
                    .cmd("HGET")
                    .arg(&keys.meta)
                    .arg("columns")
                    .cmd("HGET")
                    .arg(&keys.meta)
                    .arg("published_through")
                    .query(con)
            })?;
        if !new && (stored_toml.as_deref() != Some(toml) || stored_columns.as_deref() != Some(columns.as_str())) {
            return Err(ClusterError::Republished(id.to_owned()));
        }
        let created: redis::RedisResult<()> = self
            .with("XGROUP CREATE", |con| {
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&keys.chunks)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query(con)
            })
            .map_or_else(
                |e| match e {
                    ClusterError::Redis { source, .. } if source.code() == Some("BUSYGROUP") => Ok(Ok(())),
                    e => Err(e),
                },
                |v| Ok(Ok(v)),
            )?;
        created.map_err(err("XGROUP CREATE"))?;
        Ok(through.unwrap_or(0))
    }

    /// The definition: the campaign TOML (bodies inline) and the recipient columns.
    pub fn definition(&self, id: &str, keys: &Keys) -> Result<(String, Vec<String>), ClusterError> {
        let (toml, columns): (Option<String>, Option<String>) = self.with("HMGET", |con| {
            redis::cmd("HMGET")
                .arg(&keys.meta)
                .arg("toml")
                .arg("columns")
                .query(con)
        })?;
        let (Some(toml), Some(columns)) = (toml, columns) else {
            return Err(ClusterError::UnknownCampaign(id.to_owned()));
        };
        let columns = serde_json::from_str(&columns).map_err(|e| bad(&keys.meta, format!("columns: {e}")))?;
        Ok((toml, columns))
    }

    fn meta_int(&self, keys: &Keys, field: &str) -> Result<i64, ClusterError> {
        let v: Option<i64> = self.with("HGET", |con| redis::cmd("HGET").arg(&keys.meta).arg(field).query(con))?;
        Ok(v.unwrap_or(0))
    }

    /// Chunks published and not yet acknowledged.
    pub fn outstanding(&self, keys: &Keys) -> Result<i64, ClusterError> {
        Ok(self.meta_int(keys, "published")? - self.meta_int(keys, "acked")?)
    }

    /// Chunks published, not acknowledged and not parked — what the publisher's back-pressure
    /// counts (a parked chunk waits only for retries; its rows stay in the stream) —, and the
    /// campaign's state (one round trip).
    pub fn backlog(&self, keys: &Keys) -> Result<(i64, CampaignState), ClusterError> {
        type Reply = ((Option<i64>, Option<i64>, Option<String>), i64);
        let ((published, acked, state), parked): Reply = self.with("HMGET", |con| {
            redis::pipe()
                .cmd("HMGET")
                .arg(&keys.meta)
                .arg("published")
                .arg("acked")
                .arg("state")
                .cmd("SCARD")
                .arg(&keys.parked)
                .query(con)
        })?;
        let state = parse_state(&keys.meta, state.as_deref())?;
        Ok((published.unwrap_or(0) - acked.unwrap_or(0) - parked, state))
    }

    /// Adds a chunk of `rows` recipients whose last line is `through`; returns its number.
    pub fn add_chunk(&self, keys: &Keys, rows_json: &str, through: u64, rows: usize) -> Result<u64, ClusterError> {
        let mut call = self.publish.prepare_invoke();
        call.key(&keys.meta)
            .key(&keys.chunks)
            .arg(rows_json)
            .arg(through)
            .arg(rows);
        self.with("XADD", |con| call.invoke(con))
    }

    /// Marks the campaign fully published, with the publisher's totals.
    pub fn publish_done(&self, keys: &Keys, rejected: u64, duplicates: u64) -> Result<(), ClusterError> {
        self.with("HSET", |con| {
            redis::cmd("HSET")
                .arg(&keys.meta)
                .arg("published_all")
                .arg(1)
                .arg("rejected")
                .arg(rejected)
                .arg("duplicates")
                .arg(duplicates)
                .query(con)
        })
    }

    /// Every chunk published and acknowledged.
    pub fn complete(&self, keys: &Keys) -> Result<bool, ClusterError> {
        let (all, published, acked): (Option<i64>, Option<i64>, Option<i64>) = self.with("HMGET", |con| {
            redis::cmd("HMGET")
                .arg(&keys.meta)
                .arg("published_all")
                .arg("published")
                .arg("acked")
                .query(con)
        })?;
        Ok(is_complete(all, published, acked))
    }

    /// Lets Redis delete every key of a completed campaign after `keep` (idempotent: each
    /// node that sees the campaign complete sets the same expiry again).
    pub fn expire(&self, keys: &Keys, keep: Duration) -> Result<(), ClusterError> {
        let ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        self.with("PEXPIRE", |con| {
            let mut pipe = redis::pipe();
            for key in keys.all() {
                pipe.cmd("PEXPIRE").arg(key).arg(ms).ignore();
            }
            pipe.query::<()>(con)
        })
    }

    /// The chunks pending on `node` (after a restart: what it had read and not acknowledged).
    pub fn own_pending(&self, keys: &Keys, node: &str) -> Result<Vec<Entry>, ClusterError> {
        self.read_group(keys, node, 10_000, "0")
    }

    /// The next chunk nobody has read yet, if any.
    pub fn read_new(&self, keys: &Keys, node: &str) -> Result<Option<Entry>, ClusterError> {
        Ok(self.read_group(keys, node, 1, ">")?.into_iter().next())
    }

    /// `XREADGROUP` of up to `count` entries from `from` (`0`: this consumer's pending ones,
    /// `>`: never delivered ones).
    fn read_group(&self, keys: &Keys, node: &str, count: usize, from: &str) -> Result<Vec<Entry>, ClusterError> {
        let v: Value = self.with("XREADGROUP", |con| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(node)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(&keys.chunks)
                .arg(from)
                .query(con)
        })?;
        read_reply(&keys.chunks, &v)
    }

    /// Claims one chunk idle for at least `lease` (its node stopped renewing it), other than
    /// `running`: chunks `node` is sending itself, idle because it stalled for longer than the
    /// lease between two renewals (a slow disk, a descheduled process). Claiming those only
    /// renews them; they are passed over, not started a second time.
    pub fn claim_idle(
        &self,
        keys: &Keys,
        node: &str,
        lease: Duration,
        running: &[&str],
    ) -> Result<Option<Entry>, ClusterError> {
        // XAUTOCLAIM scans at most 10 × COUNT pending entries per call: follow its cursor
        // through the whole pending list ("0-0" once it has wrapped).
        let mut cursor = "0-0".to_owned();
        loop {
            let v: Value = self.with("XAUTOCLAIM", |con| {
                redis::cmd("XAUTOCLAIM")
                    .arg(&keys.chunks)
                    .arg(GROUP)
                    .arg(node)
                    .arg(lease.as_millis() as u64)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(1)
                    .query(con)
            })?;
            let Value::Array(parts) = &v else {
                return Err(bad(&keys.chunks, "XAUTOCLAIM: not an array"));
            };
            let Some(Value::Array(entries)) = parts.get(1) else {
                return Err(bad(&keys.chunks, "XAUTOCLAIM: no entry list"));
            };
            if let Some(e) = entries.first() {
                let e = entry(&keys.chunks, e)?;
                if !running.contains(&e.id.as_str()) {
                    return Ok(Some(e));
                }
                tracing::warn!(
                    chunk = e.seq,
                    lease = ?lease,
                    "this node's own chunk went unrenewed for longer than the lease (the node stalled); still sending it"
                );
            }
            match parts.first().and_then(text) {
                Some(next) if next != "0-0" => cursor = next,
                _ => return Ok(None),
            }
        }
    }

    /// Renews the lease of `ids` (resets their idle time) where `node` still owns them;
    /// returns the ids it no longer owns.
    pub fn renew(&self, keys: &Keys, node: &str, ids: &[String]) -> Result<Vec<String>, ClusterError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.renew.prepare_invoke();
        call.key(&keys.chunks).arg(GROUP).arg(node);
        for id in ids {
            call.arg(id);
        }
        self.with("renew", |con| call.invoke(con))
    }

    /// Which of `lines` are done (in order): one `GETRANGE` over the bitmap bytes they span.
    pub fn done(&self, keys: &Keys, lines: &[u64]) -> Result<Vec<bool>, ClusterError> {
        let (Some(&min), Some(&max)) = (lines.iter().min(), lines.iter().max()) else {
            return Ok(Vec::new());
        };
        let first = min / 8;
        let bytes: Vec<u8> = self.with("GETRANGE", |con| {
            redis::cmd("GETRANGE")
                .arg(&keys.done)
                .arg(first)
                .arg(max / 8)
                .query(con)
        })?;
        Ok(lines
            .iter()
            .map(|line| bit(&bytes, line / 8 - first, line % 8))
            .collect())
    }

    /// Records the final outcomes of a chunk (`(line, outcome)`; each recipient counted once,
    /// by its done bit) and `resent` resends, then acknowledges and deletes the chunk if `node`
    /// still owns it. Returns whether it did.
    pub fn finish(
        &self,
        keys: &Keys,
        node: &str,
        entry_id: &str,
        finals: &[(u64, String)],
        resent: u64,
    ) -> Result<bool, ClusterError> {
        self.record(keys, node, entry_id, finals, resent, "ack")
    }

    /// Records the final outcomes a chunk has so far (as [`Store::finish`]) and parks it if
    /// `node` still owns it: its other rows wait only for retries, so it no longer counts
    /// against the publisher's `max_outstanding`. Returns whether `node` owned it.
    pub fn park(
        &self,
        keys: &Keys,
        node: &str,
        entry_id: &str,
        finals: &[(u64, String)],
        resent: u64,
    ) -> Result<bool, ClusterError> {
        self.record(keys, node, entry_id, finals, resent, "park")
    }

    fn record(
        &self,
        keys: &Keys,
        node: &str,
        entry_id: &str,
        finals: &[(u64, String)],
        resent: u64,
        mode: &str,
    ) -> Result<bool, ClusterError> {
        let mut groups = super::done_bits::mask_groups(finals);
        if groups.is_empty() {
            groups.push(super::done_bits::MaskGroup {
                first: 0,
                masks: Vec::new(),
            });
        }
        let last = groups.len() - 1;
        let mut owned = 0;
        // Lines spread wider than one call covers: the calls before the last only count
        // (`resent` with the first), the last acknowledges or parks.
        for (i, group) in groups.iter().enumerate() {
            let mut call = self.finish.prepare_invoke();
            call.key(&keys.chunks)
                .key(&keys.meta)
                .key(&keys.done)
                .key(&keys.counts)
                .key(&keys.parked)
                .arg(GROUP)
                .arg(node)
                .arg(entry_id)
                .arg(if i == 0 { resent } else { 0 })
                .arg(if i == last { mode } else { "count" })
                .arg(group.first);
            for (outcome, mask) in &group.masks {
                call.arg(outcome).arg(mask.as_slice());
            }
            owned = self.with("finish", |con| call.invoke::<i64>(con))?;
        }
        Ok(owned == 1)
    }

    /// Acknowledges a deleted or empty chunk.
    pub fn ack_empty(&self, keys: &Keys, node: &str, entry_id: &str) -> Result<bool, ClusterError> {
        self.finish(keys, node, entry_id, &[], 0)
    }

    /// Progress, counts and pending chunks of campaign `id`.
    pub fn status(&self, id: &str, keys: &Keys) -> Result<ClusterStatus, ClusterError> {
        let (meta, counts, parked): (BTreeMap<String, String>, BTreeMap<String, i64>, i64) =
            self.with("HGETALL", |con| {
                redis::pipe()
                    .cmd("HGETALL")
                    .arg(&keys.meta)
                    .cmd("HGETALL")
                    .arg(&keys.counts)
                    .cmd("SCARD")
                    .arg(&keys.parked)
                    .query(con)
            })?;
        if !meta.contains_key("toml") {
            return Err(ClusterError::UnknownCampaign(id.to_owned()));
        }
        let state = parse_state(&keys.meta, meta.get("state").map(String::as_str))?;
        let mut progress: BTreeMap<String, i64> = meta
            .into_iter()
            .filter_map(|(k, v)| v.parse().ok().map(|v| (k, v)))
            .collect();
        progress.insert("parked".into(), parked);
        let pending: Value = self.with("XPENDING", |con| {
            redis::cmd("XPENDING").arg(&keys.chunks).arg(GROUP).query(con)
        })?;
        let mut per_node = BTreeMap::new();
        if let Value::Array(parts) = &pending {
            if let Some(Value::Array(nodes)) = parts.get(3) {
                for n in nodes {
                    if let Value::Array(pair) = n {
                        if let (Some(name), Some(count)) = (pair.first().and_then(text), pair.get(1).and_then(text)) {
                            per_node.insert(name, count.parse().unwrap_or(0));
                        }
                    }
                }
            }
        }
        let field = |f: &str| progress.get(f).copied();
        let complete = is_complete(field("published_all"), field("published"), field("acked"));
        Ok(ClusterStatus {
            campaign: id.to_owned(),
            progress,
            counts,
            pending: per_node,
            complete,
            state,
        })
    }

    /// `INFO memory`'s `used_memory` and `MEMORY USAGE` of each key of the campaign.
    pub fn memory(&self, keys: &Keys) -> Result<(u64, BTreeMap<String, u64>), ClusterError> {
        let info: String = self.with("INFO", |con| redis::cmd("INFO").arg("memory").query(con))?;
        let used = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut per_key = BTreeMap::new();
        for key in keys.all() {
            let bytes: Option<u64> = self.with("MEMORY USAGE", |con| {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query(con)
            })?;
            per_key.insert(key.clone(), bytes.unwrap_or(0));
        }
        Ok((used, per_key))
    }
}

/// `url` with its host and port replaced by `node` (`host:port`), credentials and scheme
/// kept; Redis Cluster has database 0 only.
fn redirect_url(url: &str, node: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let authority = rest.split('/').next().unwrap_or("");
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@{node}/0"),
        None => format!("{scheme}://{node}/0"),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// An XREADGROUP reply: `[[stream, [entry…]]]` or nil.
fn read_reply(key: &str, v: &Value) -> Result<Vec<Entry>, ClusterError> {
    let streams = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(s) => s,
        _ => return Err(bad(key, "XREADGROUP: not an array")),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(pair) = stream else {
            return Err(bad(key, "XREADGROUP: stream is not a pair"));
        };
        let Some(Value::Array(entries)) = pair.get(1) else {
            return Err(bad(key, "XREADGROUP: no entry list"));
        };
        for e in entries {
            out.push(entry(key, e)?);
        }
    }
    Ok(out)
}

/// One entry: `[id, [field, value, …]]` (fields nil when the entry was deleted).
fn entry(key: &str, v: &Value) -> Result<Entry, ClusterError> {
    let Value::Array(pair) = v else {
        return Err(bad(key, "entry is not an array"));
    };
    let id = pair
        .first()
        .and_then(text)
        .ok_or_else(|| bad(key, "entry without id"))?;
    let mut entry = Entry { id, seq: 0, rows: None };
    if let Some(Value::Array(fields)) = pair.get(1) {
        for kv in fields.chunks(2) {
            match (kv.first().and_then(text).as_deref(), kv.get(1).and_then(text)) {
                (Some("seq"), Some(seq)) => {
                    entry.seq = seq
                        .parse()
                        .map_err(|_| bad(key, format!("entry {}: seq {seq:?}", entry.id)))?
                }
                (Some("rows"), Some(rows)) => entry.rows = Some(rows),
                _ => {}
            }
        }
        if entry.seq == 0 || entry.rows.is_none() {
            return Err(bad(key, format!("entry {}: needs `seq` and `rows`", entry.id)));
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::redirect_url;

    #[test]
    fn a_redirect_keeps_scheme_and_credentials() {
        assert_eq!(
            redirect_url("redis://127.0.0.1:7000/0", "127.0.0.1:7001"),
            "redis://127.0.0.1:7001/0"
        );
        assert_eq!(
            redirect_url("rediss://u:p%40ss@h.test:6380", "10.0.0.2:6380"),
            "rediss://u:p%40ss@10.0.0.2:6380/0"
        );
    }
}
