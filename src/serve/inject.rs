//! Injection over HTTP, and the injection campaigns' runs.
//!
//! - `POST /messages`: a whole RFC 5322 `message` with its envelope (`envelope_from`,
//!   `recipients`), or a template (`from`, `subject`, `text`/`html`, `headers`) with
//!   `recipients` carrying `substitutions`. Each recipient is accepted (an id) or refused
//!   (why) on its own; 202 once every accepted one is synced in the spool.
//! - `GET /messages/{id}`: where that recipient stands (queued, or its attempts).
//! - Every spool stream runs as an injection campaign from start to shutdown: those found at
//!   start and those the spool creates later.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::inject::template::{TemplateSpec, Templated};
use volley_scheduler::inject::{InjectError, Injected, Injector};
use volley_scheduler::spool::{NewStreams, Stream};

use super::http::{object, only, opt_str, ApiError};
use super::App;

/// The campaign of API injections that name none.
const API_CAMPAIGN: &str = "api";

/// Launches the injection campaign of every stream: `found` now, later ones as they come.
pub fn run_streams(app: &Arc<App>, found: Vec<Arc<Stream>>, mut created: NewStreams) {
    for stream in found {
        launch(app, stream);
    }
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        while let Some(stream) = created.recv().await {
            let Some(app) = app.upgrade() else { break };
            launch(&app, stream);
        }
    });
}

/// How long an injection campaign that could not start waits before it tries again.
const RELAUNCH: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the injection campaign of `stream`. One that cannot start now (its name is a
/// campaign file's id that is running, say) is tried again every [`RELAUNCH`]: its mail stays
/// in the spool meanwhile.
fn launch(app: &Arc<App>, stream: Arc<Stream>) {
    let name = stream.name().to_owned();
    let campaign = Campaign::injected(stream, &app.config.injection.settings());
    let Err(e) = super::campaigns::start(app, &campaign) else {
        return;
    };
    tracing::error!(
        "injection campaign {name} cannot start: {}; trying again every 10 s",
        e.message
    );
    eprintln!(
        "volley serve: injection campaign {name} cannot start: {}; trying again every 10 s",
        e.message
    );
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELAUNCH).await;
            let Some(app) = app.upgrade() else { return };
            if super::campaigns::start(&app, &campaign).is_ok() {
                eprintln!("volley serve: injection campaign {name} started");
                return;
            }
        }
    });
}

/// One recipient of a request.
struct Recipient {
    email: String,
    values: HashMap<String, String>,
}

const FIELDS: &[&str] = &[
    "campaign",
    "envelope_from",
    "recipients",
    "message",
    "from",
    "reply_to",
    "subject",
    "text",
    "html",
    "headers",
];

