//! The `volley` binary as an operator uses it: demo, send with the example config through a
//! `volley sink` child process, and the errors a bad campaign or config gives.

use std::net::TcpStream;
use std::path::{Path, PathBuf};

mod common;

use common::{start_sink, text, volley, write};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn demo_delivers_everything_and_exits_zero() {
    let out = volley()
        .args(["demo", "--recipients", "2000", "--domains", "20"])
        .output()
        .expect("run demo");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("delivered 2000"), "{t}");
    assert!(t.contains("every recipient has exactly one final outcome"), "{t}");
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        assert!(t.contains(ip), "tally for {ip} missing: {t}");
    }
}

#[test]
fn send_example_campaign_through_a_sink_process() {
    let (_sink, addr) = start_sink(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let example = std::fs::read_to_string(repo().join("config/volley.toml")).expect("example config");
    let config = example.replace("127.0.0.1:2525", &addr).replace(
        "state_dir = \"../state\"",
        &format!("state_dir = {:?}", dir.path().join("state")),
    );
    let config = write(dir.path(), "volley.toml", &config);
    let summary = dir.path().join("summary.json");
    let out = volley()
        .arg("send")
        .arg(repo().join("config/campaigns/welcome.toml"))
        .arg("--config")
        .arg(&config)
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .expect("run send");
    assert!(out.status.success(), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    for field in [
        "recipients",
        "delivered",
        "deferred",
        "bounced",
        "suppressed",
        "rejected",
        "elapsed_s",
        "msgs_per_s",
    ] {
        assert!(s.get(field).is_some(), "summary lacks {field}: {s}");
    }
    assert_eq!(s["delivered"], 4, "{s}");
    assert_eq!(s["rejected"], 1, "{s}");
    let rejects = std::fs::read_to_string(s["rejects_file"].as_str().expect("path")).expect("rejects");
    assert!(
        rejects.contains("\"line\":5") && rejects.contains("not-an-address"),
        "{rejects}"
    );
}

#[test]
fn malformed_campaign_names_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "r.csv", "email\na@b.test\n");
    let campaign = write(
        dir.path(),
        "bad.toml",
        "id = \"x\"\nfrom = \"a@b.test\"\nsubject = \"s\"\ntext = \"t\"\nrecipients = \"r.csv\"\nsubjekt = \"typo\"\n",
    );
    let config = write(
        dir.path(),
        "v.toml",
        "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"m.test\"\n",
    );
    let out = send_with(&campaign, &config);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("bad.toml:6:") && t.contains("subjekt"), "{t}");
}

/// `volley send campaign --config config`, run to its end.
fn send_with(campaign: &Path, config: &Path) -> std::process::Output {
    volley()
        .arg("send")
        .arg(campaign)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run")
}

#[test]
fn bad_config_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let campaign = repo().join("config/campaigns/welcome.toml");
    let config = write(
        dir.path(),
        "v.toml",
        "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"m.test\"\n[routes]\n\"*\" = \"mx.example.com\"\n",
    );
    let out = send_with(&campaign, &config);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("refusing to start") && t.contains("v.toml") && t.contains("mx.example.com"),
        "{t}"
    );
}

#[test]
fn send_refuses_a_source_ip_this_host_cannot_bind() {
    // Regression: the run started and deferred, expired and soft-bounced every recipient
    // given to the missing IP. 192.0.2.1 (RFC 5737) is on no interface; binding it sends nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let campaign = repo().join("config/campaigns/welcome.toml");
    let config = write(
        dir.path(),
        "v.toml",
        "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"m2.test\"\n\
         [[source_ips]]\naddress = \"192.0.2.1\"\nehlo_name = \"m9.test\"\n[routes]\n\"*\" = \"127.0.0.1:9\"\n",
    );
    let out = send_with(&campaign, &config);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("source_ips[1].address = 192.0.2.1") && t.contains("cannot be bound"),
        "{t}"
    );
    assert!(
        !dir.path().join("state/welcome-2026-11/accounting.jsonl").exists(),
        "nothing recorded: {t}"
    );
}

#[test]
fn sink_loads_the_shipped_provider_replies() {
    // The shipped canned-reply file must stay valid: the sink refuses a bad one at start.
    let (_sink, addr) = start_sink(&[
        "--canned",
        repo().join("config/sink/providers.toml").to_str().expect("utf-8"),
    ]);
    assert!(TcpStream::connect(&addr).is_ok());
    let bad = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        bad.path(),
        "[[reply]]\ndomain = \"x\"\nstage = \"sometimes\"\ntext = \"550 no\"\n",
    )
    .expect("write");
    let out = volley()
        .args(["sink", "--listen", "127.0.0.1:0", "--canned"])
        .arg(bad.path())
        .output()
        .expect("run sink");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("sometimes"), "{t}");
}

