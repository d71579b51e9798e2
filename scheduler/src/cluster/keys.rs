//! The Redis keys of one cluster campaign. Every key carries the hash tag `{<id>}`, so a
//! campaign's keys live in one Redis Cluster slot and its scripts may touch them together.

/// The consumer group every node reads chunks through.
pub const GROUP: &str = "nodes";

/// `volley:{cluster}:campaigns`: a set of the campaigns published and not yet seen complete
/// or cancelled (`volley serve` nodes work them). Its own hash tag: another Cluster slot than
/// the campaigns' keys.
pub const REGISTRY: &str = "volley:{cluster}:campaigns";

/// The keys of campaign `id`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `volley:{id}:campaign`: a hash — the definition (`toml`, `columns`), the publisher's
    /// progress (`published`, `published_through`, `published_all`, `rows`, `rejected`,
    /// `duplicates`), `acked` chunks and the operator's `state` (`running` when absent,
    /// `paused`, `cancelled`; see `control`).
    pub meta: String,
    /// `volley:{id}:chunks`: the stream of chunks (`seq`, `rows`), group [`GROUP`].
    pub chunks: String,
    /// `volley:{id}:done`: a bitmap, bit `line` set once that recipient has a final outcome.
    pub done: String,
    /// `volley:{id}:counts`: a hash of outcome counts, each recipient counted once, plus
    /// `resent_after_restart` and `duplicate_finals`.
    pub counts: String,
    /// `volley:{id}:parked`: a set of chunk entry ids whose rows all have a final outcome or
    /// wait for a retry (deferred): they no longer count against the publisher's
    /// `max_outstanding`.
    pub parked: String,
}

impl Keys {
    /// The keys of campaign `id`.
    pub fn new(id: &str) -> Keys {
        let key = |what: &str| format!("volley:{{{id}}}:{what}");
        Keys {
            meta: key("campaign"),
            chunks: key("chunks"),
            done: key("done"),
            counts: key("counts"),
            parked: key("parked"),
        }
    }

    /// Every key of the campaign.
    pub fn all(&self) -> [&String; 5] {
        [&self.meta, &self.chunks, &self.done, &self.counts, &self.parked]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_campaign_hash_tag() {
        let k = Keys::new("spring-2026");
        for key in k.all() {
            assert!(key.starts_with("volley:{spring-2026}:"), "{key}");
        }
        assert_ne!(k.meta, k.chunks);
    }
}
