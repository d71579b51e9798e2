//! Suppression lookups as the producer makes them: [`Checker::check_batch`] (scopes `global`
//! and a campaign list `newsletter`) over the store [`open_store`] opens for a run — the
//! embedded redb store (`<state_dir>/suppression.redb`) and, when `redis-server` is installed,
//! Redis (a throwaway server on a loopback port, [`volley_bench::RedisServer`]).
//!
//! The store holds 100,000 entries (90,000 `global`, 10,000 `newsletter`). Each batch is 5%
//! suppressed addresses (half of them global, half list) and 95% addresses not in the store,
//! which are looked up in both scopes. Batches of 256 (the producer's `CHECK_BATCH`) and 1,000;
//! throughput is in addresses.
//!
//! Why it matters: every recipient is checked before its message is built, on the reading
//! thread, so the lookup cost per address caps the producer's rate (and with Redis, adds a
//! round trip per batch).
//!
//! `cargo bench -p volley-bench --bench suppression_check`

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use volley_bench::RedisServer;
use volley_scheduler::suppression::{
    open_store, Checker, Entry, OnUnavailable, SuppressionConfig, SuppressionStore, Update, GLOBAL,
};

const LIST: &str = "newsletter";
const GLOBAL_ENTRIES: usize = 90_000;
const LIST_ENTRIES: usize = 10_000;
/// Percentage of each batch's addresses that are in the store.
const SUPPRESSED_PERCENT: usize = 5;

fn suppressed_address(i: usize) -> String {
    format!("gone{i}@d{}.example.net", i % 1_000)
}

fn fill(store: &dyn SuppressionStore) {
    let updates: Vec<Update> = (0..GLOBAL_ENTRIES + LIST_ENTRIES)
        .map(|i| {
            let scope = if i < GLOBAL_ENTRIES { GLOBAL } else { LIST };
            let entry = Entry::new("hard bounce", "bench", 1_764_547_200)
                .with_codes(Some(550), Some("5.1.1".into()))
                .with_category("bad-mailbox");
            Update::suppress(scope, suppressed_address(i), entry)
        })
        .collect();
    for chunk in updates.chunks(5_000) {
        store.apply(chunk).expect("fill the store");
    }
    assert_eq!(store.len(GLOBAL).expect("len") as usize, GLOBAL_ENTRIES);
    assert_eq!(store.len(LIST).expect("len") as usize, LIST_ENTRIES);
}

/// `count` batches of `size` addresses, `SUPPRESSED_PERCENT` of them in the store.
fn batches(size: usize, count: usize) -> Vec<Vec<String>> {
    (0..count)
        .map(|b| {
            (0..size)
                .map(|j| {
                    let n = b * size + j;
                    if j % (100 / SUPPRESSED_PERCENT) == 0 {
                        // Alternate global and list entries.
                        let k = n * 7919;
                        if j % 2 == 0 {
                            suppressed_address(k % GLOBAL_ENTRIES)
                        } else {
                            suppressed_address(GLOBAL_ENTRIES + k % LIST_ENTRIES)
                        }
                    } else {
                        format!("reader{n}@d{}.example.net", n % 1_000)
                    }
                })
                .collect()
        })
        .collect()
}

fn bench_store(c: &mut Criterion, name: &str, store: Arc<dyn SuppressionStore>) {
    fill(store.as_ref());
    let checker = Checker::new(
        store,
        Some(LIST),
        OnUnavailable::Pause,
        Arc::new(AtomicBool::new(false)),
    );
    let mut group = c.benchmark_group(format!("suppression_check_{name}"));
    for size in [256, 1_000] {
        let batches = batches(size, 16);
        for batch in &batches {
            let addresses: Vec<&str> = batch.iter().map(String::as_str).collect();
            let hits = checker.check_batch(&addresses).expect("check");
            let suppressed = hits.iter().filter(|h| h.is_some()).count();
            let expected = size.div_ceil(100 / SUPPRESSED_PERCENT);
            assert_eq!(suppressed, expected, "suppressed addresses found in a batch of {size}");
        }
        group.throughput(Throughput::Elements(size as u64));
        let mut next = 0;
        group.bench_function(BenchmarkId::new("batch", size), |b| {
            b.iter(|| {
                next = (next + 1) % batches.len();
                let addresses: Vec<&str> = batches[next].iter().map(String::as_str).collect();
                checker.check_batch(&addresses).expect("check")
            })
        });
    }
    group.finish();
}

fn embedded(c: &mut Criterion) {
    let state_dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&SuppressionConfig::default(), state_dir.path()).expect("open the embedded store");
    bench_store(c, "embedded_100k", store);
}

fn redis(c: &mut Criterion) {
    let server = match RedisServer::try_start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("suppression_check_redis skipped: {e}");
            return;
        }
    };
    let config = SuppressionConfig {
        redis: Some(server.url()),
        ..SuppressionConfig::default()
    };
    let state_dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&config, state_dir.path()).expect("open the Redis store");
    bench_store(c, "redis_100k", store);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = embedded, redis
}
criterion_main!(benches);
