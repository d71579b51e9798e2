//! DKIM signing cost: one thread signing a ~4 KB message, and throughput of the engine's
//! `SignPool` with one thread per core, for RSA-2048 and Ed25519.
//!
//! `cargo bench -p volley-bench --bench dkim_sign`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use volley_engine::dkim::{default_threads, generate, DkimKeyConfig, DkimSigners, KeyAlgorithm, SignPool};

const DOMAIN: &str = "news.volley.test";
/// Messages per measured pool iteration.
const POOL_BATCH: usize = 2_000;

/// A ~4 KB newsletter: the usual headers and a quoted-printable-looking body.
fn message() -> Vec<u8> {
    let mut text = format!(
        "From: Volley News <news@{DOMAIN}>\r\nTo: reader@example.net\r\nSubject: Weekly digest\r\n\
         Date: Fri, 2 Jan 2026 10:00:00 +0000\r\nMessage-ID: <1@{DOMAIN}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nList-Unsubscribe: <https://{DOMAIN}/u/1>\r\n\
         List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n"
    );
    while text.len() < 4_096 {
        text.push_str("This week: faster pipelines, warmer IPs, and a few words about DKIM.\r\n");
    }
    text.into_bytes()
}

/// Signers holding one freshly generated key of `algorithm`.
fn signers(algorithm: KeyAlgorithm, dir: &std::path::Path) -> Arc<DkimSigners> {
    let key = generate(algorithm, DOMAIN, "bench").expect("keygen");
    let path = dir.join(format!("{algorithm:?}.pem").replace([' ', '{', '}', ':'], ""));
    key.write_private_key(&path).expect("write key");
    let config = DkimKeyConfig {
        domain: DOMAIN.into(),
        selector: "bench".into(),
        key: path,
        algorithm: None,
        headers: None,
        canonicalization: Default::default(),
        expire: None,
    };
    Arc::new(DkimSigners::load(&[config]).expect("load key").0)
}

fn algorithms() -> [(&'static str, KeyAlgorithm); 2] {
    [
        ("rsa2048", KeyAlgorithm::Rsa { bits: 2048 }),
        ("ed25519", KeyAlgorithm::Ed25519),
    ]
}

fn single_thread(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let msg = message();
    let mut group = c.benchmark_group("dkim_sign_single");
    group.throughput(Throughput::Elements(1));
    for (name, algorithm) in algorithms() {
        let signers = signers(algorithm, dir.path());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| signers.sign(DOMAIN, &msg).expect("sign").expect("key"))
        });
    }
    group.finish();
}

fn pool(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let msg = message();
    let threads = default_threads();
    let mut group = c.benchmark_group(format!("dkim_sign_pool_{threads}_threads"));
    group.throughput(Throughput::Elements(POOL_BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, algorithm) in algorithms() {
        let signers = signers(algorithm, dir.path());
        let (tx, rx) = crossbeam_channel::unbounded::<bool>();
        let pool = SignPool::start(signers, threads, 256, move |(), result| {
            let _ = tx.send(result.is_ok());
        })
        .expect("start pool");
        let domain: Arc<str> = Arc::from(DOMAIN);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..POOL_BATCH {
                        pool.submit((), Arc::clone(&domain), msg.clone()).expect("pool open");
                    }
                    for _ in 0..POOL_BATCH {
                        assert!(rx.recv().expect("result"), "signing failed");
                    }
                }
                start.elapsed()
            })
        });
        pool.close().expect("workers exit cleanly");
    }
    group.finish();
}

criterion_group!(benches, single_thread, pool);
criterion_main!(benches);
