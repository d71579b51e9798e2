//! Source IPs with their warm-up state, and the suppression list (add, check, remove).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use volley_scheduler::address::EmailAddress;
use volley_scheduler::suppression::{unix_now, valid_scope, Entry, Update, GLOBAL};
use volley_warmup::{day_of, UtcDay, WarmupState};

use super::http::{object, only, opt_str, ApiError};
use super::App;

/// `GET /ips`: every source IP, whether it is usable (an IP this host could not bind at start
/// is not, with the reason), its pool and weight, where it is in its warm-up, per provider
/// group today's caps and what it sent today and this hour, and per MX host the connection
/// limit it has grown to or learned from the receiver (`connections`).
pub async fn ips(State(app): State<Arc<App>>) -> Json<Value> {
    let today = UtcDay::of(SystemTime::now());
    let providers = &app.providers;
    let limits = app.service.live().connection_limits();
    let listings = app.service.guards().listings();
    let ips: Vec<Value> = app
        .config
        .source_ips
        .iter()
        .map(|ip| {
            let warmup = match ip.warmup_state() {
                Ok(WarmupState::Warm) => json!("warm"),
                Ok(WarmupState::Warming { curve, start }) => json!({
                    "curve": curve,
                    "start": start.to_string(),
                    "day": day_of(start, today),
                }),
                Err(e) => json!({ "error": e.to_string() }),
            };
            let usage: Vec<Value> = providers
                .iter()
                .map(|p| {
                    let u = app.service.warmup_usage(ip.address, p);
                    json!({
                        "provider": p,
                        "daily_cap": u.caps.map(|c| c.daily),
                        "hourly_cap": u.caps.map(|c| c.hourly),
                        "sent_today": u.counts.day,
                        "sent_this_hour": u.counts.hour,
                        "backoff_factor": u.factor,
                    })
                })
                .collect();
            let unusable = app.service.unusable_ips().get(&ip.address);
            let connections: Vec<_> = limits.iter().filter(|r| r.source_ip == ip.address).collect();
            let blocklists = listings.iter().find(|l| l.source_ip == ip.address);
            json!({
                "address": ip.address.to_string(),
                "usable": unusable.is_none(),
                "unusable_reason": unusable.map(|why| format!("cannot be bound on this host: {why}")),
                "ehlo_name": ip.ehlo_name,
                "pool": ip.pool,
                "weight": ip.weight,
                "warmup": warmup,
                "usage": usage,
                "connections": connections,
                "blocklists": blocklists,
            })
        })
        .collect();
    Json(Value::Array(ips))
}

fn address(raw: &str, field: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse(raw).map_err(|e| ApiError::field(field, format!("{raw:?}: {e}")))
}

/// The list named by `list` or by `scope` (the same; `list` is the canonical name, `scope` the
/// CSV column's), `global` when neither is given.
fn list(list: Option<&str>, scope: Option<&str>) -> Result<String, ApiError> {
    let (list, field) = match (list, scope) {
        (Some(l), Some(s)) if l != s => {
            return Err(ApiError::field(
                "scope",
                format!("{s:?} differs from list {l:?}: give one of them"),
            ))
        }
        (Some(l), _) => (l, "list"),
        (None, Some(s)) => (s, "scope"),
        (None, None) => (GLOBAL, "list"),
    };
    if valid_scope(list) {
        Ok(list.to_string())
    } else {
        Err(ApiError::field(
            field,
            format!("{list:?}: use 1-64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

/// Runs a blocking store call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, volley_scheduler::suppression::SuppressionError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `POST /suppression` `{"address": "…", "reason": "…", "list": "…"}` (`scope` for `list`).
pub async fn add(State(app): State<Arc<App>>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = object(&body)?;
    only(&body, &["address", "reason", "list", "scope"])?;
    let raw = opt_str(&body, "address")?.ok_or_else(|| ApiError::field("address", "missing"))?;
    let address = address(raw, "address")?;
    let list = list(opt_str(&body, "list")?, opt_str(&body, "scope")?)?;
    let reason = opt_str(&body, "reason")?.unwrap_or("api").to_string();
    let store = app.service.store().clone();
    let (a, l) = (address.as_str().to_string(), list.clone());
    blocking(move || store.apply(&[Update::suppress(l, a, Entry::new(reason, "api", unix_now()))])).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "address": address.as_str(), "list": list, "suppressed": true })),
    ))
}

