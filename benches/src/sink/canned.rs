//! Canned replies: provider-style reply texts that replace the sink's normal reply at one
//! SMTP stage, loaded from TOML and checked before the sink starts.
//!
//! Our own file format is a list of `[[reply]]` tables:
//!
//! ```toml
//! [[reply]]
//! domain = "*.yahoo.test"     # exact "yahoo.test", suffix "*.yahoo.test", or "*"
//! stage = "rcpt"              # connect | ehlo | mail | rcpt | data
//! text = "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred"
//! percent = 100               # optional, default 100
//! ```
//!
//! The shared provider file (`[[reply]]` with `provider`, `stage`, `text`, `kind`) is read by
//! [`CannedReply::from_provider_file`], which maps each provider to domain patterns.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::config::is_percentage;
use super::error::SinkError;

/// The SMTP stage a canned reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The greeting: a 4xx/5xx canned banner is sent and the connection closed.
    Connect,
    /// The reply to EHLO (and HELO).
    Ehlo,
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to RCPT TO, for recipients whose domain matches.
    Rcpt,
    /// The final reply after the dot, when the transaction's first accepted recipient's domain
    /// matches.
    Data,
}

impl Stage {
    /// Every stage, in protocol order.
    pub const ALL: [Stage; 5] = [Stage::Connect, Stage::Ehlo, Stage::Mail, Stage::Rcpt, Stage::Data];

    /// Position in [`Stage::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether the reply's `domain` pattern is consulted at this stage.
    pub fn uses_domain(self) -> bool {
        matches!(self, Stage::Rcpt | Stage::Data)
    }
}

/// One canned reply. Placeholders in `text`: `{ip}` (client IP), `{rcpt}` (the recipient, or
/// the sender at the mail stage) and `{domain}` (its domain); they are empty where unknown.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedReply {
    /// Recipient domain: exact `yahoo.test`, subdomains `*.yahoo.test` (not `yahoo.test`
    /// itself), or `*`. Ignored at the connect, ehlo and mail stages, which apply to every
    /// connection.
    pub domain: String,
    /// The stage this reply answers.
    pub stage: Stage,
    /// The full reply: one or more lines `"<code> <text>"` separated by `"\r\n"` (or `"\n"`).
    /// Continuation markers are normalised, so every line may be written `"550 ..."`.
    pub text: String,
    /// Probability in percent (0..=100) that the reply is used at each occurrence.
    #[serde(default = "hundred")]
    pub percent: f64,
}

