//! `volley.toml`: the operator's settings — state directory, source IPs, routing overrides and
//! the engine's `[smtp]` table. Validated at load; a bad config refuses to start.
//!
//! - `config/collect.rs` — reading the file so that one pass finds every problem (mistyped
//!   values and unknown fields are taken out and the rest read again), with lines.
//! - `config/validate.rs` — [`Problem`], and every check of the parsed values.
//! - `config/retry.rs`, `config/source_ip.rs`, `config/feedback.rs` — those tables.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use volley_engine::SmtpConfig;

mod collect;
mod feedback;
mod retry;
mod source_ip;
mod validate;

pub use feedback::{FeedbackConfig, UnsubscribeUrl};
pub use retry::RetryConfig;
pub use source_ip::{SourceIpConfig, DEFAULT_POOL};
pub use validate::Problem;

/// The operator's configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    /// Where campaign state, accounting logs and rejects files are kept (relative paths are
    /// relative to the config file). Default `state`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The source IPs mail is sent from, used in weighted rotation.
    pub source_ips: Vec<SourceIpConfig>,
    /// Routing overrides: recipient domain (or `*` for every other domain) -> `ip:port` of the
    /// host to deliver to. A domain with no route and no `*` is deferred with a routing error.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// SMTP client and connection-pool settings.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// Per-destination policy blocks (`[[destination]]`), matched by recipient domain, MX host
    /// suffix or provider group; each sets some `[smtp]` connection settings and a rate for the
    /// mail it matches (see [`crate::destinations`]).
    #[serde(default)]
    pub destination: Vec<crate::destinations::DestinationBlock>,
    /// Whether the built-in blocks for gmail, microsoft and yahoo apply (default true); a
    /// block of the same name overrides one field by field.
    #[serde(default = "yes")]
    pub builtin_destinations: bool,
    /// MX lookups for domains no route covers (RFC 5321 §5.1). Without this table such domains
    /// are deferred with a routing error; `[dns]` with no `nameservers` uses the system's
    /// resolv.conf.
    #[serde(default)]
    pub dns: Option<volley_engine::mx::DnsConfig>,
    /// MTA-STS (RFC 8461) for mail routed by MX lookups, and TLS reports (RFC 8460) of the
    /// sessions to policy domains (`[mta_sts]`; on by default, in effect with `[dns]`).
    #[serde(default)]
    pub mta_sts: volley_engine::mta_sts::MtaStsConfig,
    /// The port MX hosts are contacted on (25; loopback tests use their sink's port).
    #[serde(default = "default_mx_port")]
    pub mx_port: u16,
    /// Most deliveries in flight (queued in the engine or on the wire) at once; bounds memory.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most deliveries in flight to one MX site (the set of MX hosts a group of domains
    /// shares). A site at its cap waits while other sites keep sending, so one slow site never
    /// holds the run's whole in-flight budget.
    #[serde(default = "default_max_in_flight_per_site")]
    pub max_in_flight_per_site: usize,
    /// Most recipients parked (kept as line + byte offset, ~40 bytes each, while their site's
    /// ready queue is full) before reading the recipient file pauses. Bounds memory on lists
    /// dominated by one slow site.
    #[serde(default = "default_max_parked")]
    pub max_parked: usize,
    /// Retry policy for deferred recipients (4xx replies, connection failures, DNS trouble).
    #[serde(default)]
    pub retry: RetryConfig,
    /// Bounce classification.
    #[serde(default)]
    pub bounces: BouncesConfig,
    /// The suppression list: Redis or the embedded store, fail-closed policy, soft bounces.
    #[serde(default)]
    pub suppression: crate::suppression::SuppressionConfig,
    /// DKIM keys (`[[dkim]]`), per From domain; two entries for one domain sign twice (e.g.
    /// RSA + Ed25519). Key paths are relative to the config file.
    #[serde(default)]
    pub dkim: Vec<volley_engine::dkim::DkimKeyConfig>,
    /// Signing threads (0, the default: one per core).
    #[serde(default)]
    pub dkim_threads: usize,
    /// Warm-up and traffic shaping: curve folder, provider groups, backoff rules, counters.
    /// Each source IP says whether it is warm or warming up (`warmup`, `warmup_start`).
    #[serde(default)]
    pub warmup: volley_warmup::WarmupConfig,
    /// `volley serve`'s HTTP control API: listen address and bearer token.
    #[serde(default)]
    pub api: crate::api_config::ApiConfig,
    /// Folders a campaign's `text_file`/`html_file` may be read from besides the campaign
    /// file's own folder (relative to the config file). Default: none.
    #[serde(default)]
    pub template_dirs: Vec<PathBuf>,
    /// Reputation guards: complaint and hard-bounce rates per campaign and per (source IP,
    /// provider group), and the holds placed when they run too high.
    #[serde(default)]
    pub reputation: crate::reputation::ReputationConfig,
    /// DNS blocklist monitoring of the source IPs; without the table nothing is looked up.
    #[serde(default)]
    pub blocklists: Option<crate::blocklists::BlocklistConfig>,
    /// Feedback: VERP return paths and the key that signs their tokens (`[feedback]`; none:
    /// messages go out with the campaign's `envelope_from`).
    #[serde(default)]
    pub feedback: Option<FeedbackConfig>,
    /// The inbound listener for bounces, complaints and unsubscribes (`volley inbound`, and
    /// inside `volley serve`).
    #[serde(default)]
    pub inbound: Option<crate::inbound::InboundConfig>,
    /// The public one-click unsubscribe endpoint (`volley serve`, `volley inbound`); needs
    /// `[feedback] unsubscribe_url`.
    #[serde(default)]
    pub unsubscribe: Option<crate::unsubscribe::UnsubscribeConfig>,
    /// Injected mail (SMTP submission, `POST /messages` of `volley serve`): its pool,
    /// priority and spool (`[injection]`).
    #[serde(default)]
    pub injection: crate::spool::InjectionConfig,
    /// The SMTP submission listener for applications (`volley serve`): ports 587/465, AUTH
    /// against the users of `volley user add`.
    #[serde(default)]
    pub submission: Option<crate::submission::SubmissionConfig>,
    /// `[cluster]`: this node's part in a cluster sending one campaign over several nodes
    /// (`volley cluster`); absent for a single node.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// What the warm-up settings load to: the curves the IPs name, the backoff rules, the
