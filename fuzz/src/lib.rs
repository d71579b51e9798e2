//! Fuzz harnesses for Volley's parsers: one function per target, each taking arbitrary bytes,
//! shared by the libFuzzer targets (`fuzz_targets/`) and the proptest fallback
//! (`examples/proptest_fuzz.rs`).
//!
//! # Layout
//! - [`reply`]: SMTP reply parser (`parse_reply`), with split-read and `consumed` invariants.
//! - [`ehlo`]: EHLO capability parsing of any reply that parses.
//! - [`csv_recipients`], [`jsonl_recipients`]: the streamed recipient readers, each row
//!   re-fetched by its (offset, line) and compared with the streamed one.
//! - [`campaign`]: campaign TOML loader, then compile against fixed columns.
//! - [`config`]: `volley.toml` loader (`SendConfig::parse`).
//! - [`template`]: template parser and renderer (plain, HTML, URL escaping) and the message
//!   builder's header-injection guard.
//! - [`curve`], [`backoff`]: warm-up curves and backoff rules.
//! - [`dsn_intake`], [`arf_intake`], [`token`]: the feedback intake (DSN and ARF reports
//!   through the whole intake) and the token decoder (module `feedback`).
//! - [`smtp_session`]: the server-side SMTP session of `volley-smtp-server`, fed client bytes
//!   in arbitrary pieces: exactly one well-formed reply per answered command, content sizes
//!   that add up.
//!
//! Every harness panics (a "crash") when an invariant breaks, not only when the library does.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use volley_engine::smtp::ehlo::Capabilities;
use volley_engine::smtp::reply::{parse_reply, ReplyParse, DEFAULT_MAX_REPLY_SIZE, MAX_REPLY_LINE};
use volley_scheduler::address::EmailAddress;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;
use volley_scheduler::message::MessageFactory;
use volley_scheduler::recipients::{RecipientReader, RecipientRow, Row, RowFetcher};
use volley_scheduler::template::{Template, TemplateError};
use volley_warmup::backoff::BackoffState;
use volley_warmup::{BackoffRules, Curve};

mod feedback;
mod smtp_session;
pub use feedback::{arf_intake, dsn_intake, token};
pub use smtp_session::smtp_session;

/// Every target, by name, for the fallback runner and the script.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("reply", reply),
    ("ehlo", ehlo),
    ("csv_recipients", csv_recipients),
    ("jsonl_recipients", jsonl_recipients),
    ("campaign", campaign),
    ("config", config),
    ("template", template),
    ("curve", curve),
    ("backoff", backoff),
    ("dsn_intake", dsn_intake),
    ("arf_intake", arf_intake),
    ("token", token),
    ("smtp_session", smtp_session),
];