#[test]
fn dkim_keygen_writes_a_key_and_prints_the_record() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let keygen = |algorithm: &str, out: &Path| {
        volley()
            .args([
                "dkim",
                "keygen",
                "--domain",
                "News.Volley.Test",
                "--algorithm",
                algorithm,
            ])
            .args(["--selector", &format!("{algorithm}1"), "--out"])
            .arg(out)
            .output()
            .expect("volley dkim keygen")
    };
    let mut snippets = String::new();
    for (algorithm, k) in [("ed25519", "k=ed25519"), ("rsa", "k=rsa")] {
        let key = dir.path().join(format!("{algorithm}.pem"));
        let o = keygen(algorithm, &key);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        let mode = std::fs::metadata(&key).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{algorithm} key mode {mode:o}");
        assert!(
            std::fs::read_to_string(&key)
                .expect("key")
                .starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "PKCS#8 PEM"
        );
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            stdout.contains(&format!("{algorithm}1._domainkey.news.volley.test")),
            "{t}"
        );
        assert!(stdout.contains("v=DKIM1") && stdout.contains(k), "{t}");
        assert!(
            stdout.contains(&format!(
                "{algorithm}1._domainkey.news.volley.test. IN TXT ( \"v=DKIM1; {k}; p="
            )),
            "zone-file line: {t}"
        );
        // The printed [[dkim]] entry is pasted into volley.toml as is.
        let snippet = &stdout[stdout.find("[[dkim]]").expect("a [[dkim]] entry")..];
        snippets.push_str(snippet);

        // Never over an existing key: the file is left as it was.
        let before = std::fs::read(&key).expect("key");
        let o = keygen(algorithm, &key);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(
            t.contains("refusing to overwrite") && t.contains(&key.display().to_string()),
            "{t}"
        );
        assert_eq!(std::fs::read(&key).expect("key"), before, "{algorithm} key unchanged");
    }
    // Both entries (dual signing for one domain) load: keys read, checked, test-signed.
    let config = write(
        dir.path(),
        "volley.toml",
        &format!("[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n\n{snippets}"),
    );
    let loaded = volley_scheduler::config::SendConfig::load(&config).unwrap_or_else(|e| panic!("{e}\n{snippets}"));
    assert_eq!(loaded.dkim.len(), 2);
    assert!(loaded.dkim.iter().all(|k| k.domain == "news.volley.test"));

    let o = volley()
        .args([
            "dkim",
            "keygen",
            "--domain",
            "x.test",
            "--selector",
            "s",
            "--algorithm",
            "ed25519",
        ])
        .args(["--bits", "2048", "--out"])
        .arg(dir.path().join("never.pem"))
        .output()
        .expect("volley dkim keygen");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!dir.path().join("never.pem").exists());
}

/// Regression: `volley sink` stopped on Ctrl-C only; a SIGTERM (how supervisors and scripts
/// stop it) was ignored. It now stops on either and prints its counts as JSON.
#[test]
fn the_sink_stops_on_sigterm_and_prints_its_counts() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let child = volley()
        .args(["sink", "--listen", &addr])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sink");
    let mut sink = common::Killed(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "sink did not start on {addr}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = sink.0.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = sink.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the sink ignored SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut sink.0.stdout.take().unwrap(), &mut out).unwrap();
    let last = out.lines().last().unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(last).is_ok(),
        "stats line: {out}"
    );
}

