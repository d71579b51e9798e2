//! Configured reply and STARTTLS faults (`SinkConfig::faults`, `tls_faults`), each against
//! raw protocol bytes.

mod common;

use std::time::{Duration, Instant};

use common::{connect, connect_ehlo, message_body, start, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use volley_bench::{Fault, SinkConfig, SinkHandle};

async fn sink_with(faults: &[&str], tls_faults: &[&str]) -> SinkHandle {
    start(SinkConfig {
        faults: faults
            .iter()
            .map(|f| f.parse::<Fault>().expect("valid fault"))
            .collect(),
        tls_faults: tls_faults.iter().map(|f| f.parse().expect("valid TLS fault")).collect(),
        ..SinkConfig::default()
    })
    .await
}

/// Everything the server sends until it closes (or `limit` bytes, or 5 s of silence).
async fn read_raw(stream: &mut TcpStream, limit: usize) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while all.len() < limit {
        match timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
            Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
            Err(_) => return (all, false),
        }
    }
    (all, false)
}

async fn mail_from(client: &mut Client<TcpStream>) {
    assert_eq!(client.command("MAIL FROM:<s@c.test>").await.code, 250);
}

#[tokio::test]
async fn close_at_rcpt_drops_the_connection_without_a_reply() {
    let sink = sink_with(&["rcpt:close"], &[]).await;
    let mut client = connect_ehlo(&sink).await;
    mail_from(&mut client).await;
    client.send(b"RCPT TO:<a@x.test>\r\n").await;
    assert!(client.is_closed().await, "closed instead of replying");
    assert_eq!(sink.stats().faults_injected, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn garbage_long_line_and_long_reply_replace_the_reply() {
    let sink = sink_with(
        &["rcpt:garbage#1", "mail:long-line:9000#1", "ehlo:long-reply:5000#1"],
        &[],
    )
    .await;
    let mut client = connect(&sink).await;
    assert_eq!(client.reply().await.code, 220);
    let mut stream = client.into_inner();
    stream.write_all(b"EHLO c.test\r\n").await.expect("write");
    let mut reply = Vec::new();
    while !reply.ends_with(b"250 end\r\n") {
        let (bytes, closed) = read_raw(&mut stream, 1).await;
        assert!(!closed, "connection stays open");
        reply.extend_from_slice(&bytes);
    }
    assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 5000, "5000 reply lines");
    stream.write_all(b"MAIL FROM:<s@c.test>\r\n").await.expect("write");
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend_from_slice(&read_raw(&mut stream, 1).await.0);
    }
    assert_eq!(line.len(), 9000, "one line far over 512 octets");
    assert!(line.starts_with(b"250 xxx"));
    stream.write_all(b"RCPT TO:<a@x.test>\r\n").await.expect("write");
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend_from_slice(&read_raw(&mut stream, 1).await.0);
    }
    assert!(line.starts_with(b"HTTP/1.1 400"), "{line:?}");
    assert_eq!(sink.stats().faults_injected, 3);
    sink.shutdown().await;
}

#[tokio::test]
async fn truncated_reply_is_half_a_line_then_close() {
    let sink = sink_with(&["mail:truncated"], &[]).await;
    let client = connect_ehlo(&sink).await;
    let mut stream = client.into_inner();
    stream.write_all(b"MAIL FROM:<s@c.test>\r\n").await.expect("write");
    let (bytes, closed) = read_raw(&mut stream, 1024).await;
    assert!(closed);
    assert_eq!(bytes, b"250 2.1", "the first half of `250 2.1.0 Ok\\r\\n`");
    sink.shutdown().await;
}

