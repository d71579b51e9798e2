//! A set of recipient-file line numbers as a bitmap: one bit per line, so 10 million lines
//! cost 1.25 MB. Used for "already finished" and "duplicate of an earlier row" sets, which the
//! state directory keeps across runs.

use std::io::{self, Read, Write};

/// Line numbers (1-based, as the recipient reader reports them) as a growable bitmap.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LineSet {
    words: Vec<u64>,
    len: u64,
}

impl LineSet {
    /// An empty set.
    pub fn new() -> LineSet {
        LineSet::default()
    }

    /// Adds `line`; true when it was not in the set.
    pub fn insert(&mut self, line: u64) -> bool {
        let (word, bit) = Self::position(line);
        if word >= self.words.len() {
            // Grow by an eighth (not doubling): the set stays within ~12% of its span.
            let new_len = word + 1 + self.words.len() / 8;
            self.words.reserve_exact(new_len - self.words.len());
            self.words.resize(new_len, 0);
        }
        let fresh = self.words[word] & bit == 0;
        if fresh {
            self.words[word] |= bit;
            self.len += 1;
        }
        fresh
    }

    /// Whether `line` is in the set.
    pub fn contains(&self, line: u64) -> bool {
        let (word, bit) = Self::position(line);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Number of lines in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    /// Writes the set (little-endian words, length-prefixed).
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&(self.words.len() as u64).to_le_bytes())?;
        for w in &self.words {
            out.write_all(&w.to_le_bytes())?;
        }
        Ok(())
    }

    /// Reads a set written by [`LineSet::write_to`].
    pub fn read_from(input: &mut impl Read) -> io::Result<LineSet> {
        let mut buf = [0u8; 8];
        input.read_exact(&mut buf)?;
        let n = u64::from_le_bytes(buf);
        if n > (1 << 40) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line set too large"));
        }
        let mut words = Vec::with_capacity(n as usize);
        let mut len = 0;
        for _ in 0..n {
            input.read_exact(&mut buf)?;
            let w = u64::from_le_bytes(buf);
            len += u64::from(w.count_ones());
            words.push(w);
        }
        Ok(LineSet { words, len })
    }

    fn position(line: u64) -> (usize, u64) {
        ((line / 64) as usize, 1u64 << (line % 64))
    }
}

impl std::fmt::Debug for LineSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineSet").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_and_round_trip() {
        let mut s = LineSet::new();
        assert!(s.insert(1));
        assert!(!s.insert(1));
        assert!(s.insert(10_000_000));
        assert!(s.insert(64));
        assert!(s.contains(1) && s.contains(64) && s.contains(10_000_000));
        assert!(!s.contains(2) && !s.contains(63) && !s.contains(u64::MAX / 2));
        assert_eq!(s.len(), 3);
        let mut bytes = Vec::new();
        s.write_to(&mut bytes).unwrap();
        let back = LineSet::read_from(&mut bytes.as_slice()).unwrap();
        assert_eq!(back, s);
        assert!(LineSet::read_from(&mut &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn ten_million_lines_fit_in_under_two_megabytes() {
        let mut s = LineSet::new();
        for line in (1..=10_000_000).step_by(3) {
            s.insert(line);
        }
        assert!(s.memory_bytes() < 2 * 1024 * 1024, "{}", s.memory_bytes());
    }
}
