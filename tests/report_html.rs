//! `volley report` and the HTML report `volley demo --dir` writes: charts and tables from a real
//! accounting log, log text escaped, malformed lines named, and the page rendered by headless
//! Chromium (Debian's `chromium`, which `scripts/test.sh` installs).

use std::path::Path;
use std::process::Command;

mod common;

use common::{text, volley, write};

const CHROMIUM: &str = "/usr/bin/chromium";

/// `volley report <log> --out <out>` with `extra` arguments.
fn report(log: &Path, out: &Path, extra: &[&Path]) -> std::process::Output {
    volley()
        .arg("report")
        .arg(log)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("volley report")
}

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
        "Warm-up: deliveries against each day's cap",
        "Delivery latency",
        "Busiest domains (top 40 of 40)",
    ] {
        assert!(html.contains(section), "section {section:?} missing");
    }
    assert!(html.contains("<td>3,000</td>"), "3,000 deliveries in the campaign row");
    let charts = html.matches("<svg").count();
    assert!(charts >= 4, "{charts} charts");

    // `volley report` on the same log writes the same page elsewhere.
    let log = dir.path().join("state/demo/accounting.jsonl");
    let again = dir.path().join("again.html");
    let o = report(&log, &again, &[]);
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
    let o = report(&log, &out, &[]);
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

/// The SVG elements named `tag` (`rect`, `polyline`, `text`) in `svg`, each as its opening
/// tag's text up to `>`, and for `text` the content after it.
fn elements<'a>(svg: &'a str, tag: &str) -> Vec<(&'a str, &'a str)> {
    svg.split('<')
        .filter(|e| e.starts_with(tag) && e[tag.len()..].starts_with(' '))
        .filter_map(|e| e.split_once('>'))
        .map(|(open, content)| (open, content.trim()))
        .collect()
}

/// The numeric attribute `name` of an element's opening tag.
fn attr(element: &str, name: &str) -> Option<f64> {
    let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
    element[start..].split('"').next()?.parse().ok()
}

/// The first SVG chart of the page after the heading `heading`.
fn chart_after<'a>(html: &'a str, heading: &str) -> &'a str {
    let at = html.find(heading).unwrap_or_else(|| panic!("{heading} missing"));
    let from = at + html[at..].find("<svg").expect("a chart");
    &html[from..from + html[from..].find("</svg>").expect("svg end")]
}

/// The table row whose first cell is `key`, in the section after `heading`.
fn row_after<'a>(html: &'a str, heading: &str, key: &str) -> &'a str {
    let at = html.find(heading).unwrap_or_else(|| panic!("{heading} missing"));
    let from = at
        + html[at..]
            .find(&format!("<tr><td>{key}</td>"))
            .unwrap_or_else(|| panic!("{key} row"));
    &html[from..from + html[from..].find("</tr>").expect("row end")]
}

/// An accounting log where a warm IP delivered 9,000 messages to gmail (180 deferrals, 90
/// bounces) and a warming IP 11 to microsoft (1 bounce), over 60 domains and 3 MX sites.
fn known_log(dir: &Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    let mut push = |i: usize, ip: &str, provider: &str, outcome: &str| {
        let domain = format!("d{}.test", i % 60);
        let site = format!("mx{}.test", i % 3);
        let (ms, s) = (i % 1000, i / 1000);
        lines.push(format!(
            r#"{{"ts":"2026-12-01T10:{:02}:{:02}.{ms:03}Z","campaign":"known","recipient":"u{i}@{domain}","domain":"{domain}","source_ip":"{ip}","mx":"{site}","site":"{site}","provider":"{provider}","outcome":"{outcome}","code":250,"category":"{}","attempt":1,"latency_ms":7,"message_id":"m{i}"}}"#,
            s / 60,
            s % 60,
            if outcome == "delivered" { "delivered" } else { "bad-mailbox" }
        ));
    };
    for i in 0..9000 {
        push(i, "127.0.0.2", "gmail", "delivered");
    }
    for i in 0..180 {
        push(i, "127.0.0.2", "gmail", "deferred");
    }
    for i in 0..90 {
        push(i, "127.0.0.2", "gmail", "bounced");
    }
    for i in 0..11 {
        push(i, "127.0.0.3", "microsoft", "delivered");
    }
    push(11, "127.0.0.3", "microsoft", "bounced");
    write(dir, "accounting.jsonl", &(lines.join("\n") + "\n"))
}

