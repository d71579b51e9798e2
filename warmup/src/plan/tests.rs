use std::path::Path;

use super::*;
use crate::curve::Curve;
use crate::day::UtcDay;

/// Day 1: 100/day for every group (50/h); from day 2 gmail gets 200/day (100/h); warm after
/// day 10.
const TINY: &str = r#"
name = "tiny"
last_day = 10
[[day]]
day = 1
gmail = { daily = 100, hourly = 50 }
other = { daily = 100, hourly = 50 }
[[day]]
day = 2
gmail = { daily = 200, hourly = 100 }
"#;

fn curves() -> CurveSet {
    let mut set = CurveSet::default();
    set.insert(Curve::parse(TINY, Path::new("tiny.toml")).expect("curve"));
    set
}

fn day1() -> UtcDay {
    "2026-11-01".parse().expect("date")
}

fn warming(ip: &str) -> PlanIp {
    PlanIp {
        ip: ip.parse().expect("ip"),
        state: WarmupState::Warming {
            curve: "tiny".into(),
            start: day1(),
        },
        rate: None,
        weight: 1,
    }
}

fn warm(ip: &str, rate: Option<&str>) -> PlanIp {
    PlanIp {
        ip: ip.parse().expect("ip"),
        state: WarmupState::Warm,
        rate: rate.map(|r| r.parse().expect("rate")),
        weight: 1,
    }
}

fn input(ips: Vec<PlanIp>, recipients: &[(&str, u64)]) -> PlanInput {
    let recipients = recipients.iter().map(|(p, n)| (p.to_string(), *n)).collect();
    PlanInput::new(ips, curves(), recipients, day1().start())
}

fn provider<'a>(plan: &'a Plan, name: &str) -> &'a ProviderPlan {
    plan.providers
        .iter()
        .find(|p| p.provider == name)
        .expect("provider planned")
}

/// (day number from day1, [(ip, sent)]) per period.
fn days(p: &ProviderPlan) -> Vec<(u32, Vec<(String, u64)>)> {
    p.periods
        .iter()
        .map(|period| {
            let day = UtcDay::of(period.start).days() - day1().days();
            let ips = period.per_ip.iter().map(|s| (s.ip.to_string(), s.sent)).collect();
            (day, ips)
        })
        .collect()
}

fn shares(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(ip, n)| (ip.to_string(), *n)).collect()
}

#[test]
fn a_capped_ip_overflows_to_the_next_and_days_follow_the_curve() {
    // A already sent its day-1 gmail cap: B carries day 1's share; on day 2 both send their
    // (doubled) cap.
    let mut input = input(
        vec![warming("10.0.0.1"), warming("10.0.0.2")],
        &[("gmail", 500), ("yahoo", 150)],
    );
    input.used_today.insert(
        ("10.0.0.1".parse().expect("ip"), "gmail".into()),
        Counts { day: 100, hour: 100 },
    );
    let plan = plan(&input).expect("plan");
    let gmail = provider(&plan, "gmail");
    assert_eq!(
        days(gmail),
        vec![
            (0, shares(&[("10.0.0.2", 100)])),
            (1, shares(&[("10.0.0.1", 200), ("10.0.0.2", 200)])),
        ]
    );
    assert_eq!(gmail.sent, 500);
    let finish = gmail.finish.expect("gmail finishes");
    assert_eq!(UtcDay::of(finish), day1().next());
    assert_eq!(gmail.held_by, Some("daily cap"));
    assert_eq!((gmail.at_once, gmail.waiting), (1, 499));
    // yahoo is not in the curve: it gets "other"'s caps (100/day, 50/h per IP); both IPs pace
    // it, so 150 go on day 1, spread by the smoothing limiters.
    let yahoo = provider(&plan, "yahoo");
    assert_eq!(yahoo.periods.len(), 1);
    assert_eq!(yahoo.periods[0].sent, 150);
    assert_eq!(yahoo.per_ip.len(), 2);
    assert_eq!(yahoo.held_by, Some("rate"));
}

