//! Recipient files: good rows, every kind of bad row (the stream goes on), header errors,
//! deduplication and the rejects file.

use std::io::Write;
use std::path::{Path, PathBuf};

use volley_scheduler::recipients::{Deduplicator, RecipientError, RecipientReader, RecipientRow, RejectedRow, Row};
use volley_scheduler::rejects::RejectsWriter;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read_all(path: &Path, email_column: &str) -> (Vec<RecipientRow>, Vec<RejectedRow>) {
    let reader = RecipientReader::open(path, email_column).unwrap();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for row in reader {
        match row.unwrap() {
            Row::Recipient(r) => good.push(r),
            Row::Rejected(r) => bad.push(r),
        }
    }
    (good, bad)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn csv_fixture_good_and_rejected_rows() {
    let reader = RecipientReader::open(&fixture("recipients.csv"), "email").unwrap();
    assert_eq!(reader.columns(), ["email", "first_name", "city"]);
    assert_eq!(reader.email_index(), 0);
    let (good, bad) = read_all(&fixture("recipients.csv"), "email");

    let lines: Vec<(u64, &str)> = good.iter().map(|r| (r.line, r.email.as_str())).collect();
    assert_eq!(
        lines,
        [
            (2, "ann@example.com"),
            (3, "bob@example.com"),
            (7, "BOB@example.com"),
            (8, "fay@example.net"),
            (10, "gus@example.org")
        ]
    );
    assert_eq!(good[0].values, ["ann@example.com", "Ann", "Oslo"]);
    assert_eq!(good[3].values[1], "Fay\nMultiline");
    assert_eq!(good[3].values[2], "Reykjavík");
    assert_eq!(good[4].values[2], "Umeå, North");

    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert_eq!(
        bad[0],
        RejectedRow {
            line: 4,
            field: "email".into(),
            value: "not-an-address".into(),
            reason: "missing '@'".into()
        }
    );
    assert_eq!((bad[1].line, bad[1].field.as_str()), (5, "(row)"));
    assert_eq!(bad[1].value, "dora@example.com,Dora");
    assert_eq!(bad[1].reason, "expected 3 fields, found 2");
    assert_eq!((bad[2].line, bad[2].field.as_str()), (6, "first_name"));
    assert_eq!(bad[2].value, "Em\u{fffd}il");
    assert_eq!(bad[2].reason, "invalid UTF-8 at byte 2");
}

#[test]
fn jsonl_fixture_good_and_rejected_rows() {
    let reader = RecipientReader::open(&fixture("recipients.jsonl"), "email").unwrap();
    assert_eq!(reader.columns(), ["email", "first_name", "age", "vip"]);
    let (good, bad) = read_all(&fixture("recipients.jsonl"), "email");

    let lines: Vec<(u64, &str)> = good.iter().map(|r| (r.line, r.email.as_str())).collect();
    assert_eq!(
        lines,
        [
            (1, "ann@example.com"),
            (2, "bob@example.com"),
            (7, "emil@example.com"),
            (10, "gus@example.com")
        ]
    );
    assert_eq!(good[0].values, ["ann@example.com", "Ann", "31", "true"]);
    assert_eq!(good[2].values, ["emil@example.com", "", "", ""]);

    let summary: Vec<(u64, &str)> = bad.iter().map(|r| (r.line, r.field.as_str())).collect();
    assert_eq!(
        summary,
        [
            (3, "(row)"),
            (5, "email"),
            (6, "first_name"),
            (8, "(row)"),
            (9, "email"),
            (11, "(row)")
        ]
    );
    assert_eq!(bad[0].reason, "invalid JSON at column 50: EOF while parsing an object");
    assert_eq!(bad[0].value, r#"{"email": "carl@example.com", "first_name": "Carl""#);
    assert_eq!((bad[1].value.as_str(), bad[1].reason.as_str()), ("", "empty"));
    assert_eq!(bad[2].value, r#"["D"]"#);
    assert_eq!(
        bad[3].reason,
        "invalid JSON at column 0: invalid type: sequence, expected a JSON object"
    );
    assert_eq!(
        (bad[4].value.as_str(), bad[4].reason.as_str()),
        ("fay@example", "domain has no dot")
    );
    assert_eq!(bad[5].reason, "invalid UTF-8 at byte 12");
    assert!(bad[5].value.contains("h\u{fffd}o@example.com"), "{}", bad[5].value);
}

#[test]
fn header_problems_fail_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "nomail.csv",
            b"mail,name\na@b.test,A\n",
            "no column `email` for the addresses; columns found: mail, name",
        ),
        ("empty.csv", b"", "empty file"),
        ("dup.csv", b"email,name,name\n", "duplicate column `name`"),
        ("badutf8.csv", b"email,n\xffame\n", "column 2 is not valid UTF-8"),
        ("empty.jsonl", b"\n\n", "empty file"),
        (
            "badfirst.jsonl",
            b"\n{\"email\": \n{\"email\": \"a@b.test\"}\n",
            ":2: bad header: the first line defines the columns",
        ),
        ("nomail.jsonl", b"{\"mail\": \"a@b.test\"}\n", "columns found: mail"),
        ("list.txt", b"email\n", "unsupported recipient file type"),
    ];
    for (name, bytes, expected) in cases {
        let path = write(dir.path(), name, bytes);
        let msg = RecipientReader::open(&path, "email").err().expect(name).to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains(expected), "expected {expected:?} in {msg}");
    }
    let e = RecipientReader::open(&dir.path().join("absent.csv"), "email")
        .err()
        .unwrap();
    assert!(matches!(e, RecipientError::Open { .. }), "{e:?}");
}

