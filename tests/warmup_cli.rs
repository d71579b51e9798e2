//! `volley warmup show|plot` and `volley plan` as an operator uses them: a config with two IPs
//! warming up on a tiny curve (in the config's curves folder) and a warm one, the warm-up clock
//! set to day 2, every domain routed to an unused loopback port (no DNS, nothing sent).

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::{free_port as unused_port, text, volley, write};

/// Day 1: gmail 100/day, yahoo 50/day; day 2: gmail 200/day (100/h), yahoo 100/day (50/h).
const TINY: &str = r#"
name = "tiny"
last_day = 5
[[day]]
day = 1
gmail = { daily = 100, hourly = 50 }
microsoft = { daily = 100, hourly = 50 }
yahoo = { daily = 50, hourly = 25 }
other = { daily = 100, hourly = 50 }
[[day]]
day = 2
gmail = { daily = 200, hourly = 100 }
yahoo = { daily = 100, hourly = 50 }
"#;

/// A temp dir with volley.toml (two warming IPs in pool `default`, a warm one in pool
/// `bulk`) and curves/tiny.toml; the warm-up clock starts on day 2 of the warm-up.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("curves")).expect("curves dir");
    write(&dir.path().join("curves"), "tiny.toml", TINY);
    let config = format!(
        r#"
state_dir = "state"
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2.volley.test"
warmup = "tiny"
warmup_start = "2026-11-01"
[[source_ips]]
address = "127.0.0.3"
ehlo_name = "mta3.volley.test"
warmup = "tiny"
warmup_start = "2026-11-01"
[[source_ips]]
address = "127.0.0.4"
ehlo_name = "mta4.volley.test"
pool = "bulk"
warm = true
[routes]
"*" = "127.0.0.1:{}"
[warmup]
curves_dir = "curves"
clock_start = "2026-11-02T00:00:00Z"
"#,
        unused_port()
    );
    let path = write(dir.path(), "volley.toml", &config);
    (dir, path)
}

/// A campaign `c.toml` in `dir` with `gmail` gmail.com and `yahoo` yahoo.com recipients, and
/// a bad row between them when `bad`.
fn campaign(dir: &Path, gmail: u32, yahoo: u32, bad: bool) -> PathBuf {
    let mut csv = String::from("email,first_name\n");
    for i in 0..gmail {
        csv.push_str(&format!("user{i}@gmail.com,U\n"));
    }
    if bad {
        csv.push_str("not an address,X\n");
    }
    for i in 0..yahoo {
        csv.push_str(&format!("user{i}@yahoo.com,U\n"));
    }
    write(dir, "r.csv", &csv);
    let toml = "id = \"plan-test\"\nfrom = \"News <news@sender.volley.test>\"\nsubject = \"Hi\"\n\
                text = \"Hello\"\nrecipients = \"r.csv\"\n";
    write(dir, "c.toml", toml)
}

fn run(args: &[&str], config: &Path) -> Output {
    volley()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run volley")
}

#[test]
fn show_prints_a_warming_ips_day_caps_and_usage() {
    let (_dir, config) = setup();
    let out = run(&["warmup", "show", "127.0.0.2"], &config);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("127.0.0.2 (pool default): curve tiny, day 2 of 5 (started 2026-11-01)"),
        "{t}"
    );
    assert!(
        t.contains("daily cap 200, hourly cap 100; used today 0, this hour 0"),
        "{t}"
    );
    assert!(t.contains("daily cap 100, hourly cap 50; used today 0"), "{t}");
    assert!(!t.contains("127.0.0.3"), "{t}");

    let out = run(&["warmup", "show", "127.0.0.2", "--json"], &config);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v[0]["status"], "warming", "{v}");
    assert_eq!(v[0]["day"], 2, "{v}");
    let gmail = &v[0]["providers"][0];
    assert_eq!(
        (
            &gmail["provider"],
            &gmail["daily"],
            &gmail["hourly"],
            &gmail["used_today"]
        ),
        (&"gmail".into(), &200.into(), &100.into(), &0.into()),
        "{v}"
    );
}

#[test]
fn show_of_a_pool_lists_its_ips_only() {
    let (_dir, config) = setup();
    let out = run(&["warmup", "show", "default"], &config);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("127.0.0.2 (pool default)") && t.contains("127.0.0.3 (pool default)"),
        "{t}"
    );
    assert!(!t.contains("127.0.0.4"), "{t}");
    let out = run(&["warmup", "show", "bulk"], &config);
    let t = text(&out);
    assert!(t.contains("127.0.0.4 (pool bulk): warm") && t.contains("no cap"), "{t}");
}

#[test]
fn show_of_an_unknown_ip_or_pool_lists_what_exists() {
    let (_dir, config) = setup();
    for target in ["10.9.9.9", "nope"] {
        let out = run(&["warmup", "show", target], &config);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(
            t.contains(&format!("no source IP or pool named `{target}`"))
                && t.contains("127.0.0.2, 127.0.0.3, 127.0.0.4")
                && t.contains("pools: bulk, default"),
            "{t}"
        );
    }
}

