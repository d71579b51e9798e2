//! The endpoint's routes and answers: the rate limit (before anything is read or decoded),
//! the token check, the one-click form field, the confirmation page. Answers are small HTML
//! pages that are never cached, indexed or sent on as a referrer.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use volley_feedback::{Keyring, Token, TokenError, TokenKind, UnsubscribeVia};

use super::listener::{Client, PublicListener};
use super::{Answer, UnsubscribeCounters};
use crate::inbound::{Applier, Unsubscribed};

/// The form field and value of a one-click unsubscribe (RFC 8058 §3.1).
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";
/// How often the rate limiter forgets clients that have been quiet for a full period.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// `Retry-After` when the suppression list cannot be written.
const RETRY_AFTER_FAILURE: u64 = 60;

/// Why a token is refused: the answer counted, the status and the page's text.
struct Refusal(Answer, StatusCode, &'static str);

/// What the handlers share.
pub(super) struct Endpoint {
    keys: Arc<Keyring>,
    max_age: Duration,
    applier: Arc<Applier>,
    counters: Arc<UnsubscribeCounters>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Endpoint {
    pub fn new(
        keys: Arc<Keyring>,
        max_age: Duration,
        applier: Arc<Applier>,
        counters: Arc<UnsubscribeCounters>,
        rate: volley_warmup::Rate,
    ) -> Endpoint {
        let quota = Quota::with_period(rate.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(rate.count());
        Endpoint {
            keys,
            max_age,
            applier,
            counters,
            limiter: DefaultKeyedRateLimiter::keyed(quota),
        }
    }

    /// The unsubscribe token in `text`, or why it is refused.
    fn token(&self, text: &str, client: IpAddr) -> Result<Token, Refusal> {
        let refuse = |answer, status, message| Err(Refusal(answer, status, message));
        match Token::decode_fresh(text, &self.keys, SystemTime::now(), self.max_age) {
            Ok(token) if token.kind == TokenKind::Unsubscribe => Ok(token),
            Ok(_) => refuse(
                Answer::BadRequest,
                StatusCode::BAD_REQUEST,
                "This is not an unsubscribe link.",
            ),
            Err(TokenError::Expired { .. }) => refuse(
                Answer::Expired,
                StatusCode::NOT_FOUND,
                "This unsubscribe link has expired. Use the link in a more recent message.",
            ),
            Err(e) => {
                if e.is_forgery() {
                    tracing::warn!("unsubscribe: refused a forged token from {client}: {e}");
                    refuse(
                        Answer::Forged,
                        StatusCode::BAD_REQUEST,
                        "This unsubscribe link is not valid.",
                    )
                } else {
                    tracing::info!("unsubscribe: refused a token from {client}: {e}");
                    refuse(
                        Answer::BadRequest,
                        StatusCode::BAD_REQUEST,
                        "This unsubscribe link is damaged.",
                    )
                }
            }
        }
    }

    /// The answer to a refused token.
    fn refused(&self, Refusal(answer, status, message): Refusal) -> Response {
        self.page(answer, status, message, false)
    }

    /// A counted HTML answer; `form`: with the button that unsubscribes.
    fn page(&self, answer: Answer, status: StatusCode, message: &str, form: bool) -> Response {
        self.counters.count(answer);
        let button = if form {
            // No `action`: the form posts to the page's own address (the token's).
            "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
             <button type=\"submit\">Unsubscribe</button></form>"
        } else {
            ""
        };
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>Unsubscribe</title></head>\
             <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\"><p>{message}</p>{button}</body></html>\n"
        );
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        for (name, value) in [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
            (header::HeaderName::from_static("x-robots-tag"), "noindex"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// Serves `listener` with the routes under `path` (`<path>/<token>`); returns the server's
/// and the limiter sweeper's tasks.
pub(super) fn serve(
    listener: PublicListener,
    endpoint: Endpoint,
    path: &str,
    max_body: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let endpoint = Arc::new(endpoint);
    let app = Router::new()
        .route(&format!("{path}/{{token}}"), get(confirm).post(unsubscribe))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(endpoint.clone(), rate_limit))
        .with_state(endpoint.clone());
    let server = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<Client>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("unsubscribe: the endpoint stopped: {e}");
        }
    });
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        loop {
            tick.tick().await;
            endpoint.limiter.retain_recent();
            endpoint.limiter.shrink_to_fit();
        }
    });
    vec![server, sweeper]
}

