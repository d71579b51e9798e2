//! A node's loop over one cluster campaign: take chunks (first its own pending ones after a
//! restart, then chunks idle past the lease — their node died —, then new ones), send each as
//! a chunk campaign on one [`SendService`], renew the leases of those it sends, and finish
//! each one whose rows all have a final outcome: merge its accounting into the node's log,
//! then set the done bits, count and acknowledge (one script). Returns when every chunk of
//! the campaign is published and acknowledged, when it is cancelled (`control`), or when
//! `stop` resolves. While the campaign is paused it sends nothing new and takes no chunk.
//!
//! Duplicate rules: rows whose done bit is set are never sent again; a chunk taken over from
//! a dead node counts its rows that are not done as `resent_after_restart` (an upper bound:
//! the dead node may not have sent them all); a chunk resumed from this node's own directory
//! counts what its journal says was on the wire, as a local resume does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chunk::{ChunkDir, Rows};
use super::control::Control;
use super::limits::{self, LimitShare};
use super::store::Entry;
use super::{io_err, CampaignState, ClusterConfig, ClusterError, Keys, Store};
use crate::campaign::{Campaign, ChunkOf};
use crate::config::SendConfig;
use crate::recipients::MemoryRows;
use crate::send::{Launched, SendService};

/// How often the loop looks for new work when the stream had none.
const POLL: Duration = Duration::from_millis(100);

/// How often the loop looks for finished chunks and free slots while it sends (a chunk that
/// hands on its last recipient wakes it at once, see [`crate::live::Live::handed_on`]): a
/// node sends a chunk of 1,000 in tens of milliseconds, and its connections idle while it
/// waits for the next one.
const TICK: Duration = Duration::from_millis(20);

/// How often a node started before the campaign was published looks for it.
const DEFINITION_POLL: Duration = Duration::from_millis(250);

/// What a node did for a campaign.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeReport {
    /// The campaign id.
    pub campaign: String,
    /// This node.
    pub node: String,
    /// Chunks this node finished and acknowledged.
    pub chunks: u64,
    /// Of those, chunks taken over from a node that stopped renewing them.
    pub reclaimed: u64,
    /// Chunks this node had pending when it started (an earlier run of the same node).
    pub resumed: u64,
    /// Chunks another node took over while this node sent them (their outcomes are still
    /// merged and counted).
    pub lost: u64,
    /// Recipients whose final outcome this node logged.
    pub finals: u64,
    /// Recipients sent again: the not-done rows of reclaimed chunks (an upper bound) plus
    /// those on the wire when this node's earlier run died.
    pub resent_after_restart: u64,
    /// The node's accounting log of the campaign.
    pub log: PathBuf,
    /// False when stopped before the campaign was complete.
    pub complete: bool,
    /// The connection ceilings this node applied last, shared with the other nodes on the
    /// same source IP (`[cluster] share_limits`).
    pub shared_limits: Vec<SharedLimit>,
    /// The campaign was cancelled (from any node): this node stopped its chunks and returned.
    pub cancelled: bool,
}

/// A connection ceiling shared by the nodes sending from one source IP to one MX host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SharedLimit {
    /// The source IP.
    pub source_ip: std::net::IpAddr,
    /// The MX host.
    pub mx: String,
    /// This node's share of the receiver's cap.
    pub ceiling: usize,
}

/// A chunk being sent.
struct Running {
    entry: String,
    seq: u64,
    chunk: ChunkDir,
    reclaimed: bool,
    resent: u64,
    launched: Option<Launched>,
    /// Parked in Redis: it waited only for retries when last looked at.
    parked: bool,
}

impl Running {
    /// Whether it waits only for the retries of deferred recipients (holds no slot).
    fn waiting(&self) -> bool {
        self.launched.as_ref().is_some_and(|l| l.live.only_retries_left())
    }

    /// Whether it still has recipients to read or queued (holds a `chunks_in_flight` slot;
    /// once all are on the wire the next chunk starts, so the connections do not run dry
    /// between chunks).
    fn feeding(&self) -> bool {
        self.launched.as_ref().is_some_and(|l| !l.live.all_handed_on())
    }
}

