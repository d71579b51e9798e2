//! Campaign endpoints: launch (from a campaign file on the server or inline campaign TOML, the
//! same definition `volley send` reads), list, progress, pause, resume, cancel.

use std::path::{Component, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::live::CampaignLive;
use volley_scheduler::send::Stopper;
use volley_scheduler::summary::Summary;

use super::http::{object, only, opt_str, ApiError};
use super::App;
use crate::progress::{RateMeter, Run};

/// How far apart two progress samples must be to measure a new rate (requests come at any
/// pace).
const RATE_GAP: Duration = Duration::from_secs(1);

/// A launched campaign as the API tracks it.
pub struct Entry {
    live: Arc<CampaignLive>,
    stopper: Stopper,
    started: Instant,
    cancelled: AtomicBool,
    /// The end: its summary, or why it failed. `None` while it runs.
    end: Mutex<Option<Result<Summary, String>>>,
    /// When it ended (its progress's `elapsed_s` stops there).
    ended_at: Mutex<Option<Instant>>,
    /// Its recent rate, measured between requests.
    rate: Mutex<RateMeter>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Entry {
    fn state(&self) -> &'static str {
        match &*lock(&self.end) {
            None if self.live.is_paused() => "paused",
            None if self.live.hold().is_some() => "held",
            None if self.cancelled.load(Ordering::Relaxed) => "cancelling",
            None => "running",
            Some(Err(_)) => "failed",
            Some(Ok(s)) if s.complete => "finished",
            Some(Ok(_)) if self.cancelled.load(Ordering::Relaxed) => "cancelled",
            Some(Ok(_)) => "stopped",
        }
    }

    pub fn is_running(&self) -> bool {
        lock(&self.end).is_none()
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        // A paused campaign must wake to see the stop.
        self.live.set_paused(false);
        self.stopper.stop();
    }

    fn new(live: Arc<CampaignLive>, stopper: Stopper) -> Entry {
        let started = Instant::now();
        Entry {
            live,
            stopper,
            started,
            cancelled: AtomicBool::new(false),
            end: Mutex::new(None),
            ended_at: Mutex::new(None),
            rate: Mutex::new(RateMeter::new(started, RATE_GAP)),
        }
    }

    fn ended(&self, end: Result<Summary, String>) {
        *lock(&self.ended_at) = Some(Instant::now());
        *lock(&self.end) = Some(end);
    }

    fn view(&self, app: &App) -> Value {
        let snapshot = self.live.snapshot();
        let now = Instant::now();
        let (run, until) = match *lock(&self.ended_at) {
            Some(at) => (Run::Ended, at),
            None => (Run::Going, now),
        };
        let rate = lock(&self.rate).sample(snapshot.finals(), now);
        let status = crate::progress::status(
            &snapshot,
            app.service.live(),
            until.saturating_duration_since(self.started),
            rate,
            run,
        );
        let mut view = json!({
            "id": snapshot.id,
            "state": self.state(),
            "progress": status,
        });
        match &*lock(&self.end) {
            Some(Ok(summary)) => view["summary"] = serde_json::to_value(summary).unwrap_or(Value::Null),
            Some(Err(e)) => view["error"] = Value::String(e.clone()),
            None => {}
        }
        view
    }
}

/// `POST /campaigns` `{"path": "campaigns/x.toml"}` or `{"toml": "id = …"}`.
pub async fn launch(State(app): State<Arc<App>>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = object(&body)?;
    only(&body, &["path", "toml"])?;
    let campaign = match (opt_str(&body, "path")?, opt_str(&body, "toml")?) {
        (Some(path), None) => {
            let path = campaign_file(&app.config.api.campaigns_dir, path)?;
            Campaign::load_with(&path, &app.config.template_dirs).map_err(|e| ApiError::field("path", e.to_string()))?
        }
        (None, Some(toml)) => {
            // Relative paths in it (recipients, body files) resolve against campaigns_dir.
            let source = app.config.api.campaigns_dir.join("(api).toml");
            Campaign::from_toml_with(&source, toml, &app.config.template_dirs)
                .map_err(|e| ApiError::field("toml", e.to_string()))?
        }
        _ => return Err(ApiError::field("path", "give exactly one of `path` or `toml`")),
    };
    let entry = start(&app, &campaign)?;
    Ok((StatusCode::CREATED, Json(entry.view(&app))))
}

/// Launches `campaign` on the service and tracks it (its summary and HTML report at the end).
pub fn start(app: &Arc<App>, campaign: &Campaign) -> Result<Arc<Entry>, ApiError> {
    let id = campaign.id().to_string();
    if lock(&app.campaigns).get(&id).is_some_and(|e| e.is_running()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("campaign `{id}` is already running"),
        ));
    }
    let launched = app
        .service
        .launch(campaign)
        .map_err(|e| ApiError::field("campaign", e.to_string()))?;
    let entry = Arc::new(Entry::new(launched.live.clone(), launched.stopper()));
    let waiter = {
        let entry = entry.clone();
        let caps = crate::report::warmup_caps(&app.config, &app.config_path);
        tokio::spawn(async move {
            let end = launched.wait().await.map_err(|e| e.to_string());
            if let Ok(summary) = &end {
                crate::report::write_html(summary, caps.as_ref());
            }
            entry.ended(end);
        })
    };
    lock(&app.waiters).push(waiter);
    lock(&app.campaigns).insert(id, entry.clone());
    Ok(entry)
}

