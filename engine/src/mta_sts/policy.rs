//! The MTA-STS record and policy formats (RFC 8461 §3.1, §3.2) and MX host patterns (§4.1).
//! Everything here is parsed from peer input: no panics, every refusal says why.

use std::time::Duration;

/// The longest `max_age` honoured (RFC 8461 §3.2: one year).
pub const MAX_AGE_CAP: Duration = Duration::from_secs(31_557_600);

/// What a policy asks of senders (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StsMode {
    /// Deliver only over verified TLS to an MX host the policy names; otherwise defer.
    Enforce,
    /// Deliver as without a policy, and report what would have failed (TLS-RPT).
    Testing,
    /// No policy in effect.
    None,
}

/// One `mx` entry: a host name, or `*.` and a name (matching exactly one more label).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MxPattern(String);

impl MxPattern {
    /// A pattern (lower-cased, trailing dot dropped); `None` when it is not a host name or a
    /// `*.` wildcard over one.
    pub fn new(text: &str) -> Option<MxPattern> {
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let name = text.strip_prefix("*.").unwrap_or(&text);
        let valid_label = |l: &str| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return None;
        }
        Some(MxPattern(text))
    }

    /// Whether MX host `host` matches (case-insensitive, trailing dot ignored). A wildcard
    /// covers exactly one label to its left (RFC 8461 §4.1: `*.example.com` matches
    /// `mx1.example.com`, not `example.com` nor `a.b.example.com`).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self.0.strip_prefix("*.") {
            Some(suffix) => match host.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(suffix),
                None => false,
            },
            None => host.eq_ignore_ascii_case(&self.0),
        }
    }

    /// The pattern as written in the policy (lower case).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MxPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether any of `patterns` matches `host`.
pub fn mx_allowed(patterns: &[MxPattern], host: &str) -> bool {
    patterns.iter().any(|p| p.matches(host))
}

/// A policy file's content.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyBody {
    /// `mode`.
    pub mode: StsMode,
    /// `mx` entries (none only with mode `none`).
    pub mx: Vec<MxPattern>,
    /// `max_age`, capped at [`MAX_AGE_CAP`].
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// Why a TXT record or a policy file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The TXT record is not a `v=STSv1` record with a valid `id`.
    #[error("TXT record {record:?}: {reason}")]
    Record {
        /// The record (shortened).
        record: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The policy file is not a valid STSv1 policy.
    #[error("policy line {line}: {reason}")]
    Policy {
        /// The 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The `key=value` fields of a TXT record whose first field is `v=<version>` (RFC 8461 §3.1,
/// RFC 8460 §3: `;`-separated, whitespace around them ignored).
fn tagged_fields<'a>(record: &'a str, version: &str) -> Result<Vec<(&'a str, &'a str)>, PolicyError> {
    let mut fields = record
        .split(';')
        .filter_map(|f| f.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()));
    match fields.next() {
        Some(("v", v)) if v == version => Ok(fields.collect()),
        _ => Err(record_error(record, "does not start with the version field")),
    }
}

fn record_error(record: &str, reason: &'static str) -> PolicyError {
    PolicyError::Record {
        record: record.chars().take(100).collect(),
        reason,
    }
}

/// The value of `key` among `fields`.
fn field<'a>(fields: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The `id` of an `_mta-sts` TXT record (RFC 8461 §3.1: `v=STSv1` first, `id` of 1 to 32
/// letters and digits; other fields ignored).
pub fn parse_record(record: &str) -> Result<String, PolicyError> {
    let fields = tagged_fields(record, "STSv1")?;
    let id = field(&fields, "id").ok_or_else(|| record_error(record, "no id field"))?;
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(record_error(record, "id must be 1 to 32 letters and digits"));
    }
    Ok(id.to_string())
}

/// The `rua` URIs of an `_smtp._tls` TXT record (RFC 8460 §3: `v=TLSRPTv1` first, `rua` a
/// comma-separated list of `mailto:` and `https:` URIs; others are ignored).
pub fn parse_tlsrpt_record(record: &str) -> Result<Vec<String>, PolicyError> {
    let fields = tagged_fields(record, "TLSRPTv1")?;
    let rua = field(&fields, "rua").ok_or_else(|| record_error(record, "no rua field"))?;
    let uris: Vec<String> = rua
        .split(',')
        .map(str::trim)
        .filter(|u| {
            let lower = u.to_ascii_lowercase();
            lower.starts_with("mailto:") || lower.starts_with("https://")
        })
        .map(str::to_string)
        .collect();
    if uris.is_empty() {
        return Err(record_error(record, "rua has no mailto: or https: URI"));
    }
    Ok(uris)
}