#[tokio::test]
async fn delayed_greeting_arrives_late_and_later_commands_are_on_time() {
    let sink = sink_with(&["greeting:delay:300ms"], &[]).await;
    let started = Instant::now();
    let mut client = connect(&sink).await;
    assert_eq!(client.reply().await.code, 220);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(client.command("EHLO c.test").await.code, 250);
    assert_eq!(sink.stats().faults_injected, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn delay_in_a_pipelined_batch_still_answers_every_command() {
    let sink = sink_with(&["rcpt:delay:200ms#1"], &[]).await;
    let mut client = connect_ehlo(&sink).await;
    let started = Instant::now();
    client
        .send(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
        .await;
    let codes: Vec<u16> = client.replies(4).await.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 250, 250, 354]);
    assert!(started.elapsed() >= Duration::from_millis(200));
    sink.shutdown().await;
}

#[tokio::test]
async fn stop_reading_after_354_blocks_the_clients_writes() {
    let sink = sink_with(&["data:stop-reading"], &[]).await;
    let mut client = connect_ehlo(&sink).await;
    mail_from(&mut client).await;
    assert_eq!(client.command("RCPT TO:<a@x.test>").await.code, 250);
    assert_eq!(client.command("DATA").await.code, 354, "the reply is sent first");
    let mut stream = client.into_inner();
    let body = message_body(32 * 1024 * 1024);
    let write = timeout(Duration::from_secs(1), stream.write_all(&body)).await;
    assert!(
        write.is_err(),
        "a 32 MB write cannot finish while the sink does not read"
    );
    assert_eq!(sink.stats().messages, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn close_after_the_dot_takes_the_message_but_loses_the_reply() {
    let sink = sink_with(&["data-end:close#1"], &[]).await;
    let mut client = connect_ehlo(&sink).await;
    mail_from(&mut client).await;
    assert_eq!(client.command("RCPT TO:<a@x.test>").await.code, 250);
    assert_eq!(client.command("DATA").await.code, 354);
    client.send(&message_body(200)).await;
    assert!(client.is_closed().await, "no final reply: the RFC 1047 window");
    assert_eq!(sink.accepted_for("a@x.test"), 1, "the server took it all the same");
    // `#1`: the next transaction is answered normally.
    let mut client = connect_ehlo(&sink).await;
    assert_eq!(
        common::send_message(&mut client, "s@c.test", &["a@x.test"]).await.code,
        250
    );
    assert_eq!(sink.accepted_for("a@x.test"), 2);
    assert_eq!(sink.stats().faults_injected, 1);
    sink.shutdown().await;
}

async fn starttls(sink: &SinkHandle) -> TcpStream {
    let mut client = connect_ehlo(sink).await;
    assert_eq!(client.command("STARTTLS").await.code, 220);
    client.into_inner()
}

/// A TLS 1.2/1.3 ClientHello is at least this long; any bytes do for these faults.
const FAKE_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x00\x05hello";

#[tokio::test]
async fn tls_garbage_and_close_spoil_the_handshake() {
    let sink = sink_with(&[], &["garbage#1", "close#1"]).await;
    let mut stream = starttls(&sink).await;
    stream.write_all(FAKE_CLIENT_HELLO).await.expect("write");
    let (bytes, closed) = read_raw(&mut stream, 1024).await;
    assert!(closed);
    assert!(bytes.starts_with(b"this is not TLS"), "{bytes:?}");
    let mut stream = starttls(&sink).await;
    stream.write_all(FAKE_CLIENT_HELLO).await.expect("write");
    let (bytes, closed) = read_raw(&mut stream, 1024).await;
    assert!(closed && bytes.is_empty(), "closed without a ServerHello: {bytes:?}");
    assert_eq!(sink.stats().tls_faults_injected, 2);
    assert_eq!(sink.stats().tls_handshakes, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn tls_stall_says_nothing_and_wrong_name_serves_another_certificate() {
    let sink = sink_with(&[], &["stall:2s"]).await;
    let mut stream = starttls(&sink).await;
    stream.write_all(FAKE_CLIENT_HELLO).await.expect("write");
    let mut byte = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(500), stream.read(&mut byte))
            .await
            .is_err(),
        "silence during the handshake"
    );
    sink.shutdown().await;

    let normal = start(SinkConfig::default()).await;
    let wrong = sink_with(&[], &["wrong-name"]).await;
    assert_ne!(normal.certificate_pem(), wrong.certificate_pem());
    normal.shutdown().await;
    wrong.shutdown().await;
}
