//! Bounce classification: the rules file (`config/bounce-rules.toml`, shipped inside the
//! binary; `[bounces] rules` replaces it) gives every outcome that is not a delivery a bounce
//! category and a suppression [`Action`]. The first rule that matches wins.

use std::path::{Path, PathBuf};

use volley_engine::{Disposition, RecipientStatus};

use crate::outcome::Outcome;

/// The rules Volley ships.
pub const DEFAULT_RULES: &str = include_str!("../../config/bounce-rules.toml");

/// What a final outcome does to the suppression list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A hard bounce: suppress the address at once.
    Suppress,
    /// A soft bounce: suppressed after `soft_bounce_limit` of them within the window.
    Soft,
    /// Never suppress (policy, spam, content, protocol).
    None,
}

/// A status's bounce category and suppression action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    /// The bounce category (`bad-mailbox`, `policy-related`, …; `delivered` for deliveries).
    pub category: &'static str,
    /// What a final outcome with this status does to the suppression list.
    pub action: Action,
}

/// Why a rules file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The rules file.
        path: PathBuf,
        /// Why: the OS error, not a regular file, or over the size cap.
        source: volley_files::FileError,
    },
    /// The file is not valid TOML or has an unknown field (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The rules file.
        path: PathBuf,
        /// What the TOML parser said, with line and column.
        message: String,
    },
    /// A rule has a bad value.
    #[error("{path}: rule {rule} ({category}): {field} = {value:?}: {reason}")]
    Rule {
        /// The rules file.
        path: PathBuf,
        /// The rule's position, from 1.
        rule: usize,
        /// The rule's category.
        category: String,
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleSource>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSource {
    category: String,
    action: Action,
    #[serde(default)]
    enhanced: Vec<String>,
    #[serde(default)]
    code: Vec<String>,
    #[serde(default)]
    text: Vec<String>,
    local: Option<bool>,
}

/// One part of an enhanced-code pattern: a number or `*`.
type Part = Option<u16>;

struct Rule {
    category: &'static str,
    action: Action,
    enhanced: Vec<[Part; 3]>,
    /// Reply-code patterns: three digits, `None` for `x`.
    code: Vec<[Option<u8>; 3]>,
    /// Lower-case substrings.
    text: Vec<String>,
    local: Option<bool>,
}

/// The loaded rules, in order.
pub struct BounceRules {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for BounceRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BounceRules({} rules)", self.rules.len())
    }
}

impl BounceRules {
    /// The rules Volley ships (`config/bounce-rules.toml`).
    pub fn shipped() -> BounceRules {
        match BounceRules::parse(DEFAULT_RULES, Path::new("config/bounce-rules.toml")) {
            Ok(rules) => rules,
            // The shipped file is checked by a test; an empty rule set classifies as `other`.
            Err(_) => BounceRules { rules: Vec::new() },
        }
    }

