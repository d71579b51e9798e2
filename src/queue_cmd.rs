//! `volley queue`: queue control through a running `volley serve` — show the queues by MX
//! site, domain, source IP or provider group; suspend, resume, retry now, bounce or purge a
//! scope. The API's address and bearer token come from the configuration's `[api]` table
//! (`listen`, `token` or `token_file`), or `--api`. With `[api] tls_cert` it speaks HTTPS,
//! trusting the certificates of that file (a self-signed certificate, or a chain ending in its
//! CA), for the name `--server-name` (`localhost` for a loopback address when not given).
//!
//! The queues live in the serving process (its campaigns' dispatchers), so this command needs
//! it running; suspensions it sets persist in the state directory.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use volley_scheduler::queues::QueueScope;

/// Arguments of `volley queue`.
#[derive(clap::Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    action: Action,
    /// The operator configuration (its `[api]` table: where `volley serve` listens, the token).
    #[arg(long, global = true, default_value = "volley.toml")]
    config: PathBuf,
    /// The API's address (`host:port`) instead of `[api] listen`.
    #[arg(long, global = true)]
    api: Option<String>,
    /// With `[api] tls_cert`: the name the certificate must carry (when absent: `localhost` for
    /// a loopback address, else the address's host).
    #[arg(long, global = true)]
    server_name: Option<String>,
}

