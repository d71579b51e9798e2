//! Building messages: headers, MIME structure, wire-format invariants (7-bit, CRLF, ≤ 998
//! octets per line), unique Message-IDs and header-injection refusal. Output is parsed back
//! with mail-parser.

use std::path::{Path, PathBuf};

use mail_parser::{HeaderForm, HeaderValue, MessageParser};
use volley_scheduler::address::EmailAddress;
use volley_scheduler::campaign::{Campaign, CompiledCampaign};
use volley_scheduler::message::{BuiltMessage, MessageFactory, RenderError};
use volley_scheduler::recipients::RecipientRow;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/campaigns")
        .join(name)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn good_campaign() -> CompiledCampaign {
    let campaign = Campaign::load(&fixture("good.toml")).unwrap();
    campaign.compile(&strings(&["email", "first_name", "city"])).unwrap()
}

/// A campaign from inline TOML (no body files), compiled against `columns`.
fn inline_campaign(body: &str, columns: &[&str]) -> CompiledCampaign {
    let toml = format!("id = \"t-1\"\nrecipients = \"r.csv\"\n{body}");
    let campaign = Campaign::from_toml(Path::new("/virtual/c.toml"), &toml).unwrap();
    campaign.compile(&strings(columns)).unwrap()
}

fn row(values: &[&str]) -> RecipientRow {
    RecipientRow {
        line: 7,
        offset: 0,
        email: EmailAddress::parse(values[0]).unwrap(),
        values: strings(values),
    }
}

/// 7-bit, CRLF only, no line over 998 octets (RFC 5322 §2.1.1, §2.3).
fn assert_wire_format(msg: &BuiltMessage) {
    let bytes = &msg.bytes;
    assert!(bytes.is_ascii(), "non-ASCII byte in output");
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
            _ => {}
        }
    }
    let text = std::str::from_utf8(bytes).unwrap();
    for line in text.split("\r\n") {
        assert!(line.len() <= 998, "line of {} octets", line.len());
    }
}

/// A custom header decoded as unstructured text (RFC 2047 words decoded).
fn header_text(msg: &mail_parser::Message<'_>, name: &str) -> String {
    match msg.header_as(name.to_owned(), HeaderForm::Text).as_slice() {
        [HeaderValue::Text(t)] => t.to_string(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn multipart_message_with_all_headers() {
    let factory = MessageFactory::new(&good_campaign());
    let built = factory.build(1, &row(&["ann@example.com", "Ann", "Oslo"])).unwrap();
    assert_wire_format(&built);
    let text = std::str::from_utf8(&built.bytes).unwrap();
    assert!(text.contains("\r\nMIME-Version: 1.0\r\n"), "{text}");
    assert!(text.contains("Content-Type: multipart/alternative"), "{text}");

    let msg = MessageParser::default().parse(&built.bytes).unwrap();
    let from = msg.from().unwrap().first().unwrap();
    assert_eq!(
        (from.name(), from.address()),
        (Some("Volley News"), Some("news@sender.test"))
    );
    assert_eq!(msg.to().unwrap().first().unwrap().address(), Some("ann@example.com"));
    let reply_to = msg.reply_to().unwrap().first().unwrap();
    assert_eq!(
        (reply_to.name(), reply_to.address()),
        (Some("Volley Help"), Some("help@sender.test"))
    );
    assert_eq!(msg.subject(), Some("Hello Ann from Volley"));
    assert!(msg.date().is_some());
    assert_eq!(msg.message_id(), Some(built.message_id.as_str()));
    let (prefix, domain) = built.message_id.split_once('@').unwrap();
    assert_eq!(domain, "sender.test");
    let parts: Vec<&str> = prefix.split('.').collect();
    assert_eq!(parts[..2], ["spring-2026", "1"]);
    assert!(
        parts[2].len() == 16 && parts[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "{prefix}"
    );

    assert_eq!(header_text(&msg, "X-Campaign-Id"), "spring");
    assert_eq!(header_text(&msg, "X-City"), "Oslo");
    let unfolded = text.replace("\r\n ", " ");
    assert!(
        unfolded.contains("List-Unsubscribe: <https://sender.test/unsubscribe?u=ann%40example.com>,"),
        "{unfolded}"
    );
    assert!(unfolded.contains("<mailto:unsubscribe@sender.test?subject=unsubscribe>\r\n"));
    assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));

    assert_eq!((msg.text_body_count(), msg.html_body_count()), (1, 1));
    let body = msg.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        body.starts_with("Hi Ann,\n\nSpring is here in Oslo. This line is deliberately long"),
        "{body}"
    );
    assert!(
        body.contains("and that is what we are testing here.\n\n-- Volley"),
        "{body}"
    );
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable"),
        "long line must be encoded"
    );
    assert!(msg
        .body_html(0)
        .unwrap()
        .contains("<p>Hi Ann,</p><p>Spring is here in Oslo.</p>"));
}

