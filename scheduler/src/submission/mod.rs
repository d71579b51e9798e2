//! The submission listener (`[submission]`, inside `volley serve`): the SMTP relay that
//! applications hand single messages to (a password reset, a receipt), on port 587 style
//! (STARTTLS, then AUTH) and/or 465 style (implicit TLS, RFC 8314 §3.3). Every message is
//! checked ([`crate::inject::inspect`], the user's From domains and rate) and handed to an
//! [`Injector`] (the durable spool), whose answer is the message's final reply: the 250 goes
//! out only once the message is durable.
//!
//! ```text
//! client ─► listen / listen_tls ─► caps (crate::listen) ─► SMTP session (volley-smtp-server)
//!                                                          │ AUTH: accounts (argon2id, cached)
//!                                                          │ MAIL: who, sender domain, rate
//!                                                          │ end of data: inspect, From domain
//!                                                          ▼
//!                                                    Injector::inject ─► 250 / 4xx / 5xx
//! ```
//!
//! - `submission/users.rs` — the users file (`volley user add/remove/list`): one JSON line
//!   per user, the password as an Argon2id PHC string, written atomically with mode 0600.
//! - `submission/accounts.rs` — the users as the listener sees them: reloaded when the file
//!   changes, passwords verified off the async workers with a short cache, the slow-down after
//!   failed AUTHs per client address, the per-user rate limiters.
//! - `submission/handler.rs` — the SMTP policy of one connection.
//! - `submission/listener.rs` — TLS, binding both ports, one session per connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod accounts;
mod handler;
mod listener;
pub mod users;

pub use users::{UserRecord, UsersError};

use crate::config::SendConfig;
use crate::inject::Injector;

/// `[submission]` in `volley.toml`. At least one of `listen` and `listen_tls`.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionConfig {
    /// The STARTTLS port (587 style, RFC 6409): STARTTLS offered, AUTH refused before TLS
    /// (538 5.7.11), MAIL refused before AUTH (530 5.7.0) except from `relay_networks`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The implicit-TLS port (465 style, RFC 8314 §3.3): the TLS handshake comes first, then
    /// the SMTP session.
    #[serde(default)]
    pub listen_tls: Option<SocketAddr>,
    /// PEM certificate chain for STARTTLS and the implicit-TLS port (relative to the config
    /// file).
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert` (relative to the config file).
    pub tls_key: PathBuf,
    /// The name in the greeting and the EHLO reply (the name in the certificate).
    pub hostname: String,
    /// The users file written by `volley user add` (relative to the config file; default
    /// `<state_dir>/submission/users.jsonl`). Changes take effect within a second, without
    /// a restart.
    #[serde(default)]
    pub users: Option<PathBuf>,
    /// Largest message in bytes (default 25 MiB), announced as SIZE: a larger `SIZE=` gets
    /// 552 at MAIL, larger content 552 at its end (RFC 1870).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Recipients per message (default 1000); the next RCPT gets 452 4.5.3.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Connections served at once over both ports (default 200); beyond it 421 4.7.0.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections served at once per client address (default 20); beyond it 421 4.7.0.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Client networks (CIDR, e.g. `"10.1.2.0/24"`, `"127.0.0.1/32"`) that may submit
    /// without AUTH, as `relay_user`: an application server, or a client that speaks neither
    /// AUTH nor TLS (Postfix's `smtp-source`). Their mail obeys `relay_user`'s From domains
    /// and rate. Default: none.
    #[serde(default)]
    pub relay_networks: Vec<RelayNetwork>,
    /// The user (of the users file) mail from `relay_networks` is filed under; required
    /// with `relay_networks`.
    #[serde(default)]
    pub relay_user: Option<String>,
    /// Failed AUTH attempts on one connection before it is closed with 421 4.7.0 (default 3).
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// The pause before answering a failed AUTH: this long times the number of recent
    /// failures from the same client address (1 s, 2 s, 3 s, … by default), up to
    /// `auth_failure_max_delay`.
    #[serde(default = "default_auth_failure_delay", with = "humantime_serde")]
    pub auth_failure_delay: Duration,
    /// The longest such pause (default 30s).
    #[serde(default = "default_auth_failure_max_delay", with = "humantime_serde")]
    pub auth_failure_max_delay: Duration,
    /// How long a verified (user, password) pair is remembered, so that an application that
    /// reconnects for every message does not pay the Argon2 verification each time (default
    /// 60s; `"0s"`: never). Only a hash of the password is kept, and a changed or removed
    /// user is checked again at once.
    #[serde(default = "default_auth_cache", with = "humantime_serde")]
    pub auth_cache: Duration,
    /// Waiting for a command or message content before 421 (default 5 minutes, RFC 5321
    /// §4.5.3.2).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The TLS handshake, after STARTTLS or on the implicit-TLS port (default 30s).
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

fn default_max_message_size() -> u64 {
    25 << 20
}
fn default_max_recipients() -> usize {
    volley_smtp_server::config::DEFAULT_MAX_RECIPIENTS
}
fn default_max_connections() -> usize {
    200
}
fn default_max_connections_per_ip() -> usize {
    20
}
fn default_max_auth_failures() -> u32 {
    3
}
fn default_auth_failure_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_auth_failure_max_delay() -> Duration {
    Duration::from_secs(30)
}
fn default_auth_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(30)
}

/// One network of `relay_networks`, written `address/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayNetwork(pub ipnet::IpNet);

