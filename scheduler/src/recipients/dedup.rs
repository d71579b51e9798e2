//! Run-wide address deduplication in about 10 bytes per distinct address.
//!
//! Each address is reduced to a 64-bit keyed hash (SipHash with a per-run random key) of its
//! ASCII-lowercased form, so `Bob@Example.com` and `bob@example.com` count as one recipient
//! (RFC 5321 lets local parts be case-sensitive; no mailbox provider a bulk sender meets
//! treats them so). The hashes live in 256 open-addressing tables (linear probing, load
//! factor kept between 0.7 and 0.875, growth ×1.25), so memory is 9–11.5 bytes per distinct
//! address — about 100 MB for 10 million — and growing one table only briefly doubles 1/256
//! of it.
//!
//! Storing hashes, not addresses, means two distinct addresses whose hashes collide are taken
//! for duplicates and the second is not sent: with n addresses the chance of any collision is
//! about n²/2⁶⁵ (≈ 3·10⁻⁶ for 10 million). Hash value 0 marks empty slots and is folded
//! into 1, which does not change that bound materially.

use std::hash::{BuildHasher, RandomState};

use crate::address::{EmailAddress, MAX_ADDRESS_LEN};

const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;
const MIN_SLOTS: usize = 16;

/// Remembers the addresses seen in this run; see the module docs for the memory bound and the
/// collision trade-off.
pub struct Deduplicator {
    shards: Vec<Shard>,
    hasher: RandomState,
    distinct: u64,
    duplicates: u64,
}

struct Shard {
    /// 0 = empty, otherwise a full 64-bit hash.
    slots: Box<[u64]>,
    len: usize,
}

impl Deduplicator {
    /// An empty set (about 32 KB).
    pub fn new() -> Deduplicator {
        Deduplicator {
            shards: (0..SHARDS).map(|_| Shard::with_slots(MIN_SLOTS)).collect(),
            hasher: RandomState::new(),
            distinct: 0,
            duplicates: 0,
        }
    }

    /// True the first time `addr` (case-insensitively) is seen; false, and counted as a
    /// duplicate, afterwards.
    pub fn first_time(&mut self, addr: &EmailAddress) -> bool {
        let hash = self.hash(addr);
        let shard = &mut self.shards[(hash >> (64 - SHARD_BITS)) as usize];
        if shard.insert(hash) {
            self.distinct += 1;
            true
        } else {
            self.duplicates += 1;
            false
        }
    }

    /// Distinct addresses seen.
    pub fn len(&self) -> u64 {
        self.distinct
    }

    /// True when no address was seen yet.
    pub fn is_empty(&self) -> bool {
        self.distinct == 0
    }

    /// Calls to [`Deduplicator::first_time`] that returned false.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Heap bytes held by the tables.
    pub fn memory_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.slots.len() * 8).sum::<usize>()
            + self.shards.capacity() * std::mem::size_of::<Shard>()
    }

    fn hash(&self, addr: &EmailAddress) -> u64 {
        // Addresses are at most 254 octets (EmailAddress guarantees it), so no allocation.
        let mut lower = [0u8; MAX_ADDRESS_LEN];
        let bytes = addr.as_str().as_bytes();
        let lower = &mut lower[..bytes.len().min(MAX_ADDRESS_LEN)];
        lower.copy_from_slice(&bytes[..lower.len()]);
        // The domain is stored lowercase already.
        lower[..addr.local().len()].make_ascii_lowercase();
        self.hasher.hash_one(&*lower).max(1)
    }
}

impl Default for Deduplicator {
    fn default() -> Self {
        Deduplicator::new()
    }
}

impl std::fmt::Debug for Deduplicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduplicator")
            .field("distinct", &self.distinct)
            .field("duplicates", &self.duplicates)
            .field("memory_bytes", &self.memory_bytes())
            .finish()
    }
}

impl Shard {
    fn with_slots(n: usize) -> Shard {
        Shard {
            slots: vec![0; n].into_boxed_slice(),
            len: 0,
        }
    }

    /// Inserts `hash` (non-zero); false when it was already present.
    fn insert(&mut self, hash: u64) -> bool {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let inserted = place(&mut self.slots, hash);
        self.len += usize::from(inserted);
        inserted
    }

    fn grow(&mut self) {
        let n = self.slots.len();
        let mut bigger = vec![0; n + n / 4 + 1].into_boxed_slice();
        for &hash in self.slots.iter().filter(|&&h| h != 0) {
            place(&mut bigger, hash);
        }
        self.slots = bigger;
    }
}

/// Linear probing from a start slot chosen by the hash bits below the shard selector
/// (multiply-shift range reduction, so any table size works).
fn place(slots: &mut [u64], hash: u64) -> bool {
    let n = slots.len();
    let mut i = ((u128::from(hash.rotate_left(SHARD_BITS)) * n as u128) >> 64) as usize;
    loop {
        match slots[i] {
            0 => {
                slots[i] = hash;
                return true;
            }
            h if h == hash => return false,
            _ => i = if i + 1 == n { 0 } else { i + 1 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn case_insensitive_duplicates_are_counted() {
        let mut d = Deduplicator::new();
        assert!(d.is_empty());
        assert!(d.first_time(&addr("Bob@example.com")));
        assert!(!d.first_time(&addr("bob@EXAMPLE.com")));
        assert!(d.first_time(&addr("alice@example.com")));
        assert_eq!((d.len(), d.duplicates()), (2, 1));
    }

    #[test]
    fn grows_and_stays_compact() {
        let mut d = Deduplicator::new();
        let n = 200_000u64;
        for i in 0..n {
            assert!(d.first_time(&addr(&format!("user{i}@example.com"))));
        }
        for i in (0..n).step_by(7) {
            assert!(!d.first_time(&addr(&format!("USER{i}@example.com"))));
        }
        assert_eq!(d.len(), n);
        let per_entry = d.memory_bytes() as f64 / n as f64;
        assert!(per_entry < 12.5, "{per_entry} bytes per address");
    }
}
