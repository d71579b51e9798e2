//! The smart sink: an SMTP server (RFC 5321, RFC 2920 PIPELINING, RFC 3207 STARTTLS, RFC
//! 3030 CHUNKING) that accepts and counts mail without storing it, and injects faults on
//! request. The protocol is `volley-smtp-server`'s sans-IO session; the sink is the
//! fault-injecting layer on it: fault plans, canned replies, latency, counters, connection
//! caps and its self-signed certificate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), volley_bench::SinkError> {
//! use volley_bench::{Sink, SinkConfig};
//! let sink = Sink::start(SinkConfig { tempfail_pct: 5.0, ..SinkConfig::default() }).await?;
//! println!("sink on {}", sink.local_addr());
//! // ... send mail to it ...
//! println!("{} messages", sink.stats().messages);
//! sink.shutdown().await;
//! # Ok(()) }
//! ```

mod args;
mod canned;
mod client_limit;
mod config;
mod error;
mod fault_plan;
mod faults;
mod feedback;
mod greylist;
mod reply;
mod server;
mod session;
mod share;
mod stats;
mod tls;
mod transaction;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

pub use args::SinkArgs;
pub use canned::{CannedReply, Stage};
pub use config::{SinkConfig, DEFAULT_FEEDBACK_ATTEMPTS, DEFAULT_HOSTNAME, DEFAULT_MAX_MESSAGE_SIZE};
pub use error::SinkError;
pub use fault_plan::{Fault, FaultKind, FaultStage, TlsFault, TlsFaultKind};
pub use feedback::{late_bounce_diagnostic, FeedbackKind};
pub use stats::SinkStats;

use canned::CannedSet;
use client_limit::ClientLimit;
use stats::{AddressCounts, Counters};
use tls::TlsIdentity;

/// State shared by the accept loop and every connection task.
pub(crate) struct Shared {
    pub(crate) config: SinkConfig,
    pub(crate) canned: CannedSet,
    /// The banner (`220 <hostname> ESMTP volley-sink`).
    pub(crate) banner: Box<[u8]>,
    /// What every connection's protocol session advertises and enforces.
    pub(crate) smtp: Arc<volley_smtp_server::SessionConfig>,
    /// `--greylist`, when its share is above zero.
    pub(crate) greylist: Option<greylist::Greylist>,
    /// Where complaints and late bounces are queued, when the sink sends any.
    pub(crate) feedback: Option<feedback::Outbox>,
    /// The workers that deliver them, until [`Sink::start`] spawns them.
    feedback_mailer: Mutex<Option<feedback::Mailer>>,
    /// Shared with the feedback workers, which count what they send.
    pub(crate) counters: Arc<Counters>,
    pub(crate) addresses: AddressCounts,
    /// RCPT TO commands per recipient address, whatever the answer.
    pub(crate) rcpt_addresses: AddressCounts,
    /// Source of `queued as` identifiers.
    pub(crate) queue_ids: AtomicU64,
    pub(crate) tls: TlsIdentity,
    /// The certificate served by a `wrong-name` TLS fault: valid, but only for
    /// `wrong-name.invalid`.
    pub(crate) tls_wrong_name: TlsIdentity,
}

impl Shared {
    /// Validates `config`, compiles canned replies, generates the certificate.
    pub(crate) fn new(config: SinkConfig) -> Result<Self, SinkError> {
        config.validate()?;
        let canned = CannedSet::compile(&config.canned)?;
        let tls = TlsIdentity::generate(&config.hostname, config.listen.ip())?;
        let tls_wrong_name = TlsIdentity::for_names(vec![tls::WRONG_NAME.to_owned()])?;
        let (outbox, mailer) = feedback::channel(&config)?.unzip();
        Ok(Shared {
            banner: reply::banner(&config),
            smtp: Arc::new(session::smtp_config(&config)),
            greylist: (config.greylist_pct > 0.0).then(|| greylist::Greylist::new(config.greylist_pct)),
            feedback: outbox,
            feedback_mailer: Mutex::new(mailer),
            config,
            canned,
            counters: Arc::default(),
            addresses: AddressCounts::default(),
            rcpt_addresses: AddressCounts::default(),
            queue_ids: AtomicU64::new(1),
            tls,
            tls_wrong_name,
        })
    }
}

