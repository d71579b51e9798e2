//! `volley suppress` as an operator uses it on the embedded store: add, check, import,
//! export and remove, with what each prints and its exit code.

mod common;

use common::{text, volley, write};

/// `volley suppress` against a fresh embedded store in `dir`; the command's output.
fn suppress(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let config = write(
        dir,
        "volley.toml",
        "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n",
    );
    volley()
        .arg("suppress")
        .args(args)
        .arg("--config")
        .arg(&config)
        .output()
        .expect("volley suppress")
}

/// Regression (issue 17): removing an address that was never on the list printed "removed 1
/// address(es)" and exited 0, where the API answers 404.
#[test]
fn suppress_remove_reports_what_was_actually_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = suppress(dir.path(), &["add", "a@example.test"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = suppress(dir.path(), &["remove", "never@example.test"]);
    assert_eq!(o.status.code(), Some(1), "nothing was removed: {}", text(&o));
    assert!(text(&o).contains("removed 0 of 1"), "{}", text(&o));
    assert!(text(&o).contains("not in `global`: never@example.test"), "{}", text(&o));

    let o = suppress(dir.path(), &["remove", "A@example.test", "never@example.test"]);
    assert_eq!(o.status.code(), Some(1), "one was not there: {}", text(&o));
    assert!(text(&o).contains("removed 1 of 2"), "{}", text(&o));
    assert!(text(&o).contains("not in `global`: never@example.test"), "{}", text(&o));
    // It is gone, and removing it again removes nothing.
    assert_eq!(
        suppress(dir.path(), &["check", "a@example.test"]).status.code(),
        Some(0)
    );
    let o = suppress(dir.path(), &["remove", "a@example.test"]);
    assert!(text(&o).contains("removed 0 of 1"), "{}", text(&o));

    // In a list scope: the address is in `news`, not in `global`.
    assert!(suppress(dir.path(), &["add", "b@example.test", "--list", "news"])
        .status
        .success());
    let o = suppress(dir.path(), &["remove", "b@example.test"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = suppress(dir.path(), &["remove", "b@example.test", "--list", "news"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("removed 1 of 1 address(es) from `news`"),
        "{}",
        text(&o)
    );
}

/// Issue 17: `check` and `export` show when an address was suppressed as RFC 3339 times (the
/// unix seconds stay), `check` names the list in `list` like the API (and `scope` as before),
/// and `--scope` is accepted for `--list`.
#[test]
fn suppress_check_and_export_show_rfc3339_times_and_the_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(suppress(dir.path(), &["add", "a@example.test", "--scope", "news"])
        .status
        .success());
    let o = suppress(dir.path(), &["check", "a@example.test", "--list", "news"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
    assert_eq!(
        (&line["list"], &line["scope"]),
        (&"news".into(), &"news".into()),
        "{line}"
    );
    let first = line["entry"]["first"].as_u64().expect("unix seconds");
    let first_at = line["entry"]["first_at"].as_str().expect("RFC 3339");
    let parsed = humantime::parse_rfc3339(first_at).expect("RFC 3339");
    assert_eq!(
        parsed.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).ok(),
        Some(first),
        "{line}"
    );
    assert!(
        line["entry"]["last_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );

    let o = suppress(dir.path(), &["export", "--list", "news"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = String::from_utf8_lossy(&o.stdout).to_string();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("address,scope,reason,code,enhanced,category,first,last,count,source,first_at,last_at"),
        "{csv}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(
        row.ends_with(&format!(
            ",{first_at},{}",
            line["entry"]["last_at"].as_str().unwrap_or("?")
        )),
        "{csv}"
    );
    // An export imports back (the time columns are informational).
    let exported = write(dir.path(), "export.csv", &csv);
    let o = suppress(dir.path(), &["import", exported.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn suppress_add_check_import_export_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| suppress(dir.path(), args);
    let o = run(&["add", "A@Example.test", "b@example.test", "--reason", "complaint"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = run(&["check", "a@example.test", "c@example.test"]);
    assert_eq!(o.status.code(), Some(1), "a suppressed address was found: {}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["suppressed"], true);
    assert_eq!(lines[0]["entry"]["reason"], "complaint");
    assert_eq!(lines[1]["suppressed"], false);

    // A list scope: only checks that name the list see it.
    let csv = write(
        dir.path(),
        "unsubs.csv",
        "email,reason\nc@example.test,unsubscribed\nnot-an-address,x\n",
    );
    let o = run(&["import", csv.to_str().expect("path"), "--list", "news"]);
    assert_eq!(o.status.code(), Some(1), "a row was refused: {}", text(&o));
    assert!(
        text(&o).contains("unsubs.csv:3") && text(&o).contains("imported 1"),
        "{}",
        text(&o)
    );
    assert_eq!(run(&["check", "c@example.test"]).status.code(), Some(0));
    assert_eq!(
        run(&["check", "c@example.test", "--list", "news"]).status.code(),
        Some(1)
    );

    let out = dir.path().join("export.csv");
    let o = run(&["export", "--out", out.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o));
    let exported = std::fs::read_to_string(&out).expect("export");
    assert!(exported.starts_with("address,scope,reason"), "{exported}");
    assert_eq!(exported.lines().count(), 3, "header + a + b: {exported}");

    let o = run(&["remove", "a@example.test"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(run(&["check", "a@example.test"]).status.code(), Some(0));

    let o = run(&["add", "no-at-sign"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no-at-sign"), "{}", text(&o));
}
