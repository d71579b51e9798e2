//! Watching a running `volley send`: Prometheus `/metrics` scraped over real HTTP while it
//! sends (counters rise, connections are open, the histogram is consistent), and JSON status
//! lines on stderr (it is not a terminal) that track the run to its end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::{free_port, start_sink, volley, write};

/// `GET path` on `addr`; the status line and the body.
fn get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The value of the sample whose name-and-labels part is exactly `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[test]
fn metrics_and_status_lines_follow_a_running_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sink, sink_addr) = start_sink(&["--latency", "40ms"]);
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
             [routes]\n\"*\" = \"{sink_addr}\"\n\
             [smtp]\nmax_connections_per_host = 8\n"
        ),
    );
    let n = 1500;
    let rows: String = (0..n).map(|i| format!("u{i}@d{}.test\n", i % 30)).collect();
    write(dir.path(), "list.csv", &format!("email\n{rows}"));
    let campaign = write(
        dir.path(),
        "campaign.toml",
        "id = \"watched\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"list.csv\"\n",
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    let child = volley()
        .arg("send")
        .arg(&campaign)
        .arg("--config")
        .arg(&config)
        .args(["--metrics", &metrics, "--progress-every", "300ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("volley send");

    // Scrape while it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = "volley_outcomes_total{campaign=\"watched\",outcome=\"delivered\"}";
    let mut mid_run = None;
    let mut scrapes = 0;
    while Instant::now() < deadline {
        if let Some((status, body)) = get(&metrics, "/metrics") {
            scrapes += 1;
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            let d = sample(&body, delivered).unwrap_or(0.0);
            // The connection gauge is sampled every 250 ms: a scrape right after the first
            // delivery may still show the value from before the first connection opened.
            let open = sample(&body, "volley_open_connections").unwrap_or(0.0);
            // Both source IPs have delivered: one IP's first connections may open a few
            // hundred milliseconds after the other's.
            let both = ["127.0.0.2", "127.0.0.3"].iter().all(|ip| {
                body.contains(&format!(
                    "volley_attempts_total{{campaign=\"watched\",outcome=\"delivered\",source_ip=\"{ip}\""
                ))
            });
            if d > 0.0 && d < n as f64 && open >= 1.0 && both {
                mid_run = Some(body);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = mid_run.unwrap_or_else(|| panic!("no scrape caught the run in progress ({scrapes} scrapes)"));
    assert!(body.contains("# TYPE volley_attempts_total counter"), "{body}");
    assert!(
        body.contains("volley_attempts_total{campaign=\"watched\",outcome=\"delivered\",source_ip=\"127.0.0.2\""),
        "{body}"
    );
    assert!(sample(&body, "volley_open_connections").unwrap_or(0.0) >= 1.0, "{body}");
    let count = sample(&body, "volley_delivery_latency_seconds_count{campaign=\"watched\"}").unwrap_or(-1.0);
    let inf = sample(
        &body,
        "volley_delivery_latency_seconds_bucket{campaign=\"watched\",le=\"+Inf\"}",
    )
    .unwrap_or(-2.0);
    assert_eq!(count, inf, "{body}");
    assert!(count >= 1.0);
    let (status, _) = get(&metrics, "/other").expect("404 answer");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let out = child.wait_with_output().expect("volley send");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "status lines every 300 ms: {stderr}");
    let delivered: Vec<u64> = lines.iter().map(|l| l["delivered"].as_u64().unwrap_or(0)).collect();
    assert!(delivered.windows(2).all(|w| w[0] <= w[1]), "{delivered:?}");
    let first = &lines[0];
    for field in [
        "campaign",
        "read",
        "bounced",
        "msgs_per_s",
        "queued",
        "retrying",
        "open_connections",
        "by_ip",
        "ts",
        "this_run",
        "paused",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(first["campaign"], "watched");
    // A wall-clock time on every line, in order.
    let times: Vec<std::time::SystemTime> = lines
        .iter()
        .map(|l| {
            let ts = l["ts"].as_str().unwrap_or_default();
            humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("ts {ts:?}: {e}"))
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("delivered {n}")));
    // The server went away with the run.
    assert!(get(&metrics, "/metrics").is_none());
}
