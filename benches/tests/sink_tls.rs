//! STARTTLS (RFC 3207) with a client that verifies the sink's self-signed certificate.

mod common;

use std::sync::Arc;

use common::{connect, connect_ehlo, send_message, start, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use volley_bench::{SinkConfig, SinkHandle};

/// A connector that trusts only the sink's certificate.
fn connector(sink: &SinkHandle) -> TlsConnector {
    let cert = CertificateDer::from_pem_slice(sink.certificate_pem().as_bytes()).expect("PEM certificate");
    assert_eq!(cert.as_ref(), sink.certificate_der());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn upgrade(
    sink: &SinkHandle,
    client: Client<TcpStream>,
    name: ServerName<'static>,
) -> Client<TlsStream<TcpStream>> {
    let tls = connector(sink)
        .connect(name, client.into_inner())
        .await
        .expect("TLS handshake verifying the sink's certificate");
    Client::new(tls)
}

#[tokio::test]
async fn starttls_then_ehlo_again_and_a_transaction() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect_ehlo(&sink).await;
    assert_eq!(client.command("STARTTLS").await.last(), "220 2.0.0 Ready to start TLS");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = upgrade(&sink, client, name).await;

    // RFC 3207 §4.2: the session starts over; EHLO no longer offers STARTTLS.
    assert_eq!(tls.command("MAIL FROM:<s@c.test>").await.code, 503);
    let ehlo = tls.command("EHLO client.test").await;
    assert!(ehlo.has_line("PIPELINING") && !ehlo.has_line("STARTTLS"), "{ehlo:?}");
    assert_eq!(tls.command("STARTTLS").await.code, 503);
    let done = send_message(&mut tls, "s@c.test", &["a@x.test", "b@x.test"]).await;
    assert_eq!(done.code, 250);
    assert_eq!(tls.command("QUIT").await.code, 221);

    let stats = sink.stats();
    assert_eq!((stats.tls_handshakes, stats.messages, stats.recipients), (1, 1, 2));
    assert_eq!(sink.accepted_for("b@x.test"), 1);
    sink.shutdown().await;
}

#[tokio::test]
async fn certificate_covers_the_listen_ip_and_plaintext_after_starttls_is_discarded() {
    let sink = start(SinkConfig::default()).await;
    let mut client = connect_ehlo(&sink).await;
    // A command smuggled after STARTTLS in the same write must not be executed
    // (RFC 3207 §5); if it were read as TLS, the handshake would fail.
    client.send(b"STARTTLS\r\nMAIL FROM:<evil@c.test>\r\n").await;
    assert_eq!(client.reply().await.code, 220);
    let name = ServerName::from(sink.local_addr().ip());
    let mut tls = upgrade(&sink, client, name).await;
    assert_eq!(tls.command("EHLO client.test").await.code, 250);
    assert_eq!(
        tls.command("MAIL FROM:<s@c.test>").await.code,
        250,
        "no transaction was open"
    );
    sink.shutdown().await;
}

#[tokio::test]
async fn starttls_disabled_is_neither_offered_nor_accepted() {
    let sink = start(SinkConfig {
        starttls: false,
        pipelining: false,
        ..SinkConfig::default()
    })
    .await;
    let mut client = connect(&sink).await;
    client.reply().await;
    let ehlo = client.command("EHLO client.test").await;
    assert!(!ehlo.has_line("STARTTLS") && !ehlo.has_line("PIPELINING"), "{ehlo:?}");
    assert_eq!(client.command("STARTTLS").await.code, 502);
    sink.shutdown().await;
}
