//! The per-message "may this source IP send to this provider now?" check of dispatch.
//!
//! - `warmup_check/shaper_take_*`: [`Shaper::take`], the call dispatch makes before it hands a
//!   message to an IP (site backoff, then the IP's warm-up budget under its mutex), on the real
//!   clock: a warm IP (allowed), and an IP on day 1 of the shipped `conservative` curve whose
//!   minute burst is spent (refused by the smoothing limiter, `WaitReason::Rate`).
//! - `warmup_check/budgets_try_take_*`: [`Budgets::try_take`] (the warm-up governor itself) on
//!   simulated time for a capped pair: allowed (time advances by 1.05 x the smoothing interval
//!   per message, so every message is within the caps and the GCRA limiter lets it through, and
//!   the counters are written to the in-memory counter store), and refused because today's cap
//!   is spent (`WaitReason::DailyCap`).
//!
//! Why it matters: dispatch asks once per message (more when an IP is held and the message
//! overflows to the next one), under one process-wide mutex, so this bounds the dispatch rate
//! and its contention.
//!
//! `cargo bench -p volley-bench --bench warmup_limiter`

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use volley_scheduler::config::{SendConfig, SourceIpConfig};
use volley_scheduler::shaping::Shaper;
use volley_warmup::{BackoffRules, Budgets, Curve, CurveSet, MemoryCounterStore, UtcDay, WaitReason, WarmupState};

const PROVIDER: &str = "gmail";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn shaper(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let warm = ip("127.0.0.2");
    let warming = ip("127.0.0.3");
    let mut warming_config = SourceIpConfig::new(warming, "mta3.volley.test");
    warming_config.warmup = Some("conservative".into());
    warming_config.warmup_start = Some(UtcDay::of(SystemTime::now()));
    let config = SendConfig::new(
        dir.path().to_path_buf(),
        vec![SourceIpConfig::new(warm, "mta2.volley.test"), warming_config],
    );
    let shaper = Shaper::open(
        &config,
        &dir.path().join("volley.toml"),
        Box::new(MemoryCounterStore::default()),
    )
    .expect("open the shaper");
    let site: Arc<str> = Arc::from("gmail-smtp-in.l.google.com");
    // Spend the warming pair's burst: from then on the smoothing limiter refuses.
    let mut burst = 0;
    while shaper.take(warming, PROVIDER, &site).is_ok() {
        burst += 1;
        assert!(burst < 100_000, "the warming IP is never refused");
    }
    assert_eq!(
        shaper.take(warming, PROVIDER, &site).map_err(|h| h.reason),
        Err(WaitReason::Rate)
    );

    let mut group = c.benchmark_group("warmup_check");
    group.throughput(Throughput::Elements(1));
    group.bench_function("shaper_take_warm_allowed", |b| {
        b.iter(|| {
            shaper
                .take(black_box(warm), PROVIDER, &site)
                .expect("a warm IP is never held")
        })
    });
    group.bench_function("shaper_take_warming_refused_rate", |b| {
        b.iter_custom(|iters| {
            let mut refused = 0u64;
            let start = Instant::now();
            for _ in 0..iters {
                refused += u64::from(shaper.take(black_box(warming), PROVIDER, &site).is_err());
            }
            let elapsed = start.elapsed();
            // Real time passes, so one message per smoothing interval (minutes on day 1) may go.
            assert!(refused + 2 >= iters, "{refused} of {iters} refused");
            elapsed
        })
    });
    group.finish();
}

/// A curve whose day-1 caps are 360,000 an hour (a smoothing interval of 10 ms) and `daily`.
fn budgets(daily: u64) -> (Budgets, IpAddr, SystemTime) {
    let text = format!(
        "name = \"bench\"\nlast_day = 100\n[[day]]\nday = 1\n\
         gmail = {{ daily = {daily}, hourly = {} }}\nother = {{ daily = {daily}, hourly = {} }}\n",
        daily.min(360_000),
        daily.min(360_000)
    );
    let mut curves = CurveSet::default();
    curves.insert(Curve::parse(&text, Path::new("bench.toml")).expect("curve"));
    let mut budgets = Budgets::new(curves, BackoffRules::default(), Box::new(MemoryCounterStore::default()));
    let ip = ip("127.0.0.3");
    let start = UtcDay::from_ymd(2026, 12, 1).expect("date");
    budgets
        .add_ip(
            ip,
            WarmupState::Warming {
                curve: "bench".into(),
                start,
            },
        )
        .expect("add ip");
    (budgets, ip, start.start() + Duration::from_secs(60))
}

fn budgets_try_take(c: &mut Criterion) {
    let mut group = c.benchmark_group("warmup_check");
    group.throughput(Throughput::Elements(1));

    // 1.05 x the 10 ms smoothing interval: always within the limiter, under 343,000 an hour.
    let step = Duration::from_micros(10_500);
    group.bench_function("budgets_try_take_warming_allowed", |b| {
        b.iter_custom(|iters| {
            let (mut budgets, ip, mut now) = budgets(1_000_000_000_000);
            let start = Instant::now();
            for _ in 0..iters {
                now += step;
                budgets
                    .try_take(black_box(ip), PROVIDER, now)
                    .expect("within the caps and the rate");
            }
            start.elapsed()
        })
    });

    let (mut spent, ip, mut now) = budgets(1);
    spent.try_take(ip, PROVIDER, now).expect("the one message of the day");
    now += Duration::from_secs(1);
    assert_eq!(
        spent.try_take(ip, PROVIDER, now).map_err(|w| w.reason),
        Err(WaitReason::DailyCap)
    );
    group.bench_function("budgets_try_take_daily_cap_refused", |b| {
        b.iter(|| {
            now += Duration::from_millis(1);
            spent
                .try_take(black_box(ip), PROVIDER, now)
                .expect_err("today's cap is spent")
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = shaper, budgets_try_take
}
criterion_main!(benches);
