//! DKIM signing, verified by mail-auth's verifier against TXT records served by a real DNS
//! server on loopback (volley-bench's hickory authoritative server).

mod dkim;

use dkim::{ed25519_key, message, rsa_key, signers, Dns};
use mail_auth::DkimResult;

const DOMAIN: &str = "news.volley.test";

#[tokio::test]
async fn rsa_2048_signature_verifies_over_dns() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[("domain = \"news.volley.test\"\nselector = \"rsa1\"", rsa_key())],
    );
    let dns = Dns::publish(signers.public_keys()).await;
    let msg = message(DOMAIN, "", "Hello.\r\n");
    let headers = signers.sign(DOMAIN, &msg).unwrap().expect("a key for the domain");
    let text = String::from_utf8(headers.clone()).unwrap();
    assert!(text.starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=rsa1; d=news.volley.test; c=relaxed/relaxed;"));
    assert!(
        text.ends_with("\r\n") && text.matches("\r\n").count() > 1,
        "folded, CRLF-terminated: {text}"
    );
    // mail-auth keeps `v= a= s= d= c=` on the first line and folds the rest near 76 columns.
    assert!(text.lines().skip(1).all(|l| l.len() <= 80), "folded lines: {text}");
    assert!(
        text.lines().all(|l| l.len() < 998),
        "RFC 5322 §2.1.1 line limit: {text}"
    );
    let signed = [headers, msg].concat();
    dns.assert_passes(&signed, 1).await;
    dns.server.shutdown().await;
}

#[tokio::test]
async fn ed25519_signature_verifies_over_dns() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key())],
    );
    let dns = Dns::publish(signers.public_keys()).await;
    let signed = signers.sign_message(DOMAIN, message(DOMAIN, "", "Hello.\r\n")).unwrap();
    assert!(signed.starts_with(b"DKIM-Signature: v=1; a=ed25519-sha256; s=ed1;"));
    dns.assert_passes(&signed, 1).await;
    dns.server.shutdown().await;
}

#[tokio::test]
async fn dual_rsa_and_ed25519_signatures_both_verify() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[
            ("domain = \"news.volley.test\"\nselector = \"rsa1\"", rsa_key()),
            ("domain = \"NEWS.volley.test\"\nselector = \"ed1\"", ed25519_key()),
        ],
    );
    assert_eq!(signers.len(), 2);
    let dns = Dns::publish(signers.public_keys()).await;
    let signed = signers
        .sign_message("News.Volley.Test.", message(DOMAIN, "", "Two signatures.\r\n"))
        .unwrap();
    let text = String::from_utf8_lossy(&signed);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2);
    assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));
    dns.assert_passes(&signed, 2).await;
    dns.server.shutdown().await;
}

/// Messages that exercise canonicalization: 8-bit body, long lines, leading dots, folded
/// headers, many headers, trailing blank lines, whitespace runs.
fn awkward_messages() -> Vec<(&'static str, Vec<u8>)> {
    let long_line = "x".repeat(990);
    let many_headers: String = (0..200).map(|i| format!("X-Campaign-Tag-{i}: value {i}\r\n")).collect();
    vec![
        (
            "8-bit body",
            message(
                DOMAIN,
                "Content-Transfer-Encoding: 8bit\r\n",
                "Grüße aus Köln — ½ € 日本語\r\n",
            ),
        ),
        (
            "long lines",
            message(DOMAIN, "", &format!("{long_line}\r\n{long_line}\r\n")),
        ),
        (
            "leading dots",
            message(DOMAIN, "", ".\r\n..hidden\r\n.starts with a dot\r\nend\r\n.\r\n"),
        ),
        (
            "folded headers",
            message(
                DOMAIN,
                "X-Folded: first part\r\n\tsecond part\r\n  third part\r\nReferences: <a@x>\r\n <b@x>\r\n",
                "Body.\r\n",
            ),
        ),
        ("many headers", message(DOMAIN, &many_headers, "Body.\r\n")),
        (
            "whitespace and trailing blank lines",
            message(
                DOMAIN,
                "X-Spaces:   lots    of \t space  \r\n",
                "a  b\t\tc  \r\n\r\n\r\n\r\n",
            ),
        ),
        ("empty body", message(DOMAIN, "", "")),
    ]
}

#[tokio::test]
async fn awkward_messages_verify_under_every_canonicalization() {
    let dir = tempfile::tempdir().unwrap();
    for canonicalization in ["relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"] {
        let fields = |selector: &str| {
            format!(
                "domain = \"news.volley.test\"\nselector = \"{selector}\"\ncanonicalization = \"{canonicalization}\""
            )
        };
        let (rsa, ed) = (fields("rsa1"), fields("ed1"));
        let signers = signers(dir.path(), &[(rsa.as_str(), rsa_key()), (ed.as_str(), ed25519_key())]);
        let dns = Dns::publish(signers.public_keys()).await;
        for (case, msg) in awkward_messages() {
            let signed = signers.sign_message(DOMAIN, msg).unwrap();
            let text = String::from_utf8_lossy(&signed);
            assert!(text.contains(&format!("c={canonicalization};")), "{case}: {text}");
            let results = dns.verify(&signed).await;
            assert_eq!(
                results,
                [DkimResult::Pass, DkimResult::Pass],
                "{case} under {canonicalization}"
            );
        }
        dns.server.shutdown().await;
    }
}

