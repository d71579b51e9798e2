//! Counters shared by every connection, and per-recipient accepted-message counts.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A snapshot of the sink's counters since it started (`volley sink` prints it as one JSON
/// line when it stops; `volley-bench run` reads it back).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SinkStats {
    /// Connections served (excluding those refused by `max_connections`).
    pub connections: u64,
    /// Completed STARTTLS handshakes.
    pub tls_handshakes: u64,
    /// Of `tls_handshakes`, those that resumed an earlier TLS session (RFC 8446 §2.2, RFC
    /// 5077) instead of a full handshake.
    pub tls_resumed: u64,
    /// Messages accepted: a 2xx final reply after the dot was sent.
    pub messages: u64,
    /// Accepted recipients of accepted messages.
    pub recipients: u64,
    /// RCPT commands answered 451 by the `tempfail_pct` draw.
    pub rcpt_tempfails: u64,
    /// RCPT commands answered 550 by the `permfail_pct` draw.
    pub rcpt_permfails: u64,
    /// Canned replies sent, at any stage.
    pub canned_replies: u64,
    /// Connections closed without a reply by the `drop_pct` fault.
    pub drops: u64,
    /// Of `drops`, those after the final dot (the message is not counted as accepted).
    pub drops_after_data: u64,
    /// Connections answered 421 because `max_connections` (or `max_connections_per_client`
    /// from that client) were already open.
    pub connections_refused: u64,
    /// The most connections one client address had open at once (with
    /// `max_connections_per_client`; 0 otherwise).
    pub peak_connections_per_client: u64,
    /// Reply batches written: one per write, however many replies it carries.
    pub reply_flushes: u64,
    /// Command lines processed (message content is not counted).
    pub commands: u64,
    /// MAIL FROM commands received, whatever the answer.
    pub mail_commands: u64,
    /// BDAT chunks received (RFC 3030), whatever the answer.
    pub bdat_chunks: u64,
    /// Replies spoiled by a configured [`Fault`](crate::Fault).
    pub faults_injected: u64,
    /// STARTTLS handshakes spoiled by a configured [`TlsFault`](crate::TlsFault).
    pub tls_faults_injected: u64,
    /// ARF complaints (`complain_pct`) the feedback listener accepted.
    pub complaints_sent: u64,
    /// Late-bounce DSNs (`bounce_later_pct`) the feedback listener accepted.
    pub late_bounces_sent: u64,
    /// Reports not delivered: refused, still undelivered after `feedback_attempts`, or
    /// dropped because the queue was full.
    pub feedback_failed: u64,
}

impl SinkStats {
    /// Adds another sink's counters (several sinks of one benchmark run).
    pub fn add(&mut self, other: &SinkStats) {
        self.connections += other.connections;
        self.tls_handshakes += other.tls_handshakes;
        self.tls_resumed += other.tls_resumed;
        self.messages += other.messages;
        self.recipients += other.recipients;
        self.rcpt_tempfails += other.rcpt_tempfails;
        self.rcpt_permfails += other.rcpt_permfails;
        self.canned_replies += other.canned_replies;
        self.drops += other.drops;
        self.drops_after_data += other.drops_after_data;
        self.connections_refused += other.connections_refused;
        self.peak_connections_per_client = self.peak_connections_per_client.max(other.peak_connections_per_client);
        self.reply_flushes += other.reply_flushes;
        self.commands += other.commands;
        self.mail_commands += other.mail_commands;
        self.bdat_chunks += other.bdat_chunks;
        self.faults_injected += other.faults_injected;
        self.tls_faults_injected += other.tls_faults_injected;
        self.complaints_sent += other.complaints_sent;
        self.late_bounces_sent += other.late_bounces_sent;
        self.feedback_failed += other.feedback_failed;
    }
}

