//! Limiters on paused tokio time: a sender that sleeps exactly as long as it is told gets the
//! configured rate, within 2%, over 60 simulated seconds — both a bare limiter and a warm-up
//! budget's pacing of an hourly cap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use volley_warmup::{
    BackoffRules, Budgets, Curve, CurveSet, ManualClock, MemoryCounterStore, SendLimiter, UtcDay, WarmupState,
};

/// The wall-clock time a paused tokio clock stands for (day 1 of a warm-up, 00:00 UTC).
fn wall(origin: tokio::time::Instant, day1: SystemTime) -> SystemTime {
    day1 + (tokio::time::Instant::now() - origin)
}

#[tokio::test(start_paused = true)]
async fn a_limiter_delivers_its_rate_within_two_percent_over_sixty_simulated_seconds() {
    let origin = tokio::time::Instant::now();
    let clock = ManualClock::at(UNIX_EPOCH);
    let limiter = SendLimiter::with_clock("200/s".parse().expect("rate"), clock.clone());
    let mut sent = 0u64;
    while tokio::time::Instant::now() - origin < Duration::from_secs(60) {
        clock.set(wall(origin, UNIX_EPOCH));
        match limiter.try_acquire() {
            Ok(()) => sent += 1,
            Err(wait) => tokio::time::sleep(wait).await,
        }
    }
    // 200/s for 60 s, plus the one-second burst at the start.
    let expected = 200.0 * 60.0 + 200.0;
    let off = (sent as f64 - expected).abs() / expected;
    assert!(off < 0.02, "sent {sent}, expected {expected} ({:.2}% off)", off * 100.0);
}

#[tokio::test(start_paused = true)]
async fn a_budget_paces_its_hourly_cap_within_two_percent() {
    let text = "name = \"flat\"\nlast_day = 9\n[[day]]\nday = 1\n\
                gmail = { daily = 1000000, hourly = 36000 }\nother = { daily = 1000000, hourly = 36000 }\n";
    let curve = Curve::parse(text, std::path::Path::new("flat.toml")).expect("curve");
    let mut curves = CurveSet::default();
    curves.insert(curve);
    let mut budgets = Budgets::new(curves, BackoffRules::default(), Box::new(MemoryCounterStore::default()));
    let ip = [127, 0, 0, 2].into();
    let day1 = UtcDay::from_ymd(2026, 11, 1).expect("day");
    budgets
        .add_ip(
            ip,
            WarmupState::Warming {
                curve: "flat".into(),
                start: day1,
            },
        )
        .expect("curve loaded");
    let origin = tokio::time::Instant::now();
    let mut sent = 0u64;
    while tokio::time::Instant::now() - origin < Duration::from_secs(60) {
        let now = wall(origin, day1.start());
        match budgets.try_take(ip, "gmail", now) {
            Ok(()) => sent += 1,
            Err(wait) => tokio::time::sleep(wait.until.duration_since(now).unwrap_or(Duration::from_millis(1))).await,
        }
    }
    // 36000 an hour is 10/s: 600 in a minute, plus a minute's burst (600) at the start.
    let expected = 10.0 * 60.0 + 600.0;
    let off = (sent as f64 - expected).abs() / expected;
    assert!(off < 0.02, "sent {sent}, expected {expected} ({:.2}% off)", off * 100.0);
}
