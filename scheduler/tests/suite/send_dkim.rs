//! DKIM end to end: `volley send`'s pipeline signs every message of a campaign whose From domain
//! has keys (here two: RSA-2048 and Ed25519, generated at test time), delivers it to Postfix's
//! smtp-sink, and both signatures of every message smtp-sink stored verify with mail-auth's
//! verifier against the TXT records a DNS server on loopback publishes. A campaign from a domain
//! without a key goes out unsigned; a `[[dkim]]` entry whose key cannot be read stops the config
//! from loading.
//!
//! Every socket is on 127.0.0.1 (smtp-sink, the DNS server) or 127.0.0.2-3 (source IPs).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use volley_bench::dns::{verifier_for, BenchDns, TxtZone};
use volley_bench::postfix::{Dumped, PostfixSink};
use volley_engine::dkim::{generate, DkimKeyConfig, GeneratedKey, KeyAlgorithm};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{RetryConfig, SendConfig, SourceIpConfig};

/// The From domain that has keys.
const SIGNED_DOMAIN: &str = "news.volley.test";
/// A From domain without a key.
const UNSIGNED_DOMAIN: &str = "plain.volley.test";
/// The DNS zone every key is published under.
const ORIGIN: &str = "volley.test";
const RECIPIENTS: usize = 200;

/// Generates a key for `selector._domainkey.news.volley.test` and writes it (0600) into `dir`;
/// returns the key and its `[[dkim]]` entry.
fn key(dir: &Path, algorithm: KeyAlgorithm, selector: &str) -> (GeneratedKey, DkimKeyConfig) {
    let key = generate(algorithm, SIGNED_DOMAIN, selector).expect("keygen");
    let path = dir.join(format!("{selector}.pem"));
    key.write_private_key(&path).expect("write the key");
    let entry = DkimKeyConfig {
        domain: SIGNED_DOMAIN.into(),
        selector: selector.into(),
        key: path,
        algorithm: None,
        headers: None,
        canonicalization: Default::default(),
        expire: None,
    };
    (key, entry)
}

/// A volley.toml equivalent: two source IPs, every domain routed to `sink`, `dkim` keys.
fn config(dir: &Path, sink: SocketAddr, dkim: Vec<DkimKeyConfig>) -> SendConfig {
    SendConfig {
        state_dir: dir.join("state"),
        source_ips: (2..=3)
            .map(|i| SourceIpConfig::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), format!("mta{i}.volley.test")))
            .collect(),
        routes: [("*".to_string(), sink.to_string())].into_iter().collect(),
        smtp: volley_engine::SmtpConfig {
            timeouts: volley_engine::timeouts::Timeouts::uniform(Duration::from_secs(5)),
            ..Default::default()
        },
        max_in_flight: 1000,
        dkim,
        dkim_threads: 2,
        retry: RetryConfig {
            schedule: vec![Duration::from_millis(50).into()],
            max_age: Duration::from_secs(2),
            host_down: Duration::from_secs(60),
        },
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

/// A campaign From `news@<from_domain>` to `n` recipients (CSV with a `name` column), with 8-bit
/// subject and text, a line starting with a dot, and one-click List-Unsubscribe.
fn campaign(dir: &Path, id: &str, from_domain: &str, n: usize) -> (Campaign, BTreeSet<String>) {
    let emails: Vec<String> = (0..n).map(|i| format!("reader{i}@dest{}.test", i % 7)).collect();
    let csv: String = std::iter::once("email,name".to_string())
        .chain(emails.iter().enumerate().map(|(i, e)| format!("{e},Jürgen {i}")))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join(format!("{id}.csv")), csv + "\n").expect("csv");
    let toml = format!(
        "id = \"{id}\"\n\
         from = \"Volley News <news@{from_domain}>\"\n\
         subject = \"Grüße {{{{name}}}}\"\n\
         text = \"Grüße {{{{name}}}},\\n.a line starting with a dot\\n..and one with two\\nÀ bientôt.\\n\"\n\
         recipients = \"{id}.csv\"\n\
         [list_unsubscribe]\n\
         url = \"https://{from_domain}/unsubscribe?e={{{{email}}}}\"\n"
    );
    let path = dir.join(format!("{id}.toml"));
    std::fs::write(&path, toml).expect("campaign toml");
    let campaign = Campaign::load(&path).unwrap_or_else(|e| panic!("campaign loads: {e}"));
    (campaign, emails.into_iter().collect())
}

/// The DKIM results mail-auth gives `message`, one per signature.
async fn verify(verifier: &MessageAuthenticator, message: &[u8]) -> Vec<DkimResult> {
    let parsed = AuthenticatedMessage::parse(message).expect("the received message parses");
    verifier
        .verify_dkim(&parsed)
        .await
        .iter()
        .map(|output| output.result().clone())
        .collect()
}

/// The value of tag `name` in a DKIM-Signature header value (white space removed).
fn tag(signature: &str, name: &str) -> Option<String> {
    signature.split(';').find_map(|t| {
        let (n, v) = t.split_once('=')?;
        (n.trim() == name).then(|| v.split_whitespace().collect())
    })
}

/// Sends `campaign` and returns what smtp-sink stored, one dump per recipient.
async fn send_and_collect(
    campaign: &Campaign,
    config: &SendConfig,
    sink: &PostfixSink,
    expected: usize,
) -> Vec<Dumped> {
    let summary = volley_scheduler::send::run(campaign, config).await.expect("send run");
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.delivered, expected as u64, "{summary:?}");
    let dumped = sink.transactions(expected);
    assert_eq!(dumped.len(), expected, "transactions at smtp-sink: {}", sink.stderr());
    assert!(dumped.iter().all(|d| d.complete), "unfinished dump files");
    dumped
}

