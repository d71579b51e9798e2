//! Re-reading single rows by (offset, line): every streamed row, fetched back in random order,
//! is the same row, rejections included; offsets where no row starts are refused by name.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use volley_scheduler::recipients::{OffsetProblem, RecipientError, RecipientReader, Row, RowFetcher};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn line_of(row: &Row) -> u64 {
    match row {
        Row::Recipient(r) => r.line,
        Row::Rejected(r) => r.line,
    }
}

/// Every row of the file, as streamed, with its offset.
fn stream(path: &Path) -> Vec<(u64, Row)> {
    let mut reader = RecipientReader::open(path, "email").unwrap();
    let mut rows = Vec::new();
    while let Some(row) = reader.next_row() {
        let row = row.unwrap();
        if let Row::Recipient(r) = &row {
            assert_eq!(r.offset, reader.last_offset());
        }
        rows.push((reader.last_offset(), row));
    }
    rows
}

/// Streams the file, then fetches every row back in a shuffled order: each is the same row.
fn assert_fetches_back(path: &Path, seed: u64) -> Vec<(u64, Row)> {
    let rows = stream(path);
    let mut fetcher = RowFetcher::open(path, "email").unwrap();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut order);
    for i in order {
        let (offset, row) = &rows[i];
        let fetched = fetcher
            .fetch(*offset, line_of(row))
            .unwrap_or_else(|e| panic!("row {i}: {e}"));
        assert_eq!(&fetched, row, "row {i} at offset {offset}");
    }
    rows
}

/// (line, whether a recipient, the file's bytes at the offset) of each row.
fn summary<'a>(content: &'a [u8], rows: &[(u64, Row)], prefix: usize) -> Vec<(u64, bool, &'a [u8])> {
    rows.iter()
        .map(|(offset, row)| {
            let at = &content[*offset as usize..];
            (
                line_of(row),
                matches!(row, Row::Recipient(_)),
                &at[..prefix.min(at.len())],
            )
        })
        .collect()
}

const CSV: &str = "email,name\n\
    ann@example.com,Ann\n\
    bob@example.com,\"Bob\nSmith\"\n\
    \n\
    not-an-address,Cy\n\
    dan@example.com\n\
    eve@example.com,\"Eve \"\"E\"\"\"\n\
    fay@example.com,F\u{1}y\n\
    gus@example.com,Gus";

#[test]
fn csv_rows_fetch_back_with_lf_crlf_and_bom() {
    let dir = tempfile::tempdir().unwrap();
    // \u{1} stands for an invalid UTF-8 byte.
    let invalid = |text: String| -> Vec<u8> { text.bytes().map(|b| if b == 1 { 0xFF } else { b }).collect() };
    let lf = invalid(CSV.to_owned());
    let crlf = invalid(CSV.replace('\n', "\r\n"));
    let bom = [&b"\xEF\xBB\xBF"[..], &lf].concat();
    for (name, content) in [("lf.csv", &lf), ("crlf.csv", &crlf), ("bom.csv", &bom)] {
        let path = write(dir.path(), name, content);
        let rows = assert_fetches_back(&path, 7);
        assert_eq!(
            summary(content, &rows, 4),
            [
                (2, true, &b"ann@"[..]),
                (3, true, b"bob@"),
                (6, false, b"not-"),
                (7, false, b"dan@"),
                (8, true, b"eve@"),
                (9, false, b"fay@"),
                (10, true, b"gus@"),
            ],
            "{name}"
        );
        let Row::Recipient(bob) = &rows[1].1 else { panic!() };
        assert_eq!(
            bob.values[1],
            if name == "crlf.csv" {
                "Bob\r\nSmith"
            } else {
                "Bob\nSmith"
            }
        );
        let Row::Rejected(fay) = &rows[5].1 else { panic!() };
        assert_eq!(fay.reason, "invalid UTF-8 at byte 1");
    }
}

#[test]
fn csv_odd_bytes_fetch_back() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x\n".repeat(6000);
    let content = format!(
        "email,name\r\
         ann@example.com,Ann\r\r\
         \u{feff}bom@example.com,Mid-file BOM\n\
         \"quoted@example.com\",\"{long}\"\n\
         \"open@example.com,never closed\n\
         last@example.com,Last\n"
    );
    let path = write(dir.path(), "odd.csv", content.as_bytes());
    let rows = assert_fetches_back(&path, 3);
    assert_eq!(
        summary(content.as_bytes(), &rows, 5),
        [
            (1, true, &b"ann@e"[..]),
            (1, false, "\u{feff}bo".as_bytes()),
            (2, true, b"\"quot"),
            (6003, false, b"\"open"),
        ]
    );
}

#[test]
fn many_rows_fetch_back_in_random_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = String::from("email,n\n");
    for i in 0..3000 {
        content.push_str(&format!("user{i}@example.com,{}\n", "n".repeat(i % 50)));
    }
    let path = write(dir.path(), "many.csv", content.as_bytes());
    assert_eq!(assert_fetches_back(&path, 11).len(), 3000);
}