#[test]
fn report_rates_log_axes_thousands_warmup_caps_and_top_n_of_m() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = known_log(dir.path());
    // 127.0.0.3 warms up on the shipped standard curve from 2026-11-29: 2026-12-01 is day 3,
    // microsoft's cap that day is 200.
    let config = write(
        dir.path(),
        "volley.toml",
        "state_dir = \"state\"\n\
         [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\nwarm = true\n\
         [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
         warmup = \"standard\"\nwarmup_start = \"2026-11-29\"\n",
    );
    let out = dir.path().join("r.html");
    let o = report(&log, &out, &[Path::new("--config"), &config]);
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(&out).expect("report");

    // Counts with thousands separators, rates next to them.
    let ip2 = row_after(&html, "<h2>Per source IP", "127.0.0.2");
    assert!(ip2.contains("<td>9,000</td>"), "{ip2}");
    assert!(
        ip2.ends_with("<td class=\"rate\">1.0%</td><td class=\"rate\">1.9%</td>"),
        "90/9,090 bounced, 180/9,270 deferred: {ip2}"
    );
    let ip3 = row_after(&html, "<h2>Per source IP", "127.0.0.3");
    assert!(
        ip3.ends_with("<td class=\"rate\">8.3%</td><td class=\"rate\">0.0%</td>"),
        "1/12 bounced: {ip3}"
    );
    let microsoft = row_after(&html, "<h2>Per provider group", "microsoft");
    assert!(microsoft.contains("<td class=\"rate\">8.3%</td>"), "{microsoft}");
    assert!(html.contains("bounce %</th><th class=\"rate\">deferral %</th>"));

    // The per-IP chart: a log axis on which the warming IP's 11 deliveries are a bar at least
    // a quarter as tall as the 9,000, both labelled. The legend sits right of the plotting
    // area, clear of every bar.
    let chart = chart_after(&html, "<h2>Per source IP");
    assert!(chart.contains("Outcomes per source IP (log scale)"));
    let legend_x = elements(chart, "text")
        .iter()
        .filter(|(_, t)| *t == "delivered")
        .filter_map(|(e, _)| attr(e, "x"))
        .next()
        .expect("legend entry");
    let bars: Vec<&str> = elements(chart, "rect")
        .iter()
        .map(|(e, _)| *e)
        .filter(|e| !e.contains("fill=\"#FFFFFF\"") && attr(e, "x").is_some_and(|x| x < legend_x - 40.0))
        .collect();
    let right_of_bars = bars
        .iter()
        .filter_map(|e| Some(attr(e, "x")? + attr(e, "width")?))
        .fold(0.0, f64::max);
    assert!(
        legend_x > right_of_bars,
        "legend at {legend_x}, bars up to {right_of_bars}"
    );
    let delivered: Vec<f64> = bars
        .iter()
        .filter(|e| e.contains("fill=\"#2E8B57\""))
        .filter_map(|e| attr(e, "height"))
        .collect();
    assert_eq!(delivered.len(), 2, "one delivered bar per IP: {delivered:?}");
    let (low, high) = (delivered[0].min(delivered[1]), delivered[0].max(delivered[1]));
    assert!(low >= high / 4.0, "11 next to 9,000 is visible: {low} px vs {high} px");
    let labels: Vec<&str> = elements(chart, "text").iter().map(|(_, t)| *t).collect();
    for label in ["9,000", "11", "1,000", "180", "90"] {
        assert!(labels.contains(&label), "{label} in {labels:?}");
    }

    // Warm-up: the warming IP's day, cap and share of it; the warm IP has no cap.
    let warm = row_after(&html, "<h2>Warm-up", "127.0.0.3");
    assert_eq!(
        warm,
        "<tr><td>127.0.0.3</td><td class=\"text\">microsoft</td><td class=\"text\">2026-12-01</td><td>3</td><td>11</td><td>200</td><td>5.5%"
            .to_string()
            + "</td>"
    );
    let warm = row_after(&html, "<h2>Warm-up", "127.0.0.2");
    assert!(warm.contains("<td>warm</td><td>9,000</td><td>no cap</td>"), "{warm}");

    // Headings say how many rows of how many.
    assert!(html.contains("<h2>Busiest domains (top 50 of 60)</h2>"), "60 domains");
    assert!(html.contains("<h2>Busiest MX sites (top 3 of 3)</h2>"), "3 sites");
}

