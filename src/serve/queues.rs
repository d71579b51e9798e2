//! Queue control over HTTP: `GET /queues?by=site|domain|source_ip|provider`, and
//! `POST /queues/suspend|resume|retry|bounce|purge` with a JSON scope (`{"domain": …}`,
//! `{"site": …}`, `{"source_ip": …}`, `{"source_ip": …, "provider": …}`; bounce and purge need
//! `"reason"`). Each answers what it affected.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Map, Value};
use volley_scheduler::queues::{reason, Action, Affected, GroupBy, QueueScope, ScopeError, SCOPE_FIELDS};

use super::http::{object, only, opt_str, ApiError};
use super::App;

impl From<ScopeError> for ApiError {
    fn from(e: ScopeError) -> ApiError {
        ApiError::field(&e.field, e.to_string())
    }
}

/// `GET /queues?by=…` (`domain` when absent): every running campaign's queues, and the
/// suspensions.
pub async fn show(
    State(app): State<Arc<App>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(k) = query.keys().find(|k| k.as_str() != "by") {
        return Err(ApiError::field(k, "unknown query parameter; expected by"));
    }
    let by: GroupBy = query.get("by").map_or("domain", String::as_str).parse()?;
    let queues = app.service.queue_view(by).await;
    Ok(Json(json!({
        "by": by,
        "queues": queues,
        "suspended": app.service.queues().suspensions(),
    })))
}

/// The scope of a request body; `extra` are the other fields the endpoint takes.
fn scope(body: &Map<String, Value>, extra: &[&str]) -> Result<QueueScope, ApiError> {
    let known: Vec<&str> = SCOPE_FIELDS.iter().chain(extra).copied().collect();
    only(body, &known)?;
    Ok(QueueScope::from_fields(
        opt_str(body, "domain")?,
        opt_str(body, "site")?,
        opt_str(body, "source_ip")?,
        opt_str(body, "provider")?,
    )?)
}

/// Runs a blocking write of the controls file off the async workers.
async fn write_controls(app: &Arc<App>, scope: &QueueScope, suspend: bool) -> Result<bool, ApiError> {
    let (queues, scope) = (app.service.queues().clone(), scope.clone());
    let done = tokio::task::spawn_blocking(move || {
        if suspend {
            queues.suspend(&scope)
        } else {
            queues.resume(&scope)
        }
    })
    .await
    .map_err(ApiError::internal)?;
    done.map_err(ApiError::internal)
}

/// What the scope holds now, over every running campaign.
async fn held(app: &Arc<App>, scope: &QueueScope) -> Affected {
    let mut total = Affected::default();
    for (_, a) in app.service.queues().act(Action::Count, scope).await {
        total.add(&a);
    }
    total
}

/// `POST /queues/suspend`: nothing new is sent in the scope (kept across restarts); answers
/// what the scope holds (those recipients now wait).
pub async fn suspend(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let scope = scope(&object(&body)?, &[])?;
    let changed = write_controls(&app, &scope, true).await?;
    let counts = held(&app, &scope).await;
    Ok(Json(json!({
        "suspended": scope,
        "changed": changed,
        "affected": counts.total(),
        "counts": counts,
    })))
}

/// `POST /queues/resume`: the scope's waiting recipients go again (404 when it was not
/// suspended).
pub async fn resume(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let scope = scope(&object(&body)?, &[])?;
    let waiting = held(&app, &scope).await;
    if !write_controls(&app, &scope, false).await? {
        return Err(ApiError::not_found(format!("{scope} is not suspended")));
    }
    Ok(Json(
        json!({ "resumed": scope, "affected": waiting.total(), "counts": waiting }),
    ))
}

/// Answers what an action did, per campaign and in all.
async fn act(app: &Arc<App>, action: Action, scope: QueueScope) -> Json<Value> {
    let per_campaign = app.service.queues().act(action, &scope).await;
    let mut total = Affected::default();
    let campaigns: Vec<Value> = per_campaign
        .into_iter()
        .map(|(campaign, a)| {
            total.add(&a);
            json!({ "campaign": campaign, "affected": a.total(), "counts": a })
        })
        .collect();
    Json(json!({
        "scope": scope,
        "affected": total.total(),
        "counts": total,
        "campaigns": campaigns,
    }))
}

/// `POST /queues/retry`: the scope's retries are due now (and its MX hosts' down marks go).
pub async fn retry(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let scope = scope(&object(&body)?, &[])?;
    Ok(act(&app, Action::Retry, scope).await)
}

/// `POST /queues/bounce` with `"reason"`: each queued recipient of the scope is `bounced`
/// (category `operator`, not suppressed).
pub async fn bounce(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body = object(&body)?;
    let scope = scope(&body, &["reason"])?;
    let why = reason(opt_str(&body, "reason")?)?;
    Ok(act(&app, Action::Bounce(why), scope).await)
}

/// `POST /queues/purge` with `"reason"`: each queued recipient of the scope is `expired`.
pub async fn purge(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let body = object(&body)?;
    let scope = scope(&body, &["reason"])?;
    let why = reason(opt_str(&body, "reason")?)?;
    Ok(act(&app, Action::Purge(why), scope).await)
}