#[tokio::test]
async fn default_headers_cover_list_unsubscribe_and_oversign_from() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key())],
    );
    let signed = signers.sign_message(DOMAIN, message(DOMAIN, "", "Hi.\r\n")).unwrap();
    let text = String::from_utf8_lossy(&signed);
    let header_end = text.find("\r\nFrom:").unwrap();
    let h_tag: String = text[..header_end]
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .into();
    let names: Vec<String> = h_tag
        .split(':')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    let count = |name: &str| names.iter().filter(|n| *n == name).count();
    assert_eq!(count("from"), 2, "From is oversigned: {names:?}");
    assert_eq!(count("list-unsubscribe"), 2, "{names:?}");
    assert_eq!(count("list-unsubscribe-post"), 2, "{names:?}");
    for name in ["to", "subject", "date", "message-id", "mime-version", "content-type"] {
        assert!(count(name) >= 1, "{name} signed: {names:?}");
    }
}

#[tokio::test]
async fn an_added_from_header_breaks_the_oversigned_signature() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key())],
    );
    let dns = Dns::publish(signers.public_keys()).await;
    let signed = signers.sign_message(DOMAIN, message(DOMAIN, "", "Hi.\r\n")).unwrap();
    dns.assert_passes(&signed, 1).await;
    let text = String::from_utf8(signed).unwrap();
    let forged = text.replacen("From: Volley News", "From: attacker@evil.test\r\nFrom: Volley News", 1);
    let results = dns.verify(forged.as_bytes()).await;
    assert!(matches!(results.as_slice(), [DkimResult::Fail(_)]), "{results:?}");
    dns.server.shutdown().await;
}

#[tokio::test]
async fn expiry_sets_the_x_tag_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[(
            "domain = \"news.volley.test\"\nselector = \"rsa1\"\nexpire = \"7d\"",
            rsa_key(),
        )],
    );
    let dns = Dns::publish(signers.public_keys()).await;
    let signed = signers
        .sign_message(DOMAIN, message(DOMAIN, "", "Soon stale.\r\n"))
        .unwrap();
    let text = String::from_utf8_lossy(&signed);
    let tag = |name: &str| -> u64 {
        let unfolded = text.replace("\r\n\t", " ");
        let start = unfolded
            .find(&format!(" {name}="))
            .unwrap_or_else(|| panic!("no {name}= in {text}"))
            + name.len()
            + 2;
        unfolded[start..].split(';').next().unwrap().trim().parse().unwrap()
    };
    assert_eq!(tag("x") - tag("t"), 7 * 86_400);
    dns.assert_passes(&signed, 1).await;
    dns.server.shutdown().await;
}

#[tokio::test]
async fn tampering_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[
            ("domain = \"news.volley.test\"\nselector = \"rsa1\"", rsa_key()),
            ("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key()),
        ],
    );
    let dns = Dns::publish(signers.public_keys()).await;
    let signed = signers
        .sign_message(DOMAIN, message(DOMAIN, "", "Pay invoice 1234.\r\n"))
        .unwrap();
    dns.assert_passes(&signed, 2).await;
    let text = String::from_utf8(signed).unwrap();

    // mail-auth reports a body-hash mismatch as neutral (RFC 6376 §3.7 step 4 fails before the
    // signature is checked); anything but pass is a failed verification.
    let body = text.replace("invoice 1234", "invoice 9999");
    let results = dns.verify(body.as_bytes()).await;
    assert_eq!(results.len(), 2);
    let body_hash_mismatch =
        DkimResult::Neutral(mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch));
    assert!(results.iter().all(|r| *r == body_hash_mismatch), "body: {results:?}");

    let subject = text.replace("Subject: Weekly digest", "Subject: Urgent");
    let results = dns.verify(subject.as_bytes()).await;
    assert!(
        results.iter().all(|r| matches!(r, DkimResult::Fail(_))),
        "subject: {results:?}"
    );
    dns.server.shutdown().await;
}

#[tokio::test]
async fn other_domains_pass_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let signers = signers(
        dir.path(),
        &[("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key())],
    );
    let msg = message("volley.test", "", "Parent domain: no key.\r\n");
    assert!(signers.sign("volley.test", &msg).unwrap().is_none());
    assert!(signers.sign("sub.news.volley.test", &msg).unwrap().is_none());
    assert!(!signers.has_key_for("other.test"));
    assert!(signers.has_key_for("NEWS.volley.test"));
    assert_eq!(signers.sign_message("volley.test", msg.clone()).unwrap(), msg);
}
