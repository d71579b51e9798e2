//! The buffered suppression writer under a steady stream of updates (one per delivered
//! message): it takes them in slices and flushes in batches, rather than waking for each.

use std::time::{Duration, Instant};

use volley_scheduler::suppression::{open_store, SuppressionConfig, SuppressionWriter, Update, GLOBAL};

/// The ids of this process's threads named `name` (Linux).
fn threads_named(name: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| t.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Voluntary context switches of thread `tid` of this process, while it runs.
fn switches_of(tid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
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
    // The other tests of this binary run writers too: this one's thread is the one that
    // appears now (or, if another test starts one at the same moment, both are counted —
    // neither may wake per update).
    let others = threads_named("suppression-wri");
    let writer = SuppressionWriter::start(store, dir.path(), &config).expect("writer");
    // A thread takes its name itself once it runs (std names it from inside), so right
    // after `start` it may still carry the spawning thread's name: wait for it to appear.
    let named_by = Instant::now() + Duration::from_secs(10);
    let ours: Vec<String> = loop {
        let ours: Vec<String> = threads_named("suppression-wri")
            .into_iter()
            .filter(|t| !others.contains(t))
            .collect();
        if !ours.is_empty() || Instant::now() > named_by {
            break ours;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(!ours.is_empty(), "the writer thread, named within 10 s");
    let before: Vec<Option<u64>> = ours.iter().map(|t| switches_of(t)).collect();
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
    // Threads that ended meanwhile (another test's writer) are left out.
    let woke: u64 = ours
        .iter()
        .zip(&before)
        .filter_map(|(t, b)| Some(switches_of(t)?.saturating_sub((*b)?)))
        .sum();
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
