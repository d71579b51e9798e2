//! Campaign loading: the good fixture, and every refusal naming file, line, field and value.

use std::path::{Path, PathBuf};

use volley_scheduler::campaign::{Campaign, CampaignError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/campaigns")
        .join(name)
}

fn load_err(name: &str) -> (CampaignError, String) {
    let e = Campaign::load(&fixture(name)).expect_err(name);
    let msg = e.to_string();
    assert!(
        msg.contains(&fixture(name).display().to_string()),
        "file not named: {msg}"
    );
    (e, msg)
}

fn columns() -> Vec<String> {
    ["email", "first_name", "city"].map(String::from).to_vec()
}

#[test]
fn good_campaign_loads_and_compiles() {
    let c = Campaign::load(&fixture("good.toml")).unwrap();
    assert_eq!(c.id(), "spring-2026");
    assert_eq!(c.from().name.as_deref(), Some("Volley News"));
    assert_eq!(c.from().address.as_str(), "news@sender.test");
    assert_eq!(c.envelope_from().as_str(), "bounces@sender.test");
    assert_eq!(c.reply_to().and_then(|r| r.name.as_deref()), Some("Volley Help"));
    assert_eq!(c.email_column(), "email");
    assert_eq!(c.recipients(), fixture("../recipients.csv"));
    assert_eq!(c.text().unwrap().file, fixture("body.txt"));
    assert!(c.html().unwrap().source.contains("<p>Hi {{first_name}},</p>"));
    let names: Vec<&str> = c.headers().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["X-Campaign-Id", "X-City"]);
    let unsub = c.list_unsubscribe().expect("list_unsubscribe");
    assert!(unsub.one_click && unsub.mailto.is_some() && unsub.url.is_some());

    let compiled = c.compile(&columns()).unwrap();
    assert_eq!(
        compiled.subject().render(&["a@b.test", "Ann", "Oslo"]),
        "Hello Ann from Volley"
    );
    assert_eq!(
        compiled
            .html()
            .unwrap()
            .render(&["", "<Ann>", ""])
            .matches("&lt;Ann&gt;")
            .count(),
        1
    );
    assert!(compiled.headers()[0].1.is_static(), "X-Campaign-Id");
    assert!(!compiled.headers()[1].1.is_static(), "X-City uses a column");
}

#[test]
fn envelope_from_defaults_to_from_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let toml = "id = \"x\"\nfrom = \"N <n@s.test>\"\nsubject = \"s\"\nhtml = \"<p>h</p>\"\nrecipients = \"r.jsonl\"\nemail_column = \"mail\"\n";
    let c = Campaign::from_toml(&path, toml).unwrap();
    assert_eq!(c.envelope_from().as_str(), "n@s.test");
    assert_eq!(c.reply_to(), None);
    assert_eq!(c.email_column(), "mail");
    assert_eq!(c.recipients(), dir.path().join("r.jsonl"));
    assert!(c.text().is_none());
}

#[test]
fn unknown_field_names_field_and_line() {
    let (e, msg) = load_err("unknown_field.toml");
    assert!(matches!(e, CampaignError::Syntax { line: Some(6), .. }), "{e:?}");
    assert!(msg.contains(":6:1:"), "{msg}");
    assert!(msg.contains("unknown field `sbject`"), "{msg}");
}

#[test]
fn missing_subject_names_field() {
    let (_, msg) = load_err("missing_subject.toml");
    assert!(msg.ends_with("missing_subject.toml: missing field `subject`"), "{msg}");
}

#[test]
fn text_and_text_file_are_exclusive() {
    let (e, msg) = load_err("text_and_text_file.toml");
    assert!(matches!(e, CampaignError::Invalid { line: Some(5), .. }), "{e:?}");
    assert!(msg.contains("field `text_file` = \"body.txt\""), "{msg}");
    assert!(msg.contains("`text` is also set"), "{msg}");
}