    /// Reads a rules file.
    pub fn load(path: &Path) -> Result<BounceRules, RulesError> {
        let text =
            volley_files::read_config_file(path, volley_files::CONFIG_MAX).map_err(|source| RulesError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        BounceRules::parse(&text, path)
    }

    /// Parses rules; `path` names them in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BounceRules, RulesError> {
        let file: RulesFile = toml::from_str(text).map_err(|e| RulesError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for (i, src) in file.rule.into_iter().enumerate() {
            let bad = |field: &'static str, value: &str, reason: &'static str| RulesError::Rule {
                path: path.to_path_buf(),
                rule: i + 1,
                category: src.category.clone(),
                field,
                value: value.to_string(),
                reason,
            };
            if src.category.is_empty() || !src.category.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
                return Err(bad("category", &src.category, "use lower-case letters and dashes"));
            }
            let enhanced = src
                .enhanced
                .iter()
                .map(|p| parse_enhanced(p).ok_or_else(|| bad("enhanced", p, "expected e.g. 5.1.1, 5.1.* or *.7.*")))
                .collect::<Result<Vec<_>, _>>()?;
            let code = src
                .code
                .iter()
                .map(|p| parse_code(p).ok_or_else(|| bad("code", p, "expected three of 2-5/0-9/x, e.g. 550 or 5xx")))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(t) = src.text.iter().find(|t| t.trim().is_empty()) {
                return Err(bad(
                    "text",
                    t,
                    "an empty pattern matches everything; drop `text` instead",
                ));
            }
            rules.push(Rule {
                // A few dozen short strings for the life of the process.
                category: Box::leak(src.category.into_boxed_str()),
                action: src.action,
                enhanced,
                code,
                text: src.text.iter().map(|t| t.to_lowercase()).collect(),
                local: src.local,
            });
        }
        Ok(BounceRules { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything classifies as `other`, action soft).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Classifies one attempt's status.
    pub fn classify(&self, status: &RecipientStatus) -> Classification {
        if status.disposition == Disposition::Delivered {
            return Classification {
                category: "delivered",
                action: Action::None,
            };
        }
        let mut lower = None;
        for rule in &self.rules {
            if rule.matches(status, &mut lower) {
                return Classification {
                    category: rule.category,
                    action: rule.action,
                };
            }
        }
        Classification {
            category: "other",
            action: Action::Soft,
        }
    }

    /// The classification of a recipient's final outcome: expiry is `message-expired` and at
    /// most a soft bounce (the address never answered "no"); a policy block stays `none`.
    pub fn classify_final(&self, outcome: Outcome, status: &RecipientStatus) -> Classification {
        let c = self.classify(status);
        match outcome {
            Outcome::Expired => Classification {
                category: "message-expired",
                action: if c.action == Action::None {
                    Action::None
                } else {
                    Action::Soft
                },
            },
            _ => c,
        }
    }
}

/// The same rules classify asynchronous bounces (DSNs, plain-text bounces) in the feedback
/// intake: one classifier for replies and reports.
impl volley_feedback::BounceClassifier for BounceRules {
    fn classify(&self, status: &RecipientStatus) -> volley_feedback::BounceClass {
        let c = BounceRules::classify(self, status);
        volley_feedback::BounceClass {
            category: c.category.to_owned(),
            action: match c.action {
                Action::Suppress => volley_feedback::SuppressAction::Suppress,
                Action::Soft => volley_feedback::SuppressAction::Soft,
                Action::None => volley_feedback::SuppressAction::None,
            },
        }
    }
}

impl Rule {
    fn matches(&self, status: &RecipientStatus, lower: &mut Option<String>) -> bool {
        if let Some(local) = self.local {
            if local != status.code.is_none() {
                return false;
            }
        }
        if !self.enhanced.is_empty() {
            let Some(e) = status.enhanced else { return false };
            if !any_matches(&self.enhanced, [u16::from(e.class), e.subject, e.detail]) {
                return false;
            }
        }
        if !self.code.is_empty() {
            let Some(code) = status.code else { return false };
            let digits = [(code / 100) as u8, (code / 10 % 10) as u8, (code % 10) as u8];
            if !any_matches(&self.code, digits) {
                return false;
            }
        }
        if !self.text.is_empty() {
            let text = lower.get_or_insert_with(|| status.text.to_lowercase());
            if !self.text.iter().any(|t| text.contains(t.as_str())) {
                return false;
            }
        }
        true
    }
}

/// Whether any pattern matches `actual` (a `None` part matches anything).
fn any_matches<T: PartialEq + Copy>(patterns: &[[Option<T>; 3]], actual: [T; 3]) -> bool {
    patterns
        .iter()
        .any(|p| p.iter().zip(actual).all(|(p, a)| p.is_none_or(|p| p == a)))
}

fn parse_enhanced(p: &str) -> Option<[Part; 3]> {
    let mut parts = p.trim().split('.');
    let mut out = [None; 3];
    for slot in &mut out {
        let part = parts.next()?;
        *slot = if part == "*" {
            None
        } else {
            Some(part.parse::<u16>().ok()?)
        };
    }
    if parts.next().is_some() || out[0].is_some_and(|c| !matches!(c, 2 | 4 | 5)) {
        return None;
    }
    Some(out)
}

fn parse_code(p: &str) -> Option<[Option<u8>; 3]> {
    let b = p.trim().as_bytes();
    if b.len() != 3 || !matches!(b[0], b'2'..=b'5') {
        return None;
    }
    let mut out = [None; 3];
    for (slot, c) in out.iter_mut().zip(b) {
        *slot = match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'x' | b'X' => None,
            _ => return None,
        };
    }
    Some(out)
}
