//! Prometheus metrics of a running `volley send` (`--metrics 127.0.0.1:9464`): the text
//! exposition format (version 0.0.4) at `GET /metrics`, from the run's live counters. The
//! server is a minimal HTTP/1.1 responder: one request per connection, bounded request size
//! and time, nothing but `/metrics` served.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use volley_scheduler::live::{Live, LATENCY_BUCKETS, OUTCOMES};

/// Largest request head read; a longer one is answered 431.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A label value escaped per the exposition format (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn outcome_name(o: volley_scheduler::outcome::Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A warm-up budget gauge's value.
type RouteValue = fn(&volley_engine::pool::RouteConcurrency) -> u64;
type BudgetValue = fn(&volley_scheduler::live::WarmupUse) -> u64;

/// A per-campaign gauge's value.
type Gauge = fn(&volley_scheduler::live::CampaignSnapshot) -> f64;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text of every campaign in `live`.
pub fn render(live: &Live) -> String {
    let campaigns = live.snapshot();
    let mut out = String::new();
    family(
        &mut out,
        "volley_attempts_total",
        "counter",
        "Delivery attempts (deferred: each deferral) and unsent rows (suppressed, rejected), by outcome, source IP, MX site and bounce category.",
    );
    for c in &campaigns {
        let campaign = escape(&c.id);
        for (labels, n) in &c.labelled {
            let _ = writeln!(
                out,
                "volley_attempts_total{{campaign=\"{campaign}\",outcome=\"{}\",source_ip=\"{}\",site=\"{}\",category=\"{}\"}} {n}",
                outcome_name(labels.outcome),
                escape(labels.source_ip.as_deref().unwrap_or("")),
                escape(labels.site.as_deref().unwrap_or("")),
                escape(&labels.category)
            );
        }
    }
    family(
        &mut out,
        "volley_outcomes_total",
        "counter",
        "Attempts per outcome (the sum of volley_attempts_total over source IP, site and category).",
    );
    for c in &campaigns {
        for (o, n) in OUTCOMES.iter().zip(c.outcomes) {
            let _ = writeln!(
                out,
                "volley_outcomes_total{{campaign=\"{}\",outcome=\"{}\"}} {n}",
                escape(&c.id),
                outcome_name(*o)
            );
        }
    }
    let gauges: [(&str, &str, Gauge); 3] = [
        (
            "volley_queue_depth",
            "Messages read and waiting in the campaign's queues (rendered, parked, being read again).",
            |c| c.queued as f64,
        ),
        (
            "volley_retry_queue_size",
            "Deferred recipients waiting for their next attempt.",
            |c| c.retrying as f64,
        ),
        (
            "volley_recipient_file_read_ratio",
            "Share of the recipient file read (0 to 1).",
            |c| c.read_share(),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for c in &campaigns {
            let _ = writeln!(out, "{name}{{campaign=\"{}\"}} {}", escape(&c.id), value(c));
        }
    }
    family(
        &mut out,
        "volley_open_connections",
        "gauge",
        "SMTP connections the delivery pool has open.",
    );
    let _ = writeln!(out, "volley_open_connections {}", live.open_connections());
    let limits = live.connection_limits();
    let per_route: [(&str, &str, &str, RouteValue); 3] = [
        (
            "volley_connection_limit",
            "gauge",
            "Connections a (source IP, MX host) route may open: grown while deliveries succeed, lowered to the receiver's cap when it refuses one more.",
            |r| r.limit as u64,
        ),
        (
            "volley_connections_open",
            "gauge",
            "Connections open per (source IP, MX host) route.",
            |r| r.open as u64,
        ),
        (
            "volley_connection_refusals_total",
            "counter",
            "New connections a receiver refused at its connection cap, per (source IP, MX host).",
            |r| r.refusals,
        ),
    ];
    for (name, kind, help, value) in per_route {
        family(&mut out, name, kind, help);
        for r in &limits {
            let _ = writeln!(
                out,
                "{name}{{source_ip=\"{}\",mx=\"{}\"}} {}",
                r.source_ip,
                escape(&r.mx),
                value(r)
            );
        }
    }
    reputation(&mut out, live);
    let warmup = live.warmup();
    let budget: [(&str, &str, BudgetValue); 2] = [
        (
            "volley_warmup_sent_today",
            "Messages a warming source IP sent today (UTC) to a provider group, all campaigns.",
            |w| w.sent_today,
        ),
        (
            "volley_warmup_daily_cap",
            "Today's warm-up cap of a warming source IP for a provider group.",
            |w| w.daily_cap,
        ),
    ];
    for (name, help, value) in budget {
        family(&mut out, name, "gauge", help);
        for w in &warmup {
            let _ = writeln!(
                out,
                "{name}{{source_ip=\"{}\",provider=\"{}\"}} {}",
                w.ip,
                escape(&w.provider),
                value(w)
            );
        }
    }
    family(
        &mut out,
        "volley_delivery_latency_seconds",
        "histogram",
        "Time from the start of a delivery attempt to the server's final reply, for delivered attempts.",
    );
    for c in &campaigns {
        let campaign = escape(&c.id);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(c.latency) {
            cumulative += n;
            let _ = writeln!(
                out,
                "volley_delivery_latency_seconds_bucket{{campaign=\"{campaign}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let count: u64 = c.latency.iter().sum();
        let _ = writeln!(
            out,
            "volley_delivery_latency_seconds_bucket{{campaign=\"{campaign}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "volley_delivery_latency_seconds_sum{{campaign=\"{campaign}\"}} {}",
            c.latency_sum_s
        );
        let _ = writeln!(
            out,
            "volley_delivery_latency_seconds_count{{campaign=\"{campaign}\"}} {count}"
        );
    }
    out
}

/// The exposition text of the one-click unsubscribe endpoint's answers (`volley serve`).
pub fn render_unsubscribes(counters: &volley_scheduler::unsubscribe::UnsubscribeCounters) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "volley_unsubscribe_requests_total",
        "counter",
        "Requests to the one-click unsubscribe endpoint, by answer (unsubscribed, repeated, page, bad_request, forged, expired, not_found, too_large, rate_limited, failed).",
    );
    for (answer, n) in counters.snapshot() {
        let _ = writeln!(
            out,
            "volley_unsubscribe_requests_total{{answer=\"{}\"}} {n}",
            answer.name()
        );
    }
    out
}

/// Binds `addr` and serves `/metrics` from `live` until the task is dropped or aborted.
pub async fn serve(addr: SocketAddr, live: Arc<Live>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen"))?;
    eprintln!(
        "volley: metrics on http://{}/metrics",
        listener.local_addr().unwrap_or(addr)
    );
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let live = live.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &live)).await;
            });
        }
    }))
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, live: &Live) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST {
            return respond(&mut stream, "431 Request Header Fields Too Large", "text/plain", "").await;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => {
            let body = render(live);
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &body).await
        }
        (b"GET", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "only /metrics is served here\n",
            )
            .await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET only\n").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The reputation guards' rates and holds, per campaign and per (source IP, provider group):