/// provider groups and each IP's warm-up state.
#[derive(Clone, Debug)]
pub struct WarmupPolicy {
    /// The curves named by source IPs.
    pub curves: volley_warmup::CurveSet,
    /// Adaptive backoff rules.
    pub rules: volley_warmup::BackoffRules,
    /// Provider groups.
    pub providers: volley_warmup::Providers,
    /// Every source IP's warm-up state (in `source_ips` order).
    pub states: Vec<(IpAddr, volley_warmup::WarmupState)>,
}

/// `[bounces]`: how outcomes are classified.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BouncesConfig {
    /// A rules file replacing the shipped `config/bounce-rules.toml` (relative to the config
    /// file).
    pub rules: Option<PathBuf>,
}

impl BouncesConfig {
    /// The rules in effect: the configured file, or the shipped rules.
    pub fn load(&self) -> Result<crate::bounces::BounceRules, crate::bounces::RulesError> {
        match &self.rules {
            Some(path) => crate::bounces::BounceRules::load(path),
            None => Ok(crate::bounces::BounceRules::shipped()),
        }
    }
}

fn default_max_parked() -> usize {
    500_000
}
fn default_max_in_flight_per_site() -> usize {
    2_000
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_mx_port() -> u16 {
    25
}
fn default_max_in_flight() -> usize {
    20_000
}
fn yes() -> bool {
    true
}

fn read(path: &Path) -> Result<String, ConfigError> {
    volley_files::read_config_file(path, volley_files::CONFIG_MAX).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })
}

