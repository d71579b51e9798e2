//! [`Scenario`]: the TOML file `volley-bench run` reads, its defaults, validation and the
//! command-line overrides ([`Overrides`]).

use std::path::Path;
use std::time::Duration;

use super::domains::{check_groups, DomainGroup};
use super::error::ScenarioError;

/// The built-in default scenario (`benches/scenarios/default.toml`).
pub const DEFAULT_SCENARIO: &str = include_str!("../../scenarios/default.toml");

/// The name errors give the built-in default scenario.
pub const BUILTIN_NAME: &str = "<built-in default scenario>";

/// Most recipients a scenario may generate.
pub const MAX_RECIPIENTS: u64 = 50_000_000;
/// Largest `message_size` in bytes.
pub const MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;
/// Smallest `message_size` in bytes (the greeting line of the body).
pub const MIN_MESSAGE_SIZE: usize = 64;
/// Most source IPs (127.0.0.2 ..= 127.0.0.251).
pub const MAX_SOURCE_IPS: u8 = 250;
/// Most sink processes.
pub const MAX_SINKS: usize = 16;

/// DKIM signing in a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DkimMode {
    /// No signature.
    Off,
    /// RSA-2048 (`rsa-sha256`).
    Rsa,
    /// Ed25519 (`ed25519-sha256`).
    Ed25519,
}

/// The sink side: what every sink process offers and which faults it injects (the flags of
/// `volley sink`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    /// Percentage of RCPT commands answered 451 4.3.0 (`--tempfail`).
    #[serde(default)]
    pub tempfail: f64,
    /// Percentage of RCPT commands answered 550 5.1.1 (`--permfail`).
    #[serde(default)]
    pub permfail: f64,
    /// Percentage of transactions whose connection is dropped without a reply (`--drop`).
    #[serde(default)]
    pub drop: f64,
    /// Delay added once per reply batch, e.g. `"5ms"` (`--latency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    /// Reply faults, `STAGE:KIND[:ARG][@PCT][#COUNT]` each (`--fault`).
    #[serde(default)]
    pub faults: Vec<String>,
    /// STARTTLS faults, `KIND[:ARG][@PCT][#COUNT]` each (`--tls-fault`).
    #[serde(default)]
    pub tls_faults: Vec<String>,
    /// Connections served at once, all clients together (`--max-connections`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Connections served at once per client address (`--max-connections-per-client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<usize>,
    /// Percentage of recipients greylisted: 451 on the first RCPT from a client /24, accepted
    /// on any later attempt (`--greylist`).
    #[serde(default)]
    pub greylist: f64,
    /// Canned replies for every recipient of the sink (written to a file for `--canned`, with
    /// `domain = "*"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canned: Vec<CannedSpec>,
    /// Further `volley sink` flags, passed as they are.
    #[serde(default)]
    pub args: Vec<String>,
}

/// One canned reply of a scenario's sink (`volley sink --canned`), for every recipient domain.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedSpec {
    /// `connect`, `ehlo`, `mail`, `rcpt` or `data`.
    pub stage: String,
    /// The reply, e.g. `"421 4.7.28 rate limited"` (lines separated by `\r\n`).
    pub text: String,
    /// Chance per occurrence, percent (default 100).
    #[serde(default = "hundred")]
    pub percent: f64,
}