#[test]
fn plot_writes_an_svg_with_the_curve_providers_and_ips() {
    let (dir, config) = setup();
    let svg = dir.path().join("warmup.svg");
    let out = volley()
        .args(["warmup", "plot", "--out"])
        .arg(&svg)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run volley");
    assert!(out.status.success(), "{}", text(&out));
    let body = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        body.starts_with("<svg") && body.trim_end().ends_with("</svg>"),
        "{body}"
    );
    for needle in [
        "curve tiny",
        "gmail",
        "microsoft",
        "yahoo",
        "other",
        "127.0.0.2",
        "127.0.0.3",
    ] {
        assert!(body.contains(needle), "{needle} missing from the SVG");
    }
}

#[test]
fn plan_predicts_finish_days_and_the_ip_split() {
    let (dir, config) = setup();
    let campaign = campaign(dir.path(), 600, 300, true);
    let campaign = campaign.to_str().expect("utf-8 path");

    let out = run(&["plan", campaign, "--json"], &config);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (&v["rows"], &v["rejected"], &v["domains"]),
        (&901.into(), &1.into(), &2.into()),
        "{v}"
    );
    let provider = |name: &str| {
        v["providers"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["provider"] == name))
            .cloned()
            .unwrap_or_default()
    };
    // Day 2 (2026-11-02): 200 gmail and 100 yahoo per IP; day 3 the rest, split evenly.
    for (name, recipients, per_day, per_ip) in [("gmail", 600, [400, 200], 300), ("yahoo", 300, [200, 100], 150)] {
        let p = provider(name);
        assert_eq!(p["recipients"], recipients, "{p}");
        assert!(
            p["finish"].as_str().is_some_and(|f| f.starts_with("2026-11-03T")),
            "{p}"
        );
        assert_eq!(p["held_by"], "daily cap", "{p}");
        let days: Vec<u64> = p["periods"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["sent"].as_u64()).collect())
            .unwrap_or_default();
        assert_eq!(days, per_day, "{p}");
        assert_eq!(p["periods"][1]["start"], "2026-11-03T00:00:00Z", "{p}");
        let split: Vec<(String, u64)> = p["per_ip"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["ip"].as_str().unwrap_or("").to_string(),
                            s["sent"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            split,
            [("127.0.0.2".to_string(), per_ip), ("127.0.0.3".to_string(), per_ip)],
            "{p}"
        );
    }

    let out = run(&["plan", campaign], &config);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("900 in 2 domain(s); 1 rejected row(s)"), "{t}");
    assert!(t.contains("gmail: 600 recipient(s), done 2026-11-03T"), "{t}");
    assert!(t.contains("yahoo: 300 recipient(s), done 2026-11-03T"), "{t}");
    assert!(t.contains("per IP: 127.0.0.2 300, 127.0.0.3 300"), "{t}");
    assert!(
        t.contains("2026-11-02T00:00:00Z: 400 (127.0.0.2 200, 127.0.0.3 200)"),
        "{t}"
    );
}

#[test]
fn usage_recorded_in_the_counter_store_is_shown_and_planned_around() {
    use volley_warmup::counters::Window;
    use volley_warmup::{CounterStore, FileCounterStore};
    let (dir, config) = setup();
    let today = humantime::parse_rfc3339("2026-11-02T00:00:00Z").expect("time");
    {
        let mut store = FileCounterStore::open(&dir.path().join("state"), std::time::Duration::from_secs(5))
            .expect("counter store");
        let ip = "127.0.0.2".parse().expect("ip");
        store.add(ip, "gmail", Window::of(today), 42).expect("add");
        store.flush(today, true).expect("flush");
    }
    let out = run(&["warmup", "show", "127.0.0.2"], &config);
    let t = text(&out);
    assert!(
        t.contains("daily cap 200, hourly cap 100; used today 42, this hour 42"),
        "{t}"
    );

    let campaign = campaign(dir.path(), 600, 0, false);
    let out = run(&["plan", campaign.to_str().expect("utf-8 path")], &config);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // 127.0.0.2 has 158 of its 200 left on day 2.
    assert!(
        t.contains("2026-11-02T00:00:00Z: 358 (127.0.0.2 158, 127.0.0.3 200)"),
        "{t}"
    );
}

