//! Cluster-wide warm-up budgets on a real `redis-server` (spawned on a loopback port): the
//! Redis counter store's take/pace/add/load, two OS processes sharing one IP's cap, shared GCRA
//! pacing, and an outage that holds capped pairs instead of overspending.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use volley_bench::RedisServer;
use volley_scheduler::warmup_counters::{self, RedisCounterStore};
use volley_warmup::counters::{CounterStore, Counts, Pacing, Taken, Window};
use volley_warmup::{
    BackoffRules, Budgets, Caps, CounterBackend, Curve, CurveSet, Rate, UtcDay, WaitReason, WarmupConfig, WarmupState,
};

const HOUR: Duration = Duration::from_secs(3600);
/// The shared cap of the two-process test: gmail, day 1 of [`CURVE`].
const SHARED_CAP: u64 = 300;
const CURVE: &str = "name = \"tiny\"\nlast_day = 30\n[[day]]\nday = 1\n\
                     gmail = { daily = 300, hourly = 300 }\nother = { daily = 1000, hourly = 100 }\n";
/// Child-process mode of this test binary: the Redis URL, key prefix and start time.
const CHILD_URL: &str = "VOLLEY_TEST_WARMUP_CHILD_URL";
const CHILD_PREFIX: &str = "VOLLEY_TEST_WARMUP_CHILD_PREFIX";
const CHILD_START_MS: &str = "VOLLEY_TEST_WARMUP_CHILD_START_MS";
/// Simulated seconds per real second in the two-process test: an hour in 100 ms.
const SPEED: u32 = 36_000;

