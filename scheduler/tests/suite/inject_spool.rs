//! Injected messages end to end through the durable spool: `Spool::inject` acknowledges a
//! message once it is synced, the injection campaign's run follows the stream and delivers
//! each envelope recipient to Postfix's smtp-sink with the client's envelope sender, without
//! the `X-Volley-Campaign` header, DKIM-signed for the message's own From domain; suppressed
//! recipients are not sent; a restart (spool reopened, campaign relaunched) sends nothing
//! twice and resumes what was not sent; a torn record left by a crash is cut.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use volley_bench::postfix::PostfixSink;
use volley_engine::dkim::{generate, DkimKeyConfig, KeyAlgorithm};
use volley_scheduler::campaign::{Campaign, InjectedSettings};
use volley_scheduler::config::{SendConfig, SourceIpConfig};
use volley_scheduler::inject::{Injected, Injector};
use volley_scheduler::live::Live;
use volley_scheduler::send::SendService;
use volley_scheduler::spool::{Spool, SpoolConfig};
use volley_scheduler::suppression::{Entry, Update, GLOBAL};

use crate::common::json_lines;
use crate::common::{delivered, until};

fn config(dir: &Path, sink: SocketAddr, dkim: Vec<DkimKeyConfig>) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: (2..=3)
            .map(|i| SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), format!("mta{i}.volley.test")))
            .collect(),
        routes: [("*".to_string(), sink.to_string())].into_iter().collect(),
        dkim,
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

fn settings() -> InjectedSettings {
    InjectedSettings {
        pool: "default".into(),
        priority: 5,
        suppression_list: None,
        verp: None,
    }
}