/// The node's view of one campaign.
struct Node<'a> {
    id: String,
    cluster: &'a ClusterConfig,
    template_dirs: &'a [PathBuf],
    store: Store,
    keys: Keys,
    toml: String,
    columns: Vec<String>,
    /// Where chunks were written before they shared their campaign's state directory (see
    /// [`Node::settle_legacy`]).
    legacy_chunks_dir: PathBuf,
    runs_dir: PathBuf,
    log: PathBuf,
    /// The campaign's suppression list is written to its folder (for the inbound listener).
    list_written: std::sync::atomic::AtomicBool,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Works on campaign `id` with this node's `config` (its `[cluster]`, source IPs and state
/// directory) until the campaign is complete or `stop` resolves. The chunks are sent on
/// `shared` — a running service made from the same `config` (`volley serve`'s: one pool,
/// one warm-up budget, one suppression writer with the node's other campaigns), their state
/// under its state directory — or, without one, on a service of their own with their state
/// under `<state_dir>/cluster/<id>/runs`. Needs a multi-threaded runtime (Redis calls block
/// in place).
pub async fn work(
    id: &str,
    config: &SendConfig,
    shared: Option<&SendService>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<NodeReport, ClusterError> {
    let cluster = config.cluster.as_ref().ok_or(ClusterError::NotConfigured)?;
    let keys = Keys::new(id);
    let store = blocking(|| Store::for_campaign(&cluster.redis, &keys))?;
    tokio::pin!(stop);
    // Nodes may start before the campaign is published: wait for its definition.
    let (toml, columns) = loop {
        match blocking(|| store.definition(id, &keys)) {
            Err(ClusterError::UnknownCampaign(_)) => {}
            other => break other?,
        }
        tokio::select! {
            _ = &mut stop => return Err(ClusterError::UnknownCampaign(id.to_owned())),
            _ = tokio::time::sleep(DEFINITION_POLL) => {}
        }
    };
    let dir = config.state_dir.join("cluster").join(id);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    // Absolute: the chunk campaigns resolve their rows file against their own directory.
    let dir = std::fs::canonicalize(&dir).map_err(io_err(&dir))?;
    let node = Node {
        id: id.to_owned(),
        cluster,
        template_dirs: &config.template_dirs,
        store,
        keys,
        toml,
        columns,
        legacy_chunks_dir: dir.join("chunks"),
        runs_dir: match shared {
            Some(_) => std::fs::canonicalize(&config.state_dir).map_err(io_err(&config.state_dir))?,
            None => dir.join("runs"),
        },
        log: dir.join("accounting.jsonl"),
        list_written: Default::default(),
    };
    std::fs::create_dir_all(&node.runs_dir).map_err(io_err(&node.runs_dir))?;
    let mut own = None;
    let service: &SendService = match shared {
        Some(s) => s,
        None => {
            let mut chunk_config = config.clone();
            chunk_config.state_dir = node.runs_dir.clone();
            own.insert(SendService::start(&chunk_config, Arc::default(), true)?)
        }
    };
    let mut report = NodeReport {
        campaign: id.to_owned(),
        node: cluster.node_id.clone(),
        log: node.log.clone(),
        ..NodeReport::default()
    };
    // Connection limits shared with the other nodes on the same source IPs.
    let (sharing_stop, sharing_stopped) = tokio::sync::watch::channel(false);
    let ips: Vec<std::net::IpAddr> = config.source_ips.iter().map(|s| s.address).collect();
    let share = match cluster.share_limits {
        true => blocking(|| LimitShare::open(&cluster.redis, &cluster.node_id, &ips))
            .inspect_err(|e| tracing::warn!(error = %e, "connection limits are not shared"))
            .ok(),
        false => None,
    };
    let sharing = share.map(|share| {
        let (view, apply) = (service.route_limits(), service.route_limits());
        tokio::spawn(limits::run(
            share,
            move || view.concurrency(),
            move |ip, mx, cap| apply.set_outside_cap(ip, mx, cap),
            sharing_stopped,
        ))
    });
    let result = node.run(service, &mut report, stop.as_mut()).await;
    let _ = sharing_stop.send(true);
    if let Some(task) = sharing {
        if let Ok(share) = task.await {
            report.shared_limits = share
                .applied()
                .iter()
                .map(|((ip, mx), ceiling)| SharedLimit {
                    source_ip: *ip,
                    mx: mx.clone(),
                    ceiling: *ceiling,
                })
                .collect();
        }
    }
    if let Some(own) = own {
        own.shutdown().await;
    }
    if result.is_ok() && (report.complete || report.cancelled) {
        blocking(|| super::registry::forget(&cluster.redis, id));
    }
    result.map(|()| report)
}

impl Node<'_> {
    async fn run(
        &self,
        service: &SendService,
        report: &mut NodeReport,
        mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<(), ClusterError> {
        let me = self.cluster.node_id.as_str();
        let mut running: Vec<Running> = Vec::new();
        let mut control = Control::default();
        if control.check(&self.store, &self.keys, [])? == CampaignState::Cancelled {
            report.cancelled = true;
            return Ok(());
        }
        // An earlier run of this node: its pending chunks resume from their directories; a
        // directory whose chunk another node took over is stale.
        let own = blocking(|| self.store.own_pending(&self.keys, me))?;
        let legacy = self.settle_legacy(&own)?;
        self.drop_stale_dirs(&own)?;
        for entry in own {
            report.resumed += 1;
            let start = Start {
                reclaimed: false,
                resend: legacy.contains(&entry.seq),
                paused: control.paused(),
            };
            // Paused (a restart while the campaign is paused) from its first recipient.
            if let Some(r) = self.start(service, entry, start)? {
                running.push(r);
            }
        }
        let handed_on = service.live().handed_on().clone();
        let renew_every = self.cluster.lease / 3;
        let mut renewed = Instant::now();
        loop {
            // Finished chunks.
            let mut i = 0;
            while i < running.len() {
                if running[i].launched.as_ref().is_some_and(|l| !l.is_finished()) {
                    i += 1;
                    continue;
                }
                let r = running.swap_remove(i);
                self.finish(service, r, report).await?;
            }
            let state = control.check(
                &self.store,
                &self.keys,
                running.iter().filter_map(|r| r.launched.as_ref()),
            )?;
            if state == CampaignState::Cancelled {
                report.cancelled = true;
                break;
            }
            if renewed.elapsed() >= renew_every {
                let ids: Vec<String> = running.iter().map(|r| r.entry.clone()).collect();
                let lost = blocking(|| self.store.renew(&self.keys, me, &ids))?;
                for r in running.iter().filter(|r| lost.contains(&r.entry)) {
                    tracing::warn!(chunk = r.seq, "chunk taken over by another node; stopping it here");
                    if let Some(l) = &r.launched {
                        l.cancel();
                    }
                }
                renewed = Instant::now();
            }
            // Chunks waiting only for retries hold no slot. Each is parked once: the final
            // outcomes it has so far are merged and recorded, so that a node taking it over
            // sends only its deferred rows, and the publisher may publish another chunk.
            let mut waiting = 0;
            for r in running.iter_mut() {
                if self.cluster.parked_chunks == 0 || !r.waiting() {
                    continue;
                }
                waiting += 1;
                if !r.parked {
                    self.park(r, report)?;
                }
            }
            // Chunks with recipients still to hand on hold the slots; as many again may be
            // finishing what is on the wire.
            let feeding = running.iter().filter(|r| r.feeding()).count();
            let busy = running.len() - waiting;
            let room = feeding < self.cluster.chunks_in_flight && busy < 2 * self.cluster.chunks_in_flight;
            // New work.
            let mut took = false;
            let mut looked = false;
            if state == CampaignState::Running && room && waiting < self.cluster.parked_chunks.max(1) {
                looked = true;
                let ours: Vec<&str> = running.iter().map(|r| r.entry.as_str()).collect();
                let claimed = blocking(|| self.store.claim_idle(&self.keys, me, self.cluster.lease, &ours))?;
                let (entry, reclaimed) = match claimed {
                    Some(e) => (Some(e), true),
                    None => (blocking(|| self.store.read_new(&self.keys, me))?, false),
                };
                if let Some(entry) = entry {
                    took = true;
                    let start = Start {
                        reclaimed,
                        resend: reclaimed,
                        paused: false,
                    };
                    if let Some(r) = self.start(service, entry, start)? {
                        running.push(r);
                    }
                }
            }
            if running.is_empty() && !took && blocking(|| self.store.complete(&self.keys))? {
                blocking(|| self.store.expire(&self.keys, self.cluster.keep))?;
                report.complete = true;
                return Ok(());
            }
            if !took {
                // Full: soon a slot frees. Otherwise the stream had nothing (or the campaign
                // is paused): look again later.
                let wait = match !looked && busy > 0 && state == CampaignState::Running {
                    true => TICK,
                    false => POLL,
                };
                tokio::select! {
                    _ = stop.as_mut() => break,
                    _ = tokio::time::sleep(wait) => {}
                    // A chunk handed on its last recipient: its slot is free now.
                    _ = handed_on.notified() => {}
                }
            }
        }
        for r in &running {
            if let Some(l) = &r.launched {
                l.cancel();
            }
        }
        for r in running {
            // Finished ones are acknowledged; the others stay pending for the next run.
            self.finish(service, r, report).await?;
        }
        Ok(())
    }

    /// The directory of chunk `seq` (its chunk campaign's state directory), whose local
    /// lines are the original `lines`.
    fn chunk_dir(&self, seq: u64, lines: Arc<Vec<u64>>) -> ChunkDir {
        ChunkDir {
            dir: self.run_dir(seq),
            lines,
        }
    }

    fn chunk_id(&self, seq: u64) -> String {
        format!("{}.c{seq}", self.id)
    }

    fn run_dir(&self, seq: u64) -> PathBuf {
        self.runs_dir.join(self.chunk_id(seq))
    }

    /// Removes the directories of chunks this node no longer owns (acknowledged — their merge,
    /// if any, stays in the log — or taken over by another node).
    fn drop_stale_dirs(&self, own: &[Entry]) -> Result<(), ClusterError> {
        for (seq, _) in numbered_dirs(&self.runs_dir, &format!("{}.c", self.id))? {
            if !own.iter().any(|o| o.seq == seq) {
                tracing::info!(
                    chunk = seq,
                    "chunk finished or taken over by another node; dropping its directory"
                );
                self.remove(seq);
            }
        }
        Ok(())
    }

    /// Chunk directories of the earlier layout (`chunks/c<n>`, rows without the rows already
    /// done, so their local lines differ from the stream entry's): a merge a kill cut short is
    /// settled as [`ChunkDir::recover`] does, then the chunk's directories are removed and it
    /// starts over. Returns the chunks that start over; their rows not done count as resent.
    fn settle_legacy(&self, own: &[Entry]) -> Result<std::collections::HashSet<u64>, ClusterError> {
        let mut restarted = std::collections::HashSet::new();
        let dir = &self.legacy_chunks_dir;
        if !dir.is_dir() {
            return Ok(restarted);
        }
        for (seq, path) in numbered_dirs(dir, "c")? {
            let lines_file = path.join("lines.json");
            if !own.iter().any(|o| o.seq == seq) || !lines_file.is_file() {
                continue;
            }
            let bytes = std::fs::read(&lines_file).map_err(io_err(&lines_file))?;
            let lines: Vec<u64> = serde_json::from_slice(&bytes).map_err(|e| ClusterError::BadData {
                key: lines_file.display().to_string(),
                reason: e.to_string(),
            })?;
            let legacy = ChunkDir {
                dir: path,
                lines: Arc::new(lines),
            };
            let log = self.run_dir(seq).join("accounting.jsonl");
            blocking(|| legacy.recover(&log, &self.log, |lines| self.store.done(&self.keys, lines)))?;
            tracing::info!(
                chunk = seq,
                "chunk directory of an earlier version; starting the chunk over"
            );
            self.remove(seq);
            restarted.insert(seq);
        }
        std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
        Ok(restarted)
    }

    fn remove(&self, seq: u64) {
        let d = self.run_dir(seq);
        if let Err(e) = std::fs::remove_dir_all(&d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %d.display(), error = %e, "cannot remove a finished chunk's directory");
            }
        }
    }

    /// Starts sending a chunk; `None` when nothing of it is left to send (acknowledged now).
    fn start(&self, service: &SendService, entry: Entry, how: Start) -> Result<Option<Running>, ClusterError> {
        let me = self.cluster.node_id.as_str();
        let Some(json) = &entry.rows else {
            blocking(|| self.store.ack_empty(&self.keys, me, &entry.id))?;
            return Ok(None);
        };
        let rows = Rows::parse(&self.keys.chunks, json)?;
        let shared_dir = self.cluster.shared_dir.as_deref();
        let (lines, values) = blocking(|| rows.into_values(shared_dir, &self.columns))?;
        let lines = Arc::new(lines);
        let mut running = Running {
            entry: entry.id.clone(),
            seq: entry.seq,
            chunk: self.chunk_dir(entry.seq, lines.clone()),
            reclaimed: how.reclaimed,
            resent: 0,
            launched: None,
            parked: false,
        };
        let dir = &running.chunk;
        let ours = dir.exists();
        let log = dir.dir.join("accounting.jsonl");
        if ours {
            // A merge a kill cut short is settled before the done bits are read.
            blocking(|| dir.recover(&log, &self.log, |lines| self.store.done(&self.keys, lines)))?;
        }
        let done = blocking(|| self.store.done(&self.keys, &lines))?;
        if ours {
            // Our own earlier run: resume it, unless another node finished some of its rows
            // meanwhile (then start over from what is not done). Rows this node finished
            // before it parked the chunk are done by its own hand.
            let mine: std::collections::HashSet<u64> = dir.merged_finals(&log)?.into_iter().collect();
            let by_others = lines.iter().zip(&done).any(|(line, d)| *d && !mine.contains(line));
            if !by_others {
                // Its state (journal, log) knows rows by their line: local line k is the
                // entry's row k, as it was in the `rows.jsonl` earlier versions wrote here.
                let rows = self.memory_rows(dir, values);
                running.launched = Some(self.launch(service, entry.seq, dir, skipped(&done), rows, how.paused)?);
                return Ok(Some(running));
            }
            self.remove(entry.seq);
        }
        let left = done.iter().filter(|d| !**d).count() as u64;
        if how.resend {
            running.resent = left;
        }
        if left == 0 {
            blocking(|| self.store.ack_empty(&self.keys, me, &entry.id))?;
            return Ok(None);
        }
        let rows = self.memory_rows(dir, values);
        running.launched = Some(self.launch(service, entry.seq, dir, skipped(&done), rows, how.paused)?);
        Ok(Some(running))
    }

    /// A chunk's rows as its campaign reads them, under the node's columns.
    fn memory_rows(&self, dir: &ChunkDir, values: Vec<Vec<String>>) -> Arc<MemoryRows> {
        Arc::new(MemoryRows {
            label: dir.rows_label(),
            columns: self.columns.clone(),
            values,
        })
    }

    /// The chunk campaign: the stored definition, with the chunk's id and `rows`; it skips
    /// the local lines `skip`.
    fn launch(
        &self,
        service: &SendService,
        seq: u64,
        dir: &ChunkDir,
        skip: Vec<u64>,
        rows: Arc<MemoryRows>,
        paused: bool,
    ) -> Result<Launched, ClusterError> {
        let path = dir.dir.join("campaign.toml");
        let bad = |reason: String| ClusterError::BadData {
            key: self.keys.meta.clone(),
            reason,
        };
        let mut doc: toml_edit::DocumentMut = self.toml.parse().map_err(|e| bad(format!("toml: {e}")))?;
        doc["id"] = toml_edit::value(self.chunk_id(seq));
        let label = dir.rows_label();
        let label = label
            .to_str()
            .ok_or_else(|| bad(format!("{} is not UTF-8", label.display())))?;
        doc["recipients"] = toml_edit::value(label);
        let mut campaign = Campaign::from_toml_with(&path, &doc.to_string(), self.template_dirs)?;
        // Feedback tokens name the cluster campaign and the original lines; the inbound
        // listener finds its log and suppression list in the node's campaign folder.
        if !self.list_written.load(std::sync::atomic::Ordering::Relaxed) {
            let list_file = self.log.with_file_name(crate::inbound::LIST_FILE);
            let list = campaign.suppression_list().unwrap_or(crate::suppression::GLOBAL);
            std::fs::write(&list_file, list).map_err(io_err(&list_file))?;
            self.list_written.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        campaign.set_chunk_of(ChunkOf {
            campaign: self.id.clone(),
            lines: dir.lines.clone(),
            skip,
            rows: Some(rows),
        });
        Ok(service.launch_with(&campaign, paused)?)
    }

    /// Parks a chunk that waits only for retries: merges what its log has so far, records
    /// those outcomes in Redis and marks it parked.
    fn park(&self, r: &mut Running, report: &mut NodeReport) -> Result<(), ClusterError> {
        let dir = &r.chunk;
        let log = dir.dir.join("accounting.jsonl");
        let me = self.cluster.node_id.as_str();
        let merged = blocking(|| dir.merge(&log, &self.log, &self.id, me))?;
        let owned = blocking(|| self.store.park(&self.keys, me, &r.entry, &merged.finals, r.resent))?;
        dir.commit(merged.through)?;
        report.finals += merged.finals.len() as u64;
        report.resent_after_restart += r.resent;
        r.resent = 0;
        r.parked = true;
        tracing::info!(
            chunk = r.seq,
            finals = merged.finals.len(),
            owned,
            "chunk waits only for retries; parked"
        );
        Ok(())
    }

    /// Ends a chunk: if its run completed, merge its log and acknowledge it.
    async fn finish(&self, service: &SendService, r: Running, report: &mut NodeReport) -> Result<(), ClusterError> {
        let mut resent = r.resent;
        if let Some(launched) = r.launched {
            let summary = launched.wait().await?;
            service.live().forget(&self.chunk_id(r.seq));
            if !summary.complete {
                return Ok(());
            }
            resent += summary.resent_after_restart;
        }
        let dir = &r.chunk;
        let log = dir.dir.join("accounting.jsonl");
        let me = self.cluster.node_id.as_str();
        let finals = blocking(|| dir.merge(&log, &self.log, &self.id, me))?.finals;
        let owned = blocking(|| self.store.finish(&self.keys, me, &r.entry, &finals, resent))?;
        report.finals += finals.len() as u64;
        report.resent_after_restart += resent;
        if owned {
            report.chunks += 1;
            report.reclaimed += u64::from(r.reclaimed);
        } else {
            report.lost += 1;
        }
        self.remove(r.seq);
        Ok(())
    }
}

/// How a chunk starts.
struct Start {
    /// Taken over from a node that stopped renewing it.
    reclaimed: bool,
    /// Its rows not done count as `resent_after_restart` (an upper bound: sent before by a
    /// node that died, or by this node's earlier run whose state was not kept).
    resend: bool,
    /// Paused from its first recipient.
    paused: bool,
}

/// The entries of `dir` named `<prefix><n>` for a number `n`, with `n`.
fn numbered_dirs(dir: &Path, prefix: &str) -> Result<Vec<(u64, PathBuf)>, ClusterError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let seq = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(prefix)?.parse().ok());
        if let Some(seq) = seq {
            out.push((seq, e.path()));
        }
    }
    Ok(out)
}

/// The local lines (1-based) of the rows that are done.
fn skipped(done: &[bool]) -> Vec<u64> {
    (1u64..).zip(done).filter(|(_, d)| **d).map(|(line, _)| line).collect()
}

/// The node's accounting log of campaign `id` under `state_dir`.
pub fn node_log(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("cluster").join(id).join("accounting.jsonl")
}
