//! `volley serve` killed with SIGKILL while Postfix's `smtp-source` injects through the
//! submission listener at full speed, five times: every message smtp-source saw acknowledged
//! (250 after its final dot, read from its `-v` protocol log) reaches the sink, and the only
//! recipients the sink received twice are ones the dispatch journal shows on the wire at a
//! kill (`resent_after_restart`: dispatched but never logged as attempted).
//!
//! smtp-source speaks neither AUTH nor TLS: it submits from `relay_networks` (127.0.0.0/8) as
//! the relay user. Several smtp-source processes with one session each keep each protocol log
//! in order. Every socket is on 127.0.0.0/8.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use volley_bench::{Sink, SinkConfig};

mod common;

use common::{add_user, free_port, volley, wait_listening, write, Killed};

/// smtp-source processes per round, one session each.
const SOURCES: usize = 4;
const ROUNDS: usize = 5;

fn pause(lo: u64, hi: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(lo + nanos % (hi - lo))
}

/// The recipients smtp-source saw accepted, from its `-v` log: the `RCPT TO:<…>` of a
/// transaction whose final `.` was answered with 250.
fn acknowledged(log: &str) -> Vec<String> {
    let mut acked = Vec::new();
    let (mut rcpt, mut after_dot) = (None::<String>, false);
    for line in log.lines() {
        let Some(line) = line.strip_prefix("smtp-source: ") else {
            continue;
        };
        if let Some(r) = line.strip_prefix("RCPT TO:<") {
            rcpt = r.strip_suffix('>').map(str::to_owned);
            after_dot = false;
        } else if line == "." {
            after_dot = true;
        } else if let Some(reply) = line.strip_prefix("<<< ") {
            if after_dot {
                if reply.starts_with("250") {
                    acked.extend(rcpt.take());
                }
                after_dot = false;
            }
        }
    }
    acked
}

fn serve(config: &Path, listen: &str, submission: &str) -> Killed {
    let child = volley()
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("volley serve");
    let server = Killed(child);
    wait_listening(listen, "volley serve");
    wait_listening(submission, "the submission listener");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_submissions_survive_five_kills() {
    if Command::new("smtp-source").arg("-h").output().is_err() {
        eprintln!("skipped: Postfix's smtp-source is not installed");
        return;
    }
    let sink = Sink::start(SinkConfig {
        count_addresses: true,
        latency: Duration::from_millis(2),
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    write(dir.path(), "cert.pem", &cert.pem());
    write(dir.path(), "key.pem", &key_pair.serialize_pem());
    let listen = format!("127.0.0.1:{}", free_port());
    let submission = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
             [routes]\n\"*\" = \"{}\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"kill-token-0123456789abcdef\"\n\
             [submission]\nlisten = \"{submission}\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
             hostname = \"localhost\"\nrelay_networks = [\"127.0.0.0/8\"]\nrelay_user = \"app\"\n",
            sink.local_addr()
        ),
    );
    add_user(&config, "app", "app.volley.test", "not-used-by-relay-clients-123");

    let mut acked: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let server = serve(&config, &listen, &submission);
        let sources: Vec<_> = (0..SOURCES)
            .map(|k| {
                let log = dir.path().join(format!("source-{round}-{k}.log"));
                let child = Command::new("smtp-source")
                    .args(["-v", "-s", "1", "-d", "-m", "100000", "-N", "-l", "1024"])
                    .args(["-f", "bounces@app.volley.test"])
                    .arg("-t")
                    .arg(format!("rcpt@r{round}s{k}.test"))
                    .arg(&submission)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).expect("log"))
                    .spawn()
                    .expect("smtp-source");
                (Killed(child), log)
            })
            .collect();
        tokio::time::sleep(pause(600, 1500)).await;
        drop(server); // SIGKILL while the sources inject
        let mut this_round = 0;
        for (mut source, log) in sources {
            let deadline = Instant::now() + Duration::from_secs(10);
            while source.0.try_wait().expect("try_wait").is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(source);
            let found = acknowledged(&std::fs::read_to_string(&log).expect("source log"));
            this_round += found.len();
            acked.extend(found);
        }
        eprintln!(
            "round {round}: {this_round} acknowledged, the sink has {}",
            sink.stats().messages
        );
        assert!(
            this_round > 0,
            "round {round}: nothing was acknowledged before the kill"
        );
    }

    // The last start: everything spooled goes out.
    let server = serve(&config, &listen, &submission);
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = |acked: &[String]| acked.iter().filter(|r| sink.accepted_for(r) == 0).count();
    while missing(&acked) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged messages never arrived",
            missing(&acked),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(server);

    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "smtp-source recipients are distinct");
    let counts: HashMap<String, u64> = sink.address_counts();
    let duplicates: u64 = counts.values().map(|c| c.saturating_sub(1)).sum();
    let resent = resent_after_restart(&dir.path().join("state"));
    eprintln!(
        "{} acknowledged, all delivered; {} at the sink in all; duplicates {duplicates}, on the wire at a kill {resent}",
        acked.len(),
        counts.values().sum::<u64>()
    );
    assert!(
        duplicates <= resent,
        "{duplicates} duplicates reached the sink but only {resent} were on the wire at a kill"
    );
    sink.shutdown().await;
}

/// What `volley send`'s resume counts as resent after a restart, over every injection
/// campaign: deliveries journalled (handed to the engine) minus attempts logged with a source
/// IP. The journal's record size is the state module's.
fn resent_after_restart(state: &Path) -> u64 {
    let mut resent = 0;
    for entry in std::fs::read_dir(state).expect("state dir").flatten() {
        let journal = entry.path().join("dispatched.bin");
        let Ok(meta) = std::fs::metadata(&journal) else {
            continue;
        };
        let dispatched = meta.len() / volley_scheduler::send::state::DISPATCH_RECORD;
        let log = std::fs::read_to_string(entry.path().join("accounting.jsonl")).unwrap_or_default();
        let remote = log.lines().filter(|l| l.contains("\"source_ip\":\"")).count() as u64;
        resent += dispatched.saturating_sub(remote);
    }
    resent
}
