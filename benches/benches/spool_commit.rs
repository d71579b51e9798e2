//! The injection spool's durable commit against an embedded store doing the same work: a
//! batch of `B` injected messages (4 KB each, the size peers.sh uses) made durable at once,
//! as concurrent SMTP/HTTP injections are.
//!
//! - `segments`: [`Spool::inject`] × B concurrently — the spool's writer appends them to the
//!   stream's segment file and syncs once (`fdatasync`) before answering all of them.
//! - `redb`: one redb write transaction inserting the same B records (id -> envelope +
//!   message), committed with its default durability (redb syncs on commit), the store the
//!   embedded suppression list uses.
//!
//! Both write into a fresh directory under /var/tmp (a disk on Debian, not a tmpfs), so the
//! syncs are real. Throughput is in messages. Only the ratio of the two within one run
//! means anything: a sync's cost is the disk's.
//!
//! `cargo bench -p volley-bench --bench spool_commit`

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use volley_scheduler::inject::{Injected, Injector};
use volley_scheduler::spool::{Spool, SpoolConfig};

const MESSAGE_BYTES: usize = 4096;
const RECORDS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("spool");

fn message(i: u64) -> Injected {
    let mut raw = format!("From: App <app@app.volley.test>\r\nSubject: message {i}\r\n\r\n").into_bytes();
    while raw.len() < MESSAGE_BYTES {
        raw.extend_from_slice(b"0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 abcdefghijklmnopqrstuvwxyz\r\n");
    }
    Injected {
        user: "bench".into(),
        mail_from: "bounces@app.volley.test".into(),
        recipients: vec![format!("r{i}@dest.test")],
        raw,
        peer: "127.0.0.1:1".into(),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("volley-spool-bench")
        .tempdir_in("/var/tmp")
        .expect("a folder under /var/tmp");
    let config = SpoolConfig {
        max_size: u64::MAX,
        ..SpoolConfig::default()
    };
    let spool = runtime.block_on(async {
        let (spool, _, _created) = Spool::open(&dir.path().join("spool"), config).expect("spool");
        Arc::new(spool)
    });
    let db = redb::Database::create(dir.path().join("spool.redb")).expect("redb");
    let mut group = c.benchmark_group("spool_commit");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    let mut seq = 0u64;
    for batch in [1u64, 16, 128] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::new("segments", batch), &batch, |b, &batch| {
            b.iter(|| {
                runtime.block_on(async {
                    let all = (0..batch).map(|_| {
                        seq += 1;
                        let (spool, m) = (spool.clone(), message(seq));
                        async move { spool.inject(m).await.expect("accepted") }
                    });
                    futures_util::future::join_all(all.collect::<Vec<_>>()).await
                })
            })
        });
        group.bench_with_input(BenchmarkId::new("redb", batch), &batch, |b, &batch| {
            b.iter(|| {
                let tx = db.begin_write().expect("transaction");
                {
                    let mut table = tx.open_table(RECORDS).expect("table");
                    for _ in 0..batch {
                        seq += 1;
                        let m = message(seq);
                        let mut value = serde_json::to_vec(&(&m.mail_from, &m.recipients, &m.user)).expect("json");
                        value.extend_from_slice(&m.raw);
                        table.insert(seq, value.as_slice()).expect("insert");
                    }
                }
                tx.commit().expect("commit");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
