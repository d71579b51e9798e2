//! The buffered suppression writer under a steady stream of updates (one per delivered
//! message): it takes them in slices and flushes in batches, rather than waking for each.

use std::time::{Duration, Instant};

use volley_scheduler::suppression::{open_store, SuppressionConfig, SuppressionWriter, Update, GLOBAL};

/// Voluntary context switches of this process's thread named `name` (Linux), if found.
fn switches_of(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        return status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok());
    }
    None
}

/// Regression (a plain send's profile): the writer blocked on its channel whenever it had
/// taken what was there, so a delivery every few microseconds woke it (and it spun and
/// yielded before parking) once per delivery — 6 % of the send's CPU.
#[cfg(target_os = "linux")]
#[test]
fn a_steady_stream_of_updates_does_not_wake_the_writer_for_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SuppressionConfig::default();
    let store = open_store(&config, dir.path()).expect("embedded store");
    let writer = SuppressionWriter::start(store, dir.path(), &config).expect("writer");
    let before = switches_of("suppression-wri").expect("the writer thread");
    // About one second of updates, one every ~100 µs.
    let start = Instant::now();
    let mut pushed = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        writer.push(Update::forget_soft(GLOBAL, format!("u{pushed}@x.test")));
        pushed += 1;
        let next = start + Duration::from_micros(100 * pushed);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    let woke = switches_of("suppression-wri").expect("the writer thread") - before;
    let report = writer.close(Duration::from_secs(10));
    assert_eq!(report.spilled + report.unsaved, 0, "{report:?}");
    eprintln!("{pushed} updates in 1 s; the writer switched out {woke} times");
    // Slices of 10 ms and a flush every 100 ms: about 100-200 switches (each flush's fsync
    // adds some); once per update would be thousands.
    assert!(
        woke < pushed / 10,
        "the writer switched out {woke} times for {pushed} updates"
    );
}