/// A configuration that cannot be used; the message names the file, field and value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why: the OS error, not a regular file, or over the size cap.
        source: volley_files::FileError,
    },
    /// TOML syntax or schema error (the message carries line and column).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Values of the file that cannot be used: every one found, each with its field path,
    /// value and line (one per line of the message).
    #[error("{}", render_problems(path, problems))]
    Problems {
        /// The file.
        path: PathBuf,
        /// What is wrong, in the order found.
        problems: Vec<Problem>,
    },
    /// A value that parses but cannot be used.
    #[error("config {path}: field `{field}` = {value:?}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field path, e.g. `routes."example.com"`.
        field: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Joins every relative path of `files` to `base` (the config file's folder).
pub(crate) fn resolve_relative<'a>(base: &Path, files: impl IntoIterator<Item = &'a mut PathBuf>) {
    for file in files.into_iter().filter(|f| f.is_relative()) {
        *file = base.join(&*file);
    }
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("config {}, {p}", path.display()))
        .collect();
    lines.join("\n")
}

impl SendConfig {
    /// A configuration with every default (what an almost empty `volley.toml` gives), for
    /// programs that build their configuration in code.
    pub fn new(state_dir: PathBuf, source_ips: Vec<SourceIpConfig>) -> SendConfig {
        SendConfig {
            state_dir,
            source_ips,
            routes: BTreeMap::new(),
            smtp: SmtpConfig::default(),
            destination: Vec::new(),
            builtin_destinations: true,
            dns: None,
            mta_sts: Default::default(),
            mx_port: default_mx_port(),
            max_in_flight: default_max_in_flight(),
            max_in_flight_per_site: default_max_in_flight_per_site(),
            max_parked: default_max_parked(),
            retry: RetryConfig::default(),
            bounces: BouncesConfig::default(),
            suppression: crate::suppression::SuppressionConfig::default(),
            dkim: Vec::new(),
            dkim_threads: 0,
            warmup: volley_warmup::WarmupConfig::default(),
            api: Default::default(),
            template_dirs: Vec::new(),
            reputation: Default::default(),
            blocklists: None,
            feedback: None,
            inbound: None,
            unsubscribe: None,
            injection: Default::default(),
            submission: None,
            cluster: None,
        }
    }

    /// Reads and validates a config file; relative paths in it are resolved against its folder.
    /// Everything it names is checked too: warm-up curves and backoff rules, DKIM keys (a test
    /// signature each), the bounce rules file.
    pub fn load(path: &Path) -> Result<SendConfig, ConfigError> {
        let config = SendConfig::load_unchecked(path)?;
        // Curves and backoff rules are read and checked before anything starts.
        config.warmup_policy(path)?;
        // Every key is read and checked (a test signature verified) before anything starts.
        config.check_dkim(path, &config.dkim)?;
        config.check_bounces(path)?;
        config.check_tls(path)?;
        config.check_mta_sts_ca(path)?;
        config.check_feedback(path)?;
        Ok(config)
    }

