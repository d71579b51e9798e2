//! No secret is ever printed: DKIM private keys, and passwords in Redis URLs, stay out of
//! stdout, stderr (at the most verbose log level), accounting logs and error messages — in a
//! whole `volley send`, in refusals to start, and in Redis failures.

use std::path::{Path, PathBuf};
use std::process::Command;

use volley_bench::RedisServer;

const PASSWORD: &str = "Tops3cretRedisPw";

mod common;

use common::{free_port, start_sink, text, write};

/// `volley` at its most verbose log level.
fn volley() -> Command {
    let mut c = common::volley();
    c.env("RUST_LOG", "trace");
    c
}

/// The base64 lines of a PEM file: any of them appearing in output is the key leaking.
fn key_lines(pem: &Path) -> Vec<String> {
    std::fs::read_to_string(pem)
        .expect("key")
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

fn assert_no_secret(what: &str, haystack: &str, secrets: &[String]) {
    for s in secrets {
        assert!(
            !haystack.contains(s.as_str()),
            "{what} contains the secret {s:?}:\n{haystack}"
        );
    }
}

fn keygen(dir: &Path, algorithm: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{algorithm}.pem"));
    let o = volley()
        .args([
            "dkim",
            "keygen",
            "--domain",
            "news.volley.test",
            "--algorithm",
            algorithm,
        ])
        .args(["--selector", &format!("{algorithm}1"), "--out"])
        .arg(&key)
        .output()
        .expect("volley dkim keygen");
    assert!(o.status.success(), "{}", text(&o));
    assert_no_secret("keygen output", &text(&o), &key_lines(&key));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let snippet = stdout[stdout.find("[[dkim]]").expect("a [[dkim]] entry")..].to_string();
    (key, snippet)
}

/// `volley send` of a campaign from news@news.volley.test to `n` recipients.
fn send_signed(dir: &Path, config: &Path, n: usize) -> std::process::Output {
    let recipients: String = (0..n).map(|i| format!("u{i}@example.test\n")).collect();
    write(dir, "list.csv", &format!("email\n{recipients}"));
    let campaign = write(
        dir,
        "campaign.toml",
        "id = \"signed\"\nfrom = \"news@news.volley.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"list.csv\"\n",
    );
    volley()
        .arg("send")
        .arg(&campaign)
        .arg("--config")
        .arg(config)
        .output()
        .expect("volley send")
}

#[test]
fn a_signed_send_at_trace_level_never_prints_the_dkim_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rsa, rsa_entry) = keygen(dir.path(), "rsa");
    let (ed, ed_entry) = keygen(dir.path(), "ed25519");
    let secrets: Vec<String> = key_lines(&rsa).into_iter().chain(key_lines(&ed)).collect();
    assert!(secrets.len() > 10, "the keys have base64 lines: {secrets:?}");

    let (_sink, addr) = start_sink(&[]);
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n\n\
             [routes]\n\"*\" = \"{addr}\"\n\n{rsa_entry}\n{ed_entry}"
        ),
    );
    let o = send_signed(dir.path(), &config, 20);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("delivered 20"), "{out}");
    assert_no_secret("volley send output", &out, &secrets);
    // Every file the run wrote (accounting log, rejects, state) is clean too.
    let mut files = vec![dir.path().join("state")];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).expect("dir").map(|e| e.expect("entry").path()));
        } else {
            let bytes = std::fs::read(&p).expect("state file");
            assert_no_secret(&p.display().to_string(), &String::from_utf8_lossy(&bytes), &secrets);
        }
    }
}

#[test]
fn a_broken_dkim_key_is_refused_by_name_without_its_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MjQy";
    let key = write(
        dir.path(),
        "broken.pem",
        &format!("-----BEGIN PRIVATE KEY-----\n{marker}\n-----END PRIVATE KEY-----\n"),
    );
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n\n\
             [[dkim]]\ndomain = \"news.volley.test\"\nselector = \"s1\"\nkey = \"{}\"\n",
            key.display()
        ),
    );
    let o = send_signed(dir.path(), &config, 1);
    let out = text(&o);
    assert!(!o.status.success(), "a broken key refuses to start: {out}");
    assert!(out.contains("broken.pem"), "the error names the file: {out}");
    assert_no_secret("the refusal", &out, &[marker.to_string()]);
}

#[test]
fn redis_passwords_are_redacted_in_every_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let url = redis.url();
    let host_port = url.trim_start_matches("redis://").split('/').next().unwrap_or_default();
    let port: u16 = host_port
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a port in {url}"));
    // A reachable server that refuses the password (none is configured), and a closed port.
    for (what, url) in [
        ("wrong password", format!("redis://:{PASSWORD}@127.0.0.1:{port}/")),
        (
            "closed port",
            format!("redis://admin:{PASSWORD}@127.0.0.1:{}/", free_port()),
        ),
    ] {
        let config = write(
            dir.path(),
            "volley.toml",
            &format!(
                "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n\
                 warmup = \"standard\"\nwarmup_start = \"2026-11-01\"\n\n\
                 [suppression]\nredis = \"{url}\"\n\n[warmup]\ncounters = \"redis\"\n"
            ),
        );
        for args in [
            vec!["suppress", "check", "a@example.test"],
            vec!["suppress", "add", "a@example.test"],
            vec!["warmup", "show"],
        ] {
            let o = volley()
                .args(&args)
                .arg("--config")
                .arg(&config)
                .output()
                .expect("volley");
            let out = text(&o);
            assert!(!o.status.success(), "{what}, {args:?}: Redis cannot be used: {out}");
            assert!(
                out.contains("127.0.0.1"),
                "{what}, {args:?}: the error names the server: {out}"
            );
            assert_no_secret(&format!("{what}, {args:?}"), &out, &[PASSWORD.to_string()]);
        }
    }
}
