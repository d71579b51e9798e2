//! The sink as a correct SMTP server: transactions, pipelining, sequencing, limits.

mod common;

use common::{connect, connect_ehlo, message_body, send_message, start};
use volley_bench::SinkConfig;

#[tokio::test]
async fn plain_transaction_is_accepted_and_counted() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect(&sink).await;
    let banner = client.reply().await;
    assert_eq!(banner.last(), "220 sink.volley.test ESMTP volley-sink");
    let ehlo = client.command("EHLO client.test").await;
    assert_eq!(ehlo.code, 250);
    assert_eq!(ehlo.lines[0], "250-sink.volley.test");
    for ext in [
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(ehlo.has_line(ext), "EHLO lacks {ext}: {ehlo:?}");
    }
    let done = send_message(&mut client, "sender@client.test", &["Alice@Example.TEST"]).await;
    assert_eq!(done.code, 250);
    assert!(done.last().starts_with("250 2.0.0 Ok: queued as "), "{done:?}");
    assert_eq!(client.command("QUIT").await.last(), "221 2.0.0 Bye");
    assert!(client.is_closed().await);

    let stats = sink.stats();
    assert_eq!((stats.connections, stats.messages, stats.recipients), (1, 1, 1));
    assert_eq!(stats.commands, 5, "EHLO MAIL RCPT DATA QUIT: {stats:?}");
    assert_eq!(sink.accepted_for("Alice@example.test"), 1);
    assert_eq!(
        sink.accepted_for("alice@example.test"),
        0,
        "local part is case-sensitive"
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn pipelined_group_gets_every_reply_and_counts_per_address() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect_ehlo(&sink).await;
    for round in 0..2 {
        client
            .send(b"MAIL FROM:<s@c.test> SIZE=300\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@X.test>\r\nDATA\r\n")
            .await;
        let codes: Vec<u16> = client.replies(4).await.iter().map(|r| r.code).collect();
        assert_eq!(codes, [250, 250, 250, 354], "round {round}");
        client.send(&message_body(4096)).await;
        assert_eq!(client.reply().await.code, 250);
    }
    // RFC 2920: the end of data may be pipelined with the following commands.
    client.send(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n").await;
    assert_eq!(client.replies(3).await.last().map(|r| r.code), Some(354));
    let mut tail = message_body(100);
    tail.extend_from_slice(b"QUIT\r\n");
    client.send(&tail).await;
    let replies = client.replies(2).await;
    assert_eq!((replies[0].code, replies[1].code), (250, 221));

    let stats = sink.stats();
    assert_eq!((stats.messages, stats.recipients), (3, 5));
    assert_eq!(sink.accepted_for("a@x.test"), 3);
    assert_eq!(sink.accepted_for("<b@x.test>"), 2);
    let counts = sink.address_counts();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts.get("b@x.test"), Some(&2));
    sink.shutdown().await;
}

#[tokio::test]
async fn sequencing_errors_and_junk() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect(&sink).await;
    client.reply().await;
    let before_greeting = client.command("MAIL FROM:<s@c.test>").await;
    assert_eq!(before_greeting.last(), "503 5.5.1 Error: send HELO/EHLO first");
    assert_eq!(client.command("EHLO").await.code, 501);
    assert_eq!(client.command("EHLO client.test").await.code, 250);
    assert_eq!(client.command("RCPT TO:<a@x.test>").await.code, 503);
    assert_eq!(client.command("DATA").await.code, 503);
    assert_eq!(
        client.command("XYZZY").await.last(),
        "500 5.5.2 Syntax error, command unrecognized"
    );
    assert_eq!(client.command("MAIL FROM:<>").await.code, 250);
    assert_eq!(client.command("MAIL FROM:<>").await.code, 503);
    assert_eq!(client.command("RCPT TO:<no-domain>").await.code, 501);
    assert_eq!(
        client.command("DATA").await.last(),
        "554 5.5.1 Error: no valid recipients"
    );
    assert_eq!(client.command("RSET").await.code, 250);
    assert_eq!(client.command("NOOP").await.code, 250);
    assert_eq!(sink.stats().messages, 0);
    sink.shutdown().await;
}

#[tokio::test]
async fn refused_ehlo_falls_back_to_helo() {
    let sink = start(SinkConfig {
        refuse_ehlo: true,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect(&sink).await;
    client.reply().await;
    let ehlo = client.command("EHLO client.test").await;
    assert_eq!(ehlo.code, 502);
    assert!(ehlo.last().starts_with("502 5.5.1 "), "{ehlo:?}");
    assert_eq!(client.command("HELO client.test").await.last(), "250 sink.volley.test");
    assert_eq!(send_message(&mut client, "s@c.test", &["a@x.test"]).await.code, 250);
    assert_eq!(sink.stats().messages, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn oversize_message_gets_552() {
    let sink = start(SinkConfig {
        max_message_size: 1000,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect_ehlo(&sink).await;
    assert!(client.command("EHLO again").await.has_line("SIZE 1000"));
    assert_eq!(
        client.command("MAIL FROM:<s@c.test> SIZE=5000").await.last(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(client.command("MAIL FROM:<s@c.test>").await.code, 250);
    assert_eq!(client.command("RCPT TO:<a@x.test>").await.code, 250);
    assert_eq!(client.command("DATA").await.code, 354);
    client.send(&message_body(5000)).await;
    assert_eq!(
        client.reply().await.last(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(sink.stats().messages, 0);
    assert_eq!(sink.accepted_for("a@x.test"), 0);
    // The session is usable afterwards.
    assert_eq!(send_message(&mut client, "s@c.test", &["a@x.test"]).await.code, 250);
    sink.shutdown().await;
}

#[tokio::test]
async fn command_line_too_long_gets_500() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect_ehlo(&sink).await;
    let long = format!("RCPT TO:<{}@x.test>\r\n", "a".repeat(600));
    client.send(long.as_bytes()).await;
    assert_eq!(
        client.reply().await.last(),
        "500 5.5.2 Syntax error, command line too long"
    );
    assert_eq!(client.command("NOOP").await.code, 250, "the session continues");
    sink.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_sessions_with_421() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect_ehlo(&sink).await;
    sink.clone().shutdown().await;
    assert_eq!(
        client.reply().await.last(),
        "421 4.3.2 Service shutting down, closing channel"
    );
    assert!(client.is_closed().await);
    assert!(
        tokio::net::TcpStream::connect(sink.local_addr()).await.is_err(),
        "listener is closed"
    );
}
