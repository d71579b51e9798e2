//! `volley serve`: the HTTP control API over one long-lived send service. Every request needs
//! `Authorization: Bearer <[api] token>`. Campaigns launched through it run together on one
//! pool and share the source IPs' warm-up budgets.
//!
//! - `http.rs` — the token check, JSON errors naming the field, body helpers.
//! - `campaigns.rs` — launch, list, progress, pause, resume, cancel.
//! - `admin.rs` — source IPs with their warm-up state; the suppression list.
//! - `queues.rs` — queue control: queues by site, domain, IP, provider; suspend, resume,
//!   retry, bounce, purge.
//! - `tls.rs` — HTTPS (`[api] tls_cert` / `tls_key`): handshakes off the accept path.
//! - `cluster.rs` — with `[cluster]`: publish, list, status, pause, resume, cancel of cluster
//!   campaigns, and working every campaign of the cluster's registry on this node.
//!
//! Endpoints: `POST /campaigns`, `GET /campaigns`, `GET /campaigns/{id}`,
//! `POST /campaigns/{id}/pause|resume|cancel`, `GET /ips`, `POST /suppression`,
//! `GET|DELETE /suppression/{address}[?list=L]`, `POST /messages`, `GET /messages/{id}`
//! (injection: `inject.rs`), `GET /queues?by=…`, `POST /queues/suspend|resume|retry|bounce|purge`
//! (`queues.rs`), `POST|GET /cluster/campaigns`, `GET /cluster/campaigns/{id}`,
//! `POST /cluster/campaigns/{id}/pause|resume|cancel` (`cluster.rs`), and `GET /metrics`
//! (Prometheus, same token).

mod admin;
mod campaigns;
mod cluster;
mod http;
mod inject;
mod queues;
mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use clap::Args;
use volley_scheduler::config::SendConfig;
use volley_scheduler::send::{OnUnbindable, SendService};

/// `volley serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    /// The operator configuration (its `[api]` table: `listen`, `token` or `token_file`).
    #[arg(long, default_value = "volley.toml")]
    pub config: PathBuf,
    /// Listen here instead of `[api] listen`.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

/// What the handlers share.
pub struct App {
    service: Arc<SendService>,
    /// The configuration; `api.campaigns_dir` is where campaigns are launched from.
    config: SendConfig,
    /// Where the configuration was read from (warm-up curves resolve against it).
    config_path: PathBuf,
    token: String,
    /// The provider groups of the warm-up settings (for per-IP usage).
    providers: Vec<String>,
    /// What the unsubscribe endpoint answered (for `/metrics`).
    unsubscribes: Arc<volley_scheduler::unsubscribe::UnsubscribeCounters>,
    campaigns: Mutex<HashMap<String, Arc<campaigns::Entry>>>,
    /// The spool of injected mail (`POST /messages`, SMTP submission).
    spool: Arc<volley_scheduler::spool::Spool>,
    waiters: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// This node's part in the cluster (`[cluster]`).
    cluster: Option<Arc<cluster::ClusterNode>>,
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/campaigns", post(campaigns::launch).get(campaigns::list))
        .route("/campaigns/{id}", get(campaigns::show))
        .route("/campaigns/{id}/pause", post(campaigns::pause))
        .route("/campaigns/{id}/resume", post(campaigns::resume))
        .route("/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/cluster/campaigns", post(cluster::publish).get(cluster::list))
        .route("/cluster/campaigns/{id}", get(cluster::show))
        .route("/cluster/campaigns/{id}/pause", post(cluster::pause))
        .route("/cluster/campaigns/{id}/resume", post(cluster::resume))
        .route("/cluster/campaigns/{id}/cancel", post(cluster::cancel))
        .route("/messages", post(inject::inject))
        .route("/messages/{id}", get(inject::show))
        .route("/ips", get(admin::ips))
        .route("/reputation", get(admin::reputation))
        .route("/reputation/resume", post(admin::reputation_resume))
        .route("/queues", get(queues::show))
        .route("/queues/suspend", post(queues::suspend))
        .route("/queues/resume", post(queues::resume))
        .route("/queues/retry", post(queues::retry))
        .route("/queues/bounce", post(queues::bounce))
        .route("/queues/purge", post(queues::purge))
        .route("/suppression", post(admin::add))
        .route("/suppression/{address}", get(admin::check).delete(admin::remove))
        .route(
            "/metrics",
            get(|axum::extract::State(app): axum::extract::State<Arc<App>>| async move {
                crate::metrics::render(app.service.live()) + &crate::metrics::render_unsubscribes(&app.unsubscribes)
            }),
        )
        .layer(axum::middleware::from_fn_with_state(app.clone(), http::auth))
        .with_state(app)
}

