//! Cluster campaigns through `volley serve` (with `[cluster]` in the configuration): publish
//! one from a file in `[api] campaigns_dir`, list them, read a campaign's status, pause,
//! resume and cancel it — from any node —; and this node's part: it works every campaign of
//! the registry (`volley:{cluster}:campaigns`), each on its own task with its own send
//! service, as `volley cluster work` does.
//!
//! `POST /cluster/campaigns` `{"path": "…"}` (202: publishing goes on in the background; the
//! same definition again continues it, a different one under the same id is 409),
//! `GET /cluster/campaigns`, `GET /cluster/campaigns/{id}`,
//! `POST /cluster/campaigns/{id}/pause|resume|cancel`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use volley_scheduler::cluster::{
    self, publish::Source, CampaignState, ClusterConfig, ClusterError, ClusterStatus, Keys, Registry, Store,
};
use volley_scheduler::config::SendConfig;
use volley_scheduler::send::SendService;

use super::http::{object, only, opt_str, ApiError};
use super::{lock, App};

/// How often a node looks for campaigns to work in the registry.
const REGISTRY_POLL: Duration = Duration::from_secs(2);

/// How long a node waits before working a campaign again after an error.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long the shutdown waits for the cluster tasks (their chunks stop; what is on the wire
/// is recorded).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// A publisher started here: its stop flag and task.
type Publisher = (Arc<AtomicBool>, JoinHandle<()>);

/// This node's part in the cluster.
pub struct ClusterNode {
    config: Arc<SendConfig>,
    /// The node's send service: chunks go out with its other campaigns.
    service: Arc<SendService>,
    cluster: ClusterConfig,
    registry: Mutex<Option<Arc<Registry>>>,
    /// The campaigns this node works, one task each.
    working: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Publishers started here.
    publishers: Mutex<HashMap<String, Publisher>>,
    poller: Mutex<Option<JoinHandle<()>>>,
    stop: watch::Sender<bool>,
}

impl ClusterNode {
    /// Starts working the registry's campaigns when `config` has `[cluster]`.
    pub fn start(config: &SendConfig, service: &Arc<SendService>) -> Option<Arc<ClusterNode>> {
        let cluster = config.cluster.clone()?;
        let node = Arc::new(ClusterNode {
            config: Arc::new(config.clone()),
            service: service.clone(),
            cluster,
            registry: Mutex::default(),
            working: Mutex::default(),
            publishers: Mutex::default(),
            poller: Mutex::default(),
            stop: watch::channel(false).0,
        });
        *lock(&node.poller) = Some(tokio::spawn(node.clone().poll()));
        Some(node)
    }