/// `POST /messages`; see the module docs.
pub async fn inject(State(app): State<Arc<App>>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let spool = app.spool.clone();
    let body = object(&body)?;
    only(&body, FIELDS)?;
    let campaign = opt_str(&body, "campaign")?.unwrap_or(API_CAMPAIGN).to_owned();
    volley_scheduler::inject::check_campaign(&campaign).map_err(|e| ApiError::field("campaign", e))?;
    let recipients = recipients(&body, app.config.injection.max_batch)?;
    let envelope_from = opt_str(&body, "envelope_from")?.map(str::to_owned);
    let mut results: Vec<Value> = Vec::with_capacity(recipients.len());
    let mut first_error: Option<InjectError> = None;
    let mut note = |results: &mut Vec<Value>, email: &str, outcome: Result<String, InjectError>| match outcome {
        Ok(id) => results.push(json!({ "email": email, "id": id })),
        Err(e) => {
            results.push(json!({ "email": email, "error": e.to_string(), "temporary": e.is_temporary() }));
            first_error.get_or_insert(e);
        }
    };
    match opt_str(&body, "message")? {
        Some(message) => {
            for key in ["from", "reply_to", "subject", "text", "html", "headers"] {
                if body.contains_key(key) {
                    return Err(ApiError::field(
                        key,
                        "a template field next to `message`: give one or the other",
                    ));
                }
            }
            if recipients.iter().any(|r| !r.values.is_empty()) {
                return Err(ApiError::field(
                    "recipients",
                    "substitutions need a template, not `message`",
                ));
            }
            let raw = crlf(message);
            let inspected =
                volley_scheduler::inject::inspect(&raw).map_err(|e| ApiError::field("message", e.to_string()))?;
            let (good, bad): (Vec<_>, Vec<_>) = recipients
                .iter()
                .partition(|r| volley_scheduler::address::EmailAddress::parse(&r.email).is_ok());
            for r in &bad {
                note(
                    &mut results,
                    &r.email,
                    Err(InjectError::Malformed("not a valid address".into())),
                );
            }
            if !good.is_empty() {
                let injected = Injected {
                    user: campaign.clone(),
                    mail_from: envelope_from.unwrap_or(inspected.from),
                    recipients: good.iter().map(|r| r.email.clone()).collect(),
                    raw,
                    peer: "api".into(),
                };
                match spool.inject(injected).await {
                    Ok(accepted) => {
                        for (r, id) in good.iter().zip(accepted.ids) {
                            note(&mut results, &r.email, Ok(id));
                        }
                    }
                    Err(e) => {
                        for r in &good {
                            note(&mut results, &r.email, Err(e.clone()));
                        }
                    }
                }
            }
        }
        None => {
            let spec = template(&body)?;
            let mut names: Vec<String> = recipients.iter().flat_map(|r| r.values.keys().cloned()).collect();
            names.sort();
            names.dedup();
            let templated = Templated::new(&campaign, &spec, &names).map_err(|e| ApiError::field("template", e))?;
            let mail_from = envelope_from.unwrap_or_else(|| templated.from_address().to_owned());
            // Injected together, so they share the spool's syncs.
            let pending = recipients.iter().enumerate().map(|(i, r)| {
                let built = templated.build(i as u64 + 1, &r.email, &r.values);
                let (spool, campaign, mail_from) = (spool.clone(), campaign.clone(), mail_from.clone());
                async move {
                    let raw = built.map_err(InjectError::Malformed)?;
                    let injected = Injected {
                        user: campaign,
                        mail_from,
                        recipients: vec![r.email.clone()],
                        raw,
                        peer: "api".into(),
                    };
                    spool.inject(injected).await.map(|mut a| a.ids.remove(0))
                }
            });
            let outcomes = futures_util::future::join_all(pending).await;
            for (r, outcome) in recipients.iter().zip(outcomes) {
                note(&mut results, &r.email, outcome);
            }
        }
    }
    let accepted = results.iter().filter(|r| r.get("id").is_some()).count();
    let status = match (accepted, &first_error) {
        (0, Some(e)) => StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::ACCEPTED,
    };
    let refused = results.len() - accepted;
    Ok((
        status,
        Json(json!({ "campaign": campaign, "accepted": accepted, "refused": refused, "results": results })),
    ))
}

/// Bare LF (a JSON string typed by hand) becomes CRLF, as SMTP would carry it.
fn crlf(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 40);
    let mut last = 0u8;
    for &b in message.as_bytes() {
        if b == b'\n' && last != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        last = b;
    }
    out
}

