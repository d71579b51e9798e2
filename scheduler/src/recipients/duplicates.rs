//! Exact duplicate scan of a recipient file in bounded memory, with the heavy lifting on disk.
//!
//! A pre-pass over the file ([`scan_duplicates`]) finds every row whose address (ASCII-lowercased,
//! as [`Deduplicator`](super::Deduplicator) compares them: `Bob@Example.com` is
//! `bob@example.com`) already appeared on an earlier row, and returns those lines as a
//! [`LineSet`] (one bit per line, 1.25 MB at 10 million rows). Rows are read with
//! [`RecipientReader`], so line numbers and validation are exactly those the send pass sees;
//! rejected rows are counted but are not addresses.
//!
//! # How
//! 1. **Partition.** Each address becomes a 128-bit fingerprint; the entry (fingerprint, line)
//!    (24 bytes) is appended to one of up to 256 bucket files chosen by the fingerprint's top
//!    bits, in a private subdirectory of the work directory (removed when the scan ends, also on
//!    error). The bucket count is sized from the file length (assuming the shortest possible
//!    rows) so that buckets average at most [`MAX_IN_MEMORY`] entries below ~256 million rows;
//!    each bucket has a 32 KiB write buffer (8 MiB at most).
//! 2. **Collapse, bucket by bucket.** A bucket is read into memory, sorted by (fingerprint,
//!    line), and every entry whose fingerprint equals its predecessor's is a duplicate; only the
//!    first (lowest line) of each fingerprint is kept. A bucket larger than [`MAX_IN_MEMORY`]
//!    is read in chunks merged into the kept set; if the kept, distinct entries alone fill
//!    half the budget, they and the rest of the bucket are re-partitioned on the next 8
//!    fingerprint bits and each part is processed the same way. Marking is order-independent
//!    (an entry is marked only beside an equal fingerprint on a lower line), so re-partitioning
//!    part-way is safe.
//!
//! Peak heap is the entry buffer ([`MAX_IN_MEMORY`] × 24 bytes = 24 MiB) plus the write
//! buffers of one partition level (≤ 8 MiB; only one level is open at a time) plus the
//! [`LineSet`] and the reader's buffers, whatever the file size. Measured at 10 million rows
//! (`examples/scan_duplicates.rs`): 9 MB peak RSS with the usual sizing, 35 MB when forced
//! through one oversized bucket. Disk use is 24 bytes per valid row, transiently.
//!
//! # Exactness
//! The fingerprint is SipHash-1-3 with 128-bit output ([`siphash`]: the std hasher's rounds,
//! the reference 128-bit variant) under a random key drawn per scan, over the lowercased
//! address. SipHash is a keyed PRF, so two distinct addresses are taken for duplicates only if
//! their 128-bit fingerprints collide: for n distinct addresses the chance of any collision is
//! about n²/2¹²⁹ (≈ 1.5·10⁻²⁵ at 10 million). The key is secret and random, so no input can
//! be crafted to collide.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::address::{EmailAddress, MAX_ADDRESS_LEN};
use crate::lineset::LineSet;

use super::{RecipientError, RecipientReader, Row};

mod siphash;

use siphash::SipKey;

/// Entries held in memory at once while collapsing a bucket (24 bytes each: 24 MiB).
const MAX_IN_MEMORY: usize = 1 << 20;

/// No more bucket files than this per partition level (`2^8`).
const MAX_BUCKET_BITS: u32 = 8;

/// Write buffer per bucket file; with 256 buckets, 8 MiB.
const BUCKET_BUFFER: usize = 32 * 1024;

/// Read buffer for a bucket file.
const READ_BUFFER: usize = 64 * 1024;

/// Fewest bytes a row with a valid address takes (`a@b` and a line end), to bound the row
/// count from the file length.
const MIN_ROW_BYTES: u64 = 4;

/// Result of a pre-pass over the recipient file.
#[derive(Debug)]
pub struct DuplicateScan {
    /// Lines (as RecipientRow::line reports them) whose address already appeared on an earlier row.
    pub duplicates: LineSet,
    /// Rows read (recipient rows + rejected rows).
    pub rows: u64,
    /// Distinct valid addresses.
    pub distinct: u64,
}

