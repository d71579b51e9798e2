//! `[list_unsubscribe]`: List-Unsubscribe (RFC 2369) and one-click List-Unsubscribe-Post
//! (RFC 8058) headers, with recipient values percent-encoded in the URL, and the refusals
//! that name the file, field and value.

use std::path::Path;

use volley_scheduler::address::EmailAddress;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::message::MessageFactory;
use volley_scheduler::recipients::RecipientRow;

const BASE: &str =
    "id = \"t-1\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"r.csv\"\n";

fn load(extra: &str) -> Result<Campaign, String> {
    Campaign::from_toml(Path::new("/virtual/c.toml"), &format!("{BASE}{extra}")).map_err(|e| e.to_string())
}

fn headers_of(campaign: &Campaign, email: &str, token: &str) -> Vec<(String, String)> {
    let columns = vec!["email".to_string(), "token".to_string()];
    let compiled = campaign.compile(&columns).expect("compile");
    let row = RecipientRow {
        line: 2,
        offset: 0,
        email: EmailAddress::parse(email).expect("address"),
        values: vec![email.to_string(), token.to_string()],
    };
    let built = MessageFactory::new(&compiled).build(1, &row).expect("build");
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