#[test]
fn bad_id_names_field_and_value() {
    let (_, msg) = load_err("bad_id.toml");
    assert!(msg.contains(":1: field `id` = \"spring 2026!\": only letters"), "{msg}");
}

#[test]
fn bad_from_names_field_value_and_reason() {
    let (_, msg) = load_err("bad_from.toml");
    assert!(
        msg.contains(":3: field `from` = \"Volley News <news@>\": empty domain"),
        "{msg}"
    );
}

#[test]
fn unknown_placeholder_names_template_and_columns() {
    let c = Campaign::load(&fixture("unknown_placeholder.toml")).unwrap();
    let msg = c.compile(&columns()).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("{}:3:", fixture("unknown_placeholder.toml").display())),
        "{msg}"
    );
    assert!(
        msg.contains("template `subject`: unknown placeholder {{frist_name}}"),
        "{msg}"
    );
    assert!(msg.contains("available columns: email, first_name, city"), "{msg}");
}

#[test]
fn placeholder_errors_in_body_files_name_the_body_file() {
    let c = Campaign::load(&fixture("good.toml")).unwrap();
    let msg = c
        .compile(&["email".to_owned(), "first_name".to_owned()])
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!("{}: template `text_file`", fixture("body.txt").display())),
        "{msg}"
    );
    assert!(msg.contains("{{city}} at line 3, column 19"), "{msg}");
}

/// Writes `body` as a campaign file and returns the load error message.
fn invalid(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, body).unwrap();
    let msg = Campaign::load(&path).expect_err(body).to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

const BASE: &str = "id = \"x\"\nfrom = \"n@s.test\"\nrecipients = \"r.csv\"\n";

#[test]
fn other_refusals() {
    let cases: &[(&str, &str)] = &[
        ("subject = \"s\"\n", "field `text` = \"\": a body is required"),
        (
            "subject = \"a\\r\\nBcc: x@y.z\"\ntext = \"t\"\n",
            "field `subject` = \"a\\r\\nBcc: x@y.z\": control character '\\r'",
        ),
        (
            "subject = \"s\"\nhtml = \"h\"\nhtml_file = \"b.html\"\n",
            "field `html_file` = \"b.html\": `html` is also set",
        ),
        (
            "subject = \"s\"\ntext_file = \"missing.txt\"\n",
            "field `text_file` = \"missing.txt\": cannot read",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\nenvelope_from = \"b@\"\n",
            "field `envelope_from` = \"b@\": empty domain",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\nreply_to = \"<r@s.test\"\n",
            "field `reply_to` = \"<r@s.test\": malformed",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\nemail_column = \" \"\n",
            "field `email_column` = \" \": must not be empty",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\n[headers]\n\"Subject\" = \"x\"\n",
            "field `headers` = \"Subject\": this header is set by Volley",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\n[headers]\n\"Content-Type\" = \"x\"\n",
            "field `headers` = \"Content-Type\"",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\n[headers]\n\"X Bad\" = \"x\"\n",
            "field `headers` = \"X Bad\": header names are printable",
        ),
        (
            "subject = \"s\"\ntext = \"t\"\n[headers]\n\"X-Tag\" = \"a\\nb\"\n",
            "field `headers.X-Tag` = \"a\\nb\": control character",
        ),
        ("subject = 3\ntext = \"t\"\n", "invalid type"),
    ];
    for (extra, expected) in cases {
        let msg = invalid(&format!("{BASE}{extra}"));
        assert!(msg.contains(expected), "expected {expected:?} in: {msg}");
    }
    let msg = invalid("id = \"x\"\nfrom = \"n@s.test\"\nsubject = \"s\"\ntext = \"t\"\nrecipients = \"r.txt\"\n");
    assert!(
        msg.contains(":5: field `recipients` = \"r.txt\": expected a .csv or .jsonl file"),
        "{msg}"
    );
}

#[test]
fn unreadable_campaign_file_is_named() {
    let e = Campaign::load(Path::new("/nonexistent/campaign.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/campaign.toml: cannot read campaign file"),
        "{e}"
    );
}

