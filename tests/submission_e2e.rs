//! Submission end to end through `volley serve`: swaks over STARTTLS with AUTH PLAIN and
//! LOGIN and over implicit TLS, and Python's `smtplib` (`starttls()` + `login()`, ten
//! messages on one connection, one carrying `X-Volley-Campaign`), inject into the durable
//! spool; every acknowledged recipient reaches the sink exactly once, filed in the campaign
//! the header or the user names (with a `[[dkim]]` key for the user's domain in play; the
//! signatures themselves are verified in scheduler/tests/suite/inject_spool.rs); a wrong
//! password and an unauthenticated MAIL queue nothing. Every socket is on 127.0.0.0/8.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use volley_bench::{Sink, SinkConfig};

mod common;

use common::api::{start_serve, Api};
use common::{add_user, free_port, volley, wait_listening, write};

const TOKEN: &str = "submit-token-0123456789abcdef";
const PASSWORD: &str = "correct horse battery staple 42";

fn swaks(args: &[&str]) -> String {
    let out = Command::new("swaks")
        .args(args)
        .args(["--timeout", "20"])
        .output()
        .expect("swaks runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn smtplib(port: u16, cafile: &Path) -> String {
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile="{cafile}")
with smtplib.SMTP("127.0.0.1", {port}, timeout=20) as s:
    s.ehlo("app.client.test")
    s.starttls(context=ctx)
    s.ehlo("app.client.test")
    s.login("shop", "{PASSWORD}")
    for i in range(10):
        extra = "X-Volley-Campaign: receipts\r\n" if i == 0 else ""
        msg = extra + "From: Shop <shop@shop.volley.test>\r\nTo: p%d@py.test\r\nSubject: n%d\r\n\r\nbody %d\r\n" % (i, i, i)
        refused = s.sendmail("bounces@shop.volley.test", ["p%d@py.test" % i], msg)
        assert not refused, refused
print("sent 10")
"#,
        cafile = cafile.display()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_and_smtplib_submissions_are_delivered_once_and_signed() {
    for tool in ["swaks", "python3"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("skipped: {tool} is not installed (scripts/test.sh installs it)");
            return;
        }
    }
    let sink = Sink::start(SinkConfig {
        count_addresses: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let cert_path = write(dir.path(), "cert.pem", &cert.pem());
    write(dir.path(), "key.pem", &key_pair.serialize_pem());
    let dkim = volley()
        .args([
            "dkim",
            "keygen",
            "--domain",
            "shop.volley.test",
            "--selector",
            "s1",
            "--algorithm",
            "ed25519",
            "--out",
        ])
        .arg(dir.path().join("dkim.pem"))
        .output()
        .expect("keygen");
    assert!(dkim.status.success(), "{}", String::from_utf8_lossy(&dkim.stderr));
    let (listen, starttls, implicit) = (free_port(), free_port(), free_port());
    let listen = format!("127.0.0.1:{listen}");
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [routes]\n\"*\" = \"{}\"\n\
             [[dkim]]\ndomain = \"shop.volley.test\"\nselector = \"s1\"\nkey = \"dkim.pem\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n\
             [submission]\nlisten = \"127.0.0.1:{starttls}\"\nlisten_tls = \"127.0.0.1:{implicit}\"\n\
             tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nhostname = \"localhost\"\n\
             auth_failure_delay = \"100ms\"\n",
            sink.local_addr()
        ),
    );
    add_user(&config, "shop", "shop.volley.test", PASSWORD);
    let server = start_serve(&config, &listen);
    wait_listening(&format!("127.0.0.1:{starttls}"), "submission (STARTTLS)");
    wait_listening(&format!("127.0.0.1:{implicit}"), "submission (implicit TLS)");
    let api = Api::new(listen.clone(), TOKEN);

    let server_starttls = format!("127.0.0.1:{starttls}");
    let server_tls = format!("127.0.0.1:{implicit}");
    let auth = |server: &str, tls: &str, mech: &str, password: &str, to: &str| {
        swaks(&[
            "--server",
            server,
            tls,
            "--auth",
            mech,
            "--auth-user",
            "shop",
            "--auth-password",
            password,
            "--from",
            "bounces@shop.volley.test",
            "--h-From",
            "Shop <shop@shop.volley.test>",
            "--to",
            to,
        ])
    };
    let out = auth(&server_starttls, "--tls", "PLAIN", PASSWORD, "s1@sw.test,s2@sw.test");
    assert!(out.contains("250 2.0.0 Ok: queued as shop:1"), "{out}");
    let out = auth(&server_starttls, "--tls", "LOGIN", PASSWORD, "s3@sw.test");
    assert!(out.contains("250 2.0.0 Ok: queued as shop:3"), "{out}");
    let out = auth(&server_tls, "--tlsc", "LOGIN", PASSWORD, "s4@sw.test");
    assert!(out.contains("250 2.0.0 Ok: queued as shop:4"), "{out}");
    // Refused: nothing queued.
    let out = auth(&server_starttls, "--tls", "PLAIN", "wrong password", "nope1@sw.test");
    assert!(out.contains("535 5.7.8"), "{out}");
    let out = swaks(&[
        "--server",
        &server_starttls,
        "--from",
        "bounces@shop.volley.test",
        "--to",
        "nope2@sw.test",
    ]);
    assert!(out.contains("530 5.7.0"), "{out}");
    let out = smtplib(starttls, &cert_path);
    assert!(out.contains("sent 10"), "{out}");

    let mut expected: Vec<String> = (1..=4).map(|i| format!("s{i}@sw.test")).collect();
    expected.extend((0..10).map(|i| format!("p{i}@py.test")));
    let deadline = Instant::now() + Duration::from_secs(30);
    while expected.iter().any(|r| sink.accepted_for(r) == 0) {
        assert!(Instant::now() < deadline, "not every submission arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in &expected {
        assert_eq!(sink.accepted_for(r), 1, "{r} exactly once");
    }
    assert_eq!(
        sink.accepted_for("nope1@sw.test") + sink.accepted_for("nope2@sw.test"),
        0
    );
    // The campaigns: the user's, and the one the header named.
    let (status, view) = api.ok("GET", "/messages/receipts:1", None);
    assert_eq!((status, view["state"].as_str()), (200, Some("delivered")), "{view}");
    let (status, view) = api.ok("GET", "/messages/shop:13", None);
    assert_eq!((status, view["state"].as_str()), (200, Some("delivered")), "{view}");
    assert_eq!(view["attempts"][0]["recipient"], "p9@py.test", "{view}");
    drop(server);
    // DKIM: the spooled campaign's log says delivered; the signature itself is checked by
    // scheduler/tests/suite/inject_spool.rs against smtp-sink's copy.
    let log = std::fs::read_to_string(dir.path().join("state/shop/accounting.jsonl")).expect("log");
    assert_eq!(
        log.lines().filter(|l| l.contains("\"outcome\":\"delivered\"")).count(),
        13
    );
}