/// The address in the path and the list in the query (`global` when absent), checked.
pub struct Target {
    address: EmailAddress,
    list: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Target, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::field("address", e.to_string()))?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::field("list", e.to_string()))?;
        Ok(Target {
            address: address(&raw, "address")?,
            list: list(
                query.get("list").map(String::as_str),
                query.get("scope").map(String::as_str),
            )?,
        })
    }
}

/// `GET /suppression/{address}?list=…` (or `?scope=…`): in the global list, or in `list` too.
pub async fn check(State(app): State<Arc<App>>, target: Target) -> Result<Json<Value>, ApiError> {
    let Target { address, list } = target;
    let store = app.service.store().clone();
    let a = address.as_str().to_string();
    let hit = blocking(move || {
        let scopes: Vec<&str> = if list == GLOBAL {
            vec![GLOBAL]
        } else {
            vec![GLOBAL, &list]
        };
        store.check(&scopes, &[a.as_str()]).map(|mut hits| hits.pop().flatten())
    })
    .await?;
    Ok(Json(crate::suppress::check_line(address.as_str(), hit.as_ref())))
}

/// `DELETE /suppression/{address}?list=…`: 404 when the list does not hold it.
pub async fn remove(State(app): State<Arc<App>>, target: Target) -> Result<Json<Value>, ApiError> {
    let Target { address, list } = target;
    let store = app.service.store().clone();
    let (a, l) = (address.as_str().to_string(), list.clone());
    let removed =
        blocking(move || crate::suppress::remove_present(&*store, &l, &[a.as_str()]).map(|r| r.first() == Some(&true)))
            .await?;
    if !removed {
        return Err(ApiError::not_found(format!("{} is not in `{list}`", address.as_str())));
    }
    Ok(Json(
        json!({ "address": address.as_str(), "list": list, "removed": true }),
    ))
}

/// `GET /reputation`: the guards' settings, every hold, and the rates per campaign and per
/// (source IP, provider group) in the window.
pub async fn reputation(State(app): State<Arc<App>>) -> Json<Value> {
    let guards = app.service.guards();
    let c = guards.config();
    Json(json!({
        "enabled": c.enabled,
        "window": humantime::format_duration(c.window).to_string(),
        "min_sample": c.min_sample,
        "max_complaint_rate_percent": c.max_complaint_rate,
        "max_hard_bounce_rate_percent": c.max_hard_bounce_rate,
        "holds": guards.holds(),
        "blocklists": guards.listings(),
        "rates": guards.rates(SystemTime::now()),
    }))
}

/// `POST /reputation/resume` `{"campaign": "…"}` or `{"source_ip": "…", "provider": "…"}`:
/// lifts the hold (404 when there is none); the scope's rate window starts over.
pub async fn reputation_resume(State(app): State<Arc<App>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    use volley_scheduler::reputation::Scope;
    let body = object(&body)?;
    only(&body, &["campaign", "source_ip", "provider"])?;
    let scope = match (
        opt_str(&body, "campaign")?,
        opt_str(&body, "source_ip")?,
        opt_str(&body, "provider")?,
    ) {
        (Some(campaign), None, None) => Scope::Campaign {
            campaign: campaign.to_string(),
        },
        (None, Some(ip), None) => {
            let ip: std::net::IpAddr = ip
                .parse()
                .map_err(|e| ApiError::field("source_ip", format!("{ip:?}: {e}")))?;
            let guards = app.service.guards().clone();
            let overridden = match tokio::task::spawn_blocking(move || guards.override_listing(ip)).await {
                Ok(result) => result.map_err(ApiError::internal)?,
                Err(e) => return Err(ApiError::internal(e)),
            };
            if !overridden {
                return Err(ApiError::not_found(format!("{ip} is not blocklisted")));
            }
            return Ok(Json(json!({ "overridden": ip.to_string() })));
        }
        (None, Some(ip), Some(provider)) => Scope::Route {
            source_ip: ip
                .parse()
                .map_err(|e| ApiError::field("source_ip", format!("{ip:?}: {e}")))?,
            provider: provider.to_string(),
        },
        _ => {
            return Err(ApiError::field(
                "(body)",
                "give `campaign`, `source_ip` and `provider` (a route's hold), or `source_ip` alone (send although blocklisted)",
            ))
        }
    };
    let guards = app.service.guards().clone();
    let s = scope.clone();
    let lifted = match tokio::task::spawn_blocking(move || guards.lift(&s)).await {
        Ok(result) => result.map_err(ApiError::internal)?,
        Err(e) => return Err(ApiError::internal(e)),
    };
    if !lifted {
        return Err(ApiError::not_found(format!("no hold on {scope}")));
    }
    Ok(Json(json!({ "lifted": scope })))
}
