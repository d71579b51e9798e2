//! Fault injection: latency batching, tempfail/permfail, drops, connection limit, canned
//! replies.

mod common;

use std::time::{Duration, Instant};

use common::{connect, connect_ehlo, message_body, start};
use volley_bench::{CannedReply, SinkConfig, Stage};

#[tokio::test]
async fn latency_is_paid_once_per_pipelined_batch() {
    let latency = Duration::from_millis(50);
    let sink = start(SinkConfig {
        latency,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect_ehlo(&sink).await;
    let before = sink.stats().reply_flushes;
    let started = Instant::now();
    client
        .send(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n")
        .await;
    let replies = client.replies(5).await;
    let elapsed = started.elapsed();
    assert_eq!(
        replies.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 250, 250, 354]
    );
    assert_eq!(sink.stats().reply_flushes - before, 1, "one write for the whole group");
    assert!(elapsed >= latency, "{elapsed:?}");
    assert!(elapsed < latency * 3, "one latency, not one per command: {elapsed:?}");

    // The content and dot are a second round trip.
    let started = Instant::now();
    client.send(&message_body(4096)).await;
    assert_eq!(client.reply().await.code, 250);
    assert!(started.elapsed() >= latency);
    assert_eq!(sink.stats().reply_flushes - before, 2);
    sink.shutdown().await;
}

#[tokio::test]
async fn tempfail_100_defers_every_recipient() {
    let sink = start(SinkConfig {
        tempfail_pct: 100.0,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect_ehlo(&sink).await;
    client
        .send(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n")
        .await;
    let replies = client.replies(4).await;
    assert_eq!(replies[1].last(), "451 4.3.0 Temporary failure, please try again later");
    assert_eq!(replies[2].code, 451);
    assert_eq!(replies[3].code, 554, "DATA without any accepted recipient");
    let stats = sink.stats();
    assert_eq!((stats.rcpt_tempfails, stats.messages), (2, 0));
    sink.shutdown().await;
}

#[tokio::test]
async fn permfail_100_rejects_every_recipient() {
    let sink = start(SinkConfig {
        permfail_pct: 100.0,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect_ehlo(&sink).await;
    assert_eq!(client.command("MAIL FROM:<s@c.test>").await.code, 250);
    for rcpt in ["a@x.test", "b@y.test", "c@z.test"] {
        let reply = client.command(&format!("RCPT TO:<{rcpt}>")).await;
        assert_eq!(reply.code, 550);
        assert!(reply.last().starts_with("550 5.1.1 "), "{reply:?}");
    }
    assert_eq!(sink.stats().rcpt_permfails, 3);
    sink.shutdown().await;
}

#[tokio::test]
async fn drop_100_closes_the_connection_without_a_reply() {
    let sink = start(SinkConfig {
        drop_pct: 100.0,
        ..SinkConfig::default()
    })
    .await;
    // Wherever the drop point falls, the transaction never gets its final reply.
    for _ in 0..8 {
        let mut client = connect_ehlo(&sink).await;
        let steps: [&[u8]; 4] = [
            b"MAIL FROM:<s@c.test>\r\n",
            b"RCPT TO:<a@x.test>\r\n",
            b"DATA\r\n",
            &message_body(300),
        ];
        let mut closed = false;
        for step in steps {
            client.send(step).await;
            match client.try_reply().await {
                None => {
                    closed = true;
                    break;
                }
                Some(reply) => assert!(matches!(reply.code, 250 | 354), "{reply:?}"),
            }
        }
        assert!(closed, "the connection must be dropped");
    }
    let stats = sink.stats();
    assert_eq!(stats.drops, 8);
    assert_eq!(stats.messages, 0);
    assert!(stats.drops_after_data <= 8);
    sink.shutdown().await;
}

#[tokio::test]
async fn max_connections_refuses_the_next_connection() {
    let sink = start(SinkConfig {
        max_connections: Some(1),
        ..SinkConfig::default()
    })
    .await;
    let mut first = connect_ehlo(&sink).await;
    let mut second = connect(&sink).await;
    let refused = second.reply().await;
    assert_eq!(refused.code, 421);
    assert!(
        refused
            .last()
            .starts_with("421 4.7.0 Too many concurrent SMTP connections"),
        "{refused:?}"
    );
    assert!(second.is_closed().await);
    assert_eq!(sink.stats().connections_refused, 1);

    // Once the first leaves, a new connection is served.
    first.command("QUIT").await;
    assert!(first.is_closed().await);
    let mut third = None;
    for _ in 0..50 {
        let mut client = connect(&sink).await;
        if client.reply().await.code == 220 {
            third = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "the slot is released when the first connection ends");
    sink.shutdown().await;
}

#[tokio::test]
async fn canned_rcpt_reply_for_yahoo_subdomains_substitutes_ip() {
    let sink = start(SinkConfig {
        canned: vec![CannedReply {
            domain: "*.yahoo.test".into(),
            stage: Stage::Rcpt,
            text: "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1".into(),
            percent: 100.0,
        }],
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect_ehlo(&sink).await;
    assert_eq!(client.command("MAIL FROM:<s@c.test>").await.code, 250);
    assert_eq!(client.command("RCPT TO:<a@other.test>").await.code, 250);
    assert_eq!(
        client.command("RCPT TO:<b@yahoo.test>").await.code,
        250,
        "suffix pattern needs a subdomain"
    );
    let reply = client.command("RCPT TO:<c@mx.Yahoo.test>").await;
    assert_eq!(
        reply.last(),
        "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1"
    );
    assert!(client.is_closed().await, "421 closes the channel");
    assert_eq!(sink.stats().canned_replies, 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn canned_connect_reply_replaces_the_banner_and_closes() {
    let sink = start(SinkConfig {
        canned: vec![CannedReply {
            domain: "*".into(),
            stage: Stage::Connect,
            text: "554 5.7.1 [BL21] Connections will not be accepted from {ip}".into(),
            percent: 100.0,
        }],
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect(&sink).await;
    assert_eq!(
        client.reply().await.last(),
        "554 5.7.1 [BL21] Connections will not be accepted from 127.0.0.1"
    );
    assert!(client.is_closed().await);
    sink.shutdown().await;
}
