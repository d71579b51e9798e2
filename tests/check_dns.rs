//! `volley check-dns` and `volley check-config --dns` against the project's loopback DNS: one
//! line per check, `--json`, exit 0 without failures, 1 with one, 2 when the configuration
//! cannot be read.

mod common;

use std::path::Path;
use std::process::Output;

use common::{text, volley, write};
use volley_bench::dns::{BenchDns, BenchDnsHandle, RecordZone, ZoneRecord};
use volley_engine::dkim::{generate, KeyAlgorithm};

/// The DNS of sender.test: SPF for 127.0.0.2, its DKIM key, `p=reject`, FCrDNS of 127.0.0.2 —
/// and, when `broken`, an SPF record that leaves the IP out.
async fn serve(dir: &Path, broken: bool) -> BenchDnsHandle {
    let key = generate(KeyAlgorithm::Ed25519, "sender.test", "s1").unwrap();
    write(dir, "s1.pem", &key.private_pem);
    let spf = if broken {
        "v=spf1 ip4:127.0.0.9 -all"
    } else {
        "v=spf1 ip4:127.0.0.2 -all"
    };
    let mut forward = RecordZone::new("test");
    forward
        .add("sender.test", ZoneRecord::Txt(spf.into()))
        .add("s1._domainkey.sender.test", ZoneRecord::Txt(key.txt_record))
        .add("_dmarc.sender.test", ZoneRecord::Txt("v=DMARC1; p=reject".into()))
        .add("mta.sender.test", ZoneRecord::A("127.0.0.2".parse().unwrap()))
        .add("bounces.sender.test", ZoneRecord::Mx(10, "mta.sender.test".into()));
    let mut reverse = RecordZone::new("127.in-addr.arpa");
    reverse.add("2.0.0.127.in-addr.arpa", ZoneRecord::Ptr("mta.sender.test".into()));
    BenchDns::start_zones("127.0.0.1:0".parse().unwrap(), &[forward, reverse])
        .await
        .unwrap()
}

fn config(dir: &Path, dns: &BenchDnsHandle) -> std::path::PathBuf {
    write(
        dir,
        "volley.toml",
        &format!(
            r#"state_dir = "state"
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta.sender.test"

[[dkim]]
domain = "sender.test"
selector = "s1"
key = "s1.pem"

[dns]
nameservers = ["{}"]
timeout = "2s"
"#,
            dns.local_addr()
        ),
    )
}

async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || volley().args(args).output().expect("volley"))
        .await
        .unwrap()
}

fn args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut out = vec!["--config".to_owned(), dir.join("volley.toml").display().to_string()];
    out.extend(extra.iter().map(|s| s.to_string()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_sender_passes_every_check_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let dns = serve(dir.path(), false).await;
    config(dir.path(), &dns);
    let mut argv = vec!["check-dns".to_owned()];
    argv.extend(args(dir.path(), &["--bounce-domain", "bounces.sender.test"]));
    let o = run(argv).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for line in [
        "PASS spf sender.test: \"v=spf1 ip4:127.0.0.2 -all\" authorises every source IP",
        "PASS dkim s1._domainkey.sender.test: \"v=DKIM1; k=ed25519; p=",
        "PASS dmarc sender.test: \"v=DMARC1; p=reject\"",
        "PASS alignment sender.test: DKIM d=sender.test s=s1 aligns",
        "PASS ptr 127.0.0.2: PTR mta.sender.test -> 127.0.0.2",
        "PASS bounce_mx bounces.sender.test: MX 10 mta.sender.test",
        "6 checks: 6 pass, 0 warn, 0 fail",
    ] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line:?} missing:\n{out}");
    }
    dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_exits_1_and_json_carries_record_and_advice() {
    let dir = tempfile::tempdir().unwrap();
    let dns = serve(dir.path(), true).await;
    config(dir.path(), &dns);
    let mut argv = vec!["check-dns".to_owned(), "--json".to_owned()];
    argv.extend(args(dir.path(), &[]));
    let o = run(argv).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let checks: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON array");
    let spf = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "spf")
        .expect("an spf check");
    assert_eq!(spf["status"], "fail");
    assert_eq!(spf["subject"], "sender.test");
    assert_eq!(spf["record"], "v=spf1 ip4:127.0.0.9 -all");
    assert!(spf["message"]
        .as_str()
        .unwrap()
        .contains("127.0.0.2 fail via -all in sender.test"));
    assert_eq!(
        spf["advice"],
        "sender.test. TXT \"v=spf1 ip4:127.0.0.2 ip4:127.0.0.9 -all\""
    );

    // check-config --dns appends the same checks and counts the failure as a problem.
    let mut argv = vec!["check-config".to_owned(), "--dns".to_owned()];
    argv.extend(args(dir.path(), &[]));
    let o = run(argv).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("dns checks (volley check-dns):"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("FAIL spf sender.test:")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("PASS ptr 127.0.0.2:")), "{out}");
    dns.shutdown().await;
}

#[test]
fn an_unreadable_configuration_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = volley()
        .args(["check-dns", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing.toml"), "{}", text(&o));
}

/// A key that cannot be read is one failed check among the others, not an error that stops
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_key_is_a_failed_dkim_check_and_the_rest_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let dns = serve(dir.path(), false).await;
    let path = config(dir.path(), &dns);
    let mut text_of = std::fs::read_to_string(&path).unwrap();
    text_of = text_of.replace(
        "[dns]",
        "[[dkim]]\ndomain = \"sender.test\"\nselector = \"s2\"\nkey = \"missing.pem\"\n\n[dns]",
    );
    std::fs::write(&path, text_of).unwrap();
    let mut argv = vec!["check-dns".to_owned()];
    argv.extend(args(dir.path(), &[]));
    let o = run(argv).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.lines().any(
            |l| l.starts_with("FAIL dkim s2._domainkey.sender.test: the private key cannot be used:")
                && l.contains("missing.pem")
        ),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("PASS dkim s1._domainkey.sender.test:")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("PASS ptr 127.0.0.2:")), "{out}");
    dns.shutdown().await;
}
