use std::io::Write;

use super::*;

fn reply(domain: &str, stage: Stage, text: &str) -> CannedReply {
    CannedReply {
        domain: domain.to_owned(),
        stage,
        text: text.to_owned(),
        percent: 100.0,
    }
}

fn write_temp(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(contents.as_bytes()).expect("write temp file");
    file
}

#[test]
fn domain_patterns() {
    let exact = DomainPattern::parse("Yahoo.TEST").expect("exact");
    assert!(exact.matches("yahoo.test") && exact.matches("YAHOO.test"));
    assert!(!exact.matches("mail.yahoo.test"));
    let suffix = DomainPattern::parse("*.yahoo.test").expect("suffix");
    assert!(suffix.matches("mail.yahoo.test") && suffix.matches("a.b.YAHOO.test"));
    assert!(!suffix.matches("yahoo.test") && !suffix.matches("notyahoo.test"));
    assert!(DomainPattern::parse("*").expect("any").matches(""));
    for bad in ["", "*yahoo.test", "a@b", "a..b", "*.", "a b", "yahoo.*"] {
        assert!(DomainPattern::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn text_continuations_are_normalised() {
    let (text, code) = normalize_text("550 5.1.1 one\r\n550 5.1.1 two\n550-5.1.1 three\r\n").expect("valid text");
    assert_eq!(code, 550);
    assert_eq!(text, "550-5.1.1 one\r\n550-5.1.1 two\r\n550 5.1.1 three");
    assert_eq!(normalize_text("421").expect("bare code"), ("421".to_owned(), 421));
}

#[test]
fn bad_texts_are_rejected() {
    for bad in ["", "hello", "55 short", "350 3.0.0 not final", "550 a\r\n451 b", "550x"] {
        assert!(normalize_text(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn pick_honours_stage_domain_and_order() {
    let set = CannedSet::compile(&[
        reply("*.yahoo.test", Stage::Rcpt, "554 5.7.9 first"),
        reply("*", Stage::Rcpt, "451 4.7.1 second"),
        reply("ignored.test", Stage::Connect, "421 4.7.0 busy"),
    ])
    .expect("valid replies");
    let first = set.pick(Stage::Rcpt, "mx.yahoo.test").expect("matches");
    assert_eq!(&*first.text, "554 5.7.9 first");
    assert_eq!(
        &*set.pick(Stage::Rcpt, "gmail.test").expect("any").text,
        "451 4.7.1 second"
    );
    let connect = set.pick(Stage::Connect, "whatever").expect("domain ignored");
    assert!(connect.closes(Stage::Connect));
    assert!(set.pick(Stage::Data, "mx.yahoo.test").is_none());
}

#[test]
fn zero_percent_never_fires() {
    let mut never = reply("*", Stage::Mail, "451 4.3.0 never");
    never.percent = 0.0;
    let set = CannedSet::compile(&[never]).expect("valid");
    assert!((0..100).all(|_| set.pick(Stage::Mail, "").is_none()));
}

#[test]
fn load_file_reads_reply_tables() {
    let file = write_temp(
        r#"
[[reply]]
domain = "*.yahoo.test"
stage = "rcpt"
text = "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred"

[[reply]]
domain = "gmail.test"
stage = "data"
text = "550-5.7.26 DMARC\r\n550 5.7.26 policy."
percent = 12.5
"#,
    );
    let replies = CannedReply::load_file(file.path()).expect("valid file");
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].stage, Stage::Rcpt);
    assert_eq!(replies[0].percent, 100.0);
    assert_eq!(replies[1].percent, 12.5);
}

#[test]
fn load_file_errors_name_file_index_and_field() {
    let file = write_temp(
        "[[reply]]\ndomain = \"a.test\"\nstage = \"rcpt\"\ntext = \"250 ok\"\n\n\
         [[reply]]\ndomain = \"b.test\"\nstage = \"rcpt\"\ntext = \"250 ok\"\npercent = 120\n",
    );
    let err = CannedReply::load_file(file.path())
        .expect_err("percent > 100")
        .to_string();
    let name = file.path().display().to_string();
    assert!(err.contains(&name) && err.contains("reply[1].percent"), "{err}");

    let typo = write_temp("[[reply]]\ndomian = \"a.test\"\nstage = \"rcpt\"\ntext = \"250 ok\"\n");
    let err = CannedReply::load_file(typo.path())
        .expect_err("unknown field")
        .to_string();
    assert!(err.contains("domian"), "{err}");

    let missing = std::path::Path::new("/nonexistent/canned.toml");
    let err = CannedReply::load_file(missing).expect_err("missing file").to_string();
    assert!(err.contains("/nonexistent/canned.toml"), "{err}");
}

#[test]
fn provider_file_maps_providers_to_domains() {
    // The shape of the shared provider-replies.toml.
    let file = write_temp(
        r#"
[[reply]]
provider = "gmail"
stage = "rcpt"
text = "550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1 unnecessary spaces."
kind = "hard-bounce"

[[reply]]
provider = "yahoo"
stage = "connect"
text = "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred"
kind = "throttle"

[[reply]]
provider = "microsoft"
stage = "rcpt"
text = "550 5.5.0 Requested action not taken: mailbox unavailable (S2017)"
kind = "hard-bounce"
"#,
    );
    let replies = CannedReply::from_provider_file(
        file.path(),
        &[
            ("gmail", "gmail.test"),
            ("gmail", "*.gmail.test"),
            ("yahoo", "yahoo.test"),
        ],
    )
    .expect("valid provider file");
    let summary: Vec<(&str, Stage)> = replies.iter().map(|r| (r.domain.as_str(), r.stage)).collect();
    assert_eq!(
        summary,
        [
            ("gmail.test", Stage::Rcpt),
            ("*.gmail.test", Stage::Rcpt),
            ("yahoo.test", Stage::Connect)
        ]
    );
}
