//! Counters survive a restart through the embedded file store; a new day starts at zero.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use volley_warmup::counters::{CounterStore, Window, COUNTERS_FILE};
use volley_warmup::{BackoffRules, Budgets, Curve, CurveSet, FileCounterStore, UtcDay, WarmupState};

const HOUR: Duration = Duration::from_secs(3600);

fn start_day() -> UtcDay {
    "2026-11-01".parse().expect("date")
}

fn budgets(dir: &Path) -> Budgets {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/warmup/standard.toml");
    let mut curves = CurveSet::default();
    curves.insert(Curve::load(&path).expect("curve"));
    let store = FileCounterStore::open(dir, Duration::from_secs(5)).expect("store");
    let mut b = Budgets::new(curves, BackoffRules::default(), Box::new(store));
    let state = WarmupState::Warming {
        curve: "standard".into(),
        start: start_day(),
    };
    b.add_ip(ip(), state).expect("curve");
    b
}

fn ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 2])
}

#[test]
fn a_restart_keeps_the_days_count_and_a_new_day_starts_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = start_day().start();
    let mut t = t0;
    {
        let mut b = budgets(dir.path());
        for _ in 0..5 {
            b.try_take(ip(), "gmail", t).expect("budget");
            t += Duration::from_secs(180);
        }
        b.flush(t).expect("flush");
    }
    assert!(
        !dir.path().join(format!("{COUNTERS_FILE}.tmp")).exists(),
        "written by rename"
    );
    let mut b = budgets(dir.path());
    let usage = b.usage(ip(), "gmail", t);
    assert_eq!(
        (usage.counts.day, usage.counts.hour),
        (5, 5),
        "the restart kept the counts"
    );
    let usage = b.usage(ip(), "gmail", t0 + HOUR);
    assert_eq!(
        (usage.counts.day, usage.counts.hour),
        (5, 0),
        "a new hour, the same day"
    );
    let usage = b.usage(ip(), "gmail", start_day().next().start());
    assert_eq!(
        (usage.counts.day, usage.counts.hour),
        (0, 0),
        "a new day starts at zero"
    );
    assert_eq!(b.usage(ip(), "yahoo", t).counts.day, 0, "per provider");
}

#[test]
fn the_file_is_written_at_most_every_interval_and_on_a_forced_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(COUNTERS_FILE);
    let t0 = start_day().start();
    let window = Window::of(t0);
    let count_on_disk = || -> u64 {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("file")).expect("json");
        json["entries"][0]["day_count"].as_u64().expect("count")
    };
    let mut store = FileCounterStore::open(dir.path(), Duration::from_secs(5)).expect("store");
    store.add(ip(), "gmail", window, 1).expect("add");
    store.flush(t0, false).expect("flush");
    assert_eq!(count_on_disk(), 1);
    store.add(ip(), "gmail", window, 2).expect("add");
    store.flush(t0 + Duration::from_secs(1), false).expect("flush");
    assert_eq!(count_on_disk(), 1, "batched: not yet due");
    store.flush(t0 + Duration::from_secs(5), false).expect("flush");
    assert_eq!(count_on_disk(), 3);
    store.add(ip(), "gmail", window, 1).expect("add");
    store.flush(t0 + Duration::from_secs(6), true).expect("flush");
    assert_eq!(count_on_disk(), 4);
    // Increments are commutative and reads name their window.
    let later = Window::of(t0 + HOUR);
    store.add(ip(), "gmail", later, 1).expect("add");
    assert_eq!(
        store.load(ip(), "gmail", later).map(|c| (c.day, c.hour)).ok(),
        Some((5, 1))
    );
}

#[test]
fn a_corrupt_counters_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(COUNTERS_FILE), "{not json").expect("write");
    let e = FileCounterStore::open(dir.path(), Duration::from_secs(5))
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains(COUNTERS_FILE) && e.contains("not a warm-up counters file")));
}

#[test]
fn the_default_take_counts_under_both_caps_and_names_the_spent_one() {
    use volley_warmup::{Caps, MemoryCounterStore, Taken};
    let t0 = start_day().start();
    let window = Window::of(t0);
    let caps = Caps { daily: 3, hourly: 2 };
    let mut store = MemoryCounterStore::default();
    let take = |store: &mut MemoryCounterStore, window| store.take(ip(), "gmail", window, caps).expect("take");
    let counts = |day, hour| volley_warmup::Counts { day, hour };
    assert_eq!(take(&mut store, window), Taken::Ok(counts(1, 1)));
    assert_eq!(take(&mut store, window), Taken::Ok(counts(2, 2)));
    assert_eq!(take(&mut store, window), Taken::HourlySpent(counts(2, 2)));
    let next_hour = Window::of(t0 + HOUR);
    assert_eq!(take(&mut store, next_hour), Taken::Ok(counts(3, 1)));
    assert_eq!(take(&mut store, next_hour), Taken::DailySpent(counts(3, 1)));
    assert!(!store.shared());
}
