//! VERP return paths end to end: with `[feedback]` in volley.toml every message goes to
//! Postfix's smtp-sink with `MAIL FROM:<bounces+<token>@<bounce domain>>`, and each token
//! decodes (with the configured key) to the campaign, the recipient's line and the source IP
//! the message really came from (smtp-sink's record of the client address). The header From is
//! unchanged; a campaign's `verp = false` keeps its `envelope_from`. `[feedback]` problems are
//! reported with line, field and value.
//!
//! Every socket is on 127.0.0.1 (smtp-sink) or 127.0.0.2-3 (source IPs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use volley_bench::postfix::{Dumped, PostfixSink};
use volley_feedback::verp::{token_in_address, AddressToken};
use volley_feedback::{CampaignTag, Keyring, TokenKind};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{ConfigError, FeedbackConfig, RetryConfig, SendConfig};

const BOUNCE_DOMAIN: &str = "bounce.volley.test";
const RECIPIENTS: usize = 40;
const KEY: &str = "# test key\n2 a-verp-test-secret-of-at-least-32-characters\n";

fn config(dir: &Path, sink: SocketAddr, key_file: PathBuf) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: super::common::source_ips(2, 3),
        routes: super::common::route_all_to(sink),
        smtp: volley_engine::SmtpConfig {
            timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(5)),
            ..Default::default()
        },
        retry: RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_secs(2),
            host_down: Duration::from_secs(60),
        },
        feedback: Some(FeedbackConfig {
            bounce_domain: BOUNCE_DOMAIN.into(),
            key_file: Some(key_file),
            key_env: None,
            verp: true,
            unsubscribe_max_age: Duration::from_secs(86_400),
            max_message_size: 1 << 20,
            unsubscribe_url: None,
        }),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