/// The live counters behind [`SinkStats`]. Updated with relaxed atomics: each counter is
/// exact, a snapshot is not a consistent cut across counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_resumed: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) recipients: AtomicU64,
    pub(crate) rcpt_tempfails: AtomicU64,
    pub(crate) rcpt_permfails: AtomicU64,
    pub(crate) canned_replies: AtomicU64,
    pub(crate) drops: AtomicU64,
    pub(crate) drops_after_data: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) peak_connections_per_client: AtomicU64,
    pub(crate) reply_flushes: AtomicU64,
    pub(crate) commands: AtomicU64,
    pub(crate) mail_commands: AtomicU64,
    pub(crate) bdat_chunks: AtomicU64,
    pub(crate) faults_injected: AtomicU64,
    pub(crate) tls_faults_injected: AtomicU64,
    pub(crate) complaints_sent: AtomicU64,
    pub(crate) late_bounces_sent: AtomicU64,
    pub(crate) feedback_failed: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> SinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkStats {
            connections: get(&self.connections),
            tls_handshakes: get(&self.tls_handshakes),
            tls_resumed: get(&self.tls_resumed),
            messages: get(&self.messages),
            recipients: get(&self.recipients),
            rcpt_tempfails: get(&self.rcpt_tempfails),
            rcpt_permfails: get(&self.rcpt_permfails),
            canned_replies: get(&self.canned_replies),
            drops: get(&self.drops),
            drops_after_data: get(&self.drops_after_data),
            connections_refused: get(&self.connections_refused),
            peak_connections_per_client: get(&self.peak_connections_per_client),
            reply_flushes: get(&self.reply_flushes),
            commands: get(&self.commands),
            mail_commands: get(&self.mail_commands),
            bdat_chunks: get(&self.bdat_chunks),
            faults_injected: get(&self.faults_injected),
            tls_faults_injected: get(&self.tls_faults_injected),
            complaints_sent: get(&self.complaints_sent),
            late_bounces_sent: get(&self.late_bounces_sent),
            feedback_failed: get(&self.feedback_failed),
        }
    }
}

const SHARDS: usize = 32;

/// One shard of [`AddressCounts`]: address -> accepted messages.
type Shard = Mutex<HashMap<Box<str>, u64>>;

/// Accepted-message counts per recipient address, sharded so that concurrent connections
/// rarely contend. Keys are addresses with a lowercase domain (see [`normalize_address`]).
/// Locks are plain `std` mutexes held for one map operation, never across `.await`.
#[derive(Debug)]
pub(crate) struct AddressCounts {
    hasher: RandomState,
    shards: Box<[Shard]>,
}

impl Default for AddressCounts {
    fn default() -> Self {
        AddressCounts {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl AddressCounts {
    fn shard(&self, address: &str) -> &Shard {
        // The modulo keeps the index below SHARDS, so the index is in bounds.
        let index = (self.hasher.hash_one(address) % SHARDS as u64) as usize;
        &self.shards[index]
    }

    /// Adds one accepted message for `address`, which must already be normalised. Allocates
    /// only the first time an address is seen.
    pub(crate) fn add(&self, address: &str) {
        let mut map = self
            .shard(address)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match map.get_mut(address) {
            Some(count) => *count += 1,
            None => {
                map.insert(address.into(), 1);
            }
        }
    }

    /// Accepted messages for `address` (normalised here).
    pub(crate) fn get(&self, address: &str) -> u64 {
        let address = normalize_address(address);
        let map = self
            .shard(&address)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(address.as_str()).copied().unwrap_or(0)
    }

    /// A copy of every count.
    pub(crate) fn all(&self) -> HashMap<String, u64> {
        let mut all = HashMap::new();
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            all.extend(map.iter().map(|(k, v)| (k.to_string(), *v)));
        }
        all
    }
}

/// The key under which an address is counted: angle brackets removed, domain (after the last
/// `@`) lowercased, local part kept as is (RFC 5321 §2.4: only the receiving host may
/// interpret its case).
pub(crate) fn normalize_address(address: &str) -> String {
    let address = address.trim();
    let address = address
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(address);
    let mut normalized = address.to_owned();
    if let Some(at) = normalized.rfind('@') {
        normalized[at + 1..].make_ascii_lowercase();
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_per_address_with_case_insensitive_domain() {
        let counts = AddressCounts::default();
        counts.add("Alice@example.test");
        counts.add("Alice@example.test");
        counts.add("bob@example.test");
        assert_eq!(counts.get("Alice@EXAMPLE.test"), 2);
        assert_eq!(counts.get("<Alice@example.TEST>"), 2);
        assert_eq!(counts.get("alice@example.test"), 0, "local part keeps its case");
        assert_eq!(counts.get("bob@example.test"), 1);
        assert_eq!(counts.all().len(), 2);
    }

    #[test]
    fn normalize_lowercases_only_the_domain() {
        assert_eq!(normalize_address(" <Jo@Ex.Test> "), "Jo@ex.test");
        assert_eq!(normalize_address("postmaster"), "postmaster");
    }
}