#[test]
fn body_file_must_be_utf8() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body.txt"), b"Hi \xff").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("{BASE}subject = \"s\"\ntext_file = \"body.txt\"\n")).unwrap();
    let msg = Campaign::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains(":5: field `text_file` = \"body.txt\": not valid UTF-8 (byte 3)"),
        "{msg}"
    );
}

/// Writes campaign `c.toml` with `body_field = "value"` in `dir` and loads it, allowing
/// body files under `template_dirs` too.
fn load_body(dir: &Path, body_field: &str, value: &str, template_dirs: &[PathBuf]) -> Result<Campaign, String> {
    let path = dir.join("c.toml");
    std::fs::write(&path, format!("{BASE}subject = \"s\"\n{body_field} = \"{value}\"\n")).unwrap();
    Campaign::load_with(&path, template_dirs).map_err(|e| e.to_string())
}

#[test]
fn body_files_outside_the_campaign_folder_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let campaigns = root.path().join("campaigns");
    let shared = root.path().join("shared");
    std::fs::create_dir_all(campaigns.join("parts")).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(campaigns.join("parts/body.txt"), "Hello").unwrap();
    std::fs::write(shared.join("footer.txt"), "Bye").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", campaigns.join("link.txt")).unwrap();

    // The campaign's folder and below: fine.
    let c = load_body(&campaigns, "text_file", "parts/body.txt", &[]).expect("inside");
    assert_eq!(c.text().map(|t| t.source.as_str()), Some("Hello"));
    // Anywhere else (absolute, `..`, a symbolic link leading out): refused by field and value.
    for (field, value) in [
        ("text_file", "/etc/hostname"),
        ("html_file", "../shared/footer.txt"),
        ("text_file", "link.txt"),
    ] {
        let e = load_body(&campaigns, field, value, &[]).expect_err(value);
        assert!(
            e.contains(&format!("field `{field}` = \"{value}\"")) && e.contains("outside the campaign's folder"),
            "{e}"
        );
        assert!(e.contains("template_dirs"), "says how to allow it: {e}");
    }
    // Unless the operator lists the folder.
    let c = load_body(
        &campaigns,
        "html_file",
        "../shared/footer.txt",
        std::slice::from_ref(&shared),
    )
    .expect("allowed");
    assert_eq!(c.html().map(|t| t.source.as_str()), Some("Bye"));
}

#[test]
fn body_files_must_be_regular_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/zero, even from an allowed folder, is refused without being read.
    let e = load_body(dir.path(), "text_file", "/dev/zero", &[PathBuf::from("/dev")]).expect_err("/dev/zero");
    assert!(
        e.contains("field `text_file` = \"/dev/zero\"") && e.contains("not a regular file (character device)"),
        "{e}"
    );
    // A FIFO is refused at once (opening it would wait for a writer).
    let fifo = dir.path().join("pipe.txt");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success()));
    let e = load_body(dir.path(), "html_file", "pipe.txt", &[]).expect_err("FIFO");
    assert!(e.contains("not a regular file (FIFO)"), "{e}");
    // A (sparse) file over the cap is refused by size, naming the limit.
    let big = std::fs::File::create(dir.path().join("big.txt")).unwrap();
    big.set_len(volley_files::TEMPLATE_MAX + 1).unwrap();
    let e = load_body(dir.path(), "text_file", "big.txt", &[]).expect_err("big");
    assert!(
        e.contains("field `text_file` = \"big.txt\"")
            && e.contains(&format!("larger than the {}-byte limit", volley_files::TEMPLATE_MAX)),
        "{e}"
    );
    // The campaign file itself too.
    let e = Campaign::load(Path::new("/dev/zero"))
        .expect_err("/dev/zero campaign")
        .to_string();
    assert!(
        e.contains("/dev/zero: cannot read campaign file: not a regular file"),
        "{e}"
    );
}