/// Why a duplicate scan failed.
#[derive(Debug, thiserror::Error)]
pub enum DuplicateScanError {
    /// The recipient file could not be opened or read.
    #[error(transparent)]
    Recipients(#[from] RecipientError),
    /// A scratch file or directory under the work directory could not be created, written,
    /// read or removed (disk full, permissions…).
    #[error("{}: duplicate scan work file: {source}", .path.display())]
    WorkFile {
        /// The work file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl DuplicateScanError {
    /// True when the recipient file is at fault, false when the work directory is.
    pub fn is_recipient_file(&self) -> bool {
        matches!(self, DuplicateScanError::Recipients(_))
    }
}

/// Finds the rows of `path` whose address (case-insensitively) appeared on an earlier row,
/// using scratch files in a fresh subdirectory of `work_dir`; see the module docs.
pub fn scan_duplicates(path: &Path, email_column: &str, work_dir: &Path) -> Result<DuplicateScan, DuplicateScanError> {
    let file_len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let limits = ScanLimits {
        bucket_bits: bucket_bits_for(file_len, MAX_IN_MEMORY),
        max_in_memory: MAX_IN_MEMORY,
    };
    scan_duplicates_with(path, email_column, work_dir, limits).map(|(scan, _)| scan)
}

/// Partitioning knobs, fixed by [`scan_duplicates`]; tests shrink them to reach every path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanLimits {
    /// The first partition has `2^bucket_bits` buckets (at most 256).
    pub(crate) bucket_bits: u32,
    /// Entries held in memory at once (at least 4).
    pub(crate) max_in_memory: usize,
}

/// What the scan did, for tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScanStats {
    /// Bucket files written, at every level.
    pub(crate) bucket_files: u64,
    /// Buckets that were re-partitioned.
    pub(crate) repartitions: u64,
    /// Sort-and-collapse rounds.
    pub(crate) collapses: u64,
}

/// Bits for the first partition so that, even with [`MIN_ROW_BYTES`]-long rows, no bucket
/// exceeds `max_in_memory` entries on average.
fn bucket_bits_for(file_len: u64, max_in_memory: usize) -> u32 {
    let rows = file_len / MIN_ROW_BYTES;
    let buckets = rows.div_ceil(max_in_memory as u64).max(1);
    buckets.next_power_of_two().trailing_zeros().min(MAX_BUCKET_BITS)
}

/// [`scan_duplicates`] with explicit limits.
pub(crate) fn scan_duplicates_with(
    path: &Path,
    email_column: &str,
    work_dir: &Path,
    limits: ScanLimits,
) -> Result<(DuplicateScan, ScanStats), DuplicateScanError> {
    let mut reader = RecipientReader::open(path, email_column)?;
    let dir = WorkDir::create(work_dir)?;
    let fingerprints = Fingerprinter::new();
    let mut scan = Scan {
        dir: &dir.path,
        max_in_memory: limits.max_in_memory.max(4),
        entries: Vec::new(),
        duplicates: LineSet::new(),
        stats: ScanStats::default(),
        next_file: 0,
    };
    let bits = limits.bucket_bits.min(MAX_BUCKET_BITS);
    let mut partition = scan.partition(0, bits)?;
    let (mut rows, mut valid) = (0u64, 0u64);
    for row in reader.by_ref() {
        rows += 1;
        if let Row::Recipient(r) = row? {
            valid += 1;
            let (hi, lo) = fingerprints.of(&r.email);
            partition.push(Entry { hi, lo, line: r.line })?;
        }
    }
    let buckets = partition.finish()?;
    scan.process_all(buckets)?;
    let Scan { duplicates, stats, .. } = scan;
    dir.remove()?;
    let distinct = valid - duplicates.len();
    Ok((
        DuplicateScan {
            duplicates,
            rows,
            distinct,
        },
        stats,
    ))
}

/// One address occurrence: its fingerprint and line. Ordered by (fingerprint, line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    hi: u64,
    lo: u64,
    line: u64,
}

const ENTRY_LEN: usize = 24;

impl Entry {
    fn fingerprint(&self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }

    fn to_bytes(self) -> [u8; ENTRY_LEN] {
        let mut b = [0; ENTRY_LEN];
        b[..8].copy_from_slice(&self.hi.to_le_bytes());
        b[8..16].copy_from_slice(&self.lo.to_le_bytes());
        b[16..].copy_from_slice(&self.line.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; ENTRY_LEN]) -> Entry {
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Entry {
            hi: word(0),
            lo: word(8),
            line: word(16),
        }
    }
}

/// Keyed 128-bit fingerprints of lowercased addresses; see "Exactness" in the module docs.
struct Fingerprinter {
    key: SipKey,
}

impl Fingerprinter {
    fn new() -> Fingerprinter {
        Fingerprinter { key: SipKey::random() }
    }

    fn of(&self, addr: &EmailAddress) -> (u64, u64) {
        // Addresses are at most 254 octets (EmailAddress guarantees it), so no allocation.
        let mut buf = [0u8; MAX_ADDRESS_LEN];
        let bytes = addr.as_str().as_bytes();
        let lower = &mut buf[..bytes.len().min(MAX_ADDRESS_LEN)];
        lower.copy_from_slice(&bytes[..lower.len()]);
        // The domain is stored lowercase already.
        let local = addr.local().len().min(lower.len());
        lower[..local].make_ascii_lowercase();
        self.key.hash13_128(lower)
    }
}

/// A bucket file written and closed.
struct Bucket {
    path: PathBuf,
    entries: u64,
    /// Fingerprint bits (from the top) shared by every entry.
    shift: u32,
}

/// Buckets being written: entries go to `2^bits` files by the fingerprint bits below `shift`.
struct Partition {
    shift: u32,
    bits: u32,
    writers: Vec<(PathBuf, BufWriter<File>, u64)>,
}

impl Partition {
    fn push(&mut self, entry: Entry) -> Result<(), DuplicateScanError> {
        let index = match self.bits {
            0 => 0,
            bits => ((entry.fingerprint() << self.shift) >> (128 - bits)) as usize,
        };
        let (path, writer, count) = &mut self.writers[index];
        writer.write_all(&entry.to_bytes()).map_err(|e| work_err(path, e))?;
        *count += 1;
        Ok(())
    }

    /// Flushes and closes every file.
    fn finish(self) -> Result<Vec<Bucket>, DuplicateScanError> {
        let shift = self.shift + self.bits;
        let mut buckets = Vec::with_capacity(self.writers.len());
        for (path, writer, entries) in self.writers {
            writer.into_inner().map_err(|e| work_err(&path, e.into_error()))?;
            buckets.push(Bucket { path, entries, shift });
        }
        Ok(buckets)
    }
}

/// Reads back the entries of a bucket file.
struct BucketReader {
    path: PathBuf,
    reader: BufReader<File>,
    left: u64,
}

impl BucketReader {
    fn open(bucket: &Bucket) -> Result<BucketReader, DuplicateScanError> {
        let file = File::open(&bucket.path).map_err(|e| work_err(&bucket.path, e))?;
        Ok(BucketReader {
            path: bucket.path.clone(),
            reader: BufReader::with_capacity(READ_BUFFER, file),
            left: bucket.entries,
        })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, DuplicateScanError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut b = [0; ENTRY_LEN];
        self.reader.read_exact(&mut b).map_err(|e| work_err(&self.path, e))?;
        self.left -= 1;
        Ok(Some(Entry::from_bytes(&b)))
    }
}

/// The collapse phase's state.
struct Scan<'a> {
    dir: &'a Path,
    max_in_memory: usize,
    /// Reused for every bucket; never more than `max_in_memory` long.
    entries: Vec<Entry>,
    duplicates: LineSet,
    stats: ScanStats,
    next_file: u64,
}