    /// Resolves once the node shuts down.
    fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.stop.subscribe();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    }

    fn registry(&self) -> Result<Arc<Registry>, ClusterError> {
        let mut registry = lock(&self.registry);
        if let Some(r) = &*registry {
            return Ok(r.clone());
        }
        let r = Arc::new(Registry::open(&self.cluster.redis)?);
        *registry = Some(r.clone());
        Ok(r)
    }

    async fn poll(self: Arc<Self>) {
        let stopped = self.stopped();
        tokio::pin!(stopped);
        loop {
            let node = self.clone();
            match tokio::task::spawn_blocking(move || node.registry()?.list()).await {
                Ok(Ok(ids)) => ids.into_iter().for_each(|id| self.work_on(id)),
                Ok(Err(e)) => eprintln!("volley serve: cluster registry: {e}"),
                Err(e) => eprintln!("volley serve: cluster registry: {e}"),
            }
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(REGISTRY_POLL) => {}
            }
        }
    }

    /// Works campaign `id` on a task of its own, unless this node already does.
    fn work_on(self: &Arc<Self>, id: String) {
        let mut working = lock(&self.working);
        if working.get(&id).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let node = self.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            let id = task_id;
            // In the registry, its keys gone (deleted, expired): nothing to wait for.
            let (url, known) = (node.cluster.redis.clone(), id.clone());
            if let Ok(Err(ClusterError::UnknownCampaign(_))) =
                tokio::task::spawn_blocking(move || status(&url, &known)).await
            {
                let (node, known) = (node.clone(), id.clone());
                let _ = tokio::task::spawn_blocking(move || node.registry()?.remove(&known)).await;
                return;
            }
            match cluster::work::work(&id, &node.config, Some(&node.service), node.stopped()).await {
                Ok(r) if r.complete || r.cancelled => eprintln!(
                    "volley serve: cluster campaign {id} {} ({} chunks, {} final outcomes here)",
                    if r.complete { "complete" } else { "cancelled" },
                    r.chunks,
                    r.finals
                ),
                Ok(_) => {}
                Err(e) => {
                    eprintln!(
                        "volley serve: cluster campaign {id}: {e}; trying again in {}s",
                        RETRY_AFTER.as_secs()
                    );
                    tokio::select! {
                        _ = node.stopped() => {}
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                }
            }
        });
        working.insert(id, task);
    }

    /// Stops publishing and working (chunks being sent stay pending for the next start) and
    /// waits for the tasks.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let mut tasks: Vec<JoinHandle<()>> = lock(&self.working).drain().map(|(_, t)| t).collect();
        for (stop, task) in lock(&self.publishers).drain().map(|(_, p)| p) {
            stop.store(true, Ordering::Relaxed);
            tasks.push(task);
        }
        tasks.extend(lock(&self.poller).take());
        for task in tasks {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, task).await;
        }
    }
}

fn node(app: &App) -> Result<Arc<ClusterNode>, ApiError> {
    app.cluster
        .clone()
        .ok_or_else(|| ApiError::not_found("this node has no [cluster] table: cluster campaigns are off"))
}

/// The API's answer to a cluster error.
fn api_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::UnknownCampaign(_) => ApiError::not_found(e.to_string()),
        ClusterError::Republished(_) | ClusterError::Cancelled(_) | ClusterError::Complete(_) => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        ClusterError::Campaign(_) | ClusterError::Recipients(_) => ApiError::field("path", e.to_string()),
        e if e.is_transient() => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        e => ApiError::internal(e),
    }
}

/// Runs a blocking Redis call off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
        .map_err(api_error)
}

fn status(url: &str, id: &str) -> Result<ClusterStatus, ClusterError> {
    let keys = Keys::new(id);
    Store::for_campaign(url, &keys)?.status(id, &keys)
}

fn view(status: &ClusterStatus) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(status).map(Json).map_err(ApiError::internal)
}

