//! `volley check-config`: the shipped example passes every check; a configuration with many
//! problems gets every one of them named by field path in one run, and nothing is created.

mod common;

use common::{free_port, text, volley, write};

/// Runs `volley check-config --config <config>`: its exit code and output.
fn check_config(config: &std::path::Path) -> (Option<i32>, String) {
    let o = volley()
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .output()
        .expect("volley check-config");
    (o.status.code(), text(&o))
}

/// The `ERROR  <what>:` line of check-config's output.
fn error_line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("ERROR  {what}:")))
        .unwrap_or_else(|| panic!("no error for {what}:\n{out}"))
}

#[test]
fn the_shipped_example_passes_every_check() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = volley()
        .arg("check-config")
        .arg("--config")
        .arg(repo.join("config/volley.toml"))
        .arg(repo.join("config/campaigns/welcome.toml"))
        .output()
        .expect("volley check-config");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("every check passed"), "{out}");
    for what in [
        "source_ips[2].address",
        "warmup",
        "bounces.rules",
        "suppression",
        "campaign[0]",
    ] {
        assert!(out.contains(&format!("ok     {what}")), "{what}: {out}");
    }
}

#[test]
fn every_problem_is_named_by_its_field_path_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "broken.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            r#"state_dir = "state"
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2.volley.test"

# TEST-NET-1: not an address of this host.
[[source_ips]]
address = "192.0.2.1"
ehlo_name = "mta-x.volley.test"
warmup = "no-such-curve"
warmup_start = "2026-11-01"

[[dkim]]
domain = "news.volley.test"
selector = "s1"
key = "missing.pem"

[[dkim]]
domain = "news.volley.test"
selector = "s2"
key = "broken.pem"

[suppression]
redis = "redis://127.0.0.1:{}/"
"#,
            free_port()
        ),
    );
    write(dir.path(), "list.csv", "email,name\na@example.test,Ann\n");
    let campaign = write(
        dir.path(),
        "campaign.toml",
        "id = \"c\"\nfrom = \"news@news.volley.test\"\nsubject = \"Hi {{ nickname }}\"\ntext = \"Hello\"\nrecipients = \"list.csv\"\n",
    );
    let o = volley()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .arg(&campaign)
        .output()
        .expect("volley check-config");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for (what, says) in [
        ("source_ips[1].address", "192.0.2.1 cannot be bound"),
        ("warmup", "no-such-curve"),
        ("dkim[0]", "missing.pem"),
        ("dkim[1]", "broken.pem"),
        ("suppression", "127.0.0.1"),
        ("campaign[0]", "nickname"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("ERROR  {what}")))
            .unwrap_or_else(|| panic!("no error for {what}:\n{out}"));
        assert!(line.contains(says), "{what} says {says:?}: {line}");
    }
    assert!(out.contains("ok     source_ips[0].address"), "{out}");
    assert!(out.contains("6 problem(s)"), "{out}");
    assert!(!dir.path().join("state").exists(), "a check creates nothing");

    // A file that is not a configuration at all: one error, naming the file and line.
    let bad = write(dir.path(), "bad.toml", "[[source_ips]]\naddress = 12\n");
    let o = volley()
        .arg("check-config")
        .arg("--config")
        .arg(&bad)
        .output()
        .expect("volley check-config");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("ERROR  config") && out.contains("bad.toml") && out.contains("line 2"),
        "{out}"
    );
}

#[test]
fn every_bad_value_is_listed_with_field_path_and_line_and_the_other_checks_still_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "volley.toml",
        r#"state_dir = "state"
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2.volley.test"
warmup = "standrad"
warmup_start = "2026-11-01"

[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2b.volley.test"

[routes]
"*" = "127.0.0.1:2525"

[smtp]
idle_timeout = "5x"
max_connectoins = 8

[smtp.timeouts]
data_end = "0s"

[retry]
max_age = "0s"
"#,
    );
    let (code, out) = check_config(&config);
    assert_eq!(code, Some(1), "{out}");
    for (what, line, says) in [
        ("smtp.idle_timeout", 16, "5x"),
        ("smtp.max_connectoins", 17, "unknown field"),
        ("source_ips[1].address", 9, "also source_ips[0]"),
        ("retry.max_age", 23, "longer than zero"),
        ("smtp.timeouts.data_end", 20, "longer than zero"),
        // The checks after the file's own values still run: the curve name is checked too,
        // and the error lists the curves Volley ships.
        ("warmup", 0, "conservative, standard, aggressive"),
    ] {
        let found = error_line(&out, what);
        assert!(found.contains(says), "{what} says {says:?}: {found}");
        if line > 0 {
            assert!(
                found.contains(&format!("volley.toml, line {line}: field `{what}`")),
                "{what} at line {line}: {found}"
            );
        }
    }
    assert!(out.contains("ok     state_dir"), "{out}");
    assert!(out.contains("6 problem(s)"), "{out}");
}

#[test]
fn a_device_is_refused_as_config_without_being_read() {
    let o = volley()
        .arg("check-config")
        .arg("--config")
        .arg("/dev/zero")
        .output()
        .expect("volley check-config");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("ERROR  config: cannot read config /dev/zero: not a regular file (character device)"),
        "{out}"
    );
}

/// `volley check-config --destination` for each of `names`, with a config of one source IP
/// and `body`: the exit status and the output.
fn check_destinations(body: &str, names: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "volley.toml",
        &format!("[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n{body}"),
    );
    let mut cmd = volley();
    cmd.args(["check-config", "--config"]).arg(&config);
    for name in names {
        cmd.args(["--destination", name]);
    }
    let o = cmd.output().expect("volley check-config");
    (o.status.code(), text(&o))
}

