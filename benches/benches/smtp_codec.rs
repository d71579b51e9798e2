//! The engine's sans-IO SMTP codec, measured on the production functions:
//!
//! - `smtp_reply_parse`: [`parse_reply`] on a single-line 250, an RFC 3463 enhanced-code
//!   rejection, a 12-line EHLO reply, and eight pipelined replies (RFC 2920) back to back in one
//!   buffer, parsed one after the other the way the session consumes its read buffer.
//! - `smtp_ehlo_caps`: [`Capabilities::from_ehlo`] on a parsed Postfix-like EHLO reply.
//! - `smtp_dot_prepare`: [`prepare`] (CRLF normalisation + dot-stuffing + terminator) on a
//!   ~4 KB message without leading dots, with a leading dot on every line, and with bare-LF line
//!   ends; throughput in input bytes.
//!
//! Why it matters: every reply of every transaction goes through `parse_reply` (a pipelined
//! transaction of N recipients reads N + 3 replies), every session parses one EHLO reply, and
//! every message goes through `prepare` once before DATA. These costs sit on the reading
//! threads and the async runtime, so they bound messages per second per core.
//!
//! `cargo bench -p volley-bench --bench smtp_codec`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use volley_engine::smtp::dot::prepare;
use volley_engine::smtp::ehlo::Capabilities;
use volley_engine::smtp::reply::{parse_reply, Reply, ReplyParse, DEFAULT_MAX_REPLY_SIZE};

const SINGLE: &[u8] = b"250 2.0.0 Ok: queued as 4FQ3kT1xYzz9\r\n";
const ENHANCED: &[u8] =
    b"550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in virtual mailbox table\r\n";
const EHLO: &[u8] = b"250-mx.example.net Hello mta1.volley.test [127.0.0.2]\r\n250-PIPELINING\r\n\
250-SIZE 52428800\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n\
250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250 REQUIRETLS\r\n";
/// What a pipelined transaction reads after MAIL + 5 RCPT + DATA, then the final reply.
const PIPELINED: &[u8] = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n\
550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown\r\n250 2.1.5 Ok\r\n\
250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4FQ3kT1xYzz9\r\n";
const PIPELINED_REPLIES: u64 = 8;

fn parse_one(buf: &[u8]) -> (Reply, usize) {
    match parse_reply(buf, DEFAULT_MAX_REPLY_SIZE) {
        Ok(ReplyParse::Complete { reply, consumed }) => (reply, consumed),
        other => panic!("not one complete reply: {other:?}"),
    }
}

fn reply_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_reply_parse");
    group.throughput(Throughput::Elements(1));
    for (name, input) in [
        ("single_250", SINGLE),
        ("enhanced_550", ENHANCED),
        ("ehlo_12_lines", EHLO),
    ] {
        assert_eq!(parse_one(input).1, input.len());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| parse_one(black_box(input)))
        });
    }
    group.throughput(Throughput::Elements(PIPELINED_REPLIES));
    group.bench_function(BenchmarkId::from_parameter("pipelined_8_in_one_buffer"), |b| {
        b.iter(|| {
            let buf = black_box(PIPELINED);
            let mut pos = 0;
            let mut codes = 0u32;
            while pos < buf.len() {
                let (reply, consumed) = parse_one(&buf[pos..]);
                codes += u32::from(reply.code);
                pos += consumed;
            }
            codes
        })
    });
    group.finish();
}

fn ehlo_caps(c: &mut Criterion) {
    let (reply, _) = parse_one(EHLO);
    let caps = Capabilities::from_ehlo(&reply);
    assert!(caps.pipelining && caps.starttls && caps.chunking && caps.smtputf8);
    assert_eq!(caps.size, Some(52_428_800));
    let mut group = c.benchmark_group("smtp_ehlo_caps");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter("postfix_like_12_lines"), |b| {
        b.iter(|| Capabilities::from_ehlo(black_box(&reply)))
    });
    group.finish();
}

/// A ~4 KB message body with CRLF line ends; `dot` puts a leading dot on every body line.
fn message(dot: bool, line_end: &str) -> Vec<u8> {
    let mut text = String::new();
    for header in [
        "From: Volley News <news@news.volley.test>",
        "To: reader@example.net",
        "Subject: Weekly digest",
        "Date: Fri, 2 Jan 2026 10:00:00 +0000",
        "Message-ID: <1@news.volley.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
    ] {
        text.push_str(header);
        text.push_str(line_end);
    }
    while text.len() < 4_096 {
        if dot {
            text.push('.');
        }
        text.push_str("This week: faster pipelines, warmer IPs, and a few words about DKIM.");
        text.push_str(line_end);
    }
    text.into_bytes()
}

fn dot_prepare(c: &mut Criterion) {
    let mut group = c.benchmark_group("smtp_dot_prepare");
    for (name, input) in [
        ("4k_no_leading_dots", message(false, "\r\n")),
        ("4k_every_line_dotted", message(true, "\r\n")),
        ("4k_bare_lf", message(false, "\n")),
    ] {
        let payload = prepare(&input).expect("prepare");
        assert!(payload.wire_bytes().ends_with(b"\r\n.\r\n"));
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(BenchmarkId::new(name, input.len()), |b| {
            b.iter(|| prepare(black_box(&input)).expect("prepare"))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = reply_parse, ehlo_caps, dot_prepare
}
criterion_main!(benches);