impl CannedSpec {
    /// The reply code (`421` for `"421 4.7.0 ..."`), 0 when the text has none.
    pub fn code(&self) -> u16 {
        self.text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// Checks the stage, percentage and code; the reason names what is wrong.
    fn check(&self) -> Result<(), (&'static str, String, String)> {
        const STAGES: [&str; 5] = ["connect", "ehlo", "mail", "rcpt", "data"];
        if !STAGES.contains(&self.stage.as_str()) {
            let reason = format!("must be one of {}", STAGES.join(", "));
            return Err(("stage", format!("{:?}", self.stage), reason));
        }
        if !(self.percent.is_finite() && (0.0..=100.0).contains(&self.percent)) {
            let reason = "must be a percentage between 0 and 100".to_owned();
            return Err(("percent", self.percent.to_string(), reason));
        }
        if !matches!(self.code() / 100, 2 | 4 | 5) {
            let reason = "must start with a 2xx, 4xx or 5xx reply code".to_owned();
            return Err(("text", format!("{:?}", self.text), reason));
        }
        Ok(())
    }
}

fn hundred() -> f64 {
    100.0
}

impl SinkSpec {
    /// Checks every field; the error is (field, value, reason), the field relative to the spec.
    pub(crate) fn check(&self) -> Result<(), (String, String, String)> {
        let s = self;
        for (field, pct) in [
            ("tempfail", s.tempfail),
            ("permfail", s.permfail),
            ("drop", s.drop),
            ("greylist", s.greylist),
        ] {
            if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
                let reason = "must be a percentage between 0 and 100".to_owned();
                return Err((field.to_owned(), pct.to_string(), reason));
            }
        }
        if let Some(latency) = &s.latency {
            if let Err(e) = humantime::parse_duration(latency) {
                let reason = format!("not a duration like \"5ms\": {e}");
                return Err(("latency".to_owned(), format!("{latency:?}"), reason));
            }
        }
        for (field, cap) in [
            ("max_connections", s.max_connections),
            ("max_connections_per_client", s.max_connections_per_client),
        ] {
            if cap == Some(0) {
                return Err((field.to_owned(), "0".to_owned(), "must be at least 1".to_owned()));
            }
        }
        for (i, spec) in s.faults.iter().enumerate() {
            if let Err(reason) = spec.parse::<crate::Fault>() {
                return Err((format!("faults[{i}]"), format!("{spec:?}"), reason));
            }
        }
        for (i, spec) in s.tls_faults.iter().enumerate() {
            if let Err(reason) = spec.parse::<crate::TlsFault>() {
                return Err((format!("tls_faults[{i}]"), format!("{spec:?}"), reason));
            }
        }
        for (i, reply) in s.canned.iter().enumerate() {
            reply
                .check()
                .map_err(|(field, value, reason)| (format!("canned[{i}].{field}"), value, reason))?;
        }
        Ok(())
    }

    /// The delay per reply batch (`latency`), zero when unset.
    pub fn latency(&self) -> Duration {
        self.latency
            .as_deref()
            .and_then(|l| humantime::parse_duration(l).ok())
            .unwrap_or(Duration::ZERO)
    }

    /// The `volley sink --canned` file of `canned` (`[[reply]]` tables, `domain = "*"`).
    pub fn canned_file(&self) -> String {
        let mut out = String::from("# Written by volley-bench run.\n");
        for reply in &self.canned {
            let mut table = toml::Table::new();
            table.insert("domain".into(), "*".into());
            table.insert("stage".into(), reply.stage.clone().into());
            table.insert("text".into(), reply.text.clone().into());
            table.insert("percent".into(), reply.percent.into());
            out.push_str("\n[[reply]]\n");
            out.push_str(&toml::to_string(&table).unwrap_or_default());
        }
        out
    }
}

/// A benchmark scenario: the recipient list to generate, the message, DKIM, source IPs, TLS,
/// the sinks and their faults. Every field but `domains` has a default (those of
/// `benches/scenarios/default.toml`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Recipients to generate (one message each).
    #[serde(default = "default_recipients")]
    pub recipients: u64,
    /// Size of the text body in bytes (the message adds ~0.5 KB of headers, more with DKIM).
    #[serde(default = "default_message_size")]
    pub message_size: usize,
    /// DKIM signing: `off`, `rsa` or `ed25519` (a key is generated for the run).
    #[serde(default = "default_dkim")]
    pub dkim: DkimMode,
    /// Source IPs, 127.0.0.2 onwards.
    #[serde(default = "default_source_ips")]
    pub source_ips: u8,
    /// Whether the sinks offer STARTTLS and volley uses it (`tls = "opportunistic"`); without,
    /// the sinks do not offer it and volley's `tls = "disabled"`.
    #[serde(default = "default_tls")]
    pub tls: bool,
    /// Sink processes shared by the domain groups without a `sink` table of their own; the
    /// `g`-th such group is routed to shared sink `g % sinks`. A group with its own `sink`
    /// table gets a sink process of its own with those settings (not `[sink]`'s).
    #[serde(default = "default_sinks")]
    pub sinks: usize,
    /// Seed of the recipient list's shuffle: the same seed writes the same file.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Wait before every retry of a deferred recipient (volley's `[retry] schedule`).
    #[serde(default = "default_retry_after")]
    pub retry_after: String,
    /// Longest the `volley send` child may run before it is killed and the run fails.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// The sinks' settings and faults.
    #[serde(default)]
    pub sink: SinkSpec,
    /// The domain mix.
    pub domains: Vec<DomainGroup>,
    /// Extra settings merged into the generated `volley.toml` (tables merge, values replace),
    /// e.g. `[volley_config.smtp] max_connections_per_host = 64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volley_config: Option<toml::Table>,
}