    /// Reads `[mta_sts] ca_file` (PEM trust anchors), when set.
    pub fn check_mta_sts_ca(&self, path: &Path) -> Result<(), ConfigError> {
        let Some(ca) = self.mta_sts.ca_file.as_deref() else {
            return Ok(());
        };
        volley_engine::mta_sts::StsTls::new(Some(ca))
            .map(|_| ())
            .map_err(|e| ConfigError::Invalid {
                path: path.into(),
                field: "mta_sts.ca_file".into(),
                value: ca.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Builds the SMTP client's TLS settings, reading `[smtp] ca_file` when set.
    pub fn check_tls(&self, path: &Path) -> Result<(), ConfigError> {
        self.smtp
            .session_params()
            .map(|_| ())
            .map_err(|e| ConfigError::Invalid {
                path: path.into(),
                field: e.field(),
                value: self
                    .smtp
                    .ca_file
                    .as_deref()
                    .map_or(String::new(), |f| f.display().to_string()),
                reason: e.to_string(),
            })
    }

    /// Reads and validates a config file (its own values; relative paths resolved against its
    /// folder) without reading the files it names: `volley check-config` checks those one by
    /// one so that it can report every problem.
    pub fn load_unchecked(path: &Path) -> Result<SendConfig, ConfigError> {
        let text = read(path)?;
        let mut config = SendConfig::parse(&text, path)?;
        config.resolve_paths(path);
        Ok(config)
    }

    /// Reads a config file and returns it with every problem of its own values (none of the
    /// files it names is read): `volley check-config` reports them all, then goes on with the
    /// other checks when a config could be built. `Err` only when the file cannot be read or
    /// is not TOML.
    pub fn load_collecting(path: &Path) -> Result<(Option<SendConfig>, Vec<Problem>), ConfigError> {
        let (mut config, problems) = collect::parse_collecting(&read(path)?, path)?;
        if let Some(config) = &mut config {
            config.resolve_paths(path);
        }
        Ok((config, problems))
    }

    /// Resolves relative paths against the folder of the config file at `path`.
    fn resolve_paths(&mut self, path: &Path) {
        let config = self;
        if config.state_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.state_dir = base.join(&config.state_dir);
        }
        if let Some(rules) = config.bounces.rules.as_mut().filter(|r| r.is_relative()) {
            *rules = path.parent().unwrap_or(Path::new(".")).join(&*rules);
        }
        let base = path.parent().unwrap_or(Path::new("."));
        if config.warmup.curves_dir.is_relative() {
            config.warmup.curves_dir = base.join(&config.warmup.curves_dir);
        }
        if let Some(rules) = config.warmup.backoff.as_mut().filter(|r| r.is_relative()) {
            *rules = base.join(&*rules);
        }
        for key in &mut config.dkim {
            if key.key.is_relative() {
                key.key = base.join(&key.key);
            }
        }
        config.api.resolve(base);
        for dir in config.template_dirs.iter_mut().filter(|d| d.is_relative()) {
            *dir = base.join(&*dir);
        }
        if let Some(feedback) = &mut config.feedback {
            feedback.resolve(base);
        }
        if let Some(unsubscribe) = &mut config.unsubscribe {
            unsubscribe.resolve(base);
        }
        if let Some(inbound) = &mut config.inbound {
            inbound.resolve(base);
        }
        if let Some(submission) = &mut config.submission {
            submission.resolve(base);
        }
        if let Some(ca) = config.mta_sts.ca_file.as_mut().filter(|f| f.is_relative()) {
            *ca = base.join(&*ca);
        }
    }

    /// Reads `keys` (entries of this config's `[[dkim]]`) and signs and verifies a test
    /// message with each; returns the warnings (e.g. a key file readable by others), which are
    /// also logged. `path` (the config file) is used in messages only.
    pub fn check_dkim(
        &self,
        path: &Path,
        keys: &[volley_engine::dkim::DkimKeyConfig],
    ) -> Result<Vec<String>, ConfigError> {
        match volley_engine::dkim::DkimSigners::load(keys) {
            Ok((_, warnings)) => {
                let warnings: Vec<String> = warnings.into_iter().map(|w| w.to_string()).collect();
                for w in &warnings {
                    tracing::warn!("{}: {w}", path.display());
                }
                Ok(warnings)
            }
            Err(e) => Err(ConfigError::Invalid {
                path: path.into(),
                field: "dkim".into(),
                value: String::new(),
                reason: e.to_string(),
            }),
        }
    }

    /// Reads the feedback token keys (`[feedback] key_file`/`key_env`), when `[feedback]` is set.
    pub fn check_feedback(&self, path: &Path) -> Result<Option<volley_feedback::Keyring>, ConfigError> {
        let Some(feedback) = &self.feedback else {
            return Ok(None);
        };
        feedback
            .keyring()
            .map(Some)
            .map_err(|(field, value, reason)| ConfigError::Invalid {
                path: path.into(),
                field: field.into(),
                value,
                reason,
            })
    }

    /// Reads and checks the bounce rules file (or the embedded rules).
    pub fn check_bounces(&self, path: &Path) -> Result<(), ConfigError> {
        self.bounces.load().map(|_| ()).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            field: "bounces.rules".into(),
            value: self
                .bounces
                .rules
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
                .to_string(),
            reason: e.to_string(),
        })
    }

