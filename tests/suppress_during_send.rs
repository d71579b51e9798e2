//! `volley suppress` while a `volley send` holds the embedded suppression store: the commands
//! go through the running process (its control socket), and the run honours an address added
//! meanwhile for the recipients it has not reached yet.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{start_sink, text, volley, write, Killed};

fn suppress(config: &Path, args: &[&str]) -> Output {
    volley()
        .arg("suppress")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("volley suppress")
}

/// Outcomes of `recipient` in the accounting log.
fn outcomes(log: &str, recipient: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["recipient"] == recipient)
        .map(|v| v["outcome"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn suppress_add_check_remove_work_while_a_send_runs_and_the_run_honours_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sink, sink_addr) = start_sink(&[]);
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\nrate = \"100/s\"\n\
             [routes]\n\"*\" = \"{sink_addr}\"\n"
        ),
    );
    // The late address is far behind what the producer reads ahead at the start.
    let n = 1600;
    let late = "late.reader@d1.test";
    let rows: String = (0..n)
        .map(|i| {
            if i == n - 20 {
                format!("{late}\n")
            } else {
                format!("u{i}@d{}.test\n", i % 4)
            }
        })
        .collect();
    write(dir.path(), "list.csv", &format!("email\n{rows}"));
    let campaign = write(
        dir.path(),
        "campaign.toml",
        "id = \"live\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"list.csv\"\n",
    );
    let summary = dir.path().join("summary.json");
    let send = Killed(
        volley()
            .arg("send")
            .arg(&campaign)
            .arg("--config")
            .arg(&config)
            .arg("--summary-json")
            .arg(&summary)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("volley send"),
    );

    // Wait until the run is under way (it has delivered something) and still far from done.
    let log_path = dir.path().join("state/live/accounting.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("\"delivered\"") {
            assert!(log.lines().count() < n / 2, "the run is too fast for this test");
            break;
        }
        assert!(Instant::now() < deadline, "the send did not start delivering");
        std::thread::sleep(Duration::from_millis(50));
    }

    let o = suppress(&config, &["add", late, "--reason", "unsubscribed"]);
    assert!(o.status.success(), "add during the run: {}", text(&o));
    assert!(
        text(&o).contains("suppressed 1 address(es) in `global`") && text(&o).contains("through the volley process"),
        "{}",
        text(&o)
    );
    let o = suppress(&config, &["check", late, "other@d2.test"]);
    assert_eq!(o.status.code(), Some(1), "check during the run: {}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines[0]["suppressed"], true, "{lines:?}");
    assert_eq!(lines[0]["entry"]["reason"], "unsubscribed", "{lines:?}");
    assert_eq!(lines[1]["suppressed"], false, "{lines:?}");
    // Add and take off again: remove goes through the running process too.
    let o = suppress(&config, &["add", "other@d2.test"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = suppress(&config, &["remove", "other@d2.test"]);
    assert!(o.status.success(), "remove during the run: {}", text(&o));
    let o = suppress(&config, &["check", "other@d2.test"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The run ends normally, without mailing the address added meanwhile.
    let mut send = send;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = send.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the send did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "send exit {status}");
    let log = std::fs::read_to_string(&log_path).expect("accounting log");
    assert_eq!(outcomes(&log, late), ["suppressed"], "the late address was not sent");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    assert_eq!(
        (s["delivered"].as_u64(), s["suppressed"].as_u64()),
        (Some(n as u64 - 1), Some(1)),
        "{s}"
    );

    // After the run the file is free again and still holds the entry.
    assert!(
        !dir.path().join("state/suppression.sock").exists(),
        "the socket is removed"
    );
    let o = suppress(&config, &["check", late]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
