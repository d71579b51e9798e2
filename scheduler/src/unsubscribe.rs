//! Volley's one-click unsubscribe endpoint (`[unsubscribe]` in volley.toml, started by
//! `volley serve` and `volley inbound`): the public HTTPS side of `List-Unsubscribe`
//! (RFC 2369, RFC 8058). A campaign with `[list_unsubscribe] volley = true` gives each
//! message a signed token in `<[feedback] unsubscribe_url>/<token>` and in
//! `mailto:unsubscribe+<token>@<bounce domain>`.
//!
//! - `POST <path>/<token>` with the form field `List-Unsubscribe=One-Click` (what mailbox
//!   providers send, and what the confirmation page's button sends): the recipient is
//!   suppressed in the campaign's list through the inbound listener's [`Applier`] (one
//!   implementation of "unsubscribe -> suppression + feedback line"), durably, before the
//!   `200`; no redirect (RFC 8058 §3.2). Repeating it changes nothing and answers 200 again.
//! - `GET <path>/<token>`: a small page with a button that POSTs; never unsubscribes (link
//!   scanners prefetch, RFC 8058 §1).
//! - Errors change nothing: a damaged or forged token 400 (a forgery is logged as a warning),
//!   an expired one 404, an unknown campaign or recipient line 404, a POST without the field
//!   400, a body over `max_body` 413, a client over its rate 429 with `Retry-After`, the
//!   suppression list unreachable 503 with `Retry-After`.
//!
//! No bearer token (recipients call it), so it is built to be exposed: per-client-IP rate
//! limit, bounded bodies, a connection cap, a time limit per connection, TLS when a
//! certificate is set. It listens apart from the bearer-protected API.
//!
//! - `unsubscribe/links.rs` — the `List-Unsubscribe` value of each message;
//! - `unsubscribe/listener.rs` — accepting connections: cap, TLS handshakes, time limit;
//! - `unsubscribe/http.rs` — routes, the rate limit, answers and the confirmation page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SendConfig, UnsubscribeUrl};
use crate::inbound::Applier;

mod http;
mod links;
mod listener;

pub use links::{UnsubscribeLinks, TOKEN_SOURCE_IP};

/// `[unsubscribe]` in volley.toml.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeConfig {
    /// Where the public endpoint listens, e.g. `0.0.0.0:443`; `[feedback] unsubscribe_url`
    /// must reach it (directly or through a proxy that keeps the path).
    pub listen: SocketAddr,
    /// PEM certificate chain for HTTPS (relative to the config file); with `tls_key`.
    /// Without them it speaks plain HTTP (behind a TLS-terminating proxy).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (relative to the config file).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Requests each client IP may make (default `"30/m"`, in bursts of as many); beyond it
    /// 429 with `Retry-After`.
    #[serde(default = "default_rate_per_client")]
    pub rate_per_client: volley_warmup::Rate,
    /// Largest request body in bytes (default 4096); beyond it 413.
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    /// Connections served at once (default 256); more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long one connection may last, TLS handshake and requests included (default 10s):
    /// a slow client is cut off.
    #[serde(default = "default_connection_timeout", with = "humantime_serde")]
    pub connection_timeout: Duration,
}

fn default_rate_per_client() -> volley_warmup::Rate {
    volley_warmup::Rate::new(30, 'm').unwrap_or_else(|_| volley_warmup::Rate::per_hour(std::num::NonZeroU32::MIN))
}
fn default_max_body() -> usize {
    4096
}
fn default_max_connections() -> usize {
    256
}
fn default_connection_timeout() -> Duration {
    Duration::from_secs(10)
}

impl UnsubscribeConfig {
    /// Resolves `tls_cert` and `tls_key` against the config file's folder `base`.
    pub(crate) fn resolve(&mut self, base: &Path) {
        for file in [&mut self.tls_cert, &mut self.tls_key].into_iter().flatten() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
    }

    /// Every value that parses but cannot work: (field, value, reason).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut push = |field: &str, value: String, reason: &str| {
            out.push((format!("unsubscribe.{field}"), value, reason.to_string()));
        };
        if !(64..=65_536).contains(&self.max_body) {
            push("max_body", self.max_body.to_string(), "must be 64 to 65536 bytes");
        }
        if self.max_connections == 0 {
            push("max_connections", "0".into(), "must be at least 1");
        }
        if self.connection_timeout.is_zero() {
            push("connection_timeout", "0s".into(), "must be longer than zero");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            push("tls_cert", String::new(), "tls_cert and tls_key go together");
        }
        out
    }
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UnsubscribeError {
    /// A setting it needs is missing or unusable.
    #[error("the unsubscribe endpoint needs {0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// `[unsubscribe] listen`.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::server_tls::ServerTlsError),
}