#[test]
fn destination_shows_the_blocks_that_apply_and_where_each_value_comes_from() {
    let (status, out) = check_destinations(
        r#"[smtp]
idle_timeout = "7s"

[[destination]]
name = "google-mx"
mx_suffix = [".google.com"]
max_connections_per_ip = 4

[[destination]]
name = "acme"
domains = ["acme.example"]
max_connections_per_ip = 1
rate = "600/m"
"#,
        &["mail.acme.example", "alt1.gmail-smtp-in.l.google.com"],
    );
    assert_eq!(status, Some(0), "{out}");
    let field = |section: &str, name: &str| -> String {
        out.split("destination ")
            .find(|s| s.starts_with(section))
            .and_then(|s| s.lines().find(|l| l.trim_start().starts_with(name)))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {name} for {section}:\n{out}"))
    };
    assert!(
        out.contains("destination mail.acme.example: provider group other; blocks: destination[1] \"acme\"\n"),
        "{out}"
    );
    assert_eq!(
        field("mail.acme", "max_connections_per_ip"),
        "max_connections_per_ip 1 destination[1] \"acme\""
    );
    assert_eq!(field("mail.acme", "rate"), "rate 600/m destination[1] \"acme\"");
    assert_eq!(
        field("mail.acme", "idle_timeout"),
        "idle_timeout 7s [smtp] idle_timeout"
    );
    // An MX host name: the mx_suffix block, then the built-in block of its provider group.
    assert!(
        out.contains("blocks: destination[0] \"google-mx\" > built-in \"gmail\""),
        "{out}"
    );
    assert_eq!(
        field("alt1.gmail", "max_connections_per_ip"),
        "max_connections_per_ip 4 destination[0] \"google-mx\""
    );
    assert_eq!(field("alt1.gmail", "tls"), "tls required built-in \"gmail\"");
}

#[test]
fn bad_destination_blocks_are_named_by_file_line_field_and_value() {
    let (status, out) = check_destinations(
        r#"[[destination]]
name = "a"
domains = ["a.example"]
rate = "20/fortnight"

[[destination]]
name = "a"
provider = "hotmail"

[[destination]]
name = "lonely"
max_messages_per_connection = 0
"#,
        &["a.example"],
    );
    assert_eq!(status, Some(1), "{out}");
    for (what, line, value, says) in [
        ("destination[0].rate", 7, "20/fortnight", "unknown unit"),
        ("destination[1].name", 10, "a", "also destination[0]"),
        ("destination[1].provider", 11, "hotmail", "no such provider group"),
        ("destination[2]", 13, "lonely", "needs a matcher"),
        ("destination[2].max_messages_per_connection", 15, "0", "at least 1"),
    ] {
        let found = out
            .lines()
            .find(|l| l.starts_with(&format!("ERROR  {what}:")))
            .unwrap_or_else(|| panic!("no error for {what}:\n{out}"));
        assert!(
            found.contains(&format!("volley.toml, line {line}: field `{what}` = {value:?}: ")) && found.contains(says),
            "{what} at line {line} = {value} says {says:?}: {found}"
        );
    }
}

#[test]
fn the_feedback_block_is_checked_with_line_field_and_value_and_its_key_file_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "volley.toml",
        r#"state_dir = "state"
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2.volley.test"

[feedback]
bounce_domain = "bounce_volley.test"
key_file = "missing.key"
"#,
    );
    let (code, out) = check_config(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        error_line(&out, "feedback.bounce_domain")
            .contains("volley.toml, line 7: field `feedback.bounce_domain` = \"bounce_volley.test\""),
        "{out}"
    );
    assert!(error_line(&out, "feedback.key_file").contains("missing.key"), "{out}");

    write(
        dir.path(),
        "feedback.key",
        "3 a-check-config-secret-of-32-characters-or-more\n",
    );
    let config = write(
        dir.path(),
        "volley.toml",
        "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
         [feedback]\nbounce_domain = \"bounce.volley.test\"\nkey_file = \"feedback.key\"\n",
    );
    let (code, out) = check_config(&config);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok     feedback.key_file"), "{out}");
    assert!(
        out.contains("signing key id 3") && !out.contains("a-check-config-secret"),
        "{out}"
    );
}

/// `[submission]`: its certificate, users file and relay user are read and checked.
#[test]
fn the_submission_certificate_users_and_relay_user_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    write(dir.path(), "sub.crt", &cert.pem());
    write(dir.path(), "sub.key", &key_pair.serialize_pem());
    let body = |cert: &str| {
        format!(
            "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.1\"\nehlo_name = \"mta.volley.test\"\n\
             [submission]\nlisten = \"127.0.0.1:{}\"\ntls_cert = \"{cert}\"\ntls_key = \"sub.key\"\n\
             hostname = \"submit.volley.test\"\nrelay_networks = [\"127.0.0.1/32\"]\nrelay_user = \"app\"\n",
            free_port()
        )
    };
    let config = write(dir.path(), "volley.toml", &body("missing.crt"));
    let (code, out) = check_config(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(error_line(&out, "submission").contains("missing.crt"), "{out}");

    let config = write(dir.path(), "volley.toml", &body("sub.crt"));
    let (code, out) = check_config(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        error_line(&out, "submission").contains("relay_user \"app\" is not in the users file"),
        "{out}"
    );

    let added = volley()
        .args(["user", "add", "app", "--from-domain", "app.example", "--config"])
        .arg(&config)
        .output()
        .expect("volley user add");
    assert!(added.status.success(), "{}", text(&added));
    let (code, out) = check_config(&config);
    assert!(out.contains("ok     submission: certificate"), "{out}");
    assert!(out.contains("1 user(s) in"), "{out}");
    assert!(!out.contains("ERROR  submission"), "{out} ({code:?})");
}