/// Starts sinks. See [`Sink::start`].
#[derive(Debug)]
pub struct Sink;

impl Sink {
    /// Validates `config`, generates the STARTTLS certificate, binds the listener and spawns
    /// the accept loop on the current tokio runtime; returns as soon as it listens.
    ///
    /// The sink runs until [`SinkHandle::shutdown`] or until every handle is dropped.
    pub async fn start(config: SinkConfig) -> Result<SinkHandle, SinkError> {
        let shared = Arc::new(Shared::new(config)?);
        if let Some(mailer) = take(&shared.feedback_mailer) {
            mailer.spawn(Arc::clone(&shared.counters));
        }
        let config = &shared.config;
        let listener = server::listen(config.listen, config.stops_reading()).map_err(|source| SinkError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| SinkError::Bind {
            addr: config.listen,
            source,
        })?;
        let limit = config.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let per_client = config
            .max_connections_per_client
            .map(|cap| ClientLimit::new(cap, config.client_close_lag));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        let accept = tokio::spawn(server::accept_loop(
            listener,
            Arc::clone(&shared),
            limit,
            per_client,
            shutdown_rx,
            done_tx,
        ));
        tracing::debug!(%local_addr, "sink: listening");
        Ok(SinkHandle {
            inner: Arc::new(HandleInner {
                shared,
                local_addr,
                shutdown_tx,
                accept: Mutex::new(Some(accept)),
                done: Mutex::new(Some(done_rx)),
            }),
        })
    }
}

struct HandleInner {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Yields `None` once every connection task has ended.
    done: Mutex<Option<mpsc::Receiver<()>>>,
}

/// A running sink. Cheap to clone; dropping the last clone shuts the sink down.
#[derive(Clone)]
pub struct SinkHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHandle")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

impl SinkHandle {
    /// The address the sink listens on (with the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The self-signed STARTTLS certificate, PEM-encoded, for clients that verify it. With a
    /// `wrong-name` TLS fault configured, the certificate for `wrong-name.invalid` that the
    /// fault serves (trusting it isolates the name check).
    pub fn certificate_pem(&self) -> &str {
        &self.served_identity().certificate_pem
    }

    /// The same certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        &self.served_identity().certificate_der
    }

    fn served_identity(&self) -> &TlsIdentity {
        let shared = &self.inner.shared;
        if shared
            .config
            .tls_faults
            .iter()
            .any(|f| f.kind == TlsFaultKind::WrongName)
        {
            &shared.tls_wrong_name
        } else {
            &shared.tls
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SinkStats {
        self.inner.shared.counters.snapshot()
    }

    /// Messages accepted for `address` (angle brackets optional; domain case-insensitive,
    /// local part case-sensitive). Always 0 when `count_addresses` is off.
    pub fn accepted_for(&self, address: &str) -> u64 {
        self.inner.shared.addresses.get(address)
    }

    /// RCPT TO commands received for `address`, whatever the answer (a rejected recipient was
    /// still tried). Always 0 when `count_addresses` is off.
    pub fn rcpts_for(&self, address: &str) -> u64 {
        self.inner.shared.rcpt_addresses.get(address)
    }

    /// Accepted-message counts for every recipient address seen, keyed with a lowercase
    /// domain.
    pub fn address_counts(&self) -> HashMap<String, u64> {
        self.inner.shared.addresses.all()
    }

    /// Stops accepting, tells every connection to close (open sessions get `421 4.3.2`), and
    /// waits until all connection tasks have ended.
    pub async fn shutdown(self) {
        self.inner.shutdown_tx.send_replace(true);
        let accept = take(&self.inner.accept);
        if let Some(accept) = accept {
            if let Err(e) = accept.await {
                tracing::debug!(error = %e, "sink: accept loop ended abnormally");
            }
        }
        let done = take(&self.inner.done);
        if let Some(mut done) = done {
            // Every connection task holds a sender; recv() yields None when all are gone.
            while done.recv().await.is_some() {}
        }
    }
}

/// Takes the value out of a mutex-guarded option without holding the lock across `.await`.
fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
}