/// SMTP reply parser: never panics; a complete reply has a code in 200..=599, consumed bytes
/// within the buffer and the cap, ends at a line feed, and parses the same from exactly the
/// consumed bytes; every shorter prefix of a complete reply is incomplete or the same error.
pub fn reply(data: &[u8]) {
    let cap = match data.first() {
        Some(b) if b & 1 == 1 => 16 + usize::from(*b) * 8,
        _ => DEFAULT_MAX_REPLY_SIZE,
    };
    let data = data.get(1..).unwrap_or_default();
    match parse_reply(data, cap) {
        Ok(ReplyParse::Complete { reply, consumed }) => {
            assert!((200..=599).contains(&reply.code), "code {}", reply.code);
            assert!(consumed > 0 && consumed <= data.len() && consumed <= cap);
            assert_eq!(data[consumed - 1], b'\n', "a reply ends at a line feed");
            let again = parse_reply(&data[..consumed], cap);
            assert_eq!(
                again,
                Ok(ReplyParse::Complete {
                    reply: reply.clone(),
                    consumed
                })
            );
            if let Some(e) = reply.enhanced {
                assert_eq!(u16::from(e.class), reply.code / 100);
            }
            // Any strict prefix is not yet a reply (split reads are safe).
            let mid = consumed / 2;
            assert_eq!(parse_reply(&data[..mid], cap), Ok(ReplyParse::Incomplete));
            let line = reply.one_line();
            assert!(line.starts_with(&reply.code.to_string()));
        }
        Ok(ReplyParse::Incomplete) => {
            assert!(data.len() <= cap.max(MAX_REPLY_LINE));
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
}

/// EHLO capabilities of any reply that parses: never panics; AUTH mechanisms are upper-cased
/// and non-empty; a SIZE limit is honoured by `accepts_size`.
pub fn ehlo(data: &[u8]) {
    let Ok(ReplyParse::Complete { reply, .. }) = parse_reply(data, DEFAULT_MAX_REPLY_SIZE) else {
        return;
    };
    let caps = Capabilities::from_ehlo(&reply);
    for mechanism in &caps.auth {
        assert!(!mechanism.is_empty());
        assert_eq!(mechanism, &mechanism.to_ascii_uppercase());
    }
    match caps.size {
        Some(limit) if limit > 0 => {
            assert!(caps.accepts_size(limit));
            assert!(limit == u64::MAX || !caps.accepts_size(limit + 1));
        }
        _ => assert!(caps.accepts_size(u64::MAX)),
    }
}

/// A scratch directory for this process (recipient files need a path).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("volley-fuzz-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

/// CSV recipient reader; see [`recipients`].
pub fn csv_recipients(data: &[u8]) {
    recipients(data, "csv");
}

/// JSONL recipient reader; see [`recipients`].
pub fn jsonl_recipients(data: &[u8]) {
    recipients(data, "jsonl");
}

/// Streams `data` as a recipient file: never panics; rows come with strictly increasing
/// offsets inside the file and non-decreasing lines (a bare CR ends a CSV record but not a
/// line); a rejection names a field; every row re-fetched by its (offset, line) is the very
/// row the stream gave.
fn recipients(data: &[u8], ext: &str) {
    let path = scratch().join(format!("recipients.{ext}"));
    fs::write(&path, data).expect("write scratch file");
    let column = "email";
    let Ok(mut reader) = RecipientReader::open(&path, column) else {
        return;
    };
    assert!(reader.columns().iter().any(|c| c == column));
    let mut fetcher = RowFetcher::open(&path, column).expect("the fetcher opens what the reader opened");
    let mut last_line = 0;
    let mut last_offset = None;
    let mut rows = 0;
    while let Some(row) = reader.next_row() {
        rows += 1;
        assert!(rows <= data.len(), "more rows than bytes");
        let Ok(row) = row else { break };
        let offset = reader.last_offset();
        let line = match &row {
            Row::Recipient(r) => {
                assert_eq!(r.offset, offset);
                assert_eq!(r.values.len(), reader.columns().len());
                r.line
            }
            Row::Rejected(r) => {
                assert!(!r.field.is_empty(), "a rejection names its field");
                assert!(!r.reason.is_empty(), "a rejection says why");
                r.line
            }
        };
        // Not strictly: the csv crate also ends records at a bare CR, which is no new line.
        assert!(
            line >= last_line.max(1),
            "lines never decrease: {line} after {last_line}"
        );
        last_line = line;
        assert!(offset < data.len() as u64, "offset {offset} inside the file");
        if let Some(prev) = last_offset {
            assert!(offset > prev, "offsets increase: {offset} after {prev}");
        }
        last_offset = Some(offset);
        let fetched = fetcher.fetch(offset, line).expect("a streamed row can be fetched");
        assert_eq!(fetched, row, "fetch({offset}, {line})");
    }
}

/// Campaign loader: never panics; an error names the campaign file; a campaign that loads
/// compiles or fails cleanly against fixed columns, and builds a message for one row.
pub fn campaign(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = scratch().join("campaign.toml");
    match Campaign::from_toml(&path, text) {
        Ok(campaign) => {
            let columns = columns();
            if let Ok(compiled) = campaign.compile(&columns) {
                let factory = MessageFactory::new(&compiled);
                let row = row(&columns, vec!["a@example.test".into(), "Ada".into(), "x".into()]);
                if let Ok(message) = factory.build(1, &row) {
                    check_message(&message.bytes, None);
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.contains(&path.display().to_string()),
                "error names the file: {shown}"
            );
        }
    }
}

/// `volley.toml` loader: never panics; an error names the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/volley.toml");
    match SendConfig::parse(text, path) {
        Ok(config) => {
            let _ = config.pool("default");
            for ip in &config.source_ips {
                let _ = ip.warmup_state();
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("fuzz/volley.toml"), "error names the file: {shown}");
        }
    }
}

/// The recipient columns the template and campaign targets use.
fn columns() -> Vec<String> {
    ["email", "name", "plan"].map(String::from).to_vec()
}

fn row(_columns: &[String], values: Vec<String>) -> RecipientRow {
    RecipientRow {
        line: 2,
        offset: 10,
        email: EmailAddress::parse("a@example.test").expect("valid address"),
        values,
    }
}

/// Template parser and renderer. Input: template source, then NUL-separated column values.
/// Invariants: errors carry a 1-based line and column inside the source; a rendering is at
/// least the literal length; HTML escaping lets no `<`, `>`, `"`, `'` from a value through;
/// URL escaping lets only unreserved characters and `%` through; a message built with the
/// template as Subject and a custom header has no bare CR or LF and no header that the
/// campaign did not make (no header injection).
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let mut values: Vec<String> = parts.map(String::from).collect();
    values.resize(3, String::new());
    let columns = columns();
    let template = match Template::parse("subject", source, &columns) {
        Ok(t) => t,
        Err(e) => {
            let (TemplateError::UnknownColumn { line, column, .. }
            | TemplateError::Unclosed { line, column, .. }
            | TemplateError::EmptyPlaceholder { line, column, .. }) = e;
            assert!(line >= 1 && column >= 1);
            assert!(line <= source.split('\n').count(), "line {line} inside the source");
            assert!(e.to_string().contains("subject"));
            return;
        }
    };
    let empty = ["", "", ""];
    let literal = template.render(&empty);
    assert_eq!(literal.len(), template.literal_len());
    let plain = template.render(&values);
    assert!(plain.len() >= template.literal_len());
    let count = |s: &str, keep: &dyn Fn(char) -> bool| s.chars().filter(|c| keep(*c)).count();
    let html = template.clone().html_escaped().render(&values);
    let markup = |c: char| matches!(c, '<' | '>' | '"' | '\'');
    assert_eq!(
        count(&html, &markup),
        count(&literal, &markup),
        "HTML escaping leaks markup"
    );
    let url = template.clone().url_escaped().render(&values);
    let reserved = |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%'));
    assert_eq!(count(&url, &reserved), count(&literal, &reserved), "URL escaping leaks");

    // The message builder: Subject and X-Fuzz from the fuzzed template, values from the row.
    let toml = format!(
        "id = \"fuzz\"\nfrom = \"News <news@sender.example.test>\"\nsubject = {s}\ntext = \"hi\"\n\
         recipients = \"r.csv\"\n[headers]\n\"X-Fuzz\" = {s}\n",
        s = toml_string(source)
    );
    let path = scratch().join("template.toml");
    let Ok(campaign) = Campaign::from_toml(&path, &toml) else {
        return;
    };
    let Ok(compiled) = campaign.compile(&columns) else {
        return;
    };
    let row = row(&columns, values);
    if let Ok(message) = MessageFactory::new(&compiled).build(1, &row) {
        check_message(&message.bytes, Some(&["x-fuzz"]));
    }
}

/// A TOML basic string holding `s` exactly.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A built message: CRLF line endings only, no line over 998 octets, and (when `extra` is
/// given) only the headers Volley writes plus `extra`.
fn check_message(bytes: &[u8], extra: Option<&[&str]>) {
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    for line in bytes.split(|&b| b == b'\n') {
        assert!(line.len() <= 999, "line of {} octets", line.len());
    }
    let Some(extra) = extra else { return };
    let head_end = memfind(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let known = [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    ];
    for line in bytes[..head_end].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        assert!(
            known.contains(&name.as_str()) || extra.contains(&name.as_str()),
            "unexpected header line {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

fn memfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Warm-up curve parser: never panics; an error names the file; a curve that loads answers
/// `caps` for every day and provider, and caps never exceed the daily cap per hour.
pub fn curve(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/curve.toml");
    match Curve::parse(text, path) {
        Ok(curve) => {
            let providers: Vec<String> = curve.providers().map(String::from).collect();
            let last = curve.last_day();
            for day in [0, 1, last / 2, last, last.saturating_add(1), u32::MAX] {
                for p in providers.iter().map(String::as_str).chain(["*", "nobody"]) {
                    let _ = curve.caps(day, p);
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("fuzz/curve.toml"), "error names the file: {shown}");
        }
    }
}

/// Backoff rules parser: never panics; an error names the file; rules that load can match
/// replies and drive a backoff state at extreme times without panicking, the factor staying
/// within `(0, 1]`.
pub fn backoff(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/backoff.toml");
    match BackoffRules::parse(text, path) {
        Ok(rules) => {
            let mut state = BackoffState::default();
            let times = [
                SystemTime::UNIX_EPOCH,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40),
            ];
            let replies: [(Option<u16>, Option<&str>, &str); 4] = [
                (Some(421), Some("4.7.0"), "try again later"),
                (Some(451), None, "rate limited"),
                (Some(550), Some("5.7.1"), "blocked"),
                (None, None, text.get(..64.min(text.len())).unwrap_or_default()),
            ];
            for now in times {
                for (code, enhanced, reply) in replies {
                    if let Some(action) = rules.matching(code, enhanced, reply) {
                        state.apply(action, now, &rules);
                    }
                    let factor = state.factor_at(now, &rules);
                    assert!(factor > 0.0 && factor <= 1.0, "factor {factor}");
                    let _ = state.suspended_until(now);
                }
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("fuzz/backoff.toml"), "error names the file: {shown}");
        }
    }
}