impl Scan<'_> {
    fn partition(&mut self, shift: u32, bits: u32) -> Result<Partition, DuplicateScanError> {
        let mut writers = Vec::with_capacity(1 << bits);
        for _ in 0..1u32 << bits {
            let path = self.dir.join(format!("bucket-{}", self.next_file));
            self.next_file += 1;
            let file = File::create(&path).map_err(|e| work_err(&path, e))?;
            writers.push((path, BufWriter::with_capacity(BUCKET_BUFFER, file), 0));
        }
        self.stats.bucket_files += u64::from(1u32 << bits);
        Ok(Partition { shift, bits, writers })
    }

    /// Processes buckets depth-first; a re-partitioned bucket's parts go on the stack.
    fn process_all(&mut self, buckets: Vec<Bucket>) -> Result<(), DuplicateScanError> {
        let mut stack = buckets;
        stack.reverse();
        while let Some(bucket) = stack.pop() {
            if let Some(parts) = self.process(&bucket)? {
                stack.extend(parts.into_iter().rev());
            }
            fs::remove_file(&bucket.path).map_err(|e| work_err(&bucket.path, e))?;
        }
        Ok(())
    }

    /// Marks the duplicates of one bucket, or re-partitions it when its distinct entries do not
    /// fit; returns the parts then.
    fn process(&mut self, bucket: &Bucket) -> Result<Option<Vec<Bucket>>, DuplicateScanError> {
        if bucket.entries == 0 {
            return Ok(None);
        }
        let mut reader = BucketReader::open(bucket)?;
        self.entries.clear();
        loop {
            // (The `+ 1` only matters if a split were impossible, which the check below rules out.)
            let cap = self.max_in_memory.max(self.entries.len() + 1) as u64;
            let want = (self.entries.len() as u64 + reader.left).min(cap) as usize;
            self.entries.reserve_exact(want.saturating_sub(self.entries.len()));
            while self.entries.len() < want {
                match reader.next_entry()? {
                    Some(entry) => self.entries.push(entry),
                    None => break,
                }
            }
            self.collapse();
            if reader.left == 0 {
                return Ok(None);
            }
            // Room for less than half a chunk of new entries: too many distinct ones. With
            // more than max_in_memory / 2 ≥ 2 distinct fingerprints sharing `shift` bits,
            // at least one bit is left to split on.
            let bits = MAX_BUCKET_BITS.min(128 - bucket.shift);
            if self.entries.len() > self.max_in_memory / 2 && bits > 0 {
                self.stats.repartitions += 1;
                let mut part = self.partition(bucket.shift, bits)?;
                for entry in self.entries.drain(..) {
                    part.push(entry)?;
                }
                while let Some(entry) = reader.next_entry()? {
                    part.push(entry)?;
                }
                return part.finish().map(Some);
            }
        }
    }

    /// Sorts the entries and keeps the first (lowest line) of each fingerprint, marking the
    /// others as duplicates.
    fn collapse(&mut self) {
        self.stats.collapses += 1;
        // Sorting on the high half alone is markedly faster; runs of equal high halves (a
        // duplicate, or very rarely a partial collision) are then ordered in full.
        self.entries.sort_unstable_by_key(|e| e.hi);
        for run in self.entries.chunk_by_mut(|a, b| a.hi == b.hi) {
            if run.len() > 1 {
                run.sort_unstable();
            }
        }
        let duplicates = &mut self.duplicates;
        self.entries.dedup_by(|later, earlier| {
            let same = later.hi == earlier.hi && later.lo == earlier.lo;
            if same {
                duplicates.insert(later.line);
            }
            same
        });
    }
}