/// `scope` says which, the other labels are empty where they do not apply.
fn reputation(out: &mut String, live: &Live) {
    use volley_scheduler::reputation::{RateView, Scope};
    type RateValue = fn(&RateView) -> f64;
    let rates = live.reputation();
    let families: [(&str, &str, RateValue); 3] = [
        (
            "volley_reputation_hard_bounce_rate_percent",
            "Hard bounces per message with a final answer in the reputation window, in percent.",
            |r| r.hard_bounce_rate_percent,
        ),
        (
            "volley_reputation_complaint_rate_percent",
            "Spam complaints per delivered message in the reputation window, in percent.",
            |r| r.complaint_rate_percent,
        ),
        (
            "volley_reputation_held",
            "1 while a reputation guard holds the scope (a campaign paused, a source IP off a provider group).",
            |r| f64::from(u8::from(r.held)),
        ),
    ];
    family(
        out,
        "volley_source_ip_listed",
        "gauge",
        "1 while a DNS blocklist zone lists the source IP ([blocklists]), per zone checked.",
    );
    for v in live.listings() {
        for zone in &v.checked {
            let listed = v.listed.iter().any(|l| &l.zone == zone);
            let _ = writeln!(
                out,
                "volley_source_ip_listed{{source_ip=\"{}\",zone=\"{}\"}} {}",
                v.source_ip,
                escape(zone),
                u8::from(listed)
            );
        }
    }
    for (name, help, value) in families {
        family(out, name, "gauge", help);
        for r in &rates {
            let (scope, campaign, ip, provider) = match &r.scope {
                Scope::Campaign { campaign } => ("campaign", escape(campaign), String::new(), String::new()),
                Scope::Route { source_ip, provider } => {
                    ("route", String::new(), source_ip.to_string(), escape(provider))
                }
            };
            let _ = writeln!(
                out,
                "{name}{{scope=\"{scope}\",campaign=\"{campaign}\",source_ip=\"{ip}\",provider=\"{provider}\"}} {}",
                value(r)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_scheduler::live::AttemptLabels;
    use volley_scheduler::outcome::Outcome;

    #[test]
    fn exposition_has_help_type_labels_and_a_cumulative_histogram() {
        let live = Live::default();
        let c = live.campaign("news \"1\"");
        let labels = AttemptLabels {
            outcome: Outcome::Delivered,
            source_ip: "127.0.0.2".parse().ok(),
            site: Some("mx.a.test"),
            category: "delivered",
        };
        c.attempt(labels, Some(Duration::from_millis(3)));
        c.attempt(labels, Some(Duration::from_millis(40)));
        let text = render(&live);
        assert!(text.contains("# TYPE volley_attempts_total counter"), "{text}");
        assert!(
            text.contains(
                "volley_attempts_total{campaign=\"news \\\"1\\\"\",outcome=\"delivered\",source_ip=\"127.0.0.2\",site=\"mx.a.test\",category=\"delivered\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"0.05\"} 2"), "cumulative: {text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("volley_delivery_latency_seconds_count{campaign=\"news \\\"1\\\"\"} 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "a number ends every sample: {line}");
        }
    }
}