/// The recipients smtp-sink saw (`<addr>` with the brackets removed).
fn recipients(dumped: &[Dumped]) -> BTreeSet<String> {
    dumped
        .iter()
        .flat_map(|d| &d.rcpts)
        .filter_map(|r| r.split_whitespace().next())
        .map(|r| r.trim_start_matches('<').trim_end_matches('>').to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_carries_two_signatures_that_verify_after_smtp_sink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rsa, rsa_entry) = key(dir.path(), KeyAlgorithm::Rsa { bits: 2048 }, "rsa2026");
    let (ed, ed_entry) = key(dir.path(), KeyAlgorithm::Ed25519, "ed2026");
    let mut zone = TxtZone::new(ORIGIN);
    for k in [&rsa, &ed] {
        zone.add(k.dns_name.clone(), k.txt_record.clone());
    }
    let dns = BenchDns::start_txt(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &zone)
        .await
        .expect("DNS server");
    let verifier = verifier_for(dns.local_addr()).expect("verifier");

    let sink = PostfixSink::start(&dir.path().join("smtp-sink"));
    let cfg = config(dir.path(), sink.addr(), vec![rsa_entry, ed_entry]);
    let (campaign, sent_to) = campaign(dir.path(), "signed", SIGNED_DOMAIN, RECIPIENTS);
    let dumped = send_and_collect(&campaign, &cfg, &sink, RECIPIENTS).await;
    assert_eq!(recipients(&dumped), sent_to, "every recipient, once");

    for d in &dumped {
        let message = d.message_crlf();
        let shown = || String::from_utf8_lossy(&message).into_owned();
        assert!(
            d.mail_args.starts_with(&format!("<news@{SIGNED_DOMAIN}>")),
            "{}",
            d.mail_args
        );
        let signatures = d.headers("DKIM-Signature");
        assert_eq!(signatures.len(), 2, "{}", shown());
        let algorithms: BTreeSet<String> = signatures.iter().filter_map(|s| tag(s, "a")).collect();
        assert_eq!(
            algorithms,
            BTreeSet::from(["ed25519-sha256".to_string(), "rsa-sha256".to_string()])
        );
        for s in &signatures {
            assert_eq!(tag(s, "d").as_deref(), Some(SIGNED_DOMAIN), "{s}");
            let signed: Vec<String> = tag(s, "h")
                .unwrap_or_default()
                .split(':')
                .map(|h| h.to_ascii_lowercase())
                .collect();
            for needed in ["from", "subject", "list-unsubscribe", "list-unsubscribe-post"] {
                assert!(signed.iter().any(|h| h == needed), "h= lacks {needed}: {s}");
            }
        }
        // The headers that h= covers are really there (RFC 8058 §3.1: one-click needs both).
        assert!(d.header("List-Unsubscribe").is_some(), "{}", shown());
        assert_eq!(
            d.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );

        let results = verify(&verifier, &message).await;
        assert_eq!(results.len(), 2, "{results:?}\n{}", shown());
        assert!(
            results.iter().all(|r| *r == DkimResult::Pass),
            "{results:?}\n{}",
            shown()
        );

        // What was signed is what the campaign said: 8-bit subject and text, dot lines intact.
        let parsed = mail_parser::MessageParser::default()
            .parse(&message)
            .expect("mail-parser parses");
        let subject = parsed.subject().unwrap_or_default();
        assert!(subject.starts_with("Grüße Jürgen "), "{subject:?}");
        let text = parsed.body_text(0).unwrap_or_default().replace("\r\n", "\n");
        assert!(
            text.contains("\n.a line starting with a dot\n..and one with two\nÀ bientôt."),
            "{text:?}"
        );
    }
    // The verifier is not lenient: one changed body byte fails both signatures.
    let tampered = String::from_utf8_lossy(&dumped[0].message_crlf()).replacen("dot\r\n", "dot!\r\n", 1);
    let results = verify(&verifier, tampered.as_bytes()).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results.iter().all(|r| *r != DkimResult::Pass), "{results:?}");
    assert_eq!(sink.message_counter(), Some(RECIPIENTS as u64));
    dns.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_from_domain_without_a_key_is_sent_unsigned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, ed_entry) = key(dir.path(), KeyAlgorithm::Ed25519, "ed2026");
    let sink = PostfixSink::start(&dir.path().join("smtp-sink"));
    let cfg = config(dir.path(), sink.addr(), vec![ed_entry]);
    let (campaign, sent_to) = campaign(dir.path(), "unsigned", UNSIGNED_DOMAIN, 10);
    let dumped = send_and_collect(&campaign, &cfg, &sink, 10).await;
    assert_eq!(recipients(&dumped), sent_to);
    for d in &dumped {
        assert_eq!(
            d.headers("DKIM-Signature"),
            Vec::<String>::new(),
            "{}",
            String::from_utf8_lossy(&d.body)
        );
        assert!(d.header("From").is_some_and(|f| f.contains(UNSIGNED_DOMAIN)));
    }
}

#[test]
fn an_unreadable_key_file_stops_the_config_from_loading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("volley.toml");
    std::fs::write(
        &config_path,
        "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n\n\
         [[dkim]]\ndomain = \"news.volley.test\"\nselector = \"s2026\"\nkey = \"keys/missing.pem\"\n",
    )
    .expect("write volley.toml");
    let error = SendConfig::load(&config_path)
        .expect_err("a missing key file is refused")
        .to_string();
    let missing: PathBuf = dir.path().join("keys/missing.pem");
    for needle in [
        "news.volley.test",
        "s2026._domainkey.news.volley.test",
        &missing.display().to_string(),
        "volley.toml",
    ] {
        assert!(error.contains(needle), "{needle:?} not in: {error}");
    }
}