impl std::str::FromStr for RelayNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<RelayNetwork, String> {
        s.trim()
            .parse::<ipnet::IpNet>()
            .map(RelayNetwork)
            .map_err(|_| format!("{s:?} is not a network: write address/prefix, e.g. \"10.1.2.0/24\""))
    }
}

impl<'de> serde::Deserialize<'de> for RelayNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RelayNetwork, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl SubmissionConfig {
    /// A config with every default, listening on `listen` (STARTTLS) and `listen_tls`.
    pub fn new(
        listen: Option<SocketAddr>,
        listen_tls: Option<SocketAddr>,
        tls_cert: PathBuf,
        tls_key: PathBuf,
        hostname: impl Into<String>,
    ) -> SubmissionConfig {
        SubmissionConfig {
            listen,
            listen_tls,
            tls_cert,
            tls_key,
            hostname: hostname.into(),
            users: None,
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            relay_networks: Vec::new(),
            relay_user: None,
            max_auth_failures: default_max_auth_failures(),
            auth_failure_delay: default_auth_failure_delay(),
            auth_failure_max_delay: default_auth_failure_max_delay(),
            auth_cache: default_auth_cache(),
            idle_timeout: default_idle_timeout(),
            handshake_timeout: default_handshake_timeout(),
        }
    }

    /// Resolves the file paths against the config file's folder.
    pub fn resolve(&mut self, base: &Path) {
        let files = [&mut self.tls_cert, &mut self.tls_key]
            .into_iter()
            .chain(self.users.as_mut());
        crate::config::resolve_relative(base, files);
    }

    /// Every value that parses but cannot work: (field, value, reason).
    pub fn problems(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let mut bad = |field: &str, value: String, reason: &str| {
            out.push((format!("submission.{field}"), value, reason.to_string()));
        };
        if self.listen.is_none() && self.listen_tls.is_none() {
            bad(
                "listen",
                String::new(),
                "give listen (STARTTLS, port 587 style), listen_tls (implicit TLS, port 465 style), or both",
            );
        }
        for (field, value) in [
            ("max_recipients", self.max_recipients),
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("max_auth_failures", self.max_auth_failures as usize),
        ] {
            if value == 0 {
                bad(field, "0".into(), "must be at least 1");
            }
        }
        if self.max_message_size < 1024 {
            bad(
                "max_message_size",
                self.max_message_size.to_string(),
                "must be at least 1024 bytes",
            );
        }
        for (field, value) in [
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
        ] {
            if value.is_zero() {
                bad(field, "0s".into(), "must be longer than zero");
            }
        }
        if self.auth_failure_max_delay < self.auth_failure_delay {
            bad(
                "auth_failure_max_delay",
                humantime::format_duration(self.auth_failure_max_delay).to_string(),
                "must be at least auth_failure_delay",
            );
        }
        let session = self.session_config(true);
        if let Err(e) = session.validate() {
            bad(e.field, e.value, e.reason);
        }
        match (&self.relay_user, self.relay_networks.is_empty()) {
            (None, false) => bad(
                "relay_user",
                String::new(),
                "relay_networks needs a relay_user (the user their mail is filed under)",
            ),
            (Some(user), _) => {
                if let Err(why) = crate::campaign::check_id(user) {
                    bad("relay_user", user.clone(), why);
                }
            }
            (None, true) => {}
        }
        out
    }