/// `volley reputation show` lists the holds of the state directory; `resume` lifts one (exit
/// 0) and says so, and a second `resume` finds nothing to lift (exit 1, naming what is held).
#[test]
fn reputation_show_and_resume_list_and_lift_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "v.toml",
        "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.test\"\n",
    );
    let holds = dir.path().join("state/holds");
    std::fs::create_dir_all(&holds).expect("mkdir");
    let hold = |scope: &str| {
        format!(
            "{{{scope},\"metric\":\"complaint_rate\",\"rate_percent\":0.52,\"threshold_percent\":0.3,\
             \"sample\":2300,\"window\":\"1day\",\"since\":\"2026-12-04T05:00:00Z\"}}"
        )
    };
    write(
        &holds,
        "campaign-news.json",
        &hold("\"scope\":\"campaign\",\"campaign\":\"news\""),
    );
    write(
        &holds,
        "route-127.0.0.2-gmail.json",
        &hold("\"scope\":\"route\",\"source_ip\":\"127.0.0.2\",\"provider\":\"gmail\""),
    );
    let config = config.to_str().expect("utf-8");
    let out = volley()
        .args(["reputation", "show", "--config", config])
        .output()
        .expect("run");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("campaign news: held since 2026-12-04T05:00:00Z: complaint rate 0.52 % over 2300 messages in 1day exceeds 0.3 %"),
        "{shown}"
    );
    assert!(shown.contains("source IP 127.0.0.2 to gmail"), "{shown}");
    let out = volley()
        .args(["reputation", "resume", "--campaign", "news", "--config", config])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("lifted the hold on campaign news"));
    assert!(!holds.join("campaign-news.json").exists());
    let out = volley()
        .args(["reputation", "resume", "--campaign", "news", "--config", config])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no hold on campaign news (held: source IP 127.0.0.2 to gmail)"),
        "{}",
        text(&out)
    );
    let out = volley()
        .args([
            "reputation",
            "resume",
            "--ip",
            "127.0.0.2",
            "--provider",
            "gmail",
            "--config",
            config,
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let out = volley()
        .args(["reputation", "show", "--json", "--config", config])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

/// `volley user add/list/remove`: the users file holds an Argon2id hash (never the password)
/// with mode 0600; a generated password is printed once, `list` prints neither password nor
/// hash; a damaged file is reported with its line and field.
#[test]
fn user_add_list_remove_keep_only_a_private_argon2id_hash() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "volley.toml",
        "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n",
    );
    let users = dir.path().join("state/submission/users.jsonl");
    let user = |args: &[&str]| {
        volley()
            .arg("user")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("volley user")
    };

    let o = user(&[
        "add",
        "shop",
        "--from-domain",
        "Shop.Example",
        "--from-domain",
        "mail.shop.example",
        "--rate",
        "10/min",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let generated = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("password: ").map(str::to_string))
        .expect("a generated password is printed");
    assert_eq!(generated.len(), 24, "{}", text(&o));

    let mut child = volley()
        .args([
            "user",
            "add",
            "crm",
            "--from-domain",
            "crm.example",
            "--password-stdin",
            "--config",
        ])
        .arg(&config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("volley user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"typed-secret-42\n")
        .expect("password");
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !text(&o).contains("typed-secret-42") && !text(&o).contains("password:"),
        "{}",
        text(&o)
    );

    let file = std::fs::read_to_string(&users).expect("users file");
    assert_eq!(
        std::fs::metadata(&users).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(file.matches("\"hash\":\"$argon2id$v=19$").count(), 2, "{file}");
    assert!(
        !file.contains(&generated) && !file.contains("typed-secret-42"),
        "{file}"
    );
    assert!(
        file.contains("\"from_domains\":[\"shop.example\",\"mail.shop.example\"]"),
        "{file}"
    );

    let o = user(&["add", "shop", "--from-domain", "x.example"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("user \"shop\" already exists"), "{}", text(&o));

    let o = user(&["list"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed = text(&o);
    assert!(
        listed.contains("shop") && listed.contains("10/m") && listed.contains("shop.example, mail.shop.example"),
        "{listed}"
    );
    assert!(listed.contains("crm") && listed.contains("unlimited"), "{listed}");
    assert!(!listed.contains("argon2") && !listed.contains(&generated), "{listed}");

    let o = user(&["remove", "shop"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = user(&["list"]);
    assert!(!text(&o).contains("shop"), "{}", text(&o));
    let o = user(&["remove", "shop"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no user \"shop\""), "{}", text(&o));

    let file = std::fs::read_to_string(&users).expect("users file");
    std::fs::write(
        &users,
        format!("{file}{{\"name\":\"x\",\"hash\":\"plain\",\"from_domains\":[\"x.example\"]}}\n"),
    )
    .expect("damage");
    let o = user(&["list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains(&format!("users file {}, line 2: field `hash`", users.display())),
        "{}",
        text(&o)
    );
}

/// Every `volley` process runs without transparent huge pages (the kernel zeroed 2 MiB per
/// fault of mimalloc's churning heap: 10-15 % of a send's CPU), unless the operator keeps them.
#[cfg(target_os = "linux")]
#[test]
fn volley_runs_without_transparent_huge_pages_unless_kept() {
    let thp_of = |keep: Option<&str>| {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let mut cmd = volley();
        cmd.args(["sink", "--listen", &addr, "--no-starttls"])
            .stdout(std::process::Stdio::null());
        if let Some(v) = keep {
            cmd.env("VOLLEY_TRANSPARENT_HUGE_PAGES", v);
        }
        let sink = common::Killed(cmd.spawn().expect("spawn sink"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "sink did not start on {addr}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", sink.0.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_owned())
    };
    let Some(off) = thp_of(None) else {
        eprintln!("this kernel's /proc/<pid>/status has no THP_enabled line; nothing to check");
        return;
    };
    assert_eq!(off, "0", "huge pages left on");
    assert_eq!(
        thp_of(Some("1")).as_deref(),
        Some("1"),
        "VOLLEY_TRANSPARENT_HUGE_PAGES=1 keeps them"
    );
}