/// A scope: a domain, an MX site, a source IP, or a source IP and provider group.
#[derive(clap::Args, Clone)]
struct ScopeArgs {
    /// A recipient domain.
    #[arg(long)]
    domain: Option<String>,
    /// An MX site, as `volley queue show --by site` names it.
    #[arg(long)]
    site: Option<String>,
    /// A source IP (with `--provider`: only its mail to that provider group).
    #[arg(long)]
    ip: Option<String>,
    /// A provider group (`gmail`, `microsoft`, `yahoo`, `other`, or a warm-up group); needs `--ip`.
    #[arg(long)]
    provider: Option<String>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// The queues of every running campaign: ready, in flight, parked, retrying, suspended,
    /// the oldest recipient, the next attempt, the connection limits.
    #[command(after_help = "Examples:\n  volley queue show\n  volley queue show --by site --json")]
    Show {
        /// Group by `site`, `domain`, `source_ip` or `provider`.
        #[arg(long, default_value = "domain")]
        by: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send nothing new in the scope (what is on the wire completes); kept across restarts.
    #[command(
        after_help = "Examples:\n  volley queue suspend --domain example.com\n  volley queue suspend --ip 192.0.2.10 --provider gmail"
    )]
    Suspend(ScopeArgs),
    /// Lift a suspension: the scope's waiting recipients go again.
    #[command(after_help = "Example:\n  volley queue resume --domain example.com")]
    Resume(ScopeArgs),
    /// Make the scope's retries due now (its MX hosts are no longer marked down).
    #[command(after_help = "Example:\n  volley queue retry --site mx1.example.com")]
    Retry(ScopeArgs),
    /// Give every recipient queued in the scope a final `bounced` line (category `operator`,
    /// not suppressed).
    #[command(after_help = "Example:\n  volley queue bounce --domain example.com --reason \"domain closed\"")]
    Bounce {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Why (written into each recipient's accounting line).
        #[arg(long)]
        reason: String,
    },
    /// Give every recipient queued in the scope a final `expired` line with the reason.
    #[command(after_help = "Example:\n  volley queue purge --domain example.com --reason \"stale offer\"")]
    Purge {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Why (written into each recipient's accounting line).
        #[arg(long)]
        reason: String,
    },
}

impl ScopeArgs {
    /// The request body: the scope's fields, checked here first so that a typo is named
    /// without a round trip.
    fn body(&self) -> anyhow::Result<Value> {
        let scope = QueueScope::from_fields(
            self.domain.as_deref(),
            self.site.as_deref(),
            self.ip.as_deref(),
            self.provider.as_deref(),
        )
        .map_err(|e| {
            // The command line names the IP `--ip`.
            let flag = match e.field.as_str() {
                "source_ip" => "--ip".to_string(),
                "(body)" => "scope".to_string(),
                f => format!("--{f}"),
            };
            anyhow::anyhow!("{flag}: {:?}: {}", e.value, e.reason)
        })?;
        Ok(serde_json::to_value(scope)?)
    }
}

/// Runs the command: `Ok(false)` when the API refused it (the answer is printed).
pub async fn run(args: QueueArgs) -> anyhow::Result<bool> {
    let (config, _) = crate::warmup_cmd::load_config(args.config.clone())?;
    let token = config
        .api
        .token()
        .map_err(|(field, why)| anyhow::anyhow!("{}: {field}: {why}", args.config.display()))?;
    let addr = match &args.api {
        Some(a) => a.clone(),
        None => reachable(config.api.listen).to_string(),
    };
    let tls = match &config.api.tls_cert {
        Some(cert) => Some(tls_client(cert, &addr, args.server_name.as_deref())?),
        None => None,
    };
    let (method, path, body) = match &args.action {
        Action::Show { by, .. } => ("GET", format!("/queues?by={by}"), None),
        Action::Suspend(s) => ("POST", "/queues/suspend".into(), Some(s.body()?)),
        Action::Resume(s) => ("POST", "/queues/resume".into(), Some(s.body()?)),
        Action::Retry(s) => ("POST", "/queues/retry".into(), Some(s.body()?)),
        Action::Bounce { scope, reason } => ("POST", "/queues/bounce".into(), Some(with_reason(scope, reason)?)),
        Action::Purge { scope, reason } => ("POST", "/queues/purge".into(), Some(with_reason(scope, reason)?)),
    };
    let (status, answer) = request(&addr, tls, &token, method, &path, body.as_ref())
        .await
        .with_context(|| format!("volley serve's API at {addr} (is volley serve running?)"))?;
    if status != 200 {
        let field = answer["field"].as_str().map(|f| format!("{f}: ")).unwrap_or_default();
        let error = answer["error"]
            .as_str()
            .map_or_else(|| answer.to_string(), str::to_string);
        eprintln!("volley queue: {status}: {field}{error}");
        return Ok(false);
    }
    match &args.action {
        Action::Show { json: true, .. } => println!("{}", serde_json::to_string_pretty(&answer)?),
        Action::Show { .. } => print_queues(&answer),
        Action::Suspend(_) => println!(
            "suspended {}: nothing new is sent there ({} recipients queued there wait); kept across restarts",
            answer["suspended"], answer["affected"]
        ),
        Action::Resume(_) => println!(
            "resumed {}: {} waiting recipients go again",
            answer["resumed"], answer["affected"]
        ),
        _ => {
            let c = &answer["counts"];
            println!(
                "{} recipients affected (ready {}, parked {}, retrying {}, suspended {}); {} on the wire left alone",
                answer["affected"], c["ready"], c["parked"], c["retrying"], c["suspended"], c["in_flight_untouched"]
            );
        }
    }
    Ok(true)
}

fn with_reason(scope: &ScopeArgs, reason: &str) -> anyhow::Result<Value> {
    let mut body = scope.body()?;
    body["reason"] = json!(reason);
    Ok(body)
}

/// Where to connect for an API listening on `listen` (an unspecified address: loopback).
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port())),
        _ => listen,
    }
}

/// HTTPS to `addr`: the roots are the certificates of `cert` (`[api] tls_cert`).
fn tls_client(
    cert: &std::path::Path,
    addr: &str,
    server_name: Option<&str>,
) -> anyhow::Result<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)> {
    let pem = volley_files::read_config_bytes(cert, volley_files::CONFIG_MAX)
        .with_context(|| format!("[api] tls_cert {}", cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let c = c.with_context(|| format!("[api] tls_cert {}: not a PEM certificate", cert.display()))?;
        roots
            .add(c)
            .with_context(|| format!("[api] tls_cert {}: certificate not usable as a root", cert.display()))?;
    }
    if roots.is_empty() {
        bail!("[api] tls_cert {}: no certificate in it", cert.display());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
    let default = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => "localhost",
        _ => host,
    };
    let name = server_name.unwrap_or(default).to_string();
    let name = rustls::pki_types::ServerName::try_from(name.clone())
        .with_context(|| format!("--server-name: {name:?} is not a DNS name or an IP address"))?;
    Ok((tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)), name))
}

/// Writes a request on `stream` and reads the answer to its end.
async fn exchange<S>(mut stream: S, request: &[u8]) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response).await {
        Ok(_) => Ok(response),
        // A TLS peer closing without close_notify: what arrived is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
        Err(e) => Err(e),
    }
}

