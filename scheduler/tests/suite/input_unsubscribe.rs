//! `[list_unsubscribe]`: List-Unsubscribe (RFC 2369) and one-click List-Unsubscribe-Post
//! (RFC 8058) headers, with recipient values percent-encoded in the URL, and the refusals
//! that name the file, field and value.

use std::path::Path;
use std::sync::Arc;

use volley_feedback::{CampaignTag, Keyring, Token, TokenKind};
use volley_scheduler::address::EmailAddress;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{FeedbackConfig, SendConfig};
use volley_scheduler::message::MessageFactory;
use volley_scheduler::recipients::RecipientRow;
use volley_scheduler::unsubscribe::UnsubscribeLinks;

const BASE: &str =
    "id = \"t-1\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"r.csv\"\n";

fn load(extra: &str) -> Result<Campaign, String> {
    Campaign::from_toml(Path::new("/virtual/c.toml"), &format!("{BASE}{extra}")).map_err(|e| e.to_string())
}

fn headers_of(campaign: &Campaign, email: &str, token: &str) -> Vec<(String, String)> {
    headers_with(campaign, None, email, token)
}

fn headers_with(
    campaign: &Campaign,
    links: Option<Arc<UnsubscribeLinks>>,
    email: &str,
    token: &str,
) -> Vec<(String, String)> {
    let columns = vec!["email".to_string(), "token".to_string()];
    let compiled = campaign.compile(&columns).expect("compile");
    let row = RecipientRow {
        line: 2,
        offset: 0,
        email: EmailAddress::parse(email).expect("address"),
        values: vec![email.to_string(), token.to_string()],
    };
    let built = MessageFactory::new(&compiled)
        .with_unsubscribe_links(links)
        .build(1, &row)
        .expect("build");
    let text = String::from_utf8(built.bytes).expect("ascii");
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    // Unfold (RFC 5322 §2.2.3): a line starting with white space continues the previous one.
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n")
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(n, v)| (n.to_string(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn one_click_with_url_and_mailto() {
    let c = load("[list_unsubscribe]\nurl = \"https://sender.test/u?t={{token}}\"\nmailto = \"unsub@sender.test\"\n")
        .expect("campaign");
    let h = headers_of(&c, "ann@dest.test", "a b&c>\r\nBcc: x@evil.test");
    assert_eq!(
        header(&h, "List-Unsubscribe"),
        Some("<https://sender.test/u?t=a%20b%26c%3E%0D%0ABcc%3A%20x%40evil.test>, <mailto:unsub@sender.test?subject=unsubscribe>")
    );
    assert_eq!(header(&h, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
    assert_eq!(header(&h, "Bcc"), None, "no injected header");
}

#[test]
fn mailto_only_has_no_one_click() {
    let c = load("[list_unsubscribe]\nmailto = \"unsub@sender.test\"\n").expect("campaign");
    let h = headers_of(&c, "ann@dest.test", "t");
    assert_eq!(
        header(&h, "List-Unsubscribe"),
        Some("<mailto:unsub@sender.test?subject=unsubscribe>")
    );
    assert_eq!(header(&h, "List-Unsubscribe-Post"), None);
    let c = load("[list_unsubscribe]\nurl = \"http://sender.test/u\"\none_click = false\n").expect("campaign");
    let h = headers_of(&c, "ann@dest.test", "t");
    assert_eq!(header(&h, "List-Unsubscribe"), Some("<http://sender.test/u>"));
    assert_eq!(header(&h, "List-Unsubscribe-Post"), None);
}

#[test]
fn refusals_name_file_field_and_value() {
    let cases = [
        (
            "[list_unsubscribe]\nurl = \"http://sender.test/u\"\n",
            "list_unsubscribe.url",
            "http://sender.test/u",
        ),
        (
            "[list_unsubscribe]\nmailto = \"u@s.test\"\none_click = true\n",
            "list_unsubscribe.one_click",
            "one_click",
        ),
        (
            "[list_unsubscribe]\nurl = \"https://s.test/a b\"\n",
            "list_unsubscribe.url",
            "https://s.test/a b",
        ),
        (
            "[list_unsubscribe]\nurl = \"ftp://s.test/u\"\n",
            "list_unsubscribe.url",
            "ftp://s.test/u",
        ),
        (
            "[list_unsubscribe]\nmailto = \"not-an-address\"\n",
            "list_unsubscribe.mailto",
            "not-an-address",
        ),
        ("[list_unsubscribe]\n", "list_unsubscribe", "url"),
        (
            "[list_unsubscribe]\nurl = \"https://s.test/u\"\nlink = \"x\"\n",
            "link",
            "link",
        ),
        (
            "[list_unsubscribe]\nvolley = true\nurl = \"https://s.test/u\"\n",
            "list_unsubscribe.url",
            "https://s.test/u",
        ),
        (
            "[list_unsubscribe]\nmailto = \"u@s.test\"\nvolley = true\n",
            "list_unsubscribe.mailto",
            "u@s.test",
        ),
        (
            "[headers]\n\"List-Unsubscribe\" = \"<https://x.test>\"\n",
            "List-Unsubscribe",
            "List-Unsubscribe",
        ),
    ];
    for (extra, field, value) in cases {
        let e = load(extra).err().unwrap_or_else(|| panic!("accepted: {extra}"));
        assert!(
            e.contains("c.toml") && e.contains(field) && e.contains(value),
            "{extra} -> {e}"
        );
    }
}

/// A volley.toml with `[feedback]` (and `unsubscribe_url` when given); the key in `dir`.
fn feedback_config(dir: &Path, unsubscribe_url: Option<&str>) -> SendConfig {
    std::fs::write(dir.join("keys"), "4 a-list-unsubscribe-test-secret-of-32+-chars\n").expect("key");
    let url = unsubscribe_url.map_or(String::new(), |u| format!("unsubscribe_url = \"{u}\"\n"));
    let feedback: FeedbackConfig = toml::from_str(&format!(
        "bounce_domain = \"bounce.sender.test\"\nkey_file = \"{}\"\n{url}",
        dir.join("keys").display()
    ))
    .expect("feedback");
    SendConfig {
        feedback: Some(feedback),
        ..SendConfig::new(Default::default(), Vec::new())
    }
}

#[test]
fn volley_links_carry_a_signed_token_per_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = feedback_config(dir.path(), Some("https://unsub.sender.test/u/"));
    let c = load("[list_unsubscribe]\nvolley = true\n").expect("campaign");
    let links = UnsubscribeLinks::for_campaign(&c, &config)
        .expect("usable")
        .map(Arc::new);
    assert!(links.is_some());
    let h = headers_with(&c, links, "ann@dest.test", "t");
    let value = header(&h, "List-Unsubscribe").expect("List-Unsubscribe");
    let token = value
        .strip_prefix("<https://unsub.sender.test/u/")
        .and_then(|rest| rest.split_once('>'))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| panic!("{value}"));
    assert_eq!(
        value,
        format!("<https://unsub.sender.test/u/{token}>, <mailto:unsubscribe+{token}@bounce.sender.test?subject=unsubscribe>")
    );
    assert_eq!(header(&h, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
    let keys = Keyring::load_file(&dir.path().join("keys")).expect("keys");
    let decoded = Token::decode(&token, &keys).expect("signed with the configured key");
    assert_eq!(decoded.kind, TokenKind::Unsubscribe);
    assert_eq!(decoded.campaign, CampaignTag::of("t-1"));
    assert_eq!(decoded.line, 2, "the recipient's line");
    assert!(decoded.source_ip.is_unspecified(), "{decoded:?}");
}

#[test]
fn volley_links_need_feedback_with_an_unsubscribe_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = load("[list_unsubscribe]\nvolley = true\n").expect("campaign");
    let mut config = feedback_config(dir.path(), None);
    let e = UnsubscribeLinks::for_campaign(&c, &config)
        .expect_err("no unsubscribe_url")
        .to_string();
    assert!(
        e.contains("c.toml: line 7: field `list_unsubscribe.volley` = true") && e.contains("unsubscribe_url"),
        "{e}"
    );
    config.feedback = None;
    let e = UnsubscribeLinks::for_campaign(&c, &config)
        .expect_err("no [feedback]")
        .to_string();
    assert!(e.contains("list_unsubscribe.volley") && e.contains("[feedback]"), "{e}");
    let off = load("[list_unsubscribe]\nvolley = false\nmailto = \"u@s.test\"\n").expect("campaign");
    assert!(UnsubscribeLinks::for_campaign(&off, &config)
        .expect("not volley")
        .is_none());
}
