//! `volley sink --greylist`: the first RCPT of a greylisted recipient from a client network is
//! answered 451 4.7.1, every later one accepted — on the same connection or a new one.

mod common;

use common::{connect_ehlo, start};
use volley_bench::SinkConfig;

#[tokio::test]
async fn a_greylisted_recipient_is_accepted_on_its_retry() {
    let sink = start(SinkConfig {
        greylist_pct: 100.0,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect_ehlo(&sink).await;
    client
        .send(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<a@grey.test>\r\nDATA\r\n")
        .await;
    let replies = client.replies(3).await;
    assert_eq!(replies[1].last(), "451 4.7.1 Greylisted, please try again later");
    assert_eq!(replies[2].code, 554, "DATA without any accepted recipient");
    assert_eq!(client.command("RSET").await.code, 250);
    // The retry, on a new connection from the same address: accepted.
    let mut retry = connect_ehlo(&sink).await;
    assert_eq!(retry.command("MAIL FROM:<s@c.test>").await.code, 250);
    assert_eq!(retry.command("RCPT TO:<a@grey.test>").await.code, 250);
    assert_eq!(
        retry.command("RCPT TO:<b@grey.test>").await.code,
        451,
        "another recipient is new"
    );
    let stats = sink.stats();
    assert_eq!(stats.rcpt_tempfails, 2);
    sink.shutdown().await;
}

#[tokio::test]
async fn without_greylisting_nothing_is_deferred() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect_ehlo(&sink).await;
    assert_eq!(client.command("MAIL FROM:<s@c.test>").await.code, 250);
    assert_eq!(client.command("RCPT TO:<a@grey.test>").await.code, 250);
    assert_eq!(sink.stats().rcpt_tempfails, 0);
    sink.shutdown().await;
}