/// What the endpoint answered, counted (for `/metrics`).
#[derive(Debug, Default)]
pub struct UnsubscribeCounters {
    counts: [AtomicU64; Answer::ALL.len()],
}

/// One kind of answer of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A POST suppressed the recipient.
    Unsubscribed,
    /// A POST for an unsubscribe handled before.
    Repeated,
    /// A GET showed the confirmation page.
    Page,
    /// A damaged token, a token of another kind, or a POST without the one-click field.
    BadRequest,
    /// A token that does not carry our signature (forged, or an unknown key).
    Forged,
    /// An expired token.
    Expired,
    /// A valid token whose campaign or recipient line is not known here.
    NotFound,
    /// A body over `max_body`.
    TooLarge,
    /// A client over its rate.
    RateLimited,
    /// The suppression list or the feedback log could not be written.
    Failed,
}

impl Answer {
    /// Every answer, in the counters' order.
    pub const ALL: [Answer; 10] = [
        Answer::Unsubscribed,
        Answer::Repeated,
        Answer::Page,
        Answer::BadRequest,
        Answer::Forged,
        Answer::Expired,
        Answer::NotFound,
        Answer::TooLarge,
        Answer::RateLimited,
        Answer::Failed,
    ];

    /// Its label in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Answer::Unsubscribed => "unsubscribed",
            Answer::Repeated => "repeated",
            Answer::Page => "page",
            Answer::BadRequest => "bad_request",
            Answer::Forged => "forged",
            Answer::Expired => "expired",
            Answer::NotFound => "not_found",
            Answer::TooLarge => "too_large",
            Answer::RateLimited => "rate_limited",
            Answer::Failed => "failed",
        }
    }
}

impl UnsubscribeCounters {
    /// Counts one `answer`.
    pub fn count(&self, answer: Answer) {
        self.counts[answer as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (answer, count) for every answer.
    pub fn snapshot(&self) -> Vec<(Answer, u64)> {
        Answer::ALL
            .iter()
            .map(|a| (*a, self.counts[*a as usize].load(Ordering::Relaxed)))
            .collect()
    }
}

/// A running endpoint; stops when dropped.
pub struct UnsubscribeService {
    local_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl UnsubscribeService {
    /// Starts the endpoint of `config` (which must have `[unsubscribe]` and `[feedback]` with
    /// `unsubscribe_url` and a key), acting through `applier` and counting into `counters`.
    pub async fn start(
        config: &SendConfig,
        applier: Arc<Applier>,
        counters: Arc<UnsubscribeCounters>,
    ) -> Result<UnsubscribeService, UnsubscribeError> {
        let settings = config
            .unsubscribe
            .clone()
            .ok_or_else(|| UnsubscribeError::Config("an [unsubscribe] table in volley.toml".into()))?;
        let feedback = config
            .feedback
            .as_ref()
            .ok_or_else(|| UnsubscribeError::Config("a [feedback] table (token keys, unsubscribe_url)".into()))?;
        let url = feedback
            .unsubscribe_url
            .as_deref()
            .ok_or_else(|| UnsubscribeError::Config("[feedback] unsubscribe_url".into()))?;
        let url = UnsubscribeUrl::parse(url)
            .map_err(|why| UnsubscribeError::Config(format!("a usable [feedback] unsubscribe_url ({url:?}: {why})")))?;
        let keys = feedback
            .keyring()
            .map_err(|(field, value, reason)| UnsubscribeError::Config(format!("{field} = {value:?}: {reason}")))?;
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let mut tls = crate::server_tls::server_config("unsubscribe", cert, key)?;
                tls.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
            }
            _ => None,
        };
        let tcp = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|source| UnsubscribeError::Listen {
                addr: settings.listen,
                source,
            })?;
        let listener = listener::PublicListener::new(tcp, tls, settings.max_connections, settings.connection_timeout)
            .map_err(|source| UnsubscribeError::Listen {
            addr: settings.listen,
            source,
        })?;
        let local_addr = listener.local_addr();
        let endpoint = http::Endpoint::new(
            Arc::new(keys),
            feedback.unsubscribe_max_age,
            applier,
            counters,
            settings.rate_per_client,
        );
        let tasks = http::serve(listener, endpoint, &url.path, settings.max_body);
        tracing::info!("unsubscribe: listening on {local_addr} for {}/<token>", url.base);
        Ok(UnsubscribeService { local_addr, tasks })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops answering.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for UnsubscribeService {
    fn drop(&mut self) {
        self.stop();
    }
}