    /// Whether a client at `ip` may submit without AUTH.
    pub fn is_relay_client(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.relay_networks.iter().any(|n| n.0.contains(&ip))
    }

    /// The session settings: EHLO advertises PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
    /// ENHANCEDSTATUSCODES, CHUNKING, STARTTLS (on `listen`), and AUTH PLAIN LOGIN over TLS
    /// only; MAIL needs AUTH first unless `relay` (a client of `relay_networks`).
    pub(crate) fn session_config(&self, require_auth: bool) -> volley_smtp_server::SessionConfig {
        use volley_smtp_server::AuthMechanism;
        volley_smtp_server::SessionConfig {
            hostname: self.hostname.clone(),
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            chunking: true,
            starttls: true,
            auth: vec![AuthMechanism::Plain, AuthMechanism::Login],
            auth_requires_tls: true,
            require_auth,
            ..volley_smtp_server::SessionConfig::default()
        }
    }
}

/// Where the users file is: `[submission] users`, or `<state_dir>/submission/users.jsonl`.
pub fn users_path(config: &SendConfig) -> PathBuf {
    config
        .submission
        .as_ref()
        .and_then(|s| s.users.clone())
        .unwrap_or_else(|| config.state_dir.join("submission").join("users.jsonl"))
}

/// The certificate and key of `config`, as a rustls server configuration.
pub(crate) fn server_tls(config: &SubmissionConfig) -> Result<rustls::ServerConfig, SubmissionError> {
    crate::server_tls::server_config("submission", &config.tls_cert, &config.tls_key)
        .map_err(|e| SubmissionError::Tls(e.to_string()))
}

/// The relay user (when `relay_networks` are set) is one of `names` (the users of the file at
/// `users`).
pub(crate) fn check_relay_user<'a>(
    config: &SubmissionConfig,
    mut names: impl Iterator<Item = &'a str>,
    users: &Path,
) -> Result<(), SubmissionError> {
    match &config.relay_user {
        Some(relay_user) if !names.any(|n| n == relay_user) => Err(SubmissionError::Config(format!(
            "relay_user {relay_user:?} is not in the users file {} (add it with `volley user add {relay_user} --from-domain …`)",
            users.display()
        ))),
        _ => Ok(()),
    }
}

/// What the listener reads before it starts, checked without binding anything (for `volley
/// check-config`): the certificate and key, the users file at `users`, the relay user in it.
pub fn check(config: &SubmissionConfig, users: &Path) -> Result<String, SubmissionError> {
    server_tls(config)?;
    let records = users::load(users)?;
    check_relay_user(config, records.iter().map(|u| u.name.as_str()), users)?;
    Ok(format!(
        "certificate {} loads; {} user(s) in {}",
        config.tls_cert.display(),
        records.len(),
        users.display()
    ))
}

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    /// The configuration cannot work (a value, or the relay user missing from the users file).
    #[error("[submission]: {0}")]
    Config(String),
    /// The users file cannot be read or is damaged.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// The certificate or key cannot be used.
    #[error("submission TLS: {0}")]
    Tls(String),
    /// Binding a port failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What the listener has done since it started (for `/metrics` and the log).
#[derive(Debug, Default)]
pub struct SubmissionStats {
    /// Successful AUTH exchanges (cached verifications included).
    pub auth_successes: AtomicU64,
    /// Failed AUTH exchanges (wrong password, unknown user).
    pub auth_failures: AtomicU64,
    /// Messages accepted (durable, 250 sent).
    pub accepted: AtomicU64,
    /// Messages or transactions refused by policy: no AUTH, a From domain not allowed, the
    /// rate, a malformed message.
    pub refused: AtomicU64,
    /// Messages the injector could not take (452/451).
    pub inject_failures: AtomicU64,
}

/// The counters at one moment (for `/metrics` or a JSON answer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubmissionCounts {
    /// See [`SubmissionStats::auth_successes`].
    pub auth_successes: u64,
    /// See [`SubmissionStats::auth_failures`].
    pub auth_failures: u64,
    /// See [`SubmissionStats::accepted`].
    pub accepted: u64,
    /// See [`SubmissionStats::refused`].
    pub refused: u64,
    /// See [`SubmissionStats::inject_failures`].
    pub inject_failures: u64,
}

impl SubmissionStats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> SubmissionCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SubmissionCounts {
            auth_successes: get(&self.auth_successes),
            auth_failures: get(&self.auth_failures),
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            inject_failures: get(&self.inject_failures),
        }
    }
}