/// A campaign to `RECIPIENTS` addresses; `extra` is appended to its TOML. Returns it and its
/// recipients by line (the header is line 1).
fn campaign(dir: &Path, id: &str, extra: &str) -> (Campaign, BTreeMap<u64, String>) {
    let emails: Vec<String> = (0..RECIPIENTS)
        .map(|i| format!("reader{i}@dest{}.test", i % 5))
        .collect();
    let csv = std::iter::once("email".to_string())
        .chain(emails.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
    let toml = format!(
        "id = \"{id}\"\nfrom = \"Volley News <news@sender.volley.test>\"\n\
         envelope_from = \"returns@sender.volley.test\"\nsubject = \"Hi\"\ntext = \"Hello.\"\n\
         recipients = \"{id}.csv\"\n{extra}"
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, toml).expect("campaign toml");
    let campaign = Campaign::load(&path).unwrap_or_else(|e| panic!("campaign loads: {e}"));
    let by_line = emails.into_iter().enumerate().map(|(i, e)| (i as u64 + 2, e)).collect();
    (campaign, by_line)
}

fn sent(dumped: &[Dumped]) -> Vec<(String, String, String)> {
    dumped
        .iter()
        .map(|d| {
            let mail_from = d.mail_args.split_whitespace().next().unwrap_or("").to_string();
            let rcpt = d.rcpts.first().and_then(|r| r.split_whitespace().next()).unwrap_or("");
            (
                mail_from,
                rcpt.trim_matches(['<', '>']).to_string(),
                d.client_addr.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mail_from_carries_a_token_naming_campaign_line_and_source_ip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("feedback.key");
    std::fs::write(&key_file, KEY).expect("key");
    let sink = PostfixSink::start(&dir.path().join("smtp-sink"));
    let cfg = config(dir.path(), sink.addr(), key_file.clone());
    let (campaign, by_line) = campaign(dir.path(), "verp-spring", "");

    let summary = volley_scheduler::send::run(&campaign, &cfg).await.expect("send run");
    assert_eq!(summary.delivered, RECIPIENTS as u64, "{summary:?}");
    let dumped = sink.transactions(RECIPIENTS);
    assert_eq!(dumped.len(), RECIPIENTS, "{}", sink.stderr());

    let keys = Keyring::load_file(&key_file).expect("key file");
    let mut lines_seen = Vec::new();
    let mut ips_seen = std::collections::BTreeSet::new();
    for (mail_from, rcpt, client) in sent(&dumped) {
        let address = mail_from.trim_matches(['<', '>']);
        let local = address.split('@').next().unwrap_or("");
        assert!(
            address.starts_with("bounces+") && address.ends_with("@bounce.volley.test"),
            "{mail_from}"
        );
        assert!(local.len() <= 64, "RFC 5321 §4.5.3.1.1 local part: {local}");
        let AddressToken::Valid(token) = token_in_address(address, &keys, &[BOUNCE_DOMAIN.to_string()]) else {
            panic!("{mail_from} does not decode")
        };
        assert_eq!(token.kind, TokenKind::Bounce);
        assert_eq!(token.campaign, CampaignTag::of("verp-spring"));
        assert_eq!(
            by_line.get(&token.line),
            Some(&rcpt),
            "the token's line is the recipient's"
        );
        assert_eq!(
            token.source_ip.to_string(),
            client,
            "the token names the IP that sent it"
        );
        lines_seen.push(token.line);
        ips_seen.insert(token.source_ip);
    }
    lines_seen.sort_unstable();
    assert_eq!(
        lines_seen,
        by_line.keys().copied().collect::<Vec<_>>(),
        "one token per recipient"
    );
    assert_eq!(ips_seen.len(), 2, "both source IPs sent: {ips_seen:?}");
    // The header From is the campaign's, not the return path.
    let first = &dumped[0];
    assert_eq!(
        first.header("From").as_deref(),
        Some("\"Volley News\" <news@sender.volley.test>")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_can_opt_out_of_verp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("feedback.key");
    std::fs::write(&key_file, KEY).expect("key");
    let sink = PostfixSink::start(&dir.path().join("smtp-sink"));
    let cfg = config(dir.path(), sink.addr(), key_file);
    let (campaign, _) = campaign(dir.path(), "verp-off", "verp = false\n");
    let summary = volley_scheduler::send::run(&campaign, &cfg).await.expect("send run");
    assert_eq!(summary.delivered, RECIPIENTS as u64, "{summary:?}");
    let dumped = sink.transactions(RECIPIENTS);
    assert!(
        sent(&dumped)
            .iter()
            .all(|(from, _, _)| from == "<returns@sender.volley.test>"),
        "{:?}",
        sent(&dumped)
    );
}

#[tokio::test]
async fn verp_without_a_feedback_table_or_key_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sink: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (campaign, _) = campaign(dir.path(), "verp-on", "verp = true\n");
    let mut cfg = config(dir.path(), sink, dir.path().join("missing.key"));
    let e = volley_scheduler::send::run(&campaign, &cfg)
        .await
        .expect_err("no key file")
        .to_string();
    assert!(e.contains("feedback.key_file") && e.contains("missing.key"), "{e}");
    cfg.feedback = None;
    let e = volley_scheduler::send::run(&campaign, &cfg)
        .await
        .expect_err("no [feedback]")
        .to_string();
    assert!(e.contains("verp = true") && e.contains("[feedback]"), "{e}");
}

#[test]
fn feedback_problems_name_line_field_and_value() {
    let text = "source_ips = [{ address = \"127.0.0.2\", ehlo_name = \"a.test\" }]\n\
                [feedback]\n\
                bounce_domain = \"bad_domain\"\n\
                key_env = \"\"\n\
                max_message_size = 10\n";
    let Err(ConfigError::Problems { problems, .. }) = SendConfig::parse(text, Path::new("volley.toml")) else {
        panic!("problems expected")
    };
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        shown.contains(&"line 3: field `feedback.bounce_domain` = \"bad_domain\": expected a domain name: labels of letters, digits and inner dashes, separated by dots".to_string()),
        "{shown:#?}"
    );
    assert!(
        shown.iter().any(|s| s.starts_with("line 4: field `feedback.key_env`")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("line 5: field `feedback.max_message_size` = \"10\"")),
        "{shown:#?}"
    );

    let unknown = "source_ips = [{ address = \"127.0.0.2\", ehlo_name = \"a.test\" }]\n[feedback]\nbounce_domain = \"b.test\"\nkey_file = \"k\"\nverb = true\n";
    let e = SendConfig::parse(unknown, Path::new("volley.toml"))
        .expect_err("unknown field")
        .to_string();
    assert!(e.contains("verb"), "{e}");
}

#[test]
fn a_short_secret_in_the_key_file_is_refused_at_load_without_showing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("feedback.key"), "0 short-secret\n").expect("key");
    let path = dir.path().join("volley.toml");
    std::fs::write(
        &path,
        "source_ips = [{ address = \"127.0.0.2\", ehlo_name = \"a.test\" }]\n\
         [feedback]\nbounce_domain = \"bounce.volley.test\"\nkey_file = \"feedback.key\"\n",
    )
    .expect("config");
    let config = SendConfig::load_unchecked(&path).expect("parses");
    let e = config.check_feedback(&path).expect_err("short secret").to_string();
    assert!(
        e.contains("feedback.key_file") && e.contains("line 1") && e.contains("at least 32"),
        "{e}"
    );
    assert!(!e.contains("short-secret"), "the secret is never shown: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_chunk_s_tokens_name_the_cluster_campaign_and_the_original_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("feedback.key");
    std::fs::write(&key_file, KEY).expect("key");
    let sink = PostfixSink::start(&dir.path().join("smtp-sink"));
    let cfg = config(dir.path(), sink.addr(), key_file.clone());
    // The chunk campaign `spring.c3`: its local line k is line 1000 + k of the cluster
    // campaign's file.
    let (mut chunk, by_local) = campaign(dir.path(), "spring.c3", "");
    let lines: Vec<u64> = (1..=RECIPIENTS as u64 + 1).map(|k| 1000 + k).collect();
    chunk.set_chunk_of(volley_scheduler::campaign::ChunkOf {
        campaign: "spring".into(),
        lines: std::sync::Arc::new(lines),
        skip: Vec::new(),
        rows: None,
    });
    let summary = volley_scheduler::send::run(&chunk, &cfg).await.expect("send run");
    assert_eq!(summary.delivered, RECIPIENTS as u64, "{summary:?}");
    let keys = Keyring::load_file(&key_file).expect("key file");
    let by_original: BTreeMap<u64, String> = by_local.into_iter().map(|(k, e)| (1000 + k, e)).collect();
    for (mail_from, rcpt, _) in sent(&sink.transactions(RECIPIENTS)) {
        let address = mail_from.trim_matches(['<', '>']);
        let AddressToken::Valid(token) = token_in_address(address, &keys, &[BOUNCE_DOMAIN.to_string()]) else {
            panic!("{mail_from} does not decode")
        };
        assert_eq!(token.campaign, CampaignTag::of("spring"), "{mail_from}");
        assert_eq!(by_original.get(&token.line), Some(&rcpt), "{mail_from}");
    }
}
