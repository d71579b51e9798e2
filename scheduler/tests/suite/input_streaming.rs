//! A large CSV streams through in flat memory. Its own test binary, so the RSS figures are
//! this test's alone.
//!
//! 200,000 rows by default (this crate's tests run unoptimised); for the full-size check:
//! `VOLLEY_STREAM_ROWS=10000000 cargo test --release -p volley-scheduler --test input_streaming -- --nocapture`

use std::io::{BufWriter, Write};

use volley_scheduler::recipients::{Deduplicator, RecipientReader, Row};

fn rows() -> u64 {
    std::env::var("VOLLEY_STREAM_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Peak resident set size (VmHWM) in KiB, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_large_csv_streams_in_flat_memory() {
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut out = BufWriter::new(std::fs::File::create(&path).unwrap());
    writeln!(out, "email,first_name,city").unwrap();
    for i in 0..rows {
        // Every 1000th row repeats the previous address; every 10,000th is invalid.
        let id = if i % 1000 == 999 { i - 1 } else { i };
        let at = if i % 10_000 == 5 { "" } else { "@" };
        writeln!(out, "user{id}{at}example{}.test,Name {i},City {}", id % 97, i % 13).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
    let file_mib = std::fs::metadata(&path).unwrap().len() / (1 << 20);

    let t = std::time::Instant::now();
    let before = peak_rss_kib();
    let mut reader = RecipientReader::open(&path, "email").unwrap();
    let mut dedup = Deduplicator::new();
    let (mut sendable, mut rejected, mut last_line) = (0u64, 0u64, 0u64);
    while let Some(row) = reader.next_row() {
        match row.unwrap() {
            Row::Recipient(r) => {
                assert_eq!(r.values.len(), 3);
                last_line = r.line;
                sendable += u64::from(dedup.first_time(&r.email));
            }
            Row::Rejected(_) => rejected += 1,
        }
    }
    eprintln!("{rows} rows read in {:?}", t.elapsed());
    assert_eq!(rejected, rows / 10_000);
    assert_eq!(dedup.duplicates(), rows / 1000);
    assert_eq!(sendable, rows - rows / 10_000 - rows / 1000);
    assert_eq!(last_line, rows + 1);

    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        let grown_mib = after.saturating_sub(before) / 1024;
        let dedup_mib = dedup.memory_bytes() as u64 >> 20;
        eprintln!("file {file_mib} MiB, peak RSS grew {grown_mib} MiB, dedup holds {dedup_mib} MiB");
        // The reader holds one record; only the deduplicator grows (~10 bytes per address).
        assert!(
            grown_mib <= dedup_mib + 8,
            "peak RSS grew {grown_mib} MiB for a {file_mib} MiB file"
        );
    }
}