fn start_day() -> UtcDay {
    "2026-11-01".parse().expect("date")
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn store(url: &str, prefix: &str) -> RedisCounterStore {
    RedisCounterStore::open(url, prefix, Duration::from_secs(5)).expect("store")
}

/// Budgets on `store` where 127.0.0.2 is on day 1 of [`CURVE`] (gmail 300/day, 300/h).
fn budgets(store: RedisCounterStore) -> Budgets {
    let mut curves = CurveSet::default();
    curves.insert(Curve::parse(CURVE, Path::new("tiny.toml")).expect("curve"));
    let mut b = Budgets::new(curves, BackoffRules::default(), Box::new(store));
    let state = WarmupState::Warming {
        curve: "tiny".into(),
        start: start_day(),
    };
    b.add_ip(ip(2), state).expect("curve loaded");
    b
}

fn raw(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("raw connection")
}

fn get(con: &mut redis::Connection, key: &str) -> Option<u64> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

fn ttl(con: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query(con).expect("TTL")
}

fn counts(day: u64, hour: u64) -> Counts {
    Counts { day, hour }
}

#[test]
fn take_counts_under_both_caps_in_separate_day_and_hour_keys_that_expire() {
    let server = RedisServer::start();
    let mut s = store(&server.url(), "t1");
    let t0 = start_day().start();
    let (w, next_hour) = (Window::of(t0), Window::of(t0 + HOUR));
    let caps = Caps { daily: 3, hourly: 2 };
    let mut take = |w| s.take(ip(2), "gmail", w, caps).expect("take");
    assert_eq!(take(w), Taken::Ok(counts(1, 1)));
    assert_eq!(take(w), Taken::Ok(counts(2, 2)));
    assert_eq!(take(w), Taken::HourlySpent(counts(2, 2)), "nothing counted");
    assert_eq!(take(next_hour), Taken::Ok(counts(3, 1)), "a new hour, the same day");
    assert_eq!(take(next_hour), Taken::DailySpent(counts(3, 1)));
    let next_day = Window::of(start_day().next().start());
    assert_eq!(take(next_day), Taken::Ok(counts(1, 1)), "a new day starts at zero");

    let mut con = raw(&server);
    let day_key = s.day_key(ip(2), "gmail", start_day());
    assert_eq!(day_key, "t1:warmup:127.0.0.2:gmail:d:2026-11-01");
    let hour_key = s.hour_key(ip(2), "gmail", w.hour);
    assert_eq!(hour_key, format!("t1:warmup:127.0.0.2:gmail:h:{}", w.hour));
    assert_eq!((get(&mut con, &day_key), get(&mut con, &hour_key)), (Some(3), Some(2)));
    let day_ttl = ttl(&mut con, &day_key);
    assert!(
        (2 * 86_400 - 60..=2 * 86_400).contains(&day_ttl),
        "day key TTL {day_ttl}"
    );
    let hour_ttl = ttl(&mut con, &hour_key);
    assert!(
        (2 * 3600 - 60..=2 * 3600).contains(&hour_ttl),
        "hour key TTL {hour_ttl}"
    );
    assert_eq!(s.load(ip(2), "gmail", next_hour).expect("load"), counts(3, 1));
    assert_eq!(s.load(ip(2), "yahoo", w).expect("load"), counts(0, 0), "per provider");
    assert_eq!(s.load(ip(3), "gmail", w).expect("load"), counts(0, 0), "per IP");
    assert!(s.shared());
}

#[test]
fn add_is_batched_until_a_due_or_forced_flush_and_load_sees_pending_counts() {
    let server = RedisServer::start();
    let mut s = store(&server.url(), "t2");
    let mut con = raw(&server);
    let t0 = start_day().start();
    let w = Window::of(t0);
    let day_key = s.day_key(ip(2), "other", w.day);
    let hour_key = s.hour_key(ip(2), "other", w.hour);
    s.add(ip(2), "other", w, 2).expect("add");
    assert_eq!(get(&mut con, &day_key), None, "buffered");
    assert_eq!(
        s.load(ip(2), "other", w).expect("load"),
        counts(2, 2),
        "pending counts are seen"
    );
    s.flush(t0, false).expect("flush");
    assert_eq!(get(&mut con, &day_key), Some(2), "the first flush is due");
    s.add(ip(2), "other", w, 1).expect("add");
    s.flush(t0 + Duration::from_secs(1), false).expect("flush");
    assert_eq!(get(&mut con, &day_key), Some(2), "not due before flush_every");
    s.flush(t0 + Duration::from_secs(5), false).expect("flush");
    assert_eq!(get(&mut con, &day_key), Some(3));
    s.add(ip(2), "other", Window::of(t0 + HOUR), 4).expect("add");
    s.flush(t0 + Duration::from_secs(6), true).expect("forced flush");
    assert_eq!((get(&mut con, &day_key), get(&mut con, &hour_key)), (Some(7), Some(3)));
    assert!(ttl(&mut con, &day_key) > 86_400 && ttl(&mut con, &hour_key) > 3600);
    assert_eq!(
        s.load(ip(2), "other", Window::of(t0 + HOUR)).expect("load"),
        counts(7, 4)
    );
}

#[test]
fn threads_with_their_own_connections_never_take_more_than_the_cap_together() {
    let server = RedisServer::start();
    let url = server.url();
    let w = Window::of(start_day().start());
    let caps = Caps {
        daily: SHARED_CAP,
        hourly: SHARED_CAP,
    };
    let taken: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let mut s = store(&url, "t3");
                    let mut n = 0;
                    loop {
                        match s.take(ip(2), "gmail", w, caps).expect("take") {
                            Taken::Ok(_) => n += 1,
                            Taken::DailySpent(c) => {
                                assert_eq!(c.day, SHARED_CAP);
                                return n;
                            }
                            Taken::HourlySpent(c) => panic!("hourly cap before the daily one: {c:?}"),
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    assert_eq!(taken.iter().sum::<u64>(), SHARED_CAP, "{taken:?}");
}

/// Not a test of its own: the child half of
/// [`two_processes_sharing_an_ip_never_exceed_the_shared_cap_together`], run in a separate
/// process of this binary. Without its environment it returns at once.
#[test]
fn shared_cap_child() {
    let (Ok(url), Ok(prefix), Ok(start_ms)) = (
        std::env::var(CHILD_URL),
        std::env::var(CHILD_PREFIX),
        std::env::var(CHILD_START_MS),
    ) else {
        return;
    };
    let start = UNIX_EPOCH + Duration::from_millis(start_ms.parse().expect("start ms"));
    let mut b = budgets(store(&url, &prefix));
    // Both processes wait for the same real start time, then run on the same compressed
    // timeline: day 1 of the warm-up begins at `start`.
    if let Ok(ahead) = start.duration_since(SystemTime::now()) {
        std::thread::sleep(ahead);
    }
    let sim = |real: SystemTime| start_day().start() + real.duration_since(start).unwrap_or_default() * SPEED;
    let day_end = start_day().next().start();
    let (mut taken, mut unavailable) = (0u64, 0u64);
    loop {
        let now = sim(SystemTime::now());
        if now >= day_end {
            break;
        }
        match b.choose(&[ip(2)], "gmail", now) {
            Ok(_) => taken += 1,
            Err(w) if w.reason == WaitReason::DailyCap => break,
            Err(w) => {
                if w.reason == WaitReason::StoreUnavailable {
                    unavailable += 1;
                }
                let real_wait = w.until.duration_since(now).unwrap_or_default() / SPEED;
                std::thread::sleep(real_wait.min(Duration::from_millis(1)));
            }
        }
    }
    println!("TAKEN {taken} UNAVAILABLE {unavailable}");
}

fn child_test_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    if module.is_empty() {
        "shared_cap_child".to_string()
    } else {
        format!("{module}::shared_cap_child")
    }
}

#[test]
fn two_processes_sharing_an_ip_never_exceed_the_shared_cap_together() {
    let server = RedisServer::start();
    let exe = std::env::current_exe().expect("test binary");
    // Starting a process takes a while on a loaded machine: both start sending 1 s from now.
    let start = SystemTime::now() + Duration::from_secs(1);
    let start_ms = start.duration_since(UNIX_EPOCH).expect("after 1970").as_millis();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                // The test's path in this binary: `module::name` (module_path! is `suite::module`).
                .args([&child_test_name(), "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_URL, server.url())
                .env(CHILD_PREFIX, "t4")
                .env(CHILD_START_MS, start_ms.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut taken = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        // libtest prints "test shared_cap_child ... " on the same line.
        let line = stdout
            .split_once("TAKEN ")
            .and_then(|(_, rest)| rest.lines().next())
            .unwrap_or_else(|| panic!("no TAKEN report: {stdout}"));
        let mut fields = line.split_whitespace();
        let n: u64 = fields.next().and_then(|n| n.parse().ok()).expect("count");
        assert_eq!(fields.nth(1), Some("0"), "Redis was reachable throughout: {line}");
        taken.push(n);
    }
    eprintln!("the two processes took {taken:?}");
    assert_eq!(
        taken.iter().sum::<u64>(),
        SHARED_CAP,
        "together exactly the cap: {taken:?}"
    );
    assert!(taken.iter().all(|n| *n > 0), "each process sent some: {taken:?}");
    let s = store(&server.url(), "t4");
    let day_key = s.day_key(ip(2), "gmail", start_day());
    assert_eq!(get(&mut raw(&server), &day_key), Some(SHARED_CAP));
}

#[test]
fn two_stores_pacing_one_pair_share_one_rate() {
    let server = RedisServer::start();
    let (mut a, mut b) = (store(&server.url(), "t5"), store(&server.url(), "t5"));
    let rate: Rate = "100/s".parse().expect("rate");
    let burst = std::num::NonZeroU32::new(100).expect("burst");
    let t0 = start_day().start();
    let mut sent = [0u32; 2];
    // 3 simulated seconds in 1 ms steps; the stores take turns asking first at each 10 ms slot.
    for step in 0..3000u32 {
        let now = t0 + Duration::from_millis(u64::from(step));
        let order = if (step / 10) % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let s = if i == 0 { &mut a } else { &mut b };
            while s.pace(ip(2), "gmail", rate, burst, now).expect("pace") == Pacing::Allowed {
                sent[i] += 1;
            }
        }
    }
    let total = f64::from(sent[0] + sent[1]);
    let expected = 100.0 * 3.0 + 100.0;
    assert!((total - expected).abs() / expected < 0.02, "sent {sent:?}");
    assert!(sent.iter().all(|n| *n > 50), "both stores sent: {sent:?}");
    // Past the burst, a refusal says how long until the next slot (one per 10 ms).
    let now = t0 + Duration::from_secs(3);
    while a.pace(ip(2), "gmail", rate, burst, now).expect("pace") == Pacing::Allowed {}
    match b.pace(ip(2), "gmail", rate, burst, now).expect("pace") {
        Pacing::Wait(wait) => assert!(wait > Duration::ZERO && wait <= Duration::from_millis(10), "{wait:?}"),
        other => panic!("expected a wait, got {other:?}"),
    }
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(a.tat_key(ip(2), "gmail"))
        .query(&mut raw(&server))
        .expect("PTTL");
    assert!(ttl_ms > 0, "the TAT key expires");
}

#[test]
fn a_redis_outage_holds_capped_pairs_without_overspending_and_heals_after_restart() {
    let mut server = RedisServer::start_durable();
    let mut b = budgets(store(&server.url(), "t6"));
    let warm = ip(9);
    let mut t = start_day().start();
    let mut sent = 0u64;
    // Send 10 at the paced rate (waits move the simulated clock).
    while sent < 10 {
        match b.try_take(ip(2), "gmail", t) {
            Ok(()) => sent += 1,
            Err(w) => {
                assert_eq!(w.reason, WaitReason::Rate);
                t = w.until;
            }
        }
    }
    assert_eq!(b.try_take(warm, "gmail", t), Ok(()));

    server.stop();
    for _ in 0..5 {
        t += Duration::from_secs(60);
        let wait = b.try_take(ip(2), "gmail", t).expect_err("held while Redis is down");
        assert_eq!(wait.reason, WaitReason::StoreUnavailable);
        assert_eq!(wait.until, t + volley_warmup::budget::STORE_RETRY);
        let e = b.take_store_error().expect("the error is kept");
        assert!(e.is_unavailable(), "{e}");
        assert!(e.to_string().contains(&server.url()), "names the store: {e}");
    }
    assert_eq!(b.try_take(warm, "gmail", t), Ok(()), "warm pairs keep sending");
    assert!(b.flush(t).is_err(), "their counts wait for Redis");
    // A password in the URL never shows in errors.
    let secret = format!("redis://:hunter2@127.0.0.1:{}/0", server.port());
    let e = store(&secret, "t6")
        .take(ip(2), "gmail", Window::of(t), Caps { daily: 1, hourly: 1 })
        .expect_err("down");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("hunter2") && shown.contains(":***@"), "{shown}");

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match b.try_take(ip(2), "gmail", t) {
            Ok(()) => {
                sent += 1;
                break;
            }
            Err(w) if w.reason == WaitReason::StoreUnavailable => {
                assert!(Instant::now() < deadline, "Redis did not come back");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(w) => t = w.until,
        }
    }
    // The rest of the day's budget, and not one more.
    let wait = loop {
        match b.try_take(ip(2), "gmail", t) {
            Ok(()) => sent += 1,
            Err(w) if matches!(w.reason, WaitReason::DailyCap) => break w,
            Err(w) => {
                assert_ne!(w.reason, WaitReason::StoreUnavailable);
                t = w.until;
            }
        }
    };
    assert_eq!(sent, SHARED_CAP);
    assert_eq!(wait.until, start_day().next().start());
    b.flush(t).expect("flush after the outage");
    let s = store(&server.url(), "t6");
    let mut con = raw(&server);
    assert_eq!(get(&mut con, &s.day_key(ip(2), "gmail", start_day())), Some(SHARED_CAP));
    assert_eq!(get(&mut con, &s.day_key(warm, "gmail", start_day())), Some(2));
}

#[test]
fn open_picks_the_backend_and_a_redis_backend_needs_a_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = WarmupConfig::default();
    assert_eq!(
        warmup_counters::redis_url(&embedded, Some("redis://s/0")).expect("url"),
        None
    );
    assert!(!warmup_counters::open(&embedded, None, dir.path())
        .expect("embedded")
        .shared());

    let redis = WarmupConfig {
        counters: CounterBackend::Redis,
        ..WarmupConfig::default()
    };
    assert_eq!(
        warmup_counters::redis_url(&redis, Some("redis://suppression/0")).expect("url"),
        Some("redis://suppression/0"),
        "falls back to [suppression] redis"
    );
    let own = WarmupConfig {
        redis: Some("redis://warmup/1".into()),
        ..redis.clone()
    };
    assert_eq!(
        warmup_counters::redis_url(&own, Some("redis://suppression/0")).expect("url"),
        Some("redis://warmup/1")
    );
    assert!(warmup_counters::open(&own, None, dir.path()).expect("redis").shared());
    let e = warmup_counters::open(&redis, None, dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("warmup.redis = (absent)"), "{e}");
    let bad_prefix = WarmupConfig {
        key_prefix: "a b".into(),
        ..own
    };
    let e = warmup_counters::open(&bad_prefix, None, dir.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.starts_with("warmup.key_prefix = \"a b\""), "{e}");
}
