//! A raw-bytes SMTP client for the sink's integration tests. Every socket is on 127.0.0.1.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use volley_bench::{Sink, SinkConfig, SinkHandle};

/// Upper bound on any single wait, so a broken sink fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// One SMTP reply: its code and its lines (without CRLF).
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The last line, e.g. `250 2.0.0 Ok: queued as ...`.
    pub fn last(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }

    /// Whether a line (after the code and separator) equals `keyword`, for EHLO extensions.
    pub fn has_line(&self, keyword: &str) -> bool {
        self.lines.iter().any(|l| l.get(4..) == Some(keyword))
    }
}

/// Starts a sink with `config` on 127.0.0.1:0.
pub async fn start(config: SinkConfig) -> SinkHandle {
    assert!(config.listen.ip().is_loopback(), "tests listen on loopback only");
    Sink::start(config).await.expect("sink starts")
}

/// A client speaking raw protocol bytes over any stream.
pub struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

/// Connects to the sink (loopback only) and returns the client with the banner unread.
pub async fn connect(sink: &SinkHandle) -> Client<TcpStream> {
    let addr = sink.local_addr();
    assert!(addr.ip().is_loopback(), "tests connect to loopback only");
    let stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    Client::new(stream)
}

/// Connects, reads the 220 banner, sends EHLO and returns the client.
pub async fn connect_ehlo(sink: &SinkHandle) -> Client<TcpStream> {
    let mut client = connect(sink).await;
    assert_eq!(client.reply().await.code, 220);
    assert_eq!(client.command("EHLO client.test").await.code, 250);
    client
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends bytes as one write.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Reads one complete (possibly multi-line) reply.
    pub async fn reply(&mut self) -> Reply {
        match self.try_reply().await {
            Some(reply) => reply,
            None => panic!(
                "connection closed while waiting for a reply; buffered {:?}",
                self.buffered()
            ),
        }
    }

    /// Reads one complete reply, or `None` if the server closes the connection first.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = self.parse_buffered() {
                return Some(reply);
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// Reads `n` replies.
    pub async fn replies(&mut self, n: usize) -> Vec<Reply> {
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.reply().await);
        }
        replies
    }

    /// True when the server closed the connection (EOF or reset) with nothing more to read.
    pub async fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }

    /// What has been read but not parsed yet.
    pub fn buffered(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// The stream, for a TLS upgrade. Nothing may be buffered.
    pub fn into_inner(self) -> S {
        assert!(self.buf.is_empty(), "unread bytes: {:?}", self.buffered());
        self.stream
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = match timeout(WAIT, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!("no reply within {WAIT:?}; buffered {:?}", self.buffered()),
        };
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    fn parse_buffered(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8(self.buf[start..start + pos].to_vec()).expect("UTF-8 reply");
            start += pos + 2;
            assert!(line.len() >= 3, "short reply line {line:?}");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                let code = lines[0][..3].parse().expect("numeric reply code");
                assert!(
                    lines.iter().all(|l| l.starts_with(&lines[0][..3])),
                    "mixed codes {lines:?}"
                );
                self.buf.drain(..start);
                return Some(Reply { code, lines });
            }
        }
        None
    }
}

/// A complete transaction on an already greeted client, one command at a time; returns the
/// final reply after the dot.
pub async fn send_message<S: AsyncRead + AsyncWrite + Unpin>(client: &mut Client<S>, from: &str, to: &[&str]) -> Reply {
    assert_eq!(client.command(&format!("MAIL FROM:<{from}>")).await.code, 250);
    for rcpt in to {
        assert_eq!(client.command(&format!("RCPT TO:<{rcpt}>")).await.code, 250);
    }
    assert_eq!(client.command("DATA").await.code, 354);
    client.send(&message_body(200)).await;
    client.reply().await
}

/// A message of about `size` bytes ending with the end-of-data marker, with a dot-stuffed
/// line in it.
pub fn message_body(size: usize) -> Vec<u8> {
    let mut body = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: test\r\n\r\n..stuffed line\r\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n");
    }
    body.extend_from_slice(b".\r\n");
    body
}