/// `POST /cluster/campaigns` `{"path": "campaigns/x.toml"}`: 202 once the definition is
/// stored; the chunks are published in the background.
pub async fn publish(State(app): State<Arc<App>>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let node = node(&app)?;
    let body = object(&body)?;
    only(&body, &["path", "toml"])?;
    let (source, field) = match (opt_str(&body, "path")?, opt_str(&body, "toml")?) {
        (Some(path), None) => (
            Source::File(super::campaigns::campaign_file(&app.config.api.campaigns_dir, path)?),
            "path",
        ),
        // Relative paths in it (recipients, body files) resolve against campaigns_dir.
        (None, Some(toml)) => (
            Source::Inline {
                path: app.config.api.campaigns_dir.join("(api).toml"),
                toml: toml.to_owned(),
            },
            "toml",
        ),
        _ => return Err(ApiError::field("path", "give exactly one of `path` or `toml`")),
    };
    let (campaign, text) = source
        .load(&app.config.template_dirs)
        .map_err(|e| ApiError::field(field, e.to_string()))?;
    let id = campaign.id().to_owned();
    let url = node.cluster.redis.clone();
    let publishing = lock(&node.publishers).get(&id).is_some_and(|(_, t)| !t.is_finished());
    if publishing {
        // Its publisher runs here: the same definition goes on with it, another is refused.
        let toml =
            cluster::publish::definition_of(&campaign, &text).map_err(|e| ApiError::field(field, e.to_string()))?;
        let (url, id) = (url.clone(), id.clone());
        blocking(move || {
            let keys = Keys::new(&id);
            match Store::for_campaign(&url, &keys)?.definition(&id, &keys)? {
                (stored, _) if stored == toml => Ok(()),
                _ => Err(ClusterError::Republished(id)),
            }
        })
        .await?;
    } else {
        let stop = Arc::new(AtomicBool::new(false));
        let (defined, stored) = oneshot::channel();
        let publisher = {
            let (stop, cluster, dirs) = (stop.clone(), node.cluster.clone(), app.config.template_dirs.clone());
            let state_dir = app.config.state_dir.clone();
            tokio::task::spawn_blocking(move || {
                cluster::publish::publish_with(&source, &dirs, &state_dir, &cluster, &stop, |_| {
                    let _ = defined.send(());
                })
            })
        };
        if stored.await.is_err() {
            // Refused before its definition was stored (a bad file, another definition).
            return match publisher.await.map_err(ApiError::internal)? {
                Err(e) => Err(api_error(e)),
                Ok(_) => Err(ApiError::internal("the publisher ended without storing the definition")),
            };
        }
        let campaign = id.clone();
        let task = tokio::spawn(async move {
            match publisher.await {
                Ok(Ok(p)) if p.complete => eprintln!(
                    "volley serve: cluster campaign {campaign} published ({} chunks, {} rows)",
                    p.chunks, p.rows
                ),
                Ok(Ok(p)) if p.cancelled => {
                    eprintln!("volley serve: cluster campaign {campaign} cancelled: publishing stopped")
                }
                Ok(Ok(_)) => eprintln!(
                    "volley serve: cluster campaign {campaign}: publishing stopped; POST it again to continue"
                ),
                Ok(Err(e)) => eprintln!("volley serve: cluster campaign {campaign}: publishing failed: {e}"),
                Err(e) => eprintln!("volley serve: cluster campaign {campaign}: publisher: {e}"),
            }
        });
        lock(&node.publishers).insert(id.clone(), (stop, task));
        // Worked here from now on, without waiting for the next look at the registry.
        node.work_on(id.clone());
    }
    let status = blocking(move || status(&url, &id)).await?;
    Ok((StatusCode::ACCEPTED, view(&status)?))
}

/// `GET /cluster/campaigns`: the campaigns of the registry (published, not yet seen complete
/// or cancelled by a node), each with its status.
pub async fn list(State(app): State<Arc<App>>) -> Result<Json<Value>, ApiError> {
    let node = node(&app)?;
    let url = node.cluster.redis.clone();
    let views = blocking(move || {
        let ids = node.registry()?.list()?;
        Ok(ids
            .iter()
            .map(|id| match status(&url, id) {
                Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
                Err(e) => json!({ "campaign": id, "error": e.to_string() }),
            })
            .collect::<Vec<Value>>())
    })
    .await?;
    Ok(Json(Value::Array(views)))
}

/// `GET /cluster/campaigns/{id}`: the status `volley cluster status` prints, from any node.
pub async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let url = node(&app)?.cluster.redis.clone();
    view(&blocking(move || status(&url, &id)).await?)
}

async fn set(app: &App, id: String, to: CampaignState) -> Result<Json<Value>, ApiError> {
    let url = node(app)?.cluster.redis.clone();
    view(&blocking(move || cluster::control::set(&url, &id, to)).await?)
}

/// `POST /cluster/campaigns/{id}/pause`: every node sends nothing new and takes no chunk.
pub async fn pause(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    set(&app, id, CampaignState::Paused).await
}

/// `POST /cluster/campaigns/{id}/resume` (409 for a cancelled campaign: a cancel is final).
pub async fn resume(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    set(&app, id, CampaignState::Running).await
}

/// `POST /cluster/campaigns/{id}/cancel`: every node stops the campaign and the publisher
/// stops; final.
pub async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    set(&app, id, CampaignState::Cancelled).await
}