/// Serves until Ctrl-C or SIGTERM, then cancels running campaigns (what is on the wire is
/// recorded; launching them again resumes) and closes the service.
pub async fn run(args: ServeArgs) -> anyhow::Result<bool> {
    let config = SendConfig::load(&args.config).context("refusing to start: the configuration is invalid")?;
    let token = config
        .api
        .token()
        .map_err(|(field, why)| anyhow::anyhow!("refusing to start: {}: {field}: {why}", args.config.display()))?;
    let listen = args.listen.unwrap_or(config.api.listen);
    let tls = match config.api.tls_files() {
        Ok(Some((cert, key))) => Some(tls::acceptor(cert, key).context("refusing to start: [api] TLS")?),
        Ok(None) => None,
        Err((field, why)) => anyhow::bail!("refusing to start: {}: {field}: {why}", args.config.display()),
    };
    let providers = config.warmup_policy(&args.config)?.providers.names().to_vec();
    let live = Arc::new(volley_scheduler::live::Live::default());
    // An IP this host cannot bind is left out (and listed as unusable by `GET /ips`).
    let service = SendService::start_with(&config, live, true, OnUnbindable::MarkUnusable)
        .context("starting the send service")?;
    // Campaigns wait for suspended queues to be resumed (`POST /queues/resume`).
    service.queues().set_runs_wait(true);
    for (ip, why) in service.unusable_ips() {
        eprintln!("volley serve: source IP {ip} cannot be bound on this host ({why}); marked unusable");
    }
    // Bounces, complaints and unsubscribes for the campaigns of this service.
    let unsubscribes = Arc::new(volley_scheduler::unsubscribe::UnsubscribeCounters::default());
    let _feedback = crate::inbound_cmd::FeedbackServices::start(
        &config,
        service.store().clone(),
        Some(service.guards().clone()),
        unsubscribes.clone(),
        "volley serve",
    )
    .await?;
    if config.inbound.is_some() {
        // Its own listener counts complaints in the guards: no need to read the feedback logs.
        service.guards_fed_in_process();
    }
    let spool_dir = config.state_dir.join("spool");
    let (spool, streams, created) = volley_scheduler::spool::Spool::open(&spool_dir, config.injection.spool.clone())
        .context("refusing to start: the injection spool cannot be opened")?;
    let spool = Arc::new(spool);
    if let Err(e) = config.pool(&config.injection.pool) {
        if !streams.is_empty() {
            anyhow::bail!("refusing to start: [injection] pool: {e} (the spool holds injected mail to send)");
        }
        eprintln!("volley serve: warning: [injection] pool: {e}; injected mail cannot be sent");
    }
    // One service for everything this node sends, cluster campaigns' chunks included.
    let service = Arc::new(service);
    let cluster = cluster::ClusterNode::start(&config, &service);
    let app = Arc::new(App {
        cluster,
        service,
        config,
        config_path: args.config.clone(),
        token,
        providers,
        unsubscribes,
        campaigns: Mutex::default(),
        spool,
        waiters: Mutex::default(),
    });
    // Injected mail: what the spool holds goes on, new injection campaigns start as they come.
    inject::run_streams(&app, streams, created);
    // The SMTP submission listener hands its messages to the same spool.
    let _submission = match &app.config.submission {
        Some(submission) => {
            let users = volley_scheduler::submission::users_path(&app.config);
            let service = volley_scheduler::submission::SubmissionService::start(submission, users, app.spool.clone())
                .await
                .context("refusing to start: the submission listener")?;
            for (addr, kind) in [
                (service.starttls_addr(), "STARTTLS"),
                (service.tls_addr(), "implicit TLS"),
            ] {
                if let Some(addr) = addr {
                    eprintln!("volley serve: submission ({kind}) on {addr}");
                }
            }
            Some(service)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    if !app.config.api.campaigns_dir.is_dir() {
        eprintln!(
            "volley serve: warning: [api] campaigns_dir {} is not a folder: launches by path will fail",
            app.config.api.campaigns_dir.display()
        );
    }
    match tls {
        Some(acceptor) => {
            eprintln!("volley serve: API on https://{local} (bearer token from [api])");
            let listener = tls::TlsListener::new(listener, acceptor).context("starting the TLS listener")?;
            serve_until_interrupted(listener, app.clone()).await?;
        }
        None => {
            if app.config.api.exposed_in_clear(local) {
                eprintln!(
                    "volley serve: warning: the API listens on {local}, beyond loopback, over plain HTTP: \
                     the bearer token and every request cross the network in clear; \
                     set [api] tls_cert and tls_key"
                );
            }
            eprintln!("volley serve: API on http://{local} (bearer token from [api])");
            serve_until_interrupted(listener, app.clone()).await?;
        }
    }
    if let Some(cluster) = &app.cluster {
        cluster.shutdown().await;
    }
    let entries: Vec<Arc<campaigns::Entry>> = lock(&app.campaigns).values().cloned().collect();
    for e in entries.iter().filter(|e| e.is_running()) {
        e.cancel();
    }
    let waiters: Vec<_> = lock(&app.waiters).drain(..).collect();
    for w in waiters {
        let _ = tokio::time::timeout(Duration::from_secs(60), w).await;
    }
    // The cluster node (its tasks ended above) lets go of the service, which then closes.
    let service = Arc::try_unwrap(app).ok().and_then(|app| {
        let App { service, cluster, .. } = app;
        drop(cluster);
        Arc::try_unwrap(service).ok()
    });
    match service {
        Some(service) => {
            service.shutdown().await;
        }
        None => eprintln!("volley serve: requests still open at shutdown; suppression updates are in the spill file"),
    }
    Ok(true)
}

async fn serve_until_interrupted<L>(listener: L, app: Arc<App>) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router(app))
        .with_graceful_shutdown(crate::send::interrupted())
        .await
        .context("serving the API")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