#[test]
fn jsonl_rows_fetch_back() {
    let dir = tempfile::tempdir().unwrap();
    let content = [
        &b"\xEF\xBB\xBF{\"email\":\"ann@example.com\",\"name\":\"Ann\",\"age\":3}\n"[..],
        b"\n",
        b"   \r\n",
        b"{\"email\":\"bob@example.com\"}\r\n",
        b"{\"name\":\"No Address\"}\n",
        b"{\"email\":\"cy@example.com\",\"name\":{\"nested\":1}}\n",
        b"{\"email\":\"dan@example.com\",\n",
        b"{\"email\":\"eve@example.com\",\"name\":\"E\xFFe\"}\n",
        b"  {\"email\":\"fay@example.com\",\"age\":null,\"extra\":true}",
    ]
    .concat();
    let path = write(dir.path(), "r.jsonl", &content);
    let rows = assert_fetches_back(&path, 5);
    assert_eq!(
        summary(&content, &rows, 9),
        [
            (1, true, &b"\xEF\xBB\xBF{\"emai"[..]),
            (4, true, b"{\"email\":"),
            (5, false, b"{\"name\":\""),
            (6, false, b"{\"email\":"),
            (7, false, b"{\"email\":"),
            (8, false, b"{\"email\":"),
            (9, true, b"  {\"email"),
        ]
    );
    let Row::Recipient(bob) = &rows[1].1 else { panic!() };
    assert_eq!(bob.values, ["bob@example.com", "", ""]);
}

/// The problem named by a fetch that must fail, after checking the message names the place.
fn no_row(fetcher: &mut RowFetcher, offset: u64, line: u64) -> OffsetProblem {
    let e = fetcher.fetch(offset, line).unwrap_err();
    let shown = e.to_string();
    let RecipientError::NoRowAt { problem, .. } = e else {
        panic!("{e:?}")
    };
    let place = format!(
        "{}:{line}: no row starts at byte offset {offset}: ",
        fetcher.path().display()
    );
    assert!(shown.starts_with(&place), "{shown}");
    problem
}

#[test]
fn offsets_where_no_row_starts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = &b"email,name\nann@example.com,Ann\n\nbob@example.com,Bob\n"[..];
    let jsonl = &b"{\"email\":\"ann@example.com\"}\n\n{\"email\":\"bob@example.com\"}\r\n"[..];
    let (csv_len, jsonl_len) = (csv.len() as u64, jsonl.len() as u64);
    // (file, content, refused (offset, line, problem), rows that still fetch (offset, line, email))
    let cases = [
        (
            "r.csv",
            csv,
            vec![
                (0, 1, OffsetProblem::InHeader),
                (10, 1, OffsetProblem::InHeader),
                (12, 2, OffsetProblem::MidLine),
                (31, 3, OffsetProblem::BlankLine),
                (csv_len, 5, OffsetProblem::PastEnd { len: csv_len }),
                (u64::MAX, 5, OffsetProblem::PastEnd { len: csv_len }),
            ],
            [(32, 4, "bob@example.com"), (11, 2, "ann@example.com")],
        ),
        (
            "r.jsonl",
            jsonl,
            vec![
                (1, 1, OffsetProblem::MidLine),
                (28, 2, OffsetProblem::BlankLine),
                (jsonl_len - 1, 3, OffsetProblem::MidLine),
                (jsonl_len, 4, OffsetProblem::PastEnd { len: jsonl_len }),
            ],
            [(29, 3, "bob@example.com"), (0, 1, "ann@example.com")],
        ),
    ];
    for (name, content, refused, good) in cases {
        let path = write(dir.path(), name, content);
        let mut fetcher = RowFetcher::open(&path, "email").unwrap();
        for (offset, line, problem) in refused {
            assert_eq!(no_row(&mut fetcher, offset, line), problem, "{name} at {offset}");
        }
        // Still usable.
        for (offset, line, email) in good {
            let Row::Recipient(row) = fetcher.fetch(offset, line).unwrap() else {
                panic!("{name} at {offset}")
            };
            assert_eq!((row.line, row.offset, row.email.as_str()), (line, offset, email));
        }
    }
}

#[test]
fn fetcher_open_errors_match_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "r.csv", b"mail,name\n");
    let e = RowFetcher::open(&path, "email").err().unwrap();
    assert!(matches!(e, RecipientError::MissingEmailColumn { .. }), "{e:?}");
    let e = RowFetcher::open(&dir.path().join("absent.jsonl"), "email")
        .err()
        .unwrap();
    assert!(matches!(e, RecipientError::Open { .. }), "{e:?}");
}

/// Pieces of CSV that stress quoting, line ends, BOMs and encoding.
const TOKENS: &[&[u8]] = &[
    b"a@b.example",
    b"x",
    b",",
    b"\"",
    b"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b"\xEF\xBB\xBF",
    b"\xFF",
    b" ",
    "é".as_bytes(),
];

const HEADER_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];

proptest! {
    #[test]
    fn random_csv_rows_fetch_back(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..80),
        header_end in prop::sample::select(HEADER_ENDS),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let content = [&b"email,name"[..], header_end, &tokens.concat()].concat();
        let path = write(dir.path(), "r.csv", &content);
        let rows = assert_fetches_back(&path, seed);
        for pair in rows.windows(2) {
            prop_assert!(pair[0].0 < pair[1].0, "offsets {} then {}", pair[0].0, pair[1].0);
        }
        for (offset, _) in &rows {
            let before = content[*offset as usize - 1];
            prop_assert!(matches!(before, b'\r' | b'\n'), "offset {offset} follows {before:#x}");
        }
    }
}