/// The campaign file `requested` names inside `dir` (`[api] campaigns_dir`), symbolic links
/// resolved; refused when it leads out of `dir`.
pub(super) fn campaign_file(dir: &std::path::Path, requested: &str) -> Result<PathBuf, ApiError> {
    let outside = || {
        ApiError::field(
            "path",
            format!("{requested:?} is not inside [api] campaigns_dir {}", dir.display()),
        )
    };
    let relative = std::path::Path::new(requested);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    let real_dir = dir
        .canonicalize()
        .map_err(|e| ApiError::internal(format!("[api] campaigns_dir {}: {e}", dir.display())))?;
    let real = dir
        .join(relative)
        .canonicalize()
        .map_err(|e| ApiError::field("path", format!("{requested:?} in [api] campaigns_dir: {e}")))?;
    if real.starts_with(&real_dir) {
        Ok(real)
    } else {
        Err(outside())
    }
}

/// `GET /campaigns`.
pub async fn list(State(app): State<Arc<App>>) -> Json<Value> {
    let entries: Vec<Arc<Entry>> = lock(&app.campaigns).values().cloned().collect();
    Json(Value::Array(entries.iter().map(|e| e.view(&app)).collect()))
}

fn entry(app: &App, id: &str) -> Result<Arc<Entry>, ApiError> {
    lock(&app.campaigns)
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no campaign `{id}`")))
}

/// `GET /campaigns/{id}`.
pub async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(entry(&app, &id)?.view(&app)))
}

fn running(e: &Entry, id: &str) -> Result<(), ApiError> {
    if e.is_running() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("campaign `{id}` is not running ({})", e.state()),
        ))
    }
}

/// `POST /campaigns/{id}/pause`: nothing new is handed to the connections; what is queued at
/// a connection or on the wire still goes.
pub async fn pause(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let e = entry(&app, &id)?;
    running(&e, &id)?;
    e.live.set_paused(true);
    Ok(Json(e.view(&app)))
}

/// `POST /campaigns/{id}/resume`.
pub async fn resume(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let e = entry(&app, &id)?;
    running(&e, &id)?;
    e.live.set_paused(false);
    // Resuming a campaign a reputation guard held is the operator's decision to go on.
    let scope = volley_scheduler::reputation::Scope::Campaign { campaign: id.clone() };
    app.service
        .guards()
        .lift(&scope)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(e.view(&app)))
}

/// `POST /campaigns/{id}/cancel`: stops early (what is on the wire is recorded); launching it
/// again resumes where it stopped.
pub async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let e = entry(&app, &id)?;
    running(&e, &id)?;
    e.cancel();
    Ok(Json(e.view(&app)))
}