#[test]
fn hostile_values_keep_the_wire_format() {
    let compiled = inline_campaign(
        "from = \"Zoë Müller, Volley <news@sender.test>\"\nsubject = \"Re: {{name}}\"\n\
         text = \"Dear {{name}},\\n{{note}}\\nBye\"\nhtml = \"<p>{{note}}</p>\"\n\
         [headers]\n\"X-Note\" = \"{{name}}\"\n",
        &["email", "name", "note"],
    );
    let factory = MessageFactory::new(&compiled);
    let long_word = "x".repeat(3000);
    let cases = [
        ("Plain", "short note"),
        ("Ünïcödé 名前", "naïve café\r\nline two\rline three\nline four"),
        (long_word.as_str(), long_word.as_str()),
        ("trailing space ", "trailing space \nand tab\t\n"),
        ("=?utf-8?B?not-really?=", "=3D dots\n.\n..\n"),
    ];
    for (seq, (name, note)) in cases.iter().enumerate() {
        let built = factory.build(seq as u64, &row(&["a@b.test", name, note])).unwrap();
        assert_wire_format(&built);
        let msg = MessageParser::default().parse(&built.bytes).unwrap();
        assert_eq!(msg.subject(), Some(format!("Re: {}", name.trim_end()).as_str()));
        assert_eq!(header_text(&msg, "X-Note"), name.trim_end());
        let body = msg.body_text(0).unwrap().replace("\r\n", "\n");
        let expected_note = note.replace("\r\n", "\n").replace('\r', "\n");
        assert_eq!(body, format!("Dear {name},\n{expected_note}\nBye"));
        let from = msg.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Zoë Müller, Volley"));
    }
    // HTML escaping of values in the html part.
    let built = factory.build(9, &row(&["a@b.test", "n", "<script>&"])).unwrap();
    let msg = MessageParser::default().parse(&built.bytes).unwrap();
    assert_eq!(msg.body_html(0).unwrap(), "<p>&lt;script&gt;&amp;</p>");
}

#[test]
fn message_ids_are_unique() {
    let compiled = good_campaign();
    let factory = MessageFactory::new(&compiled);
    let recipient = row(&["ann@example.com", "Ann", "Oslo"]);
    let mut ids = std::collections::HashSet::new();
    for seq in 0..1000 {
        assert!(ids.insert(factory.build(seq, &recipient).unwrap().message_id));
    }
    // A second factory (another run) reusing the same sequence numbers.
    let other = MessageFactory::new(&compiled);
    assert!(ids.insert(other.build(0, &recipient).unwrap().message_id));
}

#[test]
fn header_injection_is_refused_naming_header_and_column() {
    let factory = MessageFactory::new(&good_campaign());
    let evil = "Ann\r\nBcc: victim@example.org";
    let err = factory.build(1, &row(&["ann@example.com", evil, "Oslo"])).unwrap_err();
    match &err {
        RenderError::HeaderInjection { field, column, value } => {
            assert_eq!(
                (field.as_str(), column.as_str(), value.as_str()),
                ("Subject", "first_name", evil)
            );
        }
        other => panic!("{other:?}"),
    }
    let rejected = err.to_rejected(7, "ann@example.com");
    assert_eq!(
        (rejected.line, rejected.field.as_str(), rejected.value.as_str()),
        (7, "first_name", evil)
    );
    assert!(
        rejected.reason.contains("`Subject`") && rejected.reason.contains("ann@example.com"),
        "{rejected:?}"
    );

    let err = factory
        .build(2, &row(&["ann@example.com", "Ann", "Oslo\n"]))
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::HeaderInjection { field, column, .. } if field == "X-City" && column == "city"),
        "{err:?}"
    );
    for control in ["\u{0}", "\u{7f}", "\u{85}", "\u{1b}[31m"] {
        let name = format!("Ann{control}");
        assert!(
            factory.build(3, &row(&["ann@example.com", &name, "Oslo"])).is_err(),
            "{name:?}"
        );
    }
    // TAB is allowed in unstructured header values.
    assert!(factory.build(4, &row(&["ann@example.com", "Ann\tB", "Oslo"])).is_ok());
}

#[test]
fn single_part_messages() {
    let text_only = inline_campaign(
        "from = \"n@s.test\"\nsubject = \"s\"\ntext = \"hi {{n}}\"\n",
        &["email", "n"],
    );
    let built = MessageFactory::new(&text_only)
        .build(1, &row(&["a@b.test", "x"]))
        .unwrap();
    assert_wire_format(&built);
    let text = std::str::from_utf8(&built.bytes).unwrap();
    assert!(
        text.contains("Content-Type: text/plain; charset=\"utf-8\"\r\n"),
        "{text}"
    );
    assert!(!text.contains("multipart") && !text.contains("Reply-To"), "{text}");
    assert!(
        text.starts_with("From: <n@s.test>\r\nTo: <a@b.test>\r\nSubject: s\r\n"),
        "{text}"
    );

    let html_only = inline_campaign(
        "from = \"n@s.test\"\nsubject = \"s\"\nhtml = \"<b>{{n}}</b>\"\n",
        &["email", "n"],
    );
    let built = MessageFactory::new(&html_only)
        .build(1, &row(&["a@b.test", "x"]))
        .unwrap();
    let text = std::str::from_utf8(&built.bytes).unwrap();
    assert!(
        text.contains("Content-Type: text/html; charset=\"utf-8\"\r\n"),
        "{text}"
    );
}

#[test]
fn nul_in_a_body_value_is_refused() {
    let compiled = inline_campaign(
        "from = \"n@s.test\"\nsubject = \"s\"\ntext = \"{{n}}\"\n",
        &["email", "n"],
    );
    let err = MessageFactory::new(&compiled)
        .build(1, &row(&["a@b.test", "a\0b"]))
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::NulInBody { part: "text", column } if column == "n"),
        "{err:?}"
    );
}