/// Each client IP gets `rate_per_client`; beyond it 429 with `Retry-After` (whole seconds).
async fn rate_limit(
    State(ep): State<Arc<Endpoint>>,
    ConnectInfo(Client(ip)): ConnectInfo<Client>,
    request: Request,
    next: Next,
) -> Response {
    match ep.limiter.check_key(&ip) {
        Ok(()) => next.run(request).await,
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            let mut response = ep.page(
                Answer::RateLimited,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests; try again later.",
                false,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
    }
}

/// `GET <path>/<token>`: the confirmation page. Never unsubscribes.
async fn confirm(
    State(ep): State<Arc<Endpoint>>,
    ConnectInfo(Client(ip)): ConnectInfo<Client>,
    Path(token): Path<String>,
) -> Response {
    match ep.token(&token, ip) {
        Err(refusal) => ep.refused(refusal),
        Ok(_) => ep.page(
            Answer::Page,
            StatusCode::OK,
            "Do you want to stop receiving these messages?",
            true,
        ),
    }
}

/// `POST <path>/<token>` with `List-Unsubscribe=One-Click`: suppresses, durably, then 200.
async fn unsubscribe(
    State(ep): State<Arc<Endpoint>>,
    ConnectInfo(Client(ip)): ConnectInfo<Client>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ep.page(
                Answer::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request is too large.",
                false,
            )
        }
        Err(rejection) => {
            return ep.page(
                Answer::BadRequest,
                rejection.status(),
                "The request is not readable.",
                false,
            )
        }
    };
    let token = match ep.token(&token, ip) {
        Ok(token) => token,
        Err(refusal) => return ep.refused(refusal),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_one_click(content_type, &body) {
        return ep.page(
            Answer::BadRequest,
            StatusCode::BAD_REQUEST,
            "Expected the form field List-Unsubscribe=One-Click (RFC 8058).",
            false,
        );
    }
    let applier = ep.applier.clone();
    let line = token.line;
    let done = tokio::task::spawn_blocking(move || applier.unsubscribe(&token, UnsubscribeVia::Http)).await;
    match done {
        Ok(Ok(Unsubscribed::Now { recipient, list })) => {
            tracing::info!("unsubscribe: {recipient} (line {line}) unsubscribed from list {list} by {ip}");
            ep.page(Answer::Unsubscribed, StatusCode::OK, "You are unsubscribed.", false)
        }
        Ok(Ok(Unsubscribed::Before)) => ep.page(Answer::Repeated, StatusCode::OK, "You are unsubscribed.", false),
        Ok(Ok(Unsubscribed::UnknownCampaign | Unsubscribed::UnknownRecipient)) => ep.page(
            Answer::NotFound,
            StatusCode::NOT_FOUND,
            "This unsubscribe link is not known here.",
            false,
        ),
        Ok(Err(e)) => {
            tracing::error!("unsubscribe: line {line}: {e}; answered 503, nothing recorded");
            let mut response = ep.page(
                Answer::Failed,
                StatusCode::SERVICE_UNAVAILABLE,
                "Unsubscribing failed for now; please try again in a minute.",
                false,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_FAILURE));
            response
        }
        Err(e) => {
            tracing::error!("unsubscribe: line {line}: the task failed: {e}");
            ep.page(
                Answer::Failed,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Unsubscribing failed.",
                false,
            )
        }
    }
}

async fn not_found(State(ep): State<Arc<Endpoint>>) -> Response {
    ep.page(Answer::NotFound, StatusCode::NOT_FOUND, "Not found.", false)
}

/// Whether `body` carries `List-Unsubscribe=One-Click`, form-encoded or as a
/// `multipart/form-data` field (RFC 8058 §3.1 allows both).
fn is_one_click(content_type: &str, body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        // The part named List-Unsubscribe: its value follows the blank line after its headers.
        return text.split("name=\"List-Unsubscribe\"").skip(1).any(|rest| {
            rest.split_once("\r\n\r\n")
                .is_some_and(|(_, value)| value.lines().next().map(str::trim) == Some("One-Click"))
        });
    }
    text.trim_end().split('&').any(|pair| pair == ONE_CLICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_bodies() {
        let form = "application/x-www-form-urlencoded";
        assert!(is_one_click(form, b"List-Unsubscribe=One-Click"));
        assert!(is_one_click(form, b"a=b&List-Unsubscribe=One-Click\r\n"));
        assert!(is_one_click("", b"List-Unsubscribe=One-Click"));
        assert!(!is_one_click(form, b""));
        assert!(!is_one_click(form, b"List-Unsubscribe=No"));
        assert!(!is_one_click(form, b"xList-Unsubscribe=One-Click"));
        let multipart =
            "--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n";
        assert!(is_one_click("multipart/form-data; boundary=b", multipart.as_bytes()));
        assert!(!is_one_click(
            "multipart/form-data; boundary=b",
            multipart.replace("One-Click", "Two").as_bytes()
        ));
    }
}
