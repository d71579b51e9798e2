//! The tokio driver over real loopback sockets: a listener that accepts mail for its own
//! domain only and makes each message "durable" before its 250.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use volley_smtp_server::driver::{serve, Decision, Handler, Timeouts};
use volley_smtp_server::{EnhancedCode, Path, Reply, Session, SessionConfig};

/// Accepts recipients at `own.test` only; `message` reports the content, then waits for
/// `release` before answering (the "durable write").
struct Inbound {
    received: mpsc::UnboundedSender<Vec<u8>>,
    release: Arc<Notify>,
    stored: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Handler for Inbound {
    fn rcpt(
        &mut self,
        recipient: Path<'_>,
        _params: volley_smtp_server::command::RcptParams<'_>,
    ) -> impl std::future::Future<Output = Decision> + Send {
        let ours = matches!(recipient, Path::Mailbox { domain, .. } if domain.eq_ignore_ascii_case("own.test"));
        async move {
            if ours {
                Decision::Accept
            } else {
                Decision::Reply(Reply::new(550, EnhancedCode::new(5, 7, 1), "not a domain of ours"))
            }
        }
    }

    fn message(&mut self, content: &[u8], _chunked: bool) -> impl std::future::Future<Output = Decision> + Send {
        let content = content.to_vec();
        let (received, release, stored) = (
            self.received.clone(),
            Arc::clone(&self.release),
            Arc::clone(&self.stored),
        );
        async move {
            let _ = received.send(content.clone());
            release.notified().await;
            stored.lock().expect("not poisoned").push(content);
            Decision::Accept
        }
    }
}

struct Server {
    addr: std::net::SocketAddr,
    received: mpsc::UnboundedReceiver<Vec<u8>>,
    release: Arc<Notify>,
    stored: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn start(timeouts: Timeouts) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, received) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let stored = Arc::new(Mutex::new(Vec::new()));
    let config = Arc::new(SessionConfig {
        hostname: "mx.own.test".into(),
        ..SessionConfig::default()
    });
    let (r, s) = (Arc::clone(&release), Arc::clone(&stored));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut handler = Inbound {
                received: tx.clone(),
                release: Arc::clone(&r),
                stored: Arc::clone(&s),
            };
            let config = Arc::clone(&config);
            tokio::spawn(async move {
                let mut session = Session::new(config, false);
                let greeting = Reply::plain(220, "mx.own.test ESMTP");
                let _ = serve(stream, &mut session, &mut handler, &greeting, None, &timeouts).await;
            });
        }
    });
    Server {
        addr,
        received,
        release,
        stored,
    }
}

/// Reads until `n` complete replies (final lines) have arrived; returns their text.
async fn replies(stream: &mut TcpStream, n: usize) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while count(&text) < n {
        let read = stream.read(&mut buf).await.expect("read");
        assert!(read > 0, "closed early after {text:?}");
        text.push_str(std::str::from_utf8(&buf[..read]).expect("utf-8"));
    }
    text
}

fn count(text: &str) -> usize {
    text.split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .count()
}

fn codes(text: &str) -> Vec<&str> {
    text.split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| &l[..3])
        .collect()
}

#[tokio::test]
async fn the_final_reply_waits_for_the_durable_write_and_foreign_domains_get_550() {
    let mut server = start(Timeouts::default()).await;
    let mut client = TcpStream::connect(server.addr).await.expect("connect");
    assert_eq!(replies(&mut client, 1).await, "220 mx.own.test ESMTP\r\n");
    client
        .write_all(b"EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<a@elsewhere.test>\r\nRCPT TO:<dsn@OWN.test>\r\nDATA\r\n")
        .await
        .expect("write");
    let text = replies(&mut client, 5).await;
    assert_eq!(codes(&text), ["250", "250", "550", "250", "354"], "{text}");
    client
        .write_all(b"Reporting-MTA: x\r\n..stuffed\r\n.\r\n")
        .await
        .expect("write");
    let content = server.received.recv().await.expect("handler called");
    assert_eq!(content, b"Reporting-MTA: x\r\n.stuffed\r\n");
    // The handler has the message but has not finished its write: no final reply yet.
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(100), client.read(&mut buf)).await;
    assert!(early.is_err(), "a reply came before the durable write: {early:?}");
    server.release.notify_one();
    assert_eq!(replies(&mut client, 1).await, "250 2.0.0 Ok\r\n");
    assert_eq!(server.stored.lock().expect("not poisoned").len(), 1);
    client.write_all(b"QUIT\r\n").await.expect("write");
    assert_eq!(replies(&mut client, 1).await, "221 2.0.0 Bye\r\n");
    assert_eq!(client.read(&mut buf).await.expect("read"), 0, "closed after QUIT");
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_gets_421_after_the_command_timeout() {
    let timeouts = Timeouts {
        command: Duration::from_secs(300),
        ..Timeouts::default()
    };
    let server = start(timeouts).await;
    let mut client = TcpStream::connect(server.addr).await.expect("connect");
    replies(&mut client, 1).await;
    let started = tokio::time::Instant::now();
    let text = replies(&mut client, 1).await;
    assert_eq!(text, "421 4.4.2 Timeout exceeded, closing channel\r\n");
    assert!(started.elapsed() >= Duration::from_secs(300), "{:?}", started.elapsed());
    let mut buf = [0u8; 8];
    assert_eq!(client.read(&mut buf).await.expect("read"), 0);
}
