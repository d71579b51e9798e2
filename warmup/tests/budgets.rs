//! Budgets on a compressed clock: hourly and daily caps, rollover, smoothing, overflow across a
//! pool, and adaptive backoff per (IP, provider) pair.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use volley_warmup::budget::Usage;
use volley_warmup::{
    BackoffAction, BackoffRules, Budgets, Curve, CurveSet, MemoryCounterStore, UtcDay, Wait, WaitReason, WarmupState,
};

const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn start_day() -> UtcDay {
    "2026-11-01".parse().expect("date")
}

fn t0() -> SystemTime {
    start_day().start()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn standard() -> Curve {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/warmup/standard.toml");
    Curve::load(&path).expect("standard curve")
}

/// Budgets where each given IP is on day 1 of `curve` at [`t0`].
fn budgets(curve: Curve, warming: &[IpAddr]) -> Budgets {
    let name = curve.name().to_string();
    let mut curves = CurveSet::default();
    curves.insert(curve);
    let mut b = Budgets::new(curves, BackoffRules::default(), Box::new(MemoryCounterStore::default()));
    for ip in warming {
        let state = WarmupState::Warming {
            curve: name.clone(),
            start: start_day(),
        };
        b.add_ip(*ip, state).expect("curve loaded");
    }
    b
}

/// Sends on one pair from `t` as fast as the budget allows until a wait of one of `stop`;
/// returns the messages sent and that wait.
fn send_until(b: &mut Budgets, ip: IpAddr, provider: &str, t: SystemTime, stop: &[WaitReason]) -> (u64, Wait) {
    let mut t = t;
    let mut sent = 0;
    loop {
        match b.try_take(ip, provider, t) {
            Ok(()) => sent += 1,
            Err(wait) if stop.contains(&wait.reason) => return (sent, wait),
            Err(wait) => {
                assert!(wait.until > t, "a wait moves time forward");
                t = wait.until;
            }
        }
    }
}

#[test]
fn day_one_sends_the_hourly_cap_then_waits_for_the_next_hour() {
    let a = ip(2);
    let mut b = budgets(standard(), &[a]);
    let (sent, wait) = send_until(&mut b, a, "gmail", t0(), &[WaitReason::HourlyCap]);
    assert_eq!(sent, 20, "gmail day 1 allows 20 per hour");
    assert_eq!(wait.until, t0() + HOUR);
    assert_eq!(
        b.try_take(a, "gmail", t0() + HOUR - Duration::from_secs(1))
            .map_err(|w| w.reason),
        Err(WaitReason::HourlyCap)
    );
    // The hour rolls over: the hourly counter restarts, the daily one keeps counting.
    assert_eq!(b.try_take(a, "gmail", t0() + HOUR), Ok(()));
    let usage = b.usage(a, "gmail", t0() + HOUR);
    assert_eq!((usage.counts.day, usage.counts.hour), (21, 1));
    // Other providers have budgets of their own.
    assert_eq!(b.try_take(a, "yahoo", t0() + HOUR), Ok(()));
}

#[test]
fn the_daily_cap_waits_until_the_next_utc_midnight_and_a_new_day_has_new_caps() {
    let a = ip(2);
    let mut b = budgets(standard(), &[a]);
    let (sent, wait) = send_until(&mut b, a, "gmail", t0(), &[WaitReason::DailyCap]);
    assert_eq!(sent, 150, "gmail day 1 allows 150 per day");
    assert_eq!(wait.until, start_day().next().start());
    let day2 = start_day().next().start();
    assert_eq!(b.try_take(a, "gmail", day2), Ok(()));
    let usage: Usage = b.usage(a, "gmail", day2);
    assert_eq!(usage.counts.day, 1, "the day's counter restarts");
    assert_eq!(usage.caps.map(|c| (c.daily, c.hourly)), Some((210, 28)), "day 2 caps");
}

#[test]
fn past_the_curve_end_an_ip_is_warm() {
    let a = ip(2);
    let mut b = budgets(standard(), &[a]);
    let day31 = UtcDay::from_days(start_day().days() + 30).start();
    assert_eq!(b.usage(a, "gmail", day31).caps, None);
    for _ in 0..10_000 {
        assert_eq!(b.try_take(a, "gmail", day31), Ok(()));
    }
}

#[test]
fn smoothing_spreads_an_hourly_cap_of_3600_at_one_per_second() {
    let text = "name = \"flat\"\nlast_day = 1\n[[day]]\nday = 1\nother = { daily = 100000, hourly = 3600 }\n";
    let a = ip(2);
    let mut b = budgets(Curve::parse(text, Path::new("flat.toml")).expect("curve"), &[a]);
    // An idle pair may send one minute's share at once…
    let mut burst = 0;
    while b.try_take(a, "other", t0()).is_ok() {
        burst += 1;
    }
    assert_eq!(burst, 60);
    // …then one per second: over 60 simulated seconds in 10 ms steps, 60 within 2%.
    let mut sent = 0u32;
    let mut t = t0();
    for _ in 0..6000 {
        t += Duration::from_millis(10);
        while b.try_take(a, "other", t).is_ok() {
            sent += 1;
        }
    }
    assert!((f64::from(sent) - 60.0).abs() <= 60.0 * 0.02, "sent {sent} in 60 s");
}

#[test]
fn overflow_moves_traffic_to_an_ip_with_budget_then_waits_for_the_earliest_refill() {
    let (a, c) = (ip(2), ip(3));
    let mut b = budgets(standard(), &[a, c]);
    let pool = [a, c];
    // A spends its day (150 by about 7.5 h at 20 per hour).
    let (sent, _) = send_until(&mut b, a, "gmail", t0(), &[WaitReason::DailyCap]);
    assert_eq!(sent, 150);
    let t = t0() + 8 * HOUR;
    assert_eq!(
        b.choose(&pool, "gmail", t),
        Ok(1),
        "A is at its cap: B takes the message"
    );
    // B sends the rest of its hour; then no IP has budget and the message waits until the
    // earliest refill: B's next hour (A's is midnight).
    let mut now = t;
    let mut sent_by = [0u32; 2];
    let wait = loop {
        match b.choose(&pool, "gmail", now) {
            Ok(i) => sent_by[i] += 1,
            Err(w) if matches!(w.reason, WaitReason::HourlyCap | WaitReason::DailyCap) => break w,
            Err(w) => now = w.until,
        }
    };
    assert_eq!(sent_by, [0, 19], "B sends the rest of its hour");
    assert_eq!((wait.reason, wait.until), (WaitReason::HourlyCap, t + HOUR));
    let early = b.choose(&pool, "gmail", wait.until - Duration::from_millis(1));
    assert_eq!(early.map_err(|w| w.until), Err(wait.until));
    // Once the clock passes it, sending resumes.
    assert_eq!(b.choose(&pool, "gmail", wait.until), Ok(1));
    b.record_waited(now, wait.until);
    let stats = b.wait_stats();
    let waited = wait.until.duration_since(now).expect("later");
    assert_eq!((stats.waited_count, stats.waited_total), (1, waited));
    assert_eq!(b.choose(&[], "gmail", now).map_err(|w| w.reason), Err(WaitReason::NoIp));
}

#[test]
fn a_tss04_reply_slows_only_that_pair_and_recovers_after_a_quiet_period() {
    let (a, c) = (ip(2), ip(3));
    let mut b = budgets(standard(), &[a, c]);
    let t = t0();
    let tss04 = "4.7.0 [TSS04] Messages from 127.0.0.2 temporarily deferred due to unexpected volume";
    let action = b.observe(a, "yahoo", Some(421), Some("4.7.0"), tss04, t);
    assert!(matches!(action, Some(BackoffAction::Slow { factor, .. }) if factor == 0.5));
    assert_eq!(b.usage(a, "yahoo", t).factor, 0.5);
    assert_eq!(
        b.usage(a, "gmail", t).factor,
        1.0,
        "other providers of the IP are unaffected"
    );
    assert_eq!(b.usage(c, "yahoo", t).factor, 1.0, "other IPs are unaffected");
    // Yahoo day 1: 14 per hour, one per 257 s; slowed to 7 per hour, one per 514 s.
    assert_eq!(b.try_take(a, "yahoo", t), Ok(()));
    let slowed = b.try_take(a, "yahoo", t).expect_err("limited");
    assert_eq!(slowed.reason, WaitReason::Backoff);
    assert_eq!(slowed.until.duration_since(t).map(|d| d.as_secs()).ok(), Some(3600 / 7));
    assert_eq!(b.try_take(c, "yahoo", t), Ok(()));
    let normal = b.try_take(c, "yahoo", t).expect_err("limited");
    assert_eq!(normal.reason, WaitReason::Rate);
    assert_eq!(
        normal.until.duration_since(t).map(|d| d.as_secs()).ok(),
        Some(3600 / 14)
    );
    // The rule holds 30 minutes; quiet for 10 minutes after that, the factor is back to 1.
    assert_eq!(b.usage(a, "yahoo", t + 29 * MIN).factor, 0.5);
    assert_eq!(b.usage(a, "yahoo", t + 30 * MIN).factor, 1.0);
    // A reply no rule matches changes nothing.
    assert_eq!(b.observe(a, "gmail", Some(550), Some("5.1.1"), "user unknown", t), None);
}

#[test]
fn a_suspend_rule_holds_the_pair_until_its_time() {
    let (a, c) = (ip(2), ip(3));
    let mut b = budgets(standard(), &[a]);
    let t = t0() + 5 * MIN;
    let tss09 = "[TSS09] All messages from 127.0.0.2 will be permanently deferred";
    assert!(matches!(
        b.observe(a, "yahoo", Some(421), Some("4.7.0"), tss09, t),
        Some(BackoffAction::Suspend { .. })
    ));
    let held = Wait {
        until: t + HOUR,
        reason: WaitReason::Suspended,
    };
    assert_eq!(b.try_take(a, "yahoo", t + MIN), Err(held));
    assert_eq!(
        b.try_take(a, "gmail", t + MIN),
        Ok(()),
        "the IP still sends to other providers"
    );
    assert_eq!(
        b.choose(&[a, c], "yahoo", t + MIN),
        Ok(1),
        "a warm IP in the pool takes the traffic"
    );
    assert_eq!(b.try_take(a, "yahoo", t + HOUR), Ok(()), "the suspension ends on time");
}

#[test]
fn backoff_slows_a_warm_ip_with_a_configured_rate() {
    let a = ip(2);
    let mut b = budgets(standard(), &[]);
    b.set_warm_rate(a, "100/s".parse().expect("rate"));
    let t = t0();
    for _ in 0..1000 {
        assert_eq!(b.try_take(a, "other", t), Ok(()), "warm and not slowed: no limit here");
    }
    b.observe(a, "other", Some(421), None, "Too many connections from your IP", t);
    // Slowed to 50/s: a burst of 50, then one per 20 ms.
    let (sent, wait) = send_until(&mut b, a, "other", t, &[WaitReason::Backoff]);
    assert_eq!(sent, 50);
    assert_eq!(wait.until.duration_since(t).ok(), Some(Duration::from_millis(20)));
}