fn default_recipients() -> u64 {
    100_000
}
fn default_message_size() -> usize {
    4096
}
fn default_dkim() -> DkimMode {
    DkimMode::Off
}
fn default_source_ips() -> u8 {
    4
}
fn default_tls() -> bool {
    true
}
fn default_sinks() -> usize {
    1
}
fn default_seed() -> u64 {
    1
}
fn default_retry_after() -> String {
    "1s".to_owned()
}
fn default_timeout() -> String {
    "30m".to_owned()
}

/// Command-line values that replace the scenario file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--recipients`.
    pub recipients: Option<u64>,
    /// `--message-size`.
    pub message_size: Option<usize>,
    /// `--dkim`.
    pub dkim: Option<DkimMode>,
    /// `--source-ips`.
    pub source_ips: Option<u8>,
    /// `--sinks`.
    pub sinks: Option<usize>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--tls` / `--no-tls`.
    pub tls: Option<bool>,
    /// `--tempfail`.
    pub tempfail: Option<f64>,
    /// `--permfail`.
    pub permfail: Option<f64>,
    /// `--fault` (replaces the file's `sink.faults` when given at least once).
    pub faults: Vec<String>,
}

impl Scenario {
    /// The built-in default scenario.
    pub fn builtin() -> Result<Scenario, ScenarioError> {
        Scenario::parse(DEFAULT_SCENARIO, Path::new(BUILTIN_NAME))
    }

    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(ScenarioError::io(path))?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario TOML; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            file: file.to_path_buf(),
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim().to_owned(),
        })?;
        scenario.validate(file)?;
        Ok(scenario)
    }

    /// Applies command-line overrides and validates the result (errors name `<command line>`).
    pub fn apply(&mut self, overrides: &Overrides) -> Result<(), ScenarioError> {
        let o = overrides;
        set(&mut self.recipients, o.recipients);
        set(&mut self.message_size, o.message_size);
        set(&mut self.dkim, o.dkim);
        set(&mut self.source_ips, o.source_ips);
        set(&mut self.sinks, o.sinks);
        set(&mut self.seed, o.seed);
        set(&mut self.tls, o.tls);
        set(&mut self.sink.tempfail, o.tempfail);
        set(&mut self.sink.permfail, o.permfail);
        if !o.faults.is_empty() {
            self.sink.faults.clone_from(&o.faults);
        }
        self.validate(Path::new("<command line>"))
    }

    /// The wait before each retry.
    pub fn retry_after(&self) -> Duration {
        humantime::parse_duration(&self.retry_after).unwrap_or(Duration::from_secs(1))
    }

    /// The `volley send` time limit.
    pub fn timeout(&self) -> Duration {
        humantime::parse_duration(&self.timeout).unwrap_or(Duration::from_secs(1800))
    }

    /// Checks every field; the error names `file`, the field and its value.
    pub fn validate(&self, file: &Path) -> Result<(), ScenarioError> {
        let invalid = |field: &str, value: String, reason: String| ScenarioError::Invalid {
            file: file.to_path_buf(),
            field: field.to_owned(),
            value,
            reason,
        };
        if self.recipients == 0 || self.recipients > MAX_RECIPIENTS {
            let reason = format!("must be between 1 and {MAX_RECIPIENTS}");
            return Err(invalid("recipients", self.recipients.to_string(), reason));
        }
        if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&self.message_size) {
            let reason = format!("must be between {MIN_MESSAGE_SIZE} and {MAX_MESSAGE_SIZE} bytes");
            return Err(invalid("message_size", self.message_size.to_string(), reason));
        }
        if self.source_ips == 0 || self.source_ips > MAX_SOURCE_IPS {
            let reason = format!("must be between 1 and {MAX_SOURCE_IPS} (127.0.0.2 onwards)");
            return Err(invalid("source_ips", self.source_ips.to_string(), reason));
        }
        if self.sinks == 0 || self.sinks > MAX_SINKS {
            let reason = format!("must be between 1 and {MAX_SINKS}");
            return Err(invalid("sinks", self.sinks.to_string(), reason));
        }
        for (field, value) in [("retry_after", &self.retry_after), ("timeout", &self.timeout)] {
            match humantime::parse_duration(value) {
                Ok(d) if !d.is_zero() => {}
                Ok(_) => {
                    return Err(invalid(
                        field,
                        format!("{value:?}"),
                        "must be longer than zero".to_owned(),
                    ))
                }
                Err(e) => {
                    return Err(invalid(
                        field,
                        format!("{value:?}"),
                        format!("not a duration like \"1s\": {e}"),
                    ))
                }
            }
        }
        self.validate_sink(file)?;
        check_groups(&self.domains).map_err(|(field, value, reason)| invalid(&field, value, reason))
    }

    fn validate_sink(&self, file: &Path) -> Result<(), ScenarioError> {
        let invalid = |field: String, value: String, reason: String| ScenarioError::Invalid {
            file: file.to_path_buf(),
            field,
            value,
            reason,
        };
        let own = self
            .domains
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((format!("domains[{i}].sink"), g.sink.as_ref()?)));
        for (prefix, s) in std::iter::once(("sink".to_owned(), &self.sink)).chain(own) {
            s.check()
                .map_err(|(field, value, reason)| invalid(format!("{prefix}.{field}"), value, reason))?;
        }
        Ok(())
    }

    /// The `volley sink` flags of a sink with `spec` (besides `--listen`); `canned` is the file
    /// its canned replies were written to (see [`SinkSpec::canned_file`]).
    pub fn sink_flags(&self, spec: &SinkSpec, canned: Option<&Path>) -> Vec<String> {
        let s = spec;
        let mut flags = Vec::new();
        if !self.tls {
            flags.push("--no-starttls".to_owned());
        }
        for (flag, pct) in [
            ("--tempfail", s.tempfail),
            ("--permfail", s.permfail),
            ("--drop", s.drop),
            ("--greylist", s.greylist),
        ] {
            if pct > 0.0 {
                flags.extend([flag.to_owned(), pct.to_string()]);
            }
        }
        if let Some(latency) = &s.latency {
            flags.extend(["--latency".to_owned(), latency.clone()]);
        }
        for (flag, cap) in [
            ("--max-connections", s.max_connections),
            ("--max-connections-per-client", s.max_connections_per_client),
        ] {
            if let Some(cap) = cap {
                flags.extend([flag.to_owned(), cap.to_string()]);
            }
        }
        if let Some(path) = canned.filter(|_| !s.canned.is_empty()) {
            flags.extend(["--canned".to_owned(), path.display().to_string()]);
        }
        for spec in &s.faults {
            flags.extend(["--fault".to_owned(), spec.clone()]);
        }
        for spec in &s.tls_faults {
            flags.extend(["--tls-fault".to_owned(), spec.clone()]);
        }
        flags.extend(s.args.iter().cloned());
        flags
    }

    /// Total domains over every group.
    pub fn domain_count(&self) -> u64 {
        self.domains.iter().map(|g| u64::from(g.len())).sum()
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, Path::new("s.toml"))
    }

    const MIX: &str = "[[domains]]\nname = \"a\"\nweight = 1\ndomain = \"a.test\"\n";

    #[test]
    fn the_builtin_default_is_the_documented_one() {
        let s = Scenario::builtin().unwrap();
        assert_eq!(
            (s.recipients, s.message_size, s.dkim, s.source_ips),
            (100_000, 4096, DkimMode::Off, 4)
        );
        assert!(s.tls && s.sinks == 1);
        let mix: Vec<(&str, f64, u32)> = s.domains.iter().map(|g| (g.name.as_str(), g.weight, g.len())).collect();
        assert_eq!(
            mix,
            [
                ("gmail-like", 30.0, 1),
                ("outlook-like", 15.0, 1),
                ("yahoo-like", 10.0, 1),
                ("tail", 45.0, 1000)
            ]
        );
        assert_eq!(s.domain_count(), 1003);
        assert!(s.sink_flags(&s.sink, None).is_empty());
        // A file with only the mix gets the same defaults.
        let minimal = parse(MIX).unwrap();
        assert_eq!(
            (minimal.recipients, minimal.message_size, minimal.source_ips),
            (100_000, 4096, 4)
        );
    }

    #[test]
    fn the_shipped_scenarios_parse() {
        let load = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{name}.toml"));
            Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"))
        };
        for name in ["default", "dkim-rsa", "faults"] {
            assert_eq!(load(name).domain_count(), 1003, "{name}");
        }
        // Issue 15's mix: 10,000 tail domains with 1-3 messages each, 3 providers.
        let s = load("receivers");
        assert_eq!(s.domain_count(), 10_003);
        let weights: f64 = s.domains.iter().map(|g| g.weight).sum();
        assert_eq!(weights, s.recipients as f64, "the weights are the exact counts");
        let per_domain: Vec<f64> = s.domains[3..].iter().map(|g| g.weight / f64::from(g.len())).collect();
        assert_eq!(per_domain, [1.0, 2.0, 3.0]);
        assert!(s.domains.iter().all(|g| g
            .sink
            .as_ref()
            .is_some_and(|k| k.latency() == Duration::from_millis(50))));
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let err = parse(&format!("recipients = 10\nrecipents = 5\n{MIX}")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("s.toml:2:"), "{text}");
        assert!(text.contains("recipents"), "{text}");
        let err = parse(&format!("{MIX}[sink]\ntempfial = 5\n")).unwrap_err().to_string();
        assert!(err.contains("tempfial"), "{err}");
        let err = parse("dkim = \"dsa\"\n").unwrap_err().to_string();
        assert!(err.contains("dsa"), "{err}");
    }

    #[test]
    fn bad_values_name_file_field_and_value() {
        let cases = [
            ("recipients = 0", "recipients = 0"),
            ("message_size = 10", "message_size = 10"),
            ("source_ips = 251", "source_ips = 251"),
            ("sinks = 0", "sinks = 0"),
            ("retry_after = \"soon\"", "retry_after = \"soon\""),
            ("timeout = \"0s\"", "timeout = \"0s\""),
            ("[sink]\ntempfail = 101", "sink.tempfail = 101"),
            ("[sink]\nlatency = \"fast\"", "sink.latency = \"fast\""),
            (
                "[sink]\nfaults = [\"rcpt:close\", \"nowhere:close\"]",
                "sink.faults[1] = \"nowhere:close\"",
            ),
            ("[sink]\ntls_faults = [\"melt\"]", "sink.tls_faults[0] = \"melt\""),
            ("[sink]\ngreylist = -1", "sink.greylist = -1"),
            (
                "[sink]\nmax_connections_per_client = 0",
                "sink.max_connections_per_client = 0",
            ),
            (
                "[sink]\ncanned = [{ stage = \"quit\", text = \"421 bye\" }]",
                "sink.canned[0].stage = \"quit\"",
            ),
            (
                "[sink]\ncanned = [{ stage = \"rcpt\", text = \"hello\" }]",
                "sink.canned[0].text = \"hello\"",
            ),
        ];
        for (line, expected) in cases {
            // Top-level keys go before the mix, tables after it.
            let text = if line.starts_with('[') {
                format!("{MIX}{line}\n")
            } else {
                format!("{line}\n{MIX}")
            };
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("s.toml: {expected}:")), "{line}: {err}");
        }
        let err = parse("[[domains]]\nname = \"a\"\nweight = -1\ndomain = \"a.test\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml: domains[0].weight = -1:"), "{err}");
        let err = parse("recipients = 5\n").unwrap_err().to_string();
        assert!(err.contains("domains"), "{err}");
    }

    #[test]
    fn overrides_replace_the_file_and_are_checked() {
        let mut s = parse(&format!("[sink]\nfaults = [\"rcpt:close@1\"]\n{MIX}")).unwrap();
        let o = Overrides {
            recipients: Some(2000),
            dkim: Some(DkimMode::Ed25519),
            source_ips: Some(2),
            tempfail: Some(5.0),
            tls: Some(false),
            faults: vec!["data-end:delay:10ms@2".to_owned()],
            ..Overrides::default()
        };
        s.apply(&o).unwrap();
        assert_eq!((s.recipients, s.dkim, s.source_ips), (2000, DkimMode::Ed25519, 2));
        assert_eq!(s.sink.faults, ["data-end:delay:10ms@2"]);
        assert_eq!(
            s.sink_flags(&s.sink, None),
            ["--no-starttls", "--tempfail", "5", "--fault", "data-end:delay:10ms@2"]
        );
        let err = s
            .apply(&Overrides {
                permfail: Some(200.0),
                ..Overrides::default()
            })
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("<command line>: sink.permfail = 200:"), "{err}");
    }
}