fn hundred() -> f64 {
    100.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedFile {
    #[serde(default)]
    reply: Vec<CannedReply>,
}

/// A `[[reply]]` table of the shared provider file. Unknown fields are tolerated: the file is
/// shared with other tools that may extend it.
#[derive(Deserialize)]
struct ProviderReply {
    provider: String,
    stage: Stage,
    text: String,
}

#[derive(Deserialize)]
struct ProviderFile {
    #[serde(default)]
    reply: Vec<ProviderReply>,
}

impl CannedReply {
    /// A reply used every time (`percent` 100) at `stage` for `domain` (a pattern as in the
    /// file: exact, `*.suffix` or `*`).
    pub fn always(domain: &str, stage: Stage, text: &str) -> CannedReply {
        CannedReply {
            domain: domain.into(),
            stage,
            text: text.into(),
            percent: 100.0,
        }
    }

    /// Reads our canned-reply file (`[[reply]]` tables with `domain`, `stage`, `text`,
    /// `percent`). Errors name the file, the table index and the field.
    pub fn load_file(path: &Path) -> Result<Vec<CannedReply>, SinkError> {
        let file: CannedFile = parse_toml(path)?;
        validate_all(&file.reply, path)?;
        Ok(file.reply)
    }

    /// Reads the shared provider file (`[[reply]]` tables with `provider`, `stage`, `text`,
    /// `kind`) and turns each reply of a listed provider into one canned reply per domain
    /// pattern given for it, with `percent = 100`. Replies of unlisted providers are skipped.
    ///
    /// `provider_domains` pairs a provider name with a domain pattern, e.g.
    /// `[("yahoo", "*.yahoo.test"), ("yahoo", "yahoo.test")]`.
    pub fn from_provider_file(path: &Path, provider_domains: &[(&str, &str)]) -> Result<Vec<CannedReply>, SinkError> {
        let file: ProviderFile = parse_toml(path)?;
        let mut replies = Vec::new();
        for reply in &file.reply {
            for (_, pattern) in provider_domains
                .iter()
                .filter(|(provider, _)| provider.eq_ignore_ascii_case(&reply.provider))
            {
                replies.push(CannedReply {
                    domain: (*pattern).to_owned(),
                    stage: reply.stage,
                    text: reply.text.clone(),
                    percent: 100.0,
                });
            }
        }
        validate_all(&replies, path)?;
        Ok(replies)
    }
}

fn parse_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, SinkError> {
    let text = std::fs::read_to_string(path).map_err(|source| SinkError::CannedRead {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| SinkError::CannedParse {
        path: path.to_owned(),
        source,
    })
}

fn validate_all(replies: &[CannedReply], path: &Path) -> Result<(), SinkError> {
    for (index, reply) in replies.iter().enumerate() {
        compile(reply).map_err(|(field, reason)| SinkError::CannedField {
            path: path.to_owned(),
            index,
            field,
            reason,
        })?;
    }
    Ok(())
}

/// Which recipient domains a canned reply applies to; patterns and domains are lowercase.
#[derive(Debug)]
enum DomainPattern {
    Any,
    Exact(Box<str>),
    /// Includes the leading dot: `*.yahoo.test` is stored as `.yahoo.test`.
    Suffix(Box<str>),
}

impl DomainPattern {
    fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim().to_ascii_lowercase();
        if pattern == "*" {
            return Ok(DomainPattern::Any);
        }
        let (body, make): (&str, fn(Box<str>) -> Self) = match pattern.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') => (rest, DomainPattern::Suffix),
            Some(_) => return Err(format!("{pattern:?}: '*' is only allowed as \"*\" or \"*.<domain>\"")),
            None => (pattern.as_str(), DomainPattern::Exact),
        };
        let name = body.strip_prefix('.').unwrap_or(body);
        if name.split('.').any(str::is_empty)
            || name
                .chars()
                .any(|c| c == '*' || c == '@' || c.is_whitespace() || c.is_control())
        {
            return Err(format!("{pattern:?} is not a domain, \"*.<domain>\" or \"*\""));
        }
        Ok(make(body.into()))
    }

    fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Any => true,
            DomainPattern::Exact(name) => domain.eq_ignore_ascii_case(name),
            DomainPattern::Suffix(suffix) => {
                domain.len() > suffix.len()
                    && domain.as_bytes()[domain.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

/// A checked canned reply, ready to render.
#[derive(Debug)]
pub(crate) struct CompiledReply {
    pattern: DomainPattern,
    /// Normalised lines separated by CRLF, without the final CRLF.
    pub(crate) text: Box<str>,
    percent: f64,
    /// The three-digit reply code.
    pub(crate) code: u16,
}

impl CompiledReply {
    /// A 2xx reply lets the command succeed.
    pub(crate) fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// RFC 5321 §3.8: after a 421 the server closes the transmission channel. At the connect
    /// stage every non-2xx banner closes it.
    pub(crate) fn closes(&self, stage: Stage) -> bool {
        self.code == 421 || (stage == Stage::Connect && !self.is_positive())
    }
}

fn compile(reply: &CannedReply) -> Result<CompiledReply, (&'static str, String)> {
    let pattern = DomainPattern::parse(&reply.domain).map_err(|e| ("domain", e))?;
    if !is_percentage(reply.percent) {
        return Err((
            "percent",
            format!("{} is not a percentage between 0 and 100", reply.percent),
        ));
    }
    let (text, code) = normalize_text(&reply.text).map_err(|e| ("text", e))?;
    Ok(CompiledReply {
        pattern,
        text: text.into(),
        percent: reply.percent,
        code,
    })
}

/// Checks that every line starts with the same 2xx/4xx/5xx code and rewrites continuation
/// markers (`-` on all lines but the last, RFC 5321 §4.2.1).
fn normalize_text(text: &str) -> Result<(String, u16), String> {
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let mut code = None;
    let mut out = String::with_capacity(text.len() + 2);
    for (i, line) in lines.iter().enumerate() {
        let number = i + 1;
        let digits = line.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let Some(digits) = digits else {
            return Err(format!("line {number} does not start with a three-digit reply code"));
        };
        let this: u16 = digits.parse().map_err(|_| format!("line {number}: bad code"))?;
        if !matches!(this / 100, 2 | 4 | 5) {
            return Err(format!("line {number}: reply code {this} is not 2xx, 4xx or 5xx"));
        }
        if code.is_some_and(|c| c != this) {
            return Err(format!("line {number}: every line must carry the same reply code"));
        }
        code = Some(this);
        let rest = &line[3..];
        let rest = match rest.as_bytes().first() {
            None => "",
            Some(b' ' | b'-') => &rest[1..],
            Some(_) => return Err(format!("line {number}: the code must be followed by ' ' or '-'")),
        };
        if rest.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("line {number} contains a control character"));
        }
        let last = number == lines.len();
        out.push_str(digits);
        if !last || !rest.is_empty() {
            out.push(if last { ' ' } else { '-' });
        }
        out.push_str(rest);
        if !last {
            out.push_str("\r\n");
        }
    }
    Ok((out, code.unwrap_or(250)))
}

/// Canned replies grouped by stage, in configuration order.
#[derive(Debug, Default)]
pub(crate) struct CannedSet {
    by_stage: [Vec<CompiledReply>; 5],
}

impl CannedSet {
    /// Checks and compiles replies built in code; errors name `canned[i].field`.
    pub(crate) fn compile(replies: &[CannedReply]) -> Result<Self, SinkError> {
        let mut set = CannedSet::default();
        for (index, reply) in replies.iter().enumerate() {
            let compiled = compile(reply).map_err(|(field, reason)| SinkError::CannedField {
                path: PathBuf::from("<SinkConfig::canned>"),
                index,
                field,
                reason,
            })?;
            set.by_stage[reply.stage.index()].push(compiled);
        }
        Ok(set)
    }

    /// The first reply of `stage` that applies to `domain` and wins its percentage draw.
    /// `domain` is ignored at stages that do not use it.
    pub(crate) fn pick(&self, stage: Stage, domain: &str) -> Option<&CompiledReply> {
        self.by_stage[stage.index()].iter().find(|reply| {
            (!stage.uses_domain() || reply.pattern.matches(domain)) && super::faults::chance(reply.percent)
        })
    }
}

#[cfg(test)]
mod tests;
