//! The driver's STARTTLS path (RFC 3207) and AUTH after it, as on a submission port: AUTH is
//! neither offered nor accepted in plaintext, and MAIL needs it.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use volley_smtp_server::driver::{serve, Decision, Handler, Timeouts};
use volley_smtp_server::reply::AUTH_FAILED;
use volley_smtp_server::{AuthMechanism, Credentials, Reply, Session, SessionConfig};

struct Submission {
    messages: mpsc::UnboundedSender<Vec<u8>>,
}

impl Handler for Submission {
    fn message(&mut self, content: &[u8], _chunked: bool) -> impl std::future::Future<Output = Decision> + Send {
        let _ = self.messages.send(content.to_vec());
        async { Decision::Accept }
    }

    fn auth(&mut self, credentials: &Credentials) -> impl std::future::Future<Output = Decision> + Send {
        let ok = credentials.username == "alice" && credentials.password == "secret";
        async move {
            if ok {
                Decision::Accept
            } else {
                Decision::Reply(AUTH_FAILED)
            }
        }
    }
}

fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let der: CertificateDer<'static> = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("trust anchor");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

/// Sends `line` (unless empty) and reads one complete reply.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, line: &str) -> String {
    if !line.is_empty() {
        stream.write_all(format!("{line}\r\n").as_bytes()).await.expect("write");
    }
    let mut text = String::new();
    let mut byte = [0u8; 1];
    loop {
        assert_eq!(stream.read(&mut byte).await.expect("read"), 1, "closed after {text:?}");
        text.push(char::from(byte[0]));
        let last = text.trim_end_matches("\r\n").rsplit("\r\n").next().unwrap_or_default();
        if text.ends_with("\r\n") && last.len() >= 4 && last.as_bytes()[3] == b' ' {
            return text;
        }
    }
}

#[tokio::test]
async fn starttls_then_auth_then_a_message() {
    let (acceptor, connector) = tls_pair();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut messages) = mpsc::unbounded_channel();
    let config = Arc::new(SessionConfig {
        hostname: "submit.test".into(),
        starttls: true,
        auth: vec![AuthMechanism::Plain, AuthMechanism::Login],
        auth_requires_tls: true,
        require_auth: true,
        ..SessionConfig::default()
    });
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut session = Session::new(config, false);
        let mut handler = Submission { messages: tx };
        let greeting = Reply::plain(220, "submit.test ESMTP");
        serve(
            stream,
            &mut session,
            &mut handler,
            &greeting,
            Some(&acceptor),
            &Timeouts::default(),
        )
        .await
    });

    let mut plain = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(command(&mut plain, "").await, "220 submit.test ESMTP\r\n");
    let ehlo = command(&mut plain, "EHLO c.test").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "{ehlo}");
    assert!(command(&mut plain, "AUTH PLAIN").await.starts_with("538 5.7.11 "));
    assert!(command(&mut plain, "STARTTLS").await.starts_with("220 2.0.0 "));
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, plain).await.expect("handshake");

    assert!(
        command(&mut tls, "MAIL FROM:<a@c.test>").await.starts_with("503 "),
        "greeting forgotten"
    );
    let ehlo = command(&mut tls, "EHLO c.test").await;
    assert!(ehlo.ends_with("250 AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    assert!(command(&mut tls, "MAIL FROM:<a@c.test>")
        .await
        .starts_with("530 5.7.0 "));
    let wrong = format!("AUTH PLAIN {}", STANDARD.encode("\0alice\0nope"));
    assert!(command(&mut tls, &wrong).await.starts_with("535 5.7.8 "));
    assert_eq!(command(&mut tls, "AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        command(&mut tls, &STANDARD.encode("alice")).await,
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert!(command(&mut tls, &STANDARD.encode("secret"))
        .await
        .starts_with("235 2.7.0 "));
    assert!(command(&mut tls, "MAIL FROM:<a@c.test>").await.starts_with("250 "));
    assert!(command(&mut tls, "RCPT TO:<b@d.test>").await.starts_with("250 "));
    assert!(command(&mut tls, "DATA").await.starts_with("354 "));
    assert!(command(&mut tls, "Subject: s\r\n\r\nhi\r\n.").await.starts_with("250 "));
    assert_eq!(messages.recv().await.expect("message"), b"Subject: s\r\n\r\nhi\r\n");
    assert!(command(&mut tls, "QUIT").await.starts_with("221 "));
    server.await.expect("server task").expect("session ended cleanly");
}