/// Regression (issue 17): the estimate counted every recipient of the file again after a
/// resume, where a rerun skips those earlier runs finished.
#[test]
fn plan_leaves_out_what_earlier_runs_finished() {
    let (dir, config) = setup();
    let campaign = campaign(dir.path(), 600, 300, false);
    // What a run left in the state directory: the pinned recipient file and its accounting
    // log (lines 2-101 gmail delivered, 602 yahoo bounced, 603 yahoo deferred, and a last line
    // cut short by a kill, being written).
    let state = dir.path().join("state").join("plan-test");
    std::fs::create_dir_all(&state).expect("state dir");
    let recipients = dir.path().join("r.csv");
    let meta = std::fs::metadata(&recipients).expect("recipients");
    let modified_ns = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let pin = serde_json::json!({"recipients": recipients, "size": meta.len(), "modified_ns": modified_ns});
    write(&state, "campaign.json", &pin.to_string());
    let record = |line: u64, outcome: &str| {
        format!(
            "{{\"ts\":\"2026-11-02T00:00:00Z\",\"campaign\":\"plan-test\",\"recipient\":\"x\",\"domain\":\"x\",\"outcome\":\"{outcome}\",\"attempt\":1,\"line\":{line}}}\n"
        )
    };
    let mut log: String = (2..=101).map(|line| record(line, "delivered")).collect();
    log.push_str(&record(602, "bounced"));
    log.push_str(&record(603, "deferred"));
    log.push_str("{\"ts\":\"2026-11-02T00:00:01Z\",\"outcome\":\"deliv");
    write(&state, "accounting.jsonl", &log);

    let out = run(&["plan", campaign.to_str().expect("utf-8 path"), "--json"], &config);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["finished"], 101, "{v}");
    let recipients = |name: &str| {
        v["providers"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["provider"] == name))
            .map(|p| p["recipients"].clone())
    };
    assert_eq!(recipients("gmail"), Some(500.into()), "{v}");
    assert_eq!(recipients("yahoo"), Some(299.into()), "{v}");
    // Read-only: the partial line is still there for the run that writes it.
    let after = std::fs::read_to_string(state.join("accounting.jsonl")).expect("log");
    assert_eq!(after, log);

    let out = run(&["plan", campaign.to_str().expect("utf-8 path")], &config);
    assert!(
        text(&out).contains("earlier runs finished 101 recipient(s)"),
        "{}",
        text(&out)
    );
}

/// The points of every `<polyline>` in `svg`.
fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .filter_map(|e| {
            let points = e.split_once(" points=\"")?.1.split('"').next()?;
            Some(
                points
                    .split_whitespace()
                    .filter_map(|p| {
                        let (x, y) = p.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect(),
            )
        })
        .collect()
}

/// `(x, text)` of every `<text>` in `svg`.
fn texts(svg: &str) -> Vec<(f64, String)> {
    svg.split("<text")
        .skip(1)
        .filter_map(|e| {
            let x = e.split_once(" x=\"")?.1.split('"').next()?.parse().ok()?;
            let content = e.split_once('>')?.1.split('<').next()?.trim().to_string();
            Some((x, content))
        })
        .collect()
}

#[test]
fn plot_is_log_scaled_stepped_with_separators_and_a_legend_clear_of_the_day_marker() {
    // The shipped standard curve (30 days, 100/day to millions/day); 127.0.0.2 is on day 5.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "volley.toml",
        "state_dir = \"state\"\n\
         [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
         warmup = \"standard\"\nwarmup_start = \"2026-11-29\"\n\
         [warmup]\nclock_start = \"2026-12-03T12:00:00Z\"\n",
    );
    let svg_path = dir.path().join("warmup.svg");
    let out = run(&["warmup", "plot", "--out", svg_path.to_str().expect("utf-8")], &config);
    assert!(out.status.success(), "{}", text(&out));
    let svg = std::fs::read_to_string(&svg_path).expect("svg");
    let labels = texts(&svg);
    let has = |t: &str| labels.iter().any(|(_, l)| l == t);

    // A log axis labelled with thousands separators: every decade from 100 to 100,000.
    for tick in ["100", "1,000", "10,000", "100,000"] {
        assert!(has(tick), "tick {tick} in {labels:?}");
    }
    assert!(has("messages per day (log)"));

    // Step lines: each provider's series alternates flat and vertical segments.
    let lines = polylines(&svg);
    let series: Vec<&Vec<(f64, f64)>> = lines.iter().filter(|p| p.len() >= 60).collect();
    assert!(series.len() >= 4, "a series per provider group: {}", series.len());
    for points in &series {
        for (i, w) in points.windows(2).enumerate() {
            let (flat, riser) = (w[0].1 == w[1].1, w[0].0 == w[1].0);
            assert!(if i % 2 == 0 { flat } else { riser }, "segment {i} of {points:?}");
        }
        // Day 1's cap is not flattened to the axis: it is well above the plot's bottom.
        let bottom = points.iter().map(|p| p.1).fold(0.0, f64::max);
        let top = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        assert!(bottom - top > 150.0, "the curve spans the height: {top}..{bottom}");
    }

    // The day marker of 127.0.0.2 is a vertical line; the legend is right of it and of every
    // series.
    let marker_x = lines
        .iter()
        .find(|p| p.len() == 2 && p[0].0 == p[1].0)
        .map(|p| p[0].0)
        .expect("day marker");
    let plot_right = series.iter().flat_map(|p| p.iter().map(|q| q.0)).fold(0.0, f64::max);
    let (legend_x, _) = labels
        .iter()
        .find(|(_, l)| l == "127.0.0.2: day 5")
        .expect("legend entry for the IP");
    assert!(
        *legend_x > plot_right && *legend_x > marker_x,
        "legend at {legend_x}, plot to {plot_right}"
    );
    for provider in ["gmail", "microsoft", "yahoo", "other"] {
        let (x, _) = labels
            .iter()
            .find(|(_, l)| l == provider)
            .expect("provider in the legend");
        assert!(*x > plot_right, "{provider} legend at {x}");
    }
}
