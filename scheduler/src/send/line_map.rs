//! Maps keyed by a recipient's line, hashed for locality: a dispatcher notes each parked row
//! by line and forgets it when the row is read again, both roughly in file order, for
//! hundreds of thousands of rows at once. With the default (SipHash) hasher every insert and
//! removal landed in a random bucket of a table of megabytes — a cache miss each, ~5 % of a
//! plain send's CPU (perf, 100,000 recipients parked behind one site). [`LineHasher`] keeps a
//! line's low bits as the bucket index, so consecutive lines share cache lines.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a recipient's line.
pub(crate) type LineMap<V> = HashMap<u64, V, BuildHasherDefault<LineHasher>>;

/// Hashes a line number: its low bits as they are (the bucket index), its top seven bits —
/// the tag the table compares before the key — mixed from the whole number.
#[derive(Default, Clone, Copy)]
pub(crate) struct LineHasher(u64);

impl Hasher for LineHasher {
    fn finish(&self) -> u64 {
        const MIX: u64 = 0x9E37_79B9_7F4A_7C15;
        let tag = self.0.wrapping_mul(MIX) & 0xFE00_0000_0000_0000;
        (self.0 & !0xFE00_0000_0000_0000) ^ tag ^ (self.0 & 0xFE00_0000_0000_0000).rotate_right(16)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; any other key still hashes (FNV-1a).
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_lines_hash_to_consecutive_buckets_and_every_key_is_found() {
        let build = BuildHasherDefault::<LineHasher>::default();
        let low = |line: u64| build.hash_one(line) & 0xFFFF;
        assert_eq!((low(1000), low(1001), low(1002)), (1000, 1001, 1002));
        // The tags differ between neighbours (the table tells them apart without the key).
        let tag = |line: u64| build.hash_one(line) >> 57;
        assert!((0..64).map(tag).collect::<std::collections::HashSet<_>>().len() > 32);
        // Distinct lines, even far apart or with high bits set, hash apart.
        let lines = [0, 1, 1 << 20, (1 << 57) + 5, 5, u64::MAX, u64::MAX - 1];
        let hashes: std::collections::HashSet<u64> = lines.iter().map(|l| build.hash_one(*l)).collect();
        assert_eq!(hashes.len(), lines.len());
        let mut map: LineMap<u64> = LineMap::default();
        for (i, l) in (0..200_000u64).map(|i| (i, i * 3 + (i % 7) * (1 << 40))) {
            map.insert(l, i);
        }
        for i in (0..200_000u64).step_by(3) {
            assert_eq!(map.remove(&(i * 3 + (i % 7) * (1 << 40))), Some(i));
        }
        assert_eq!(map.len(), 200_000 - 66_667);
    }
}
