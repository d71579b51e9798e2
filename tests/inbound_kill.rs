//! `volley inbound` killed with SIGKILL right after it answered 250: the report was spooled
//! (synced) before the 250, so the restarted listener acts on it. The suppression list (a real
//! Redis) is down while the first process runs, so the kill always lands before the report's
//! effect; after the restart every recipient of the report is suppressed, once.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, volley, wait_listening, write, Killed};
use volley_bench::RedisServer;
use volley_scheduler::suppression::{open_store, SuppressionConfig, GLOBAL};

const SECRET: &str = "volley feedback fixtures: not a production secret";

fn fixture() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("feedback/tests/fixtures/postfix/local-unknown-user.eml");
    // As on the wire: CRLF line ends.
    let text = std::fs::read_to_string(&path).expect("fixture");
    text.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

/// Sends `dsn` to `to` over SMTP; the final reply's code.
fn send(addr: &str, to: &str, dsn: &[u8]) -> u16 {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut r = BufReader::new(stream.try_clone().expect("clone"));
    let mut w = stream;
    let mut code = || loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("reply");
        if line.len() < 4 || line.as_bytes()[3] == b' ' {
            return line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0u16);
        }
    };
    assert_eq!(code(), 220);
    for cmd in [
        "EHLO mx.rcpt.volley.test".to_string(),
        "MAIL FROM:<>".into(),
        format!("RCPT TO:<{to}>"),
        "DATA".into(),
    ] {
        write!(w, "{cmd}\r\n").expect("write");
        let c = code();
        assert!(c == 250 || c == 354, "{cmd}: {c}");
    }
    w.write_all(dsn).expect("write");
    w.write_all(b".\r\n").expect("write");
    code()
}

fn spooled(state: &Path) -> usize {
    std::fs::read_dir(state.join("inbound/spool"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "msg"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_report_acknowledged_before_a_kill_is_acted_on_after_the_restart() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop(); // down until after the kill
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "keys", &format!("1 {SECRET}\n"));
    std::fs::create_dir_all(dir.path().join("state/postfix-fixtures")).expect("campaign folder");
    write(
        &dir.path().join("state/postfix-fixtures"),
        "accounting.jsonl",
        "{\"recipient\":\"nosuchuser@rcpt.volley.test\",\"outcome\":\"delivered\",\"line\":7,\"provider\":\"other\"}\n",
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [suppression]\nredis = \"{url}\"\n\
             [feedback]\nbounce_domain = \"bounce.volley.test\"\nkey_file = \"keys\"\n\
             [inbound]\nlisten = \"{listen}\"\n"
        ),
    );
    let start = || {
        let child = volley()
            .args(["inbound", "--config"])
            .arg(&config)
            .spawn()
            .expect("volley inbound");
        wait_listening(&listen, "volley inbound");
        Killed(child)
    };
    let dsn = fixture();
    let text = String::from_utf8_lossy(&dsn).to_string();
    let to = text
        .lines()
        .find_map(|l| l.strip_prefix("To: "))
        .expect("To:")
        .to_string();
    let mut first = start();
    assert_eq!(send(&listen, &to, &dsn), 250);
    first.0.kill().expect("SIGKILL");
    let _ = first.0.wait();
    let state = dir.path().join("state");
    assert_eq!(spooled(&state), 1, "the acknowledged report is on disk");

    redis.restart();
    let _second = start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while spooled(&state) > 0 {
        assert!(
            Instant::now() < deadline,
            "the restarted listener did not process the spool"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let store = open_store(
        &SuppressionConfig {
            redis: Some(url),
            ..SuppressionConfig::default()
        },
        &state,
    )
    .expect("store");
    let hit = store
        .check(&[GLOBAL], &["nosuchuser@rcpt.volley.test"])
        .expect("check")
        .remove(0);
    let (_, entry) = hit.expect("suppressed after the restart");
    assert!(entry.reason.contains("unknown user"), "{}", entry.reason);
    let log = std::fs::read_to_string(state.join("postfix-fixtures/feedback.jsonl")).expect("feedback log");
    assert_eq!(log.lines().count(), 1, "{log}");
}