fn message(user: &str, from: &str, to: &[&str], extra: &str) -> Injected {
    Injected {
        user: user.into(),
        mail_from: from.into(),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        raw: format!(
            "{extra}From: App <app@app.volley.test>\r\nTo: someone\r\nSubject: reset\r\n\r\nyour code is 1234\r\n"
        )
        .into_bytes(),
        peer: "127.0.0.1:1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_messages_are_spooled_then_delivered_once_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Ok(sink) = PostfixSink::try_start(&dir.path().join("sink")) else {
        eprintln!("skipped: Postfix's smtp-sink is not installed");
        return;
    };
    let key = generate(KeyAlgorithm::Ed25519, "app.volley.test", "s1").expect("keygen");
    let key_path = dir.path().join("s1.pem");
    key.write_private_key(&key_path).expect("key");
    let dkim = vec![DkimKeyConfig {
        domain: "app.volley.test".into(),
        selector: "s1".into(),
        key: key_path,
        algorithm: None,
        headers: None,
        canonicalization: Default::default(),
        expire: None,
    }];
    let config = config(dir.path(), sink.addr(), dkim);
    let spool_dir = config.state_dir.join("spool");

    // First life: three messages, four recipients, two campaigns.
    let (spool, found, mut created) = Spool::open(&spool_dir, SpoolConfig::default()).expect("spool");
    assert!(found.is_empty());
    let a = spool
        .inject(message(
            "app",
            "bounces@app.volley.test",
            &["a1@x.test", "a2@y.test"],
            "",
        ))
        .await
        .expect("accepted");
    assert_eq!(a.campaign, "app");
    assert_eq!(a.ids, vec!["app:1", "app:2"]);
    let b = spool
        .inject(message("app", "", &["b1@x.test"], "X-Volley-Campaign: receipts\r\n"))
        .await
        .expect("accepted");
    assert_eq!(
        (b.campaign.as_str(), b.ids.as_slice()),
        ("receipts", &["receipts:1".to_string()][..])
    );
    let bad = spool
        .inject(message("app", "x@app.volley.test", &["not an address"], ""))
        .await;
    assert!(bad.is_err_and(|e| e.to_string().contains("recipient \"not an address\"")));

    let live = Arc::new(Live::default());
    let service = SendService::start(&config, live.clone(), true).expect("service");
    // An address on the suppression list is not sent, injected or not.
    service
        .store()
        .apply(&[Update::suppress(
            GLOBAL,
            "gone@x.test".to_string(),
            Entry::new("550 5.1.1 unknown", "bounce:earlier", 1_700_000_000),
        )])
        .expect("suppress");
    let gone = spool
        .inject(message("app", "bounces@app.volley.test", &["gone@x.test"], ""))
        .await
        .expect("accepted: the list is checked when sending");
    assert_eq!(gone.ids, vec!["app:3"]);
    let mut launched = Vec::new();
    for _ in 0..2 {
        let stream = tokio::time::timeout(Duration::from_secs(5), created.recv())
            .await
            .expect("a new stream")
            .expect("stream");
        launched.push(
            service
                .launch(&Campaign::injected(stream, &settings()))
                .expect("launch"),
        );
    }
    until("three deliveries", || {
        delivered(&live, "app") == 2 && delivered(&live, "receipts") == 1
    })
    .await;
    // A message injected while the campaign runs goes out too.
    spool
        .inject(message("app", "bounces@app.volley.test", &["a3@x.test"], ""))
        .await
        .expect("accepted");
    until("the fourth", || delivered(&live, "app") == 3).await;
    for l in &launched {
        l.stopper().stop();
    }
    for l in launched {
        let summary = l.wait().await.expect("summary");
        assert!(!summary.complete, "an injection campaign runs until stopped");
    }
    service.shutdown().await;
    drop(spool);

    let dumped = sink.transactions(4);
    assert_eq!(dumped.len(), 4, "each recipient once");
    for d in &dumped {
        assert!(
            d.header("X-Volley-Campaign").is_none(),
            "the campaign header is removed"
        );
        let signature = d.header("DKIM-Signature").expect("signed");
        assert!(signature.contains("d=app.volley.test"), "{signature}");
        assert!(
            d.header("Message-ID").is_some() && d.header("Date").is_some(),
            "added when missing"
        );
    }
    let receipts = dumped.iter().find(|d| d.rcpts == ["<b1@x.test>"]).expect("receipts");
    assert!(
        receipts.mail_args.starts_with("<>"),
        "the null sender kept: {}",
        receipts.mail_args
    );
    let app = dumped.iter().find(|d| d.rcpts == ["<a1@x.test>"]).expect("a1");
    assert!(
        app.mail_args.starts_with("<bounces@app.volley.test>"),
        "{}",
        app.mail_args
    );
    let log = json_lines(&config.state_dir.join("app").join("accounting.jsonl"));
    let mut lines: Vec<u64> = log.iter().filter_map(|l| l["line"].as_u64()).collect();
    lines.sort_unstable(); // two source IPs: the order of the reports varies
    assert_eq!(lines, vec![1, 2, 3, 4], "{log:?}");
    let gone_line = log
        .iter()
        .find(|l| l["recipient"] == "gone@x.test")
        .expect("gone logged");
    assert_eq!(gone_line["outcome"], "suppressed");

    // A crash tore the next record: cut at open, never sent.
    let segment = spool_dir.join("app").join("00000001.seg");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes.extend_from_slice(b"{\"first_line\":3,\"mail_from\":\"x");
    std::fs::write(&segment, &bytes).expect("tear");

    // Second life: the same streams come back; nothing is sent again.
    let (spool, found, _created) = Spool::open(&spool_dir, SpoolConfig::default()).expect("reopen");
    let names: Vec<&str> = found.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["app", "receipts"]);
    assert_eq!(
        std::fs::read(&segment).expect("segment").len(),
        bytes.len() - 30,
        "torn record cut"
    );
    let c = spool
        .inject(message("app", "bounces@app.volley.test", &["a4@x.test"], ""))
        .await
        .expect("accepted");
    assert_eq!(c.ids, vec!["app:5"], "lines go on after a restart");
    let live = Arc::new(Live::default());
    let service = SendService::start(&config, live.clone(), true).expect("service");
    let launched: Vec<_> = found
        .into_iter()
        .map(|s| service.launch(&Campaign::injected(s, &settings())).expect("launch"))
        .collect();
    until("the fifth", || delivered(&live, "app") == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for l in &launched {
        l.stopper().stop();
    }
    for l in launched {
        l.wait().await.expect("summary");
    }
    service.shutdown().await;
    let dumped = sink.transactions(5);
    assert_eq!(dumped.len(), 5, "only the new message went out");
    assert_eq!(
        sink.transactions(5)
            .iter()
            .filter(|d| d.rcpts == ["<a4@x.test>"])
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_segments_are_deleted_and_a_restart_reads_past_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = volley_bench::Sink::start(volley_bench::SinkConfig {
        count_addresses: true,
        ..Default::default()
    })
    .await
    .expect("sink");
    let config = config(dir.path(), sink.local_addr(), Vec::new());
    let spool_dir = config.state_dir.join("spool");
    let small = SpoolConfig {
        segment_size: 4096,
        ..SpoolConfig::default()
    };
    let (spool, _, mut created) = Spool::open(&spool_dir, small.clone()).expect("spool");
    for i in 0..40 {
        let to = format!("r{i}@x.test");
        spool
            .inject(message("app", "b@app.volley.test", &[to.as_str()], ""))
            .await
            .expect("accepted");
    }
    let segments = |d: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .expect("stream folder")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    let stream_dir = spool_dir.join("app");
    let before = segments(&stream_dir);
    assert!(before.len() >= 4, "rotated: {before:?}");
    let live = Arc::new(Live::default());
    let service = SendService::start(&config, live.clone(), true).expect("service");
    let stream = created.recv().await.expect("stream");
    let run = service
        .launch(&Campaign::injected(stream, &settings()))
        .expect("launch");
    until("40 deliveries", || delivered(&live, "app") == 40).await;
    // The flush after the last report hands the lines over; the sealed segments go.
    until("spent segments deleted", || segments(&stream_dir).len() == 1).await;
    assert_eq!(
        segments(&stream_dir),
        [before.last().expect("current").clone()],
        "only the current one stays"
    );
    run.stopper().stop();
    run.wait().await.expect("summary");
    service.shutdown().await;
    drop(spool);

    // A restart starts reading at the first segment left, and sends nothing twice.
    let (spool, found, _) = Spool::open(&spool_dir, small).expect("reopen");
    spool
        .inject(message("app", "b@app.volley.test", &["late@x.test"], ""))
        .await
        .expect("accepted");
    let live = Arc::new(Live::default());
    let service = SendService::start(&config, live.clone(), true).expect("service");
    let stream = found.into_iter().next().expect("app");
    let run = service
        .launch(&Campaign::injected(stream, &settings()))
        .expect("launch");
    until("the late one", || delivered(&live, "app") == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.stopper().stop();
    run.wait().await.expect("summary");
    service.shutdown().await;
    for i in 0..40 {
        assert_eq!(sink.accepted_for(&format!("r{i}@x.test")), 1, "r{i} once");
    }
    assert_eq!(sink.accepted_for("late@x.test"), 1);
}

/// A real full disk: the spool on a 256 KiB tmpfs (needs root to mount; skipped otherwise).
/// Injection is refused with a temporary "insufficient storage" (SMTP 452) once the disk is
/// full, and every message acknowledged before is intact when the spool is opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_452_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).expect("mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "volley-full-test"])
        .arg(&mount)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let spool_dir = mount.join("spool");
    let (spool, _, _created) = Spool::open(&spool_dir, SpoolConfig::default()).expect("spool");
    let body = "x".repeat(900);
    let mut acked = Vec::new();
    let refusal = loop {
        let mut m = message("app", "b@app.volley.test", &["r@x.test"], "");
        m.raw.extend_from_slice(format!("{body}\r\n").as_bytes());
        match spool.inject(m).await {
            Ok(a) => acked.extend(a.ids),
            Err(e) => break e,
        }
        assert!(acked.len() < 10_000, "a 256 KiB disk never filled");
    };
    assert!(
        matches!(refusal, volley_scheduler::inject::InjectError::Full(_)),
        "{refusal:?}"
    );
    assert_eq!(refusal.smtp_code(), (452, (4, 3, 1)));
    assert!(acked.len() > 50, "{} acknowledged", acked.len());
    drop(spool);
    let (_spool, found, _) = Spool::open(&spool_dir, SpoolConfig::default()).expect("reopen");
    let stream = found.into_iter().next().expect("the stream");
    assert_eq!(
        stream.committed().last_line,
        acked.len() as u64,
        "every acknowledged message is there, nothing more"
    );
    for n in 1..=acked.len() as u64 {
        assert_eq!(acked[(n - 1) as usize], format!("app:{n}"));
    }
}