/// A running submission listener; it stops accepting when dropped (connections in progress
/// finish).
pub struct SubmissionService {
    starttls_addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    stats: Arc<SubmissionStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SubmissionService {
    /// Reads the certificate and the users file at `users` (see [`users_path`]), binds the
    /// configured ports and starts accepting; every accepted message goes to `injector`.
    pub async fn start<I: Injector>(
        config: &SubmissionConfig,
        users: PathBuf,
        injector: Arc<I>,
    ) -> Result<SubmissionService, SubmissionError> {
        if let Some((field, value, reason)) = config.problems().into_iter().next() {
            return Err(SubmissionError::Config(format!("{field} = {value:?}: {reason}")));
        }
        let stats = Arc::new(SubmissionStats::default());
        let started = listener::start(config, users, injector, stats.clone()).await?;
        for addr in started.starttls_addr.iter().chain(&started.tls_addr) {
            tracing::info!("submission: listening on {addr}");
        }
        Ok(SubmissionService {
            starttls_addr: started.starttls_addr,
            tls_addr: started.tls_addr,
            stats,
            tasks: started.tasks,
        })
    }

    /// The bound STARTTLS port (`listen`), if configured.
    pub fn starttls_addr(&self) -> Option<SocketAddr> {
        self.starttls_addr
    }

    /// The bound implicit-TLS port (`listen_tls`), if configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The listener's counters.
    pub fn stats(&self) -> Arc<SubmissionStats> {
        self.stats.clone()
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for SubmissionService {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPS: &str = "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta.volley.test\"\n";

    #[test]
    fn the_table_loads_with_defaults_and_paths_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("volley.toml");
        std::fs::write(
            &path,
            format!(
                "state_dir = \"state\"\n{IPS}[submission]\nlisten = \"127.0.0.1:587\"\n\
                 tls_cert = \"tls/sub.crt\"\ntls_key = \"/etc/sub.key\"\nhostname = \"submit.example\"\n\
                 relay_networks = [\"10.1.2.0/24\", \"::1/128\"]\nrelay_user = \"app\"\nauth_cache = \"2m\"\n"
            ),
        )
        .expect("write");
        let config = SendConfig::load_unchecked(&path).expect("loads");
        let s = config.submission.as_ref().expect("[submission]");
        assert_eq!(s.tls_cert, dir.path().join("tls/sub.crt"));
        assert_eq!(s.tls_key, PathBuf::from("/etc/sub.key"));
        assert_eq!(
            (s.max_message_size, s.max_connections_per_ip, s.auth_cache),
            (25 << 20, 20, Duration::from_secs(120))
        );
        assert_eq!(users_path(&config), dir.path().join("state/submission/users.jsonl"));
        assert!(s.is_relay_client("10.1.2.7".parse().expect("ip")));
        assert!(s.is_relay_client("::ffff:10.1.2.7".parse().expect("ip")), "IPv4-mapped");
        assert!(!s.is_relay_client("10.1.3.7".parse().expect("ip")));
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        let text = format!(
            "{IPS}[submission]\ntls_cert = \"c\"\ntls_key = \"k\"\nhostname = \"submit.example\"\n\
             relay_networks = [\"10.1.2.0/24\"]\nmax_connections = 0\n"
        );
        let e = SendConfig::parse(&text, Path::new("volley.toml")).expect_err("problems");
        let text_e = e.to_string();
        for expected in [
            "field `submission.listen` = \"\": give listen",
            "line 9: field `submission.max_connections` = \"0\": must be at least 1",
            "field `submission.relay_user` = \"\": relay_networks needs a relay_user",
        ] {
            assert!(text_e.contains(expected), "{expected} in {text_e}");
        }
        let bad_net = format!(
            "{IPS}[submission]\nlisten = \"127.0.0.1:587\"\ntls_cert = \"c\"\ntls_key = \"k\"\n\
             hostname = \"h\"\nrelay_networks = [\"10.1.2.0/33\"]\nrelay_user = \"app\"\nsecret = 1\n"
        );
        let e = SendConfig::parse(&bad_net, Path::new("volley.toml")).expect_err("problems");
        let text_e = e.to_string();
        assert!(
            text_e.contains("line 9: field `submission.relay_networks[0]`"),
            "{text_e}"
        );
        assert!(text_e.contains("\"10.1.2.0/33\" is not a network"), "{text_e}");
        assert!(text_e.contains("unknown field `secret`"), "{text_e}");
    }
}
