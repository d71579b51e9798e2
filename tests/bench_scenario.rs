//! `volley-bench run` end to end: a small scenario (2,000 recipients over the default domain
//! mix, 2 source IPs, 5% RCPT tempfails retried after 1 s) against a real `volley sink` child
//! and a real `volley send` child of this build; the figures must be sane and consistent.

use std::path::{Path, PathBuf};

use volley_bench::scenario::{run, Overrides, RunOptions, Scenario, ScenarioError};

fn options(keep: Option<PathBuf>) -> RunOptions {
    RunOptions {
        volley: PathBuf::from(env!("CARGO_BIN_EXE_volley")),
        keep,
        scenario_file: PathBuf::from("tests/bench_scenario.rs"),
        verbose: false,
        peer: None,
    }
}

#[test]
fn a_small_scenario_runs_end_to_end_with_sane_figures() {
    let mut scenario = Scenario::builtin().unwrap();
    scenario
        .apply(&Overrides {
            recipients: Some(2_000),
            source_ips: Some(2),
            tempfail: Some(5.0),
            ..Overrides::default()
        })
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let keep = work.path().join("run");
    let report = run(&scenario, &options(Some(keep.clone()))).unwrap_or_else(|e| panic!("{e}"));
    let table = report.render();
    println!("{table}");

    // Every check holds: completed, outcomes add up, one final outcome per recipient in the
    // accounting log, the sink accepted exactly what volley delivered.
    for check in &report.checks {
        assert!(check.ok, "{}: {}", check.name, check.detail);
    }
    assert!(report.ok);
    let s = &report.summary;
    assert_eq!(s.rows, 2_000);
    assert_eq!(s.delivered, 2_000, "tempfails are retried until delivered");
    assert_eq!(report.sink.recipients, s.delivered);
    assert_eq!(report.log.with_final_outcome, 2_000);
    // 5% of RCPT tempfailed: the sink counted them and volley retried them.
    assert!(report.sink.rcpt_tempfails > 0, "{table}");
    assert_eq!(s.deferrals, report.sink.rcpt_tempfails, "{table}");
    assert_eq!(s.retried, s.deferrals, "each deferral was retried");
    // Both source IPs were used.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenario"]["source_ips"], 2);
    assert_eq!(
        std::fs::read_to_string(keep.join("volley.toml"))
            .unwrap()
            .matches("[[source_ips]]")
            .count(),
        2
    );

    // Figures.
    assert!(report.msgs_per_s > 0.0 && report.wall_s > 0.0, "{table}");
    let first = &report.log.from_first_attempt;
    let launch = &report.log.since_launch;
    assert_eq!(first.count, 2_000);
    assert!(
        first.p50_ms <= first.p99_ms && first.p99_ms <= first.max_ms,
        "{first:?}"
    );
    assert!(
        launch.p50_ms <= launch.p99_ms && launch.p99_ms <= launch.max_ms,
        "{launch:?}"
    );
    // A retried recipient waited the 1 s retry: the slowest delivery took at least that.
    assert!(first.max_ms >= 1_000, "{first:?}");
    assert!(
        launch.max_ms as f64 <= report.wall_s * 1000.0 + 1_000.0,
        "{launch:?} vs {} s",
        report.wall_s
    );
    let u = &report.volley_usage;
    assert!(u.cpu_s > 0.0 && u.cpu_s_per_1000_msgs > 0.0, "{u:?}");
    assert!(u.peak_rss_mib > 1.0, "{u:?}");
    assert!(report.sink_usage.cpu_s > 0.0);
    // The mix: 30/15/10/45 of 2,000.
    let groups: Vec<u64> = report.groups.iter().map(|g| g.recipients).collect();
    assert_eq!(groups, [600, 300, 200, 900]);
    assert!(table.contains("msg/s") && table.contains("p99"), "{table}");
    assert!(keep.join("recipients.csv").is_file());
}

#[test]
fn a_missing_volley_binary_is_a_clear_error() {
    let scenario = Scenario::builtin().unwrap();
    let mut opts = options(None);
    opts.volley = Path::new("/nonexistent/volley").to_path_buf();
    let err = run(&scenario, &opts).unwrap_err();
    assert!(matches!(err, ScenarioError::VolleyMissing { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/volley"), "{err}");
}
