//! `volley report` and the HTML report `volley demo --dir` writes: charts and tables from a real
//! accounting log, log text escaped, malformed lines named, and the page rendered by headless
//! Chromium (Debian's `chromium`, which `scripts/test.sh` installs).

use std::path::Path;
use std::process::Command;

mod common;

use common::{text, volley, write};

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(args: &[&str], page: &Path) -> std::process::Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does)"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium")
}

#[test]
fn the_demo_writes_a_report_that_chromium_renders_with_every_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = volley()
        .args(["demo", "--recipients", "3000", "--domains", "40", "--dir"])
        .arg(dir.path())
        .output()
        .expect("volley demo");
    assert!(o.status.success(), "{}", text(&o));
    let page = dir.path().join("state/demo/report.html");
    assert!(
        text(&o).contains(&format!("HTML report:    {}", page.display())),
        "{}",
        text(&o)
    );
    let html = std::fs::read_to_string(&page).expect("report.html");
    for section in [
        "Throughput over time",
        "Per provider group",
        "Per source IP",
        "Warm-up budget use",
        "Delivery latency",
        "Busiest domains (top 50 of 40)",
    ] {
        assert!(html.contains(section), "section {section:?} missing");
    }
    assert!(html.contains("<td>3000</td>"), "3000 deliveries in the campaign row");
    let charts = html.matches("<svg").count();
    assert!(charts >= 4, "{charts} charts");

    // `volley report` on the same log writes the same page elsewhere.
    let log = dir.path().join("state/demo/accounting.jsonl");
    let again = dir.path().join("again.html");
    let o = volley()
        .arg("report")
        .arg(&log)
        .arg("--out")
        .arg(&again)
        .output()
        .expect("volley report");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("3000 final outcomes"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&again)
            .expect("again.html")
            .matches("<svg")
            .count(),
        charts
    );

    // Rendered by a real browser: the DOM it built has every chart, and a screenshot is made.
    let o = chromium(&["--dump-dom"], &page);
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "chromium failed: {}", text(&o));
    assert_eq!(
        dom.matches("<svg").count(),
        charts,
        "every chart is in the rendered DOM"
    );
    assert!(dom.contains("Throughput over time"));
    let shot = dir.path().join("report.png");
    let o = chromium(
        &["--window-size=1100,4000", &format!("--screenshot={}", shot.display())],
        &page,
    );
    assert!(o.status.success(), "chromium failed: {}", text(&o));
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} bytes", png.len());
}

#[test]
fn log_text_is_escaped_and_malformed_lines_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = |domain: &str, outcome: &str, category: &str| {
        format!(
            r#"{{"ts":"2026-12-01T10:00:00Z","campaign":"c<i>","recipient":"a@x","domain":"{domain}","source_ip":"127.0.0.2","site":"s","provider":"other","outcome":"{outcome}","code":550,"category":"{category}","attempt":1,"latency_ms":5,"text":"x"}}"#
        )
    };
    let log = write(
        dir.path(),
        "accounting.jsonl",
        &[
            record("ok.test", "delivered", "delivered"),
            record(
                "<script>alert(1)</script>.test",
                "bounced",
                "<img src=x onerror=alert(2)>",
            ),
            "{ not json".to_string(),
            String::new(),
        ]
        .join("\n"),
    );
    let out = dir.path().join("r.html");
    let o = volley()
        .arg("report")
        .arg(&log)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("volley report");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("1 line(s) skipped, the first is line 3"),
        "{}",
        text(&o)
    );
    let html = std::fs::read_to_string(&out).expect("report");
    assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<i>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.test"));
    assert!(html.contains("the first is line 3"));

    let o = volley()
        .arg("report")
        .arg(dir.path().join("missing.jsonl"))
        .output()
        .expect("volley report");
    assert!(!o.status.success());
    assert!(text(&o).contains("missing.jsonl"), "{}", text(&o));
}