#[test]
fn all_ips_capped_finish_on_the_day_arithmetic_says() {
    // "other" stays at 100/day per IP: 2 IPs send 200/day, so 1000 take 5 days.
    let plan = plan(&input(
        vec![warming("10.0.0.1"), warming("10.0.0.2")],
        &[("other", 1000)],
    ))
    .expect("plan");
    let other = provider(&plan, "other");
    let finish = other.finish.expect("finishes");
    assert_eq!(UtcDay::of(finish).days() - day1().days(), 4);
    assert!(other.periods.iter().all(|p| p.sent == 200), "{:?}", other.periods);
    assert_eq!(other.periods.len(), 5);
    // 50/h per IP: the last day's 100 per IP need two hours.
    let into_day = finish.duration_since(UtcDay::of(finish).start()).unwrap_or_default();
    assert!(
        into_day > Duration::from_secs(6_000) && into_day <= Duration::from_secs(7_200),
        "{into_day:?}"
    );
}

#[test]
fn counts_used_today_reduce_todays_budget() {
    let mut input = input(vec![warming("10.0.0.1")], &[("gmail", 150)]);
    input.used_today.insert(
        ("10.0.0.1".parse().expect("ip"), "gmail".into()),
        Counts { day: 60, hour: 10 },
    );
    let plan = plan(&input).expect("plan");
    let gmail = provider(&plan, "gmail");
    assert_eq!(
        days(gmail),
        vec![(0, shares(&[("10.0.0.1", 40)])), (1, shares(&[("10.0.0.1", 110)]))]
    );
}

#[test]
fn a_warm_ip_without_a_rate_takes_everything_at_the_start() {
    let plan = plan(&input(
        vec![warming("10.0.0.1"), warm("10.0.0.9", None)],
        &[("gmail", 100_000)],
    ))
    .expect("plan");
    let gmail = provider(&plan, "gmail");
    assert_eq!(gmail.finish, Some(day1().start()));
    assert_eq!(gmail.finish_after_s, Some(0.0));
    assert_eq!((gmail.at_once, gmail.waiting, gmail.held_by), (100_000, 0, None));
    // The warming IP takes its minute's burst first (50/h: one message), the warm IP the rest.
    assert_eq!(
        gmail.per_ip,
        vec![
            IpShare {
                ip: "10.0.0.1".parse().expect("ip"),
                sent: 1
            },
            IpShare {
                ip: "10.0.0.9".parse().expect("ip"),
                sent: 99_999
            },
        ]
    );
}

fn per_ip(p: &ProviderPlan) -> Vec<(String, u64)> {
    p.per_ip.iter().map(|s| (s.ip.to_string(), s.sent)).collect()
}

/// Regression (issue 17): the first warm IP of the pool took everything ("6,009 for one IP")
/// where a run takes turns by weight.
#[test]
fn warm_ips_take_turns_by_weight() {
    let mut light = warm("10.0.0.8", None);
    light.weight = 1;
    let mut heavy = warm("10.0.0.9", None);
    heavy.weight = 3;
    let plan = plan(&input(vec![light, heavy], &[("gmail", 10_000)])).expect("plan");
    let gmail = provider(&plan, "gmail");
    assert_eq!(per_ip(gmail), shares(&[("10.0.0.8", 2_500), ("10.0.0.9", 7_500)]));
    assert_eq!((gmail.at_once, gmail.finish_after_s), (10_000, Some(0.0)));
}

/// Regression (issue 17): with warm and warming IPs, each takes its turn as in a run; a
/// warming IP's turn, once its budget is spent, goes to the next IP in the pool's order.
#[test]
fn warm_and_warming_ips_take_turns_and_spent_turns_overflow_in_order() {
    let plan = plan(&input(
        vec![warm("10.0.0.8", None), warm("10.0.0.9", None), warming("10.0.0.1")],
        &[("gmail", 9_001)],
    ))
    .expect("plan");
    let gmail = provider(&plan, "gmail");
    // Turns .8 .9 .1 .8 .9 .1…: .1 takes its minute's burst (one message), then its turns go
    // to .8.
    assert_eq!(
        per_ip(gmail),
        shares(&[("10.0.0.8", 6_000), ("10.0.0.9", 3_000), ("10.0.0.1", 1)])
    );
    assert_eq!(gmail.sent, 9_001);
}