/// One HTTP/1.1 request (`Connection: close`), over TLS when `tls` says how; the status and
/// the JSON answer.
async fn request(
    addr: &str,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect(addr))
        .await
        .context("connection timed out")?
        .context("cannot connect")?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        match tls {
            Some((connector, name)) => {
                let stream = connector.connect(name, stream).await.context("TLS handshake")?;
                Ok::<_, anyhow::Error>(exchange(stream, request.as_bytes()).await?)
            }
            None => Ok(exchange(stream, request.as_bytes()).await?),
        }
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .context("no answer within 30 s")??;
    parse_response(&response)
}

/// The status and JSON body of an HTTP/1.1 response read to its end.
fn parse_response(response: &[u8]) -> anyhow::Result<(u16, Value)> {
    let text = String::from_utf8_lossy(response);
    let Some((head, payload)) = text.split_once("\r\n\r\n") else {
        bail!("not an HTTP response: {:?}", text.chars().take(80).collect::<String>());
    };
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {:?}", head.lines().next().unwrap_or("")))?;
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked"))
    {
        bail!("chunked answers are not read; status {status}");
    }
    let json = serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_string()));
    Ok((status, json))
}

/// The queues as a table.
fn print_queues(answer: &Value) {
    let none = Vec::new();
    let queues = answer["queues"].as_array().unwrap_or(&none);
    if queues.is_empty() {
        println!("no queues (no campaign is running)");
    } else {
        println!(
            "{:<40} {:>7} {:>9} {:>7} {:>8} {:>9} {:>8} {:<20} {:>5}",
            "QUEUE", "READY", "IN-FLIGHT", "PARKED", "RETRYING", "SUSPENDED", "OLDEST", "NEXT ATTEMPT", "CONNS"
        );
    }
    for q in queues {
        let conns: u64 = q["connection_limits"]
            .as_array()
            .map_or(0, |l| l.iter().filter_map(|r| r["limit"].as_u64()).sum());
        let mut key = q["key"].as_str().unwrap_or("").to_string();
        if q["suspended"] == true {
            key.push_str(" (suspended)");
        }
        println!(
            "{:<40} {:>7} {:>9} {:>7} {:>8} {:>9} {:>8} {:<20} {:>5}",
            key,
            q["ready"],
            q["in_flight"],
            q["parked"],
            q["retrying"],
            q["suspended_recipients"],
            q["oldest_age_s"].as_u64().map_or("-".to_string(), |s| format!("{s}s")),
            q["next_attempt"].as_str().unwrap_or("-"),
            conns
        );
    }
    for s in answer["suspended"].as_array().unwrap_or(&none) {
        println!("suspended: {} since {}", s["scope"], s["since"].as_str().unwrap_or("?"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_before_any_request_naming_the_flag() {
        let s = |domain: Option<&str>, ip: Option<&str>, provider: Option<&str>| ScopeArgs {
            domain: domain.map(str::to_string),
            site: None,
            ip: ip.map(str::to_string),
            provider: provider.map(str::to_string),
        };
        let e = s(None, Some("10.0.0.999"), None).body().unwrap_err().to_string();
        assert!(e.starts_with("--ip: \"10.0.0.999\""), "{e}");
        let e = s(None, None, Some("gmail")).body().unwrap_err().to_string();
        assert!(e.starts_with("--provider: \"gmail\""), "{e}");
        assert_eq!(
            s(Some("B.test"), None, None).body().unwrap(),
            json!({ "domain": "b.test" })
        );
        assert_eq!(
            s(None, Some("127.0.0.2"), Some("gmail")).body().unwrap(),
            json!({ "source_ip": "127.0.0.2", "provider": "gmail" })
        );
    }

    #[test]
    fn responses_parse_and_unspecified_listens_connect_to_loopback() {
        let (status, v) = parse_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 9\r\n\r\n{\"a\": 1}").unwrap();
        assert_eq!((status, v), (400, json!({ "a": 1 })));
        assert!(parse_response(b"garbage").is_err());
        assert_eq!(
            reachable("0.0.0.0:8025".parse().unwrap()),
            "127.0.0.1:8025".parse::<SocketAddr>().unwrap()
        );
    }
}
