//! The inbound listener (`[inbound]`, `volley inbound`, and inside `volley serve`): an SMTP
//! server for the bounce and feedback-loop domains, built on `volley-smtp-server`. It accepts
//! mail only for its own domains (550 otherwise), with STARTTLS when a certificate is set, a
//! size cap and connection caps (in total and per client address). Each message is spooled
//! durably before its 250 (`inbound/spool.rs`), then parsed by the feedback intake
//! (`volley-feedback`: DSN, ARF, plain bounces, unsubscribes) and acted on
//! (`inbound/apply.rs`); what cannot be read is quarantined with its reason.
//!
//! - `inbound/listener.rs` — accepting connections, caps, the SMTP handler;
//! - `inbound/spool.rs` — the spool;
//! - `inbound/apply.rs` — events -> suppression, reputation guards, feedback logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use volley_feedback::{Feedback, Intake, Quarantine};

mod apply;
mod listener;
mod spool;

pub use apply::{Applied, Applier, FeedbackRecord, Unsubscribed, FEEDBACK_LOG, LIST_FILE};
pub use spool::Spool;

use crate::config::SendConfig;
use crate::reputation::Guards;
use crate::suppression::SuppressionStore;

/// `[inbound]` in `volley.toml`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Where to listen, e.g. `0.0.0.0:25` (the bounce domain's MX points here).
    pub listen: SocketAddr,
    /// The name in the banner and the EHLO reply (default: the bounce domain).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Domains mail is accepted for; other recipients get 550 5.7.1. Default: the
    /// `[feedback] bounce_domain`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Largest message accepted, in bytes (default 10 MiB; announced as SIZE).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Connections served at once (default 100); beyond it 421 4.7.0.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections served at once per client address (default 10); beyond it 421 4.7.0.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// PEM certificate chain and key for STARTTLS (relative to the config file); without
    /// them STARTTLS is not offered.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Waiting for a command or message content before 421 (default 5 minutes, RFC 5321
    /// §4.5.3.2).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_max_message_size() -> u64 {
    10 << 20
}
fn default_max_connections() -> usize {
    100
}
fn default_max_connections_per_ip() -> usize {
    10
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

impl InboundConfig {
    /// Resolves `tls_cert` and `tls_key` against the config file's folder.
    pub fn resolve(&mut self, base: &std::path::Path) {
        crate::config::resolve_relative(base, [&mut self.tls_cert, &mut self.tls_key].into_iter().flatten());
    }

    /// Every value that parses but cannot work: (field, value, reason).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (field, value) in [
            ("inbound.max_connections", self.max_connections),
            ("inbound.max_connections_per_ip", self.max_connections_per_ip),
        ] {
            if value == 0 {
                out.push((field.to_string(), "0".to_string(), "must be at least 1".to_string()));
            }
        }
        if self.max_message_size < 1024 {
            out.push((
                "inbound.max_message_size".to_string(),
                self.max_message_size.to_string(),
                "must be at least 1024 bytes (a DSN quotes the original's headers)".to_string(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            out.push((
                "inbound.tls_cert".to_string(),
                String::new(),
                "tls_cert and tls_key go together".to_string(),
            ));
        }
        if self.idle_timeout.is_zero() {
            out.push((
                "inbound.idle_timeout".to_string(),
                "0s".to_string(),
                "must be longer than zero".to_string(),
            ));
        }
        out
    }
}

/// Why the listener cannot start or a message cannot be handled.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("volley inbound needs {0}")]
    Config(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("spool file {} is damaged: {reason}", path.display())]
    CorruptSpool { path: PathBuf, reason: String },
    #[error("suppression list: {0}")]
    Store(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("inbound TLS: {0}")]
    Tls(String),
}

/// Where the inbound listener keeps its files, under the state directory.
pub fn spool_dir(config: &SendConfig) -> PathBuf {
    config.state_dir.join("inbound").join("spool")
}

/// Where unreadable messages are kept with their reason.
pub fn quarantine_dir(config: &SendConfig) -> PathBuf {
    config.state_dir.join("inbound").join("quarantine")
}

/// A running inbound listener.
pub struct InboundService {
    local_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl InboundService {
    /// Starts the listener of `config` (which must have `[inbound]` and `[feedback]`), acting on
    /// `store`; `guards` when campaigns run in this process. Messages left in the spool by an
    /// earlier process are processed first.
    pub async fn start(
        config: &SendConfig,
        store: Arc<dyn SuppressionStore>,
        guards: Option<Arc<Guards>>,
    ) -> Result<InboundService, InboundError> {
        InboundService::start_with(config, Arc::new(Applier::for_config(config, store, guards))).await
    }

    /// [`InboundService::start`] acting through `applier`, which the unsubscribe endpoint
    /// shares (one record of which events were handled, so a mailed and a clicked unsubscribe
    /// of one recipient count once).
    pub async fn start_with(config: &SendConfig, applier: Arc<Applier>) -> Result<InboundService, InboundError> {
        let inbound = config
            .inbound
            .clone()
            .ok_or_else(|| InboundError::Config("an [inbound] table in volley.toml".into()))?;
        let feedback = config
            .feedback
            .as_ref()
            .ok_or_else(|| InboundError::Config("a [feedback] table (bounce_domain and token keys)".into()))?;
        let keys = feedback
            .keyring()
            .map_err(|(field, value, reason)| InboundError::Config(format!("{field} = {value:?}: {reason}")))?;
        let rules = config
            .bounces
            .load()
            .map_err(|e| InboundError::Config(format!("bounce rules: {e}")))?;
        let mut domains: Vec<String> = inbound.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        if domains.is_empty() {
            domains.push(feedback.bounce_domain.to_ascii_lowercase());
        }
        let intake = Intake::new(Arc::new(keys), Arc::new(rules))
            .with_domains(domains.clone())
            .with_max_bytes(usize::try_from(inbound.max_message_size).unwrap_or(usize::MAX))
            .with_unsubscribe_max_age(feedback.unsubscribe_max_age);
        let spool = Arc::new(Spool::open(&spool_dir(config))?);
        let quarantine = Quarantine::open(&quarantine_dir(config)).map_err(|e| InboundError::Io {
            path: quarantine_dir(config),
            action: "open the quarantine",
            source: std::io::Error::other(e.to_string()),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        for path in spool.pending()? {
            let _ = tx.send(path);
        }
        let hostname = inbound
            .hostname
            .clone()
            .unwrap_or_else(|| feedback.bounce_domain.clone());
        let (local_addr, accept) = listener::start(&inbound, hostname, domains, spool, tx.clone()).await?;
        let processor = tokio::spawn(process_loop(rx, tx, Arc::new(intake), Arc::new(quarantine), applier));
        tracing::info!("inbound: listening on {local_addr}");
        Ok(InboundService {
            local_addr,
            tasks: vec![accept, processor],
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and processing (what is spooled stays for the next start).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for InboundService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a message whose effects could not be written (the suppression list is down)
/// waits before it is tried again. It stays in the spool meanwhile.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Processes spooled messages one at a time, in arrival order.
async fn process_loop(
    mut rx: mpsc::UnboundedReceiver<PathBuf>,
    tx: mpsc::UnboundedSender<PathBuf>,
    intake: Arc<Intake>,
    quarantine: Arc<Quarantine>,
    applier: Arc<Applier>,
) {
    while let Some(path) = rx.recv().await {
        let (intake, quarantine, applier) = (intake.clone(), quarantine.clone(), applier.clone());
        let job = path.clone();
        let done = tokio::task::spawn_blocking(move || process(&job, &intake, &quarantine, &applier)).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(
                    "inbound: {}: {e}; kept in the spool, tried again in {RETRY_AFTER:?}",
                    path.display()
                );
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_AFTER).await;
                    let _ = tx.send(path);
                });
            }
            Err(e) => tracing::error!("inbound: processing {} failed: {e}", path.display()),
        }
    }
}

/// One spooled message: its events acted on (or its quarantine), then the spool file goes.
fn process(
    path: &std::path::Path,
    intake: &Intake,
    quarantine: &Quarantine,
    applier: &Applier,
) -> Result<(), InboundError> {
    let spooled = match Spool::read(path) {
        Ok(s) => s,
        Err(InboundError::CorruptSpool { path, reason }) => {
            // Never acknowledged as readable: keep it aside rather than lose it.
            let aside = path.with_extension("damaged");
            tracing::error!(
                "inbound: spool file {} is damaged ({reason}); moved to {}",
                path.display(),
                aside.display()
            );
            let _ = std::fs::rename(&path, &aside);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match intake.process(&spooled.raw, &spooled.envelope) {
        Feedback::Quarantine { reason } => {
            let kept = quarantine
                .store(&spooled.raw, &spooled.envelope, &reason)
                .map_err(|e| InboundError::Io {
                    path: path.to_path_buf(),
                    action: "quarantine",
                    source: std::io::Error::other(e.to_string()),
                })?;
            tracing::warn!(
                "inbound: message from {} quarantined as {}: {reason}",
                spooled.peer,
                kept.display()
            );
        }
        Feedback::Events { events } => {
            let applied = applier.apply(&events)?;
            tracing::info!(
                "inbound: message from {}: {} events ({} new, {} seen before), {} suppression updates",
                spooled.peer,
                events.len(),
                applied.new,
                applied.duplicates,
                applied.suppressed
            );
        }
    }
    Spool::remove(path)
}