/// An IP of weight 0 takes no turn (as in a run); a pool of only those cannot be planned.
#[test]
fn an_ip_of_weight_zero_takes_nothing() {
    let mut idle = warm("10.0.0.7", None);
    idle.weight = 0;
    let plan = plan(&input(vec![idle.clone(), warm("10.0.0.8", None)], &[("gmail", 100)])).expect("plan");
    assert_eq!(per_ip(provider(&plan, "gmail")), shares(&[("10.0.0.8", 100)]));
    assert!(matches!(
        super::plan(&input(vec![idle], &[("gmail", 1)])),
        Err(PlanError::NoIp)
    ));
}

#[test]
fn a_warm_ip_with_a_rate_sends_at_that_rate_across_providers() {
    // 10/s shared by two groups: a second's burst of 10, then one per 100 ms; 200 messages
    // end 19 s after the start.
    let plan = plan(&input(
        vec![warm("10.0.0.9", Some("10/s"))],
        &[("gmail", 100), ("other", 100)],
    ))
    .expect("plan");
    let last = plan
        .providers
        .iter()
        .filter_map(|p| p.finish_after_s)
        .fold(0.0, f64::max);
    assert!((last - 19.0).abs() < 0.01, "{last}");
    assert!(plan
        .providers
        .iter()
        .all(|p| p.sent == 100 && p.held_by == Some("rate")));
}

#[test]
fn a_warming_ips_own_rate_paces_it_below_its_curve() {
    // "other" allows 100/day at 50/h, the IP's rate 2/h: 48 a day (one at once, then one per
    // 30 minutes).
    let mut ip = warming("10.0.0.1");
    ip.rate = Some("2/h".parse().expect("rate"));
    let plan = plan(&input(vec![ip], &[("other", 96)])).expect("plan");
    let other = provider(&plan, "other");
    assert_eq!(other.periods.iter().map(|p| p.sent).collect::<Vec<_>>(), [48, 48]);
    assert_eq!(other.held_by, Some("rate"));
}

#[test]
fn a_plan_that_would_never_end_stops_after_max_days() {
    let mut input = input(vec![warming("10.0.0.1")], &[("other", 100_000)]);
    input.max_days = 3;
    // The tiny curve ends after day 10; with 3 days simulated the IP never gets warm.
    let plan = plan(&input).expect("plan");
    let other = provider(&plan, "other");
    assert_eq!((other.finish, other.finish_after_s, other.sent), (None, None, 300));
    assert_eq!(other.periods.len(), 3);
}

#[test]
fn an_empty_pool_or_an_unknown_curve_is_refused() {
    assert!(matches!(plan(&input(vec![], &[("gmail", 1)])), Err(PlanError::NoIp)));
    let mut ip = warming("10.0.0.1");
    ip.state = WarmupState::Warming {
        curve: "turbo".into(),
        start: day1(),
    };
    let e = plan(&input(vec![ip], &[("gmail", 1)])).err().map(|e| e.to_string());
    assert!(e.as_deref().is_some_and(|e| e.contains("turbo")), "{e:?}");
}

#[test]
fn the_plan_serialises_with_rfc3339_times() {
    let plan = plan(&input(vec![warming("10.0.0.1")], &[("gmail", 150)])).expect("plan");
    let json = serde_json::to_value(&plan).expect("json");
    assert_eq!(json["start"], "2026-11-01T00:00:00Z");
    assert_eq!(json["every_s"], 86_400);
    assert_eq!(json["providers"][0]["provider"], "gmail");
    assert_eq!(json["providers"][0]["periods"][1]["start"], "2026-11-02T00:00:00Z");
    assert_eq!(json["providers"][0]["per_ip"][0]["ip"], "10.0.0.1");
}