#[test]
fn csv_bom_trimmed_headers_crlf_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bom.csv",
        b"\xEF\xBB\xBFemail , name\r\na@b.test,A\r\n\r\nc@d.test,C\r\n",
    );
    let reader = RecipientReader::open(&path, "email").unwrap();
    assert_eq!(reader.columns(), ["email", "name"]);
    let (good, bad) = read_all(&path, "email");
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(good.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4]);
}

#[test]
fn long_rejected_values_are_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let long = "é".repeat(400);
    let path = write(dir.path(), "long.csv", format!("email\n{long}@x\n").as_bytes());
    let (_, bad) = read_all(&path, "email");
    assert!(bad[0].value.len() <= 512 + '…'.len_utf8());
    assert!(bad[0].value.ends_with('…'));
}

#[test]
fn read_errors_are_io_errors_with_a_line() {
    // A directory opens as a File on Linux but fails on read.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("dir.jsonl");
    std::fs::create_dir(&fake).unwrap();
    let e = RecipientReader::open(&fake, "email").err().unwrap();
    assert!(matches!(e, RecipientError::Io { line: 1, .. }), "{e:?}");
}

#[test]
fn dedup_and_rejects_file_over_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let rejects_path = dir.path().join("rejects.jsonl");
    let source = fixture("recipients.csv");
    let mut rejects = RejectsWriter::create(&rejects_path, &source).unwrap();
    let mut dedup = Deduplicator::new();
    let mut sendable = Vec::new();
    for row in RecipientReader::open(&source, "email").unwrap() {
        match row.unwrap() {
            Row::Recipient(r) if dedup.first_time(&r.email) => sendable.push(r.line),
            Row::Recipient(_) => {}
            Row::Rejected(r) => rejects.write(&r).unwrap(),
        }
    }
    assert_eq!(sendable, [2, 3, 8, 10]);
    assert_eq!((dedup.len(), dedup.duplicates()), (4, 1));
    assert_eq!(rejects.finish().unwrap(), 3);

    let text = std::fs::read_to_string(&rejects_path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"file": source.display().to_string(), "line": 4, "field": "email",
                           "value": "not-an-address", "reason": "missing '@'"})
    );
}

#[test]
fn jsonl_missing_trailing_newline_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("x.jsonl")).unwrap();
    f.write_all(b"{\"email\":\"a@b.test\",\"n\":1.5}\r\n{\"n\":2,\"email\":\"c@d.test\"}")
        .unwrap();
    drop(f);
    let (good, bad) = read_all(&dir.path().join("x.jsonl"), "email");
    assert!(bad.is_empty());
    assert_eq!(good[0].values, ["a@b.test", "1.5"]);
    assert_eq!(good[1].values, ["c@d.test", "2"]);
}

/// A cluster chunk's rows held in memory read as the same rows written one JSON object per
/// line would (lines, values, rejections; a short value list padded, extra values ignored),
/// and each fetches back by its offset.
#[test]
fn rows_in_memory_read_and_fetch_back_like_a_jsonl_file() {
    use std::sync::Arc;
    use volley_scheduler::recipients::{MemoryRows, RowFetcher};
    let dir = tempfile::tempdir().unwrap();
    let columns = vec!["email".to_owned(), "name".to_owned()];
    let values = vec![
        vec!["a@x.test".to_owned(), "A \"q\"".to_owned()],
        vec!["not an address".to_owned(), "B".to_owned()],
        vec!["c@x.test".to_owned()],
        vec!["d@x.test".to_owned(), "D".to_owned(), "extra".to_owned()],
    ];
    let jsonl: String = values
        .iter()
        .map(|v| {
            let name = v.get(1).cloned().unwrap_or_default();
            format!("{}\n", serde_json::json!({"email": v[0], "name": name}))
        })
        .collect();
    let file = write(dir.path(), "rows.jsonl", jsonl.as_bytes());
    let rows = Arc::new(MemoryRows {
        label: dir.path().join("rows"),
        columns,
        values,
    });
    let from_file: Vec<Row> = RecipientReader::open(&file, "email")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let in_memory: Vec<Row> = RecipientReader::memory(rows.clone(), "email")
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(in_memory.len(), 4);
    let strip = |row: &Row| match row {
        Row::Recipient(r) => (r.line, Some(r.values.clone()), None),
        Row::Rejected(r) => (r.line, None, Some((r.field.clone(), r.value.clone(), r.reason.clone()))),
    };
    assert_eq!(
        in_memory.iter().map(strip).collect::<Vec<_>>(),
        from_file.iter().map(strip).collect::<Vec<_>>()
    );
    let mut fetcher = RowFetcher::memory(rows.clone(), "email").unwrap();
    for row in &in_memory {
        if let Row::Recipient(r) = row {
            assert_eq!(&fetcher.fetch(r.offset, r.line).unwrap(), row);
        }
    }
    match fetcher.fetch(4, 5) {
        Err(RecipientError::NoRowAt {
            path,
            line: 5,
            offset: 4,
            ..
        }) => assert_eq!(path, rows.label),
        other => panic!("past the end: {other:?}"),
    }
    match RecipientReader::memory(rows, "mail") {
        Err(RecipientError::MissingEmailColumn { column, found, .. }) => {
            assert_eq!(
                (column.as_str(), found),
                ("mail", vec!["email".to_owned(), "name".to_owned()])
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("no `mail` column"),
    }
}