/// `recipients`: addresses, or objects `{"email": …, "substitutions": {…}}`.
fn recipients(body: &Map<String, Value>, max: usize) -> Result<Vec<Recipient>, ApiError> {
    let list = match body.get("recipients") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) | None => return Err(ApiError::field("recipients", "at least one recipient is needed")),
        Some(other) => return Err(ApiError::field("recipients", format!("expected an array, got {other}"))),
    };
    if list.len() > max {
        return Err(ApiError::field(
            "recipients",
            format!(
                "{} recipients; at most {max} per request ([injection] max_batch)",
                list.len()
            ),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let field = format!("recipients[{i}]");
            match item {
                Value::String(email) => Ok(Recipient {
                    email: email.clone(),
                    values: HashMap::new(),
                }),
                Value::Object(o) => {
                    only(o, &["email", "substitutions"]).map_err(|e| ApiError::field(&field, e.message))?;
                    let email = opt_str(o, "email")
                        .map_err(|e| ApiError::field(&field, e.message))?
                        .ok_or_else(|| ApiError::field(&field, "needs `email`"))?
                        .to_owned();
                    let values = match o.get("substitutions") {
                        None | Some(Value::Null) => HashMap::new(),
                        Some(Value::Object(s)) => s
                            .iter()
                            .map(|(k, v)| match v {
                                Value::String(v) => Ok((k.clone(), v.clone())),
                                Value::Number(n) => Ok((k.clone(), n.to_string())),
                                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                                other => Err(ApiError::field(
                                    &format!("{field}.substitutions.{k}"),
                                    format!("expected a string, number or boolean, got {other}"),
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                        Some(other) => {
                            return Err(ApiError::field(
                                &format!("{field}.substitutions"),
                                format!("expected an object, got {other}"),
                            ))
                        }
                    };
                    Ok(Recipient { email, values })
                }
                other => Err(ApiError::field(
                    &field,
                    format!("expected an address or an object, got {other}"),
                )),
            }
        })
        .collect()
}

/// The template fields of a request.
fn template(body: &Map<String, Value>) -> Result<TemplateSpec, ApiError> {
    let need = |field: &str| {
        opt_str(body, field)?
            .map(str::to_owned)
            .ok_or_else(|| ApiError::field(field, "needed (or give a whole `message`)"))
    };
    let headers = match body.get("headers") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| match v {
                Value::String(v) => Ok((k.clone(), v.clone())),
                other => Err(ApiError::field(
                    &format!("headers.{k}"),
                    format!("expected a string, got {other}"),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(ApiError::field("headers", format!("expected an object, got {other}"))),
    };
    let spec = TemplateSpec {
        from: need("from")?,
        reply_to: opt_str(body, "reply_to")?.map(str::to_owned),
        subject: need("subject")?,
        text: opt_str(body, "text")?.map(str::to_owned),
        html: opt_str(body, "html")?.map(str::to_owned),
        headers,
    };
    if spec.text.is_none() && spec.html.is_none() {
        return Err(ApiError::field("text", "a template needs `text`, `html` or both"));
    }
    Ok(spec)
}

/// `GET /messages/{id}`: `campaign:line` -> queued, or the attempts logged for it.
pub async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (campaign, line) = id
        .rsplit_once(':')
        .and_then(|(c, l)| Some((c.to_owned(), l.parse::<u64>().ok()?)))
        .ok_or_else(|| ApiError::field("id", format!("{id:?} is not a message id (campaign:line)")))?;
    let stream = app
        .spool
        .stream(&campaign)
        .ok_or_else(|| ApiError::not_found(format!("no injection campaign `{campaign}`")))?;
    if line == 0 || line > stream.committed().last_line {
        return Err(ApiError::not_found(format!("no message {id}")));
    }
    let log = app.config.state_dir.join(&campaign).join("accounting.jsonl");
    let attempts = tokio::task::spawn_blocking(move || attempts(&log, line))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let state = attempts
        .last()
        .and_then(|a| a.get("outcome"))
        .and_then(Value::as_str)
        .unwrap_or("queued")
        .to_owned();
    Ok(Json(
        json!({ "id": id, "campaign": campaign, "line": line, "state": state, "attempts": attempts }),
    ))
}

/// The accounting lines of `line` (the log is scanned: lookups are for support, not bulk).
fn attempts(log: &std::path::Path, line: u64) -> std::io::Result<Vec<Value>> {
    use std::io::BufRead;
    let file = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let (needle, last) = (format!("\"line\":{line},"), format!("\"line\":{line}}}"));
    let mut found = Vec::new();
    for l in std::io::BufReader::new(file).lines() {
        let l = l?;
        if !l.contains(&needle) && !l.contains(&last) {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&l) {
            if v.get("line").and_then(Value::as_u64) == Some(line) {
                found.push(v);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds_become_crlf() {
        assert_eq!(crlf("a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn recipients_are_checked_and_named() {
        let body = object(br#"{"recipients": ["a@x.test", {"email": "b@x.test", "substitutions": {"n": 1}}]}"#)
            .expect("object");
        let r = recipients(&body, 10).expect("valid");
        assert_eq!(r[1].values.get("n").map(String::as_str), Some("1"));
        let body = object(br#"{"recipients": ["a@x.test", {"substitutions": {}}]}"#).expect("object");
        assert_eq!(
            recipients(&body, 10).err().and_then(|e| e.field).as_deref(),
            Some("recipients[1]")
        );
        let body = object(br#"{"recipients": ["a@x.test", "b@x.test"]}"#).expect("object");
        assert!(recipients(&body, 1)
            .err()
            .is_some_and(|e| e.message.contains("at most 1")));
    }
}