/// A feedback log for [`known_log`]'s campaign: per IP/provider a number of complaints,
/// unsubscribes and asynchronous bounces, plus a repeated event, a `delayed` notice (no rate)
/// and a damaged line.
fn known_feedback(dir: &Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    let mut push = |id: String, ip: &str, provider: &str, outcome: &str| {
        lines.push(format!(
            r#"{{"ts":"2026-12-01T11:00:00Z","event_id":"{id}","campaign":"known","recipient":"u@d.test","domain":"d.test","source_ip":"{ip}","provider":"{provider}","outcome":"{outcome}","async":true,"code":null,"enhanced":null,"category":null,"text":"x","line":1,"message_id":"m","suppression":"suppress","list":"global"}}"#
        ));
    };
    for i in 0..27 {
        push(format!("c{i}"), "127.0.0.2", "gmail", "complained");
    }
    for i in 0..45 {
        push(format!("u{i}"), "127.0.0.2", "gmail", "unsubscribed");
    }
    for i in 0..18 {
        push(format!("b{i}"), "127.0.0.2", "gmail", "bounced");
    }
    push("d0".into(), "127.0.0.2", "gmail", "delayed");
    push("m0".into(), "127.0.0.3", "microsoft", "complained");
    push("m0".into(), "127.0.0.3", "microsoft", "complained");
    lines.push("{not a record".into());
    write(dir, "feedback.jsonl", &(lines.join("\n") + "\n"))
}

#[test]
fn the_report_shows_complaint_unsubscribe_and_bounce_rates_from_the_feedback_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = known_log(dir.path());
    let out = dir.path().join("r.html");

    // No feedback log beside the accounting log: the section says so.
    let o = report(&log, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let html = std::fs::read_to_string(&out).expect("report");
    assert!(html.contains("No feedback log beside the accounting log"), "{html}");

    known_feedback(dir.path());
    let o = report(&log, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("feedback.jsonl: line(s) skipped, the first is line 94"),
        "{}",
        text(&o)
    );
    let html = std::fs::read_to_string(&out).expect("report");
    let heading = "<h2>After delivery";
    assert!(html.contains("1 repeated events counted once"), "{html}");
    // gmail: 9,000 delivered, 90 bounced in the conversation + 18 later of 9,090 mailed;
    // 27 complaints (0.30 %: at the limit, not over), 45 unsubscribes.
    let gmail = row_after(&html, heading, "gmail");
    assert_eq!(
        gmail,
        "<tr><td>gmail</td><td>9,000</td><td>18</td><td>27</td><td>45</td><td class=\"rate\">1.19%</td>\
         <td class=\"rate\">0.20%</td><td class=\"rate\">0.30%</td><td class=\"rate\">0.50%</td>"
    );
    // microsoft: 1 complaint (sent twice) of 11 delivered is over the limit and marked.
    let microsoft = row_after(&html, heading, "microsoft");
    assert!(microsoft.contains("<td class=\"rate over\">9.09%</td>"), "{microsoft}");
    let ip3 = row_after(&html, heading, "127.0.0.3");
    assert!(
        ip3.starts_with("<tr><td>127.0.0.3</td><td>11</td><td>0</td><td>1</td><td>0</td><td class=\"rate\">8.33%</td>"),
        "{ip3}"
    );
    // The campaign row sums both IPs: 28 complaints of 9,011 delivered.
    let campaign = row_after(&html, heading, "known");
    assert!(campaign.contains("<td class=\"rate over\">0.31%</td>"), "{campaign}");

    // --feedback names another log; a missing one is an error naming it.
    let missing = dir.path().join("nowhere.jsonl");
    let o = report(&log, &out, &[Path::new("--feedback"), &missing]);
    assert!(!o.status.success());
    assert!(text(&o).contains("nowhere.jsonl does not exist"), "{}", text(&o));
}