/// A private scratch directory, removed with its contents when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create(parent: &Path) -> Result<WorkDir, DuplicateScanError> {
        loop {
            let path = parent.join(format!(
                "volley-duplicates-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(work_err(&path, e)),
            }
        }
    }

    /// Removes the directory, reporting failure (dropping removes it silently).
    fn remove(self) -> Result<(), DuplicateScanError> {
        let path = std::mem::take(&mut std::mem::ManuallyDrop::new(self).path);
        fs::remove_dir_all(&path).map_err(|e| work_err(&path, e))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn work_err(path: &Path, source: io::Error) -> DuplicateScanError {
    DuplicateScanError::WorkFile {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn lines(set: &LineSet, upto: u64) -> Vec<u64> {
        (0..=upto).filter(|&l| set.contains(l)).collect()
    }

    /// The in-memory answer: (duplicate lines, rows, distinct).
    fn reference(path: &Path) -> (Vec<u64>, u64, u64) {
        let (mut seen, mut dups, mut rows) = (HashSet::new(), Vec::new(), 0);
        for row in RecipientReader::open(path, "email").unwrap() {
            rows += 1;
            if let Row::Recipient(r) = row.unwrap() {
                if !seen.insert(r.email.as_str().to_ascii_lowercase()) {
                    dups.push(r.line);
                }
            }
        }
        (dups, rows, seen.len() as u64)
    }

    fn assert_empty_dir(dir: &Path) {
        let left: Vec<_> = fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "work directory not cleaned: {left:?}");
    }

    #[test]
    fn case_insensitive_duplicates_keep_the_first_occurrence() {
        let tmp = tempfile::tempdir().unwrap();
        let csv = "email,name\n\
                   Bob@Example.com,a\n\
                   alice@example.com,b\n\
                   bob@example.COM,c\n\
                   BOB@EXAMPLE.COM,d\n\
                   carol@example.com,e\n\
                   ALICE@example.com,f\n";
        let path = write(tmp.path(), "r.csv", csv);
        let scan = scan_duplicates(&path, "email", tmp.path()).unwrap();
        assert_eq!(lines(&scan.duplicates, 10), [4, 5, 7]);
        assert!(!scan.duplicates.contains(2) && !scan.duplicates.contains(3));
        assert_eq!((scan.rows, scan.distinct), (6, 3));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1, "only the input is left");
    }

    #[test]
    fn rejected_rows_are_counted_but_never_duplicates() {
        let tmp = tempfile::tempdir().unwrap();
        let csv = "email,name\n\
                   not-an-address,a\n\
                   x@example.com,b\n\
                   not-an-address,c\n\
                   x@example.com,d,extra\n\
                   ,e\n\
                   X@example.com,f\n";
        let path = write(tmp.path(), "r.csv", csv);
        let scan = scan_duplicates(&path, "email", tmp.path()).unwrap();
        assert_eq!(lines(&scan.duplicates, 10), [7]);
        assert_eq!((scan.rows, scan.distinct), (6, 1));
    }

    #[test]
    fn jsonl_lines_are_those_the_reader_reports() {
        let tmp = tempfile::tempdir().unwrap();
        let jsonl = "{\"email\":\"a@example.com\",\"n\":1}\n\
                     \n\
                     {\"email\":\"b@example.com\",\"n\":2}\n\
                     {\"email\":\"A@Example.com\",\"n\":3}\n\
                     not json\n\
                     {\"email\":\"b@EXAMPLE.com\"}\n";
        let path = write(tmp.path(), "r.jsonl", jsonl);
        let scan = scan_duplicates(&path, "email", tmp.path()).unwrap();
        assert_eq!(lines(&scan.duplicates, 10), [4, 6]);
        assert_eq!((scan.rows, scan.distinct), (5, 2));
        assert_eq!(lines(&scan.duplicates, 10), reference(&path).0);
    }

    #[test]
    fn header_only_file_has_no_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        fs::create_dir(&work).unwrap();
        let path = write(tmp.path(), "r.csv", "email,name\n");
        let scan = scan_duplicates(&path, "email", &work).unwrap();
        assert!(scan.duplicates.is_empty());
        assert_eq!((scan.rows, scan.distinct), (0, 0));
        assert_empty_dir(&work);
    }

    #[test]
    fn unreadable_input_and_missing_work_dir_are_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        fs::create_dir(&work).unwrap();
        let path = write(tmp.path(), "r.csv", "mail\nx@example.com\n");
        let err = scan_duplicates(&path, "email", &work).unwrap_err();
        assert!(err.is_recipient_file(), "{err}");
        assert!(matches!(
            err,
            DuplicateScanError::Recipients(RecipientError::MissingEmailColumn { .. })
        ));
        assert_empty_dir(&work);

        let path = write(tmp.path(), "ok.csv", "email\nx@example.com\n");
        let err = scan_duplicates(&path, "email", &tmp.path().join("absent")).unwrap_err();
        assert!(!err.is_recipient_file());
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn work_dir_is_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = WorkDir::create(tmp.path()).unwrap();
        fs::write(dir.path.join("bucket-0"), b"x").unwrap();
        drop(dir);
        assert_empty_dir(tmp.path());
    }

    #[test]
    fn many_buckets_and_repartitions_give_the_same_answer() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        fs::create_dir(&work).unwrap();
        let mut csv = String::from("email\n");
        for i in 0..5_000u32 {
            // 1,500 distinct addresses; each repeated in mixed case; one very frequent address.
            match i % 7 {
                0 => csv.push_str("Hot@Example.com\n"),
                3 => csv.push_str(&format!("U{}@example.com\n", (i * 31) % 1_500)),
                _ => csv.push_str(&format!("u{}@example.com\n", (i * 17) % 1_500)),
            }
        }
        let path = write(tmp.path(), "r.csv", &csv);
        let expected = reference(&path);
        let limits = ScanLimits {
            bucket_bits: 2,
            max_in_memory: 64,
        };
        let (scan, stats) = scan_duplicates_with(&path, "email", &work, limits).unwrap();
        assert_eq!(lines(&scan.duplicates, 6_000), expected.0);
        assert_eq!((scan.rows, scan.distinct), (expected.1, expected.2));
        assert!(stats.repartitions >= 4, "{stats:?}");
        assert_eq!(stats.bucket_files, 4 + 4 * 256, "{stats:?}");
        assert_empty_dir(&work);
    }

    #[test]
    fn one_address_repeated_needs_no_repartition() {
        let tmp = tempfile::tempdir().unwrap();
        let csv = format!("email\n{}", "same@example.com\n".repeat(1_000));
        let path = write(tmp.path(), "r.csv", &csv);
        let limits = ScanLimits {
            bucket_bits: 0,
            max_in_memory: 8,
        };
        let (scan, stats) = scan_duplicates_with(&path, "email", tmp.path(), limits).unwrap();
        assert_eq!(scan.duplicates.len(), 999);
        assert!(!scan.duplicates.contains(2) && scan.duplicates.contains(3) && scan.duplicates.contains(1001));
        assert_eq!(stats.repartitions, 0);
        assert!(stats.collapses > 100, "{stats:?}");
    }

    #[test]
    fn first_partition_is_sized_from_the_file_length() {
        assert_eq!(bucket_bits_for(0, MAX_IN_MEMORY), 0);
        assert_eq!(bucket_bits_for(4 << 20, MAX_IN_MEMORY), 0);
        assert_eq!(bucket_bits_for((4 << 20) + 4, MAX_IN_MEMORY), 1);
        assert_eq!(bucket_bits_for(300_000_000, MAX_IN_MEMORY), 7);
        assert_eq!(bucket_bits_for(u64::MAX, MAX_IN_MEMORY), MAX_BUCKET_BITS);
    }

    fn address() -> impl Strategy<Value = String> {
        // Few local parts and domains, random case: many case-only collisions.
        (0..6usize, 0..3usize, any::<u16>(), 0..20u8).prop_map(|(local, domain, case, bad)| {
            if bad == 0 {
                return "not an address".to_owned();
            }
            let text = format!(
                "{}@{}",
                ["ab", "b", "cab", "a.b", "ba", "x+y"][local],
                ["d.test", "E.test", "d.Test"][domain]
            );
            text.chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 16) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_an_in_memory_hash_set(
            addresses in proptest::collection::vec(address(), 0..300),
            bucket_bits in 0..4u32,
            max_in_memory in 4..40usize,
            jsonl in any::<bool>(),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let work = tmp.path().join("work");
            fs::create_dir(&work).unwrap();
            let path = if jsonl {
                let text: String = addresses.iter().map(|a| format!("{{\"email\":\"{a}\"}}\n")).collect();
                write(tmp.path(), "r.jsonl", &format!("{{\"email\":\"\"}}\n{text}"))
            } else {
                let text: String = addresses.iter().map(|a| format!("{a}\n")).collect();
                write(tmp.path(), "r.csv", &format!("email\n{text}"))
            };
            let (dups, rows, distinct) = reference(&path);
            let limits = ScanLimits { bucket_bits, max_in_memory };
            let (scan, _) = scan_duplicates_with(&path, "email", &work, limits).unwrap();
            prop_assert_eq!(lines(&scan.duplicates, 400), dups);
            prop_assert_eq!((scan.rows, scan.distinct), (rows, distinct));
            prop_assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
        }
    }
}
