//! Accepting inbound connections: caps in total and per client address (421 4.7.0 beyond
//! them, `crate::listen`), one SMTP session per connection on `volley-smtp-server`'s driver, and the handler:
//! recipients only at our domains, every message spooled (synced) before its 250.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use volley_feedback::InboundEnvelope;
use volley_smtp_server::command::{MailParams, Path, RcptParams};
use volley_smtp_server::driver::{serve, Decision, Handler, Timeouts};
use volley_smtp_server::reply::{EnhancedCode, Reply};
use volley_smtp_server::{Session, SessionConfig};

use super::{InboundConfig, InboundError, Spool};
use crate::listen::{serve_capped, ConnectionCaps, TOO_MANY_CONNECTIONS};

/// Binds and starts accepting; the bound address and the accepting task.
pub(super) async fn start(
    config: &InboundConfig,
    hostname: String,
    domains: Vec<String>,
    spool: Arc<Spool>,
    processed: mpsc::UnboundedSender<PathBuf>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), InboundError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(TlsAcceptor::from(Arc::new(
            crate::server_tls::server_config("inbound", cert, key).map_err(|e| InboundError::Tls(e.to_string()))?,
        ))),
        _ => None,
    };
    let session_config = Arc::new(SessionConfig {
        hostname: hostname.clone(),
        max_message_size: config.max_message_size,
        chunking: true,
        starttls: tls.is_some(),
        ..SessionConfig::default()
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| InboundError::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| InboundError::Listen {
        addr: config.listen,
        source,
    })?;
    let timeouts = Timeouts {
        command: config.idle_timeout,
        content: config.idle_timeout,
        ..Timeouts::default()
    };
    let greeting = Reply::owned(220, None, format!("{hostname} ESMTP Volley inbound"));
    let caps = ConnectionCaps::new(config.max_connections, config.max_connections_per_ip);
    let domains = Arc::new(domains);
    let task = tokio::spawn(serve_capped(
        listener,
        caps,
        TOO_MANY_CONNECTIONS,
        "inbound",
        move |stream, peer| {
            let mut handler = InboundHandler {
                domains: domains.clone(),
                spool: spool.clone(),
                processed: processed.clone(),
                peer: peer.to_string(),
                mail_from: String::new(),
                rcpt_to: Vec::new(),
            };
            let (config, tls, greeting) = (session_config.clone(), tls.clone(), greeting.clone());
            async move {
                let mut session = Session::new(config, false);
                if let Err(e) = serve(stream, &mut session, &mut handler, &greeting, tls.as_ref(), &timeouts).await {
                    tracing::debug!("inbound: {peer}: {e}");
                }
            }
        },
    ));
    Ok((local, task))
}

struct InboundHandler {
    domains: Arc<Vec<String>>,
    spool: Arc<Spool>,
    processed: mpsc::UnboundedSender<PathBuf>,
    peer: String,
    mail_from: String,
    rcpt_to: Vec<String>,
}

impl Handler for InboundHandler {
    async fn mail(&mut self, sender: Path<'_>, _params: MailParams<'_>) -> Decision {
        self.mail_from = sender.address().to_string();
        self.rcpt_to.clear();
        Decision::Accept
    }

    async fn rcpt(&mut self, recipient: Path<'_>, _params: RcptParams<'_>) -> Decision {
        let domain = match recipient {
            Path::Mailbox { domain, .. } => domain.to_ascii_lowercase(),
            Path::Null => String::new(),
        };
        if self.domains.contains(&domain) {
            self.rcpt_to.push(recipient.address().to_string());
            Decision::Accept
        } else {
            Decision::Reply(Reply::owned(
                550,
                Some(EnhancedCode::new(5, 7, 1)),
                format!(
                    "relay access denied: this server takes mail for {} only",
                    self.domains.join(", ")
                ),
            ))
        }
    }

    async fn message(&mut self, content: &[u8], _chunked: bool) -> Decision {
        let envelope = InboundEnvelope {
            mail_from: std::mem::take(&mut self.mail_from),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
        };
        let (spool, peer, raw) = (self.spool.clone(), self.peer.clone(), content.to_vec());
        let env = envelope.clone();
        match tokio::task::spawn_blocking(move || spool.put(&env, &peer, &raw)).await {
            Ok(Ok(path)) => {
                let _ = self.processed.send(path);
                Decision::Accept
            }
            Ok(Err(e)) => {
                tracing::error!("inbound: a message from {} could not be spooled: {e}", self.peer);
                Decision::Reply(Reply::new(
                    452,
                    EnhancedCode::new(4, 3, 1),
                    "Cannot store the message now, try again later",
                ))
            }
            Err(e) => {
                tracing::error!("inbound: spooling failed: {e}");
                Decision::Reply(Reply::new(
                    451,
                    EnhancedCode::new(4, 3, 0),
                    "Local error, try again later",
                ))
            }
        }
    }
}