    /// Parses and validates config text; `path` is used in error messages only. Every problem
    /// is reported at once ([`ConfigError::Problems`]).
    pub fn parse(text: &str, path: &Path) -> Result<SendConfig, ConfigError> {
        match collect::parse_collecting(text, path)? {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError::Problems {
                path: path.into(),
                problems,
            }),
        }
    }

    /// Loads what the warm-up settings name: the curves of the source IPs (from
    /// `warmup.curves_dir`, else the shipped ones), the backoff rules, the provider groups.
    /// `path` (the config file) is used in error messages only.
    pub fn warmup_policy(&self, path: &Path) -> Result<WarmupPolicy, ConfigError> {
        let invalid = |field: String, value: String, reason: String| ConfigError::Invalid {
            path: path.into(),
            field,
            value,
            reason,
        };
        let providers = volley_warmup::Providers::new(&self.warmup.provider_config());
        let mut states = Vec::with_capacity(self.source_ips.len());
        let mut curves = volley_warmup::CurveSet::default();
        for (i, ip) in self.source_ips.iter().enumerate() {
            let state = ip
                .warmup_state()
                .map_err(|e| invalid(format!("source_ips[{i}].warmup"), String::new(), e.to_string()))?;
            if let volley_warmup::WarmupState::Warming { curve, .. } = &state {
                if curves.get(curve).is_none() {
                    let loaded = volley_warmup::CurveSet::load(&self.warmup.curves_dir, [curve.as_str()])
                        .map_err(|e| invalid(format!("source_ips[{i}].warmup"), curve.clone(), e.to_string()))?;
                    for c in loaded.iter() {
                        let file = self.warmup.curves_dir.join(format!("{curve}.toml"));
                        c.check_covers(&providers, &file)
                            .map_err(|e| invalid(format!("source_ips[{i}].warmup"), curve.clone(), e.to_string()))?;
                        curves.insert(c.clone());
                    }
                }
            }
            states.push((ip.address, state));
        }
        let rules = match &self.warmup.backoff {
            Some(file) => volley_warmup::BackoffRules::load(file)
                .map_err(|e| invalid("warmup.backoff".into(), file.display().to_string(), e.to_string()))?,
            None => volley_warmup::BackoffRules::default(),
        };
        Ok(WarmupPolicy {
            curves,
            rules,
            providers,
            states,
        })
    }
}

impl SendConfig {
    /// The `[[destination]]` blocks in effect (the built-in ones included unless turned off)
    /// over the `[smtp]` settings.
    pub fn destination_policies(&self) -> crate::destinations::DestinationPolicies {
        crate::destinations::DestinationPolicies::new(&self.destination, self.builtin_destinations, &self.smtp)
    }