/// Parses a policy file (RFC 8461 §3.2): `key: value` lines (CRLF or LF), `version: STSv1`,
/// `mode`, `max_age` (seconds, capped at one year), `mx` (repeated; required unless mode is
/// `none`). Unknown keys are ignored; a repeated single-valued key is an error.
pub fn parse_policy(text: &str) -> Result<PolicyBody, PolicyError> {
    let err = |line: usize, reason: String| PolicyError::Policy { line, reason };
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| err(n, format!("{line:?} is not `key: value`")))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "version" => {
                once(&version, n, key)?;
                if value != "STSv1" {
                    return Err(err(n, format!("version {value:?} is not STSv1")));
                }
                version = Some(());
            }
            "mode" => {
                once(&mode, n, key)?;
                mode = Some(match value {
                    "enforce" => StsMode::Enforce,
                    "testing" => StsMode::Testing,
                    "none" => StsMode::None,
                    other => return Err(err(n, format!("mode {other:?} is not enforce, testing or none"))),
                });
            }
            "max_age" => {
                once(&max_age, n, key)?;
                // RFC 8461 §3.2: up to 10 digits.
                let secs: u64 = (value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| value.parse().ok())
                    .flatten()
                    .ok_or_else(|| err(n, format!("max_age {value:?} is not a number of seconds")))?;
                max_age = Some(Duration::from_secs(secs).min(MAX_AGE_CAP));
            }
            "mx" => mx.push(MxPattern::new(value).ok_or_else(|| err(n, format!("mx {value:?} is not a host name")))?),
            _ => {} // RFC 8461 §3.2: unknown fields are ignored
        }
    }
    version.ok_or_else(|| err(0, "no version field".into()))?;
    let mode = mode.ok_or_else(|| err(0, "no mode field".into()))?;
    let max_age = max_age.ok_or_else(|| err(0, "no max_age field".into()))?;
    if mx.is_empty() && mode != StsMode::None {
        return Err(err(0, "no mx field".into()));
    }
    Ok(PolicyBody { mode, mx, max_age })
}

/// A single-valued key seen a second time is an error.
fn once<T>(slot: &Option<T>, line: usize, key: &str) -> Result<(), PolicyError> {
    match slot {
        Some(_) => Err(PolicyError::Policy {
            line,
            reason: format!("{key} given twice"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_parses_with_crlf_or_lf_and_ignores_unknown_keys() {
        let text = "version: STSv1\r\nmode: enforce\r\nmx: mx1.Example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\nextension: x\r\n";
        let p = parse_policy(text).expect("valid");
        assert_eq!(p.mode, StsMode::Enforce);
        assert_eq!(p.max_age, Duration::from_secs(604_800));
        let mx: Vec<&str> = p.mx.iter().map(MxPattern::as_str).collect();
        assert_eq!(mx, ["mx1.example.com", "*.example.net"]);
        let lf = parse_policy("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 86400\n").expect("valid");
        assert_eq!(lf.mode, StsMode::Testing);
    }

    #[test]
    fn max_age_is_capped_at_one_year() {
        let p = parse_policy("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 9999999999\n").expect("valid");
        assert_eq!(p.max_age, MAX_AGE_CAP);
    }

    #[test]
    fn bad_policies_are_refused_with_the_line() {
        let cases = [
            ("mode: enforce\nmx: a.test\nmax_age: 1\n", 0, "no version"),
            (
                "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
                1,
                "not STSv1",
            ),
            ("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", 2, "strict"),
            ("version: STSv1\nmode: enforce\nmax_age: 1\n", 0, "no mx"),
            ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -5\n", 4, "max_age"),
            (
                "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 99999999999\n",
                4,
                "max_age",
            ),
            (
                "version: STSv1\nmode: enforce\nmode: testing\nmx: a.test\nmax_age: 1\n",
                3,
                "twice",
            ),
            (
                "version: STSv1\nmode: enforce\nmx: bad host\nmax_age: 1\n",
                3,
                "not a host name",
            ),
            ("version: STSv1\ngarbage\n", 2, "not `key: value`"),
            ("<html>not a policy</html>", 1, "not `key: value`"),
        ];
        for (text, line, reason) in cases {
            match parse_policy(text) {
                Err(PolicyError::Policy { line: l, reason: r }) => {
                    assert_eq!(l, line, "{text:?}: {r}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let none = parse_policy("version: STSv1\nmode: none\nmax_age: 1\n").expect("mode none needs no mx");
        assert!(none.mx.is_empty());
    }

    #[test]
    fn the_record_gives_its_id() {
        assert_eq!(
            parse_record("v=STSv1; id=20160831085700Z;").as_deref(),
            Ok("20160831085700Z")
        );
        assert_eq!(parse_record("v=STSv1;id=abc; ext=1").as_deref(), Ok("abc"));
        for bad in [
            "v=STSv2; id=1",
            "id=1; v=STSv1",
            "v=STSv1",
            "v=STSv1; id=a-b",
            "v=STSv1; id=",
        ] {
            assert!(parse_record(bad).is_err(), "{bad}");
        }
        assert!(parse_record(&format!("v=STSv1; id={}", "a".repeat(33))).is_err());
    }

    #[test]
    fn the_tlsrpt_record_gives_its_report_addresses() {
        let rua = parse_tlsrpt_record("v=TLSRPTv1; rua=mailto:tls@a.test, https://r.a.test/tls,ftp://x");
        assert_eq!(
            rua.ok(),
            Some(vec![
                "mailto:tls@a.test".to_string(),
                "https://r.a.test/tls".to_string()
            ])
        );
        assert!(parse_tlsrpt_record("v=TLSRPTv2; rua=mailto:a@b").is_err());
        assert!(parse_tlsrpt_record("v=TLSRPTv1;").is_err());
    }

    #[test]
    fn wildcards_cover_exactly_one_label() {
        let wild = MxPattern::new("*.Example.com").expect("valid");
        assert!(wild.matches("mx1.example.com"));
        assert!(wild.matches("MX1.EXAMPLE.COM."));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("a.b.example.com"));
        assert!(!wild.matches("mx1.example.org"));
        let exact = MxPattern::new("mx.example.com.").expect("valid");
        assert!(exact.matches("MX.example.com"));
        assert!(!exact.matches("mx2.example.com"));
        assert!(!exact.matches("a.mx.example.com"));
        assert!(mx_allowed(&[exact, wild], "x.example.com"));
        assert!(MxPattern::new("*.").is_none() && MxPattern::new("a..b").is_none());
        assert!(MxPattern::new("**.a.com").is_none());
    }
}