    /// The source IPs of pool `name`, or an error naming the pools that exist.
    pub fn pool(&self, name: &str) -> Result<Vec<&SourceIpConfig>, String> {
        let ips: Vec<_> = self.source_ips.iter().filter(|s| s.pool == name).collect();
        if ips.is_empty() {
            let mut pools: Vec<&str> = self.source_ips.iter().map(|s| s.pool.as_str()).collect();
            pools.sort_unstable();
            pools.dedup();
            return Err(format!(
                "no source IP is in pool `{name}` (pools: {})",
                pools.join(", ")
            ));
        }
        if ips.iter().all(|s| s.weight == 0) {
            return Err(format!("every source IP of pool `{name}` has weight 0"));
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[source_ips]]
address = "127.0.0.2"
ehlo_name = "mta2.volley.test"
[routes]
"*" = "127.0.0.1:2525"
[smtp]
max_connections_per_host = 8
idle_timeout = "5s"
"#;

    #[test]
    fn good_config_loads() {
        let c = SendConfig::parse(GOOD, Path::new("v.toml")).map_err(|e| e.to_string());
        let c = c
            .as_ref()
            .map(|c| (c.source_ips.len(), c.smtp.max_connections_per_host));
        assert_eq!(c, Ok((1, 8)));
    }

    #[test]
    fn errors_name_file_field_and_value() {
        let bad_route = GOOD.replace("127.0.0.1:2525", "nowhere");
        let e = SendConfig::parse(&bad_route, Path::new("v.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("v.toml") && e.contains("routes.\"*\"") && e.contains("nowhere"),
            "{e}"
        );

        let unknown = GOOD.replace("idle_timeout", "idle_timout");
        let e = SendConfig::parse(&unknown, Path::new("v.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("v.toml") && e.contains("idle_timout") && e.contains("line"),
            "{e}"
        );

        let zero = GOOD.replace("max_connections_per_host = 8", "max_connections_per_host = 0");
        let e = SendConfig::parse(&zero, Path::new("v.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("max_connections_per_host"), "{e}");

        let bad_ehlo = GOOD.replace("mta2.volley.test", "bad name");
        let e = SendConfig::parse(&bad_ehlo, Path::new("v.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("source_ips[0].ehlo_name") && e.contains("bad name"), "{e}");
    }

    #[test]
    fn the_mta_sts_ca_file_is_read_at_load_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("volley.toml");
        std::fs::write(&path, format!("{GOOD}[mta_sts]\nca_file = \"private-ca.pem\"\n")).expect("write");
        let e = SendConfig::load(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("mta_sts.ca_file") && e.contains("private-ca.pem"), "{e}");
        std::fs::write(dir.path().join("private-ca.pem"), "no certificate here").expect("write");
        let e = SendConfig::load(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    /// Regression: `[inbound] tls_cert`/`tls_key` are documented as relative to the config
    /// file but were used as given (relative to the working directory), so `volley inbound`
    /// started from another folder could not find them.
    #[test]
    fn inbound_tls_files_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("volley.toml");
        std::fs::write(
            &path,
            format!(
                "{GOOD}[feedback]\nbounce_domain = \"bounce.volley.test\"\nkey_file = \"keys\"\n\
                 [inbound]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"tls/in.crt\"\ntls_key = \"/etc/in.key\"\n"
            ),
        )
        .expect("write");
        let config = SendConfig::load_unchecked(&path).expect("loads");
        let inbound = config.inbound.expect("[inbound]");
        assert_eq!(inbound.tls_cert, Some(dir.path().join("tls/in.crt")));
        assert_eq!(inbound.tls_key, Some(PathBuf::from("/etc/in.key")));
    }

    #[test]
    fn warmup_settings_are_checked_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |text: &str| {
            let path = dir.path().join("volley.toml");
            std::fs::write(&path, text).expect("write");
            SendConfig::load(&path).map_err(|e| e.to_string())
        };
        let warming = GOOD.replace(
            "ehlo_name = \"mta2.volley.test\"",
            "ehlo_name = \"mta2.volley.test\"\nwarmup = \"standard\"\nwarmup_start = \"2026-11-01\"",
        );
        let c = write(&warming).expect("a shipped curve loads without a curves folder");
        let policy = c.warmup_policy(Path::new("v.toml")).expect("policy");
        assert!(policy.curves.get("standard").is_some());
        assert!(matches!(policy.states[0].1, volley_warmup::WarmupState::Warming { .. }));

        let e = write(&warming.replace("\"standard\"", "\"turbo\""))
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("source_ips[0].warmup") && e.contains("turbo") && e.contains("turbo.toml"),
            "{e}"
        );
        let e = write(&warming.replace("warmup_start = \"2026-11-01\"", ""))
            .err()
            .unwrap_or_default();
        assert!(e.contains("source_ips[0].warmup") && e.contains("warmup_start"), "{e}");
        let e = write(&format!("{GOOD}[warmup]\nspeed = 0\n")).err().unwrap_or_default();
        assert!(e.contains("warmup.speed"), "{e}");
        let e = write(&format!("{GOOD}[warmup]\nbackoff = \"nope.toml\"\n"))
            .err()
            .unwrap_or_default();
        assert!(e.contains("warmup.backoff") && e.contains("nope.toml"), "{e}");
    }
}
