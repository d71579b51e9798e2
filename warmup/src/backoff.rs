//! Adaptive backoff: reply patterns (code, enhanced code, text) that slow down or suspend one
//! (source IP, provider group) pair, and the per-pair state that recovers after a quiet period.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// The rules Volley ships (`config/warmup/backoff.toml`).
pub const DEFAULT_RULES: &str = include_str!("../../config/warmup/backoff.toml");

/// Backoff rules and recovery settings (a TOML file; see the shipped one for the format).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffRules {
    /// How long without a matching reply before a slowed pair starts to recover.
    #[serde(with = "humantime_serde", default = "default_quiet")]
    pub quiet: Duration,
    /// Multiplier applied to a slowed pair's factor per quiet period (> 1), up to 1.0.
    #[serde(default = "default_recover")]
    pub recover: f64,
    /// The lowest factor repeated slow-downs reach (0 < min_factor <= 1).
    #[serde(default = "default_min_factor")]
    pub min_factor: f64,
    /// After a slow-down, matching replies within this window only extend its hold: they
    /// answer mail sent before the slower rate took effect, so they do not compound it.
    #[serde(with = "humantime_serde", default = "default_settle")]
    pub settle: Duration,
    /// The rules, first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<BackoffRule>,
}

fn default_quiet() -> Duration {
    Duration::from_secs(600)
}

fn default_recover() -> f64 {
    2.0
}

fn default_min_factor() -> f64 {
    0.05
}

fn default_settle() -> Duration {
    Duration::from_secs(60)
}

/// One rule: conditions on a reply and what to do when they match.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffRule {
    /// Reply codes (`"421"`, `"45x"`; `x` is any digit); any entry may match.
    #[serde(default)]
    pub code: Vec<String>,
    /// Enhanced status codes (`"4.7.0"`, `"4.7.*"`); any entry may match.
    #[serde(default)]
    pub enhanced: Vec<String>,
    /// Case-insensitive substrings of the reply text; any entry may match.
    #[serde(default)]
    pub text: Vec<String>,
    /// `slow`, `suspend` or `ignore`.
    pub action: ActionKind,
    /// For `slow`: the rate multiplier (0 < factor < 1).
    #[serde(default)]
    pub factor: Option<f64>,
    /// How long the slow-down holds at least, or how long the suspension lasts (not for
    /// `ignore`).
    #[serde(rename = "for", with = "humantime_serde", default)]
    pub hold: Duration,
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Scale the pair's rate by the rule's factor.
    Slow,
    /// Send nothing on the pair for a while.
    Suspend,
    /// Nothing: the reply says nothing about the rate (greylisting); later rules are not
    /// tried.
    Ignore,
}

/// The action a matching rule asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BackoffAction {
    /// Multiply the pair's rate by `factor`, for at least `hold`.
    Slow {
        /// The rate multiplier.
        factor: f64,
        /// The least time the slow-down holds.
        hold: Duration,
    },
    /// Send nothing on the pair for `hold`.
    Suspend {
        /// How long.
        hold: Duration,
    },
}

/// A backoff rules file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackoffError {
    /// The file could not be read.
    #[error("{path}: cannot read backoff rules: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: volley_files::FileError,
    },
    /// Not valid TOML, or unknown or mistyped fields.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        source: Box<toml::de::Error>,
    },
    /// A value breaks a rule of the format.
    #[error("{path}: {field} = {value}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field path (`rule[3].factor`, `quiet`).
        field: String,
        /// The offending value.
        value: String,
        /// The rule broken.
        reason: &'static str,
    },
}

impl Default for BackoffRules {
    /// The shipped rules.
    fn default() -> BackoffRules {
        // The embedded file is checked by a test; an unusable one would leave no rules.
        BackoffRules::parse(DEFAULT_RULES, Path::new("config/warmup/backoff.toml")).unwrap_or(BackoffRules {
            quiet: default_quiet(),
            recover: default_recover(),
            min_factor: default_min_factor(),
            settle: default_settle(),
            rules: Vec::new(),
        })
    }
}

impl BackoffRules {
    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<BackoffRules, BackoffError> {
        let text =
            volley_files::read_config_file(path, volley_files::CONFIG_MAX).map_err(|source| BackoffError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        BackoffRules::parse(&text, path)
    }

    /// Parses and validates rules; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BackoffRules, BackoffError> {
        let rules: BackoffRules = toml::from_str(text).map_err(|e| BackoffError::Toml {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let invalid = |field: String, value: String, reason| BackoffError::Invalid {
            path: path.to_path_buf(),
            field,
            value,
            reason,
        };
        if rules.quiet.is_zero() {
            return Err(invalid("quiet".into(), "\"0s\"".into(), "must be longer than zero"));
        }
        if !(rules.recover > 1.0 && rules.recover.is_finite()) {
            return Err(invalid(
                "recover".into(),
                rules.recover.to_string(),
                "must be above 1.0",
            ));
        }
        if !(rules.min_factor > 0.0 && rules.min_factor <= 1.0) {
            return Err(invalid(
                "min_factor".into(),
                rules.min_factor.to_string(),
                "must be in (0, 1]",
            ));
        }
        for (i, rule) in rules.rules.iter().enumerate() {
            let field = |name: &str| format!("rule[{}].{name}", i + 1);
            if rule.code.is_empty() && rule.enhanced.is_empty() && rule.text.is_empty() {
                let reason = "a rule must name code, enhanced or text (it would match every reply)";
                return Err(invalid(field("action"), format!("{:?}", rule.action), reason));
            }
            if let Some(bad) = rule
                .code
                .iter()
                .find(|c| c.len() != 3 || !c.bytes().all(|b| b.is_ascii_digit() || b == b'x'))
            {
                return Err(invalid(
                    field("code"),
                    format!("{bad:?}"),
                    "expected three digits or x (\"421\", \"45x\")",
                ));
            }
            if let Some(bad) = rule.enhanced.iter().find(|e| !valid_enhanced_pattern(e)) {
                return Err(invalid(
                    field("enhanced"),
                    format!("{bad:?}"),
                    "expected N.N.N with * for any (\"4.7.*\")",
                ));
            }
            match (rule.action, rule.factor) {
                (ActionKind::Slow, None) => {
                    return Err(invalid(
                        field("factor"),
                        "(missing)".into(),
                        "action \"slow\" needs a factor",
                    ))
                }
                (ActionKind::Slow, Some(f)) if !(f > 0.0 && f < 1.0) => {
                    return Err(invalid(
                        field("factor"),
                        f.to_string(),
                        "must be between 0 and 1 (exclusive)",
                    ))
                }
                (ActionKind::Suspend, Some(f)) => {
                    return Err(invalid(
                        field("factor"),
                        f.to_string(),
                        "action \"suspend\" takes no factor",
                    ))
                }
                (ActionKind::Ignore, Some(f)) => {
                    return Err(invalid(
                        field("factor"),
                        f.to_string(),
                        "action \"ignore\" takes no factor",
                    ))
                }
                _ => {}
            }
            if rule.action == ActionKind::Ignore {
                if !rule.hold.is_zero() {
                    let value = format!("{:?}", rule.hold);
                    return Err(invalid(field("for"), value, "action \"ignore\" takes no duration"));
                }
            } else if rule.hold.is_zero() {
                return Err(invalid(field("for"), "\"0s\"".into(), "must be longer than zero"));
            }
        }
        Ok(rules)
    }

    /// The action of the first rule matching a reply, if any.
    pub fn matching(&self, code: Option<u16>, enhanced: Option<&str>, text: &str) -> Option<BackoffAction> {
        let text = text.to_ascii_lowercase();
        self.rules
            .iter()
            .find(|r| r.matches(code, enhanced, &text))
            .and_then(|r| match r.action {
                ActionKind::Slow => Some(BackoffAction::Slow {
                    factor: r.factor.unwrap_or(0.5),
                    hold: r.hold,
                }),
                ActionKind::Suspend => Some(BackoffAction::Suspend { hold: r.hold }),
                ActionKind::Ignore => None,
            })
    }
}

impl BackoffRule {
    fn matches(&self, code: Option<u16>, enhanced: Option<&str>, lowercase_text: &str) -> bool {
        let code_ok = self.code.is_empty()
            || code.is_some_and(|c| {
                let c = c.to_string();
                self.code
                    .iter()
                    .any(|p| p.len() == c.len() && p.bytes().zip(c.bytes()).all(|(p, c)| p == b'x' || p == c))
            });
        let enhanced_ok =
            self.enhanced.is_empty() || enhanced.is_some_and(|e| self.enhanced.iter().any(|p| enhanced_matches(p, e)));
        let text_ok = self.text.is_empty()
            || self
                .text
                .iter()
                .any(|t| lowercase_text.contains(&t.to_ascii_lowercase()));
        code_ok && enhanced_ok && text_ok
    }
}

fn valid_enhanced_pattern(p: &str) -> bool {
    let parts: Vec<&str> = p.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|s| *s == "*" || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())))
}

fn enhanced_matches(pattern: &str, code: &str) -> bool {
    let code: Vec<&str> = code.trim().split('.').collect();
    let pattern: Vec<&str> = pattern.split('.').collect();
    code.len() == pattern.len() && pattern.iter().zip(&code).all(|(p, c)| *p == "*" || p == c)
}

/// The backoff state of one (source IP, provider group) pair.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffState {
    /// The factor set by the last slow-down (1.0: not slowed).
    factor: f64,
    hold_until: SystemTime,
    last_match: SystemTime,
    /// When the factor was last lowered (the start of the settle window).
    slowed_at: SystemTime,
    suspended_until: Option<SystemTime>,
}

impl Default for BackoffState {
    fn default() -> BackoffState {
        BackoffState {
            factor: 1.0,
            hold_until: SystemTime::UNIX_EPOCH,
            last_match: SystemTime::UNIX_EPOCH,
            slowed_at: SystemTime::UNIX_EPOCH,
            suspended_until: None,
        }
    }
}

impl BackoffState {
    /// Applies a matching rule's action at `now`. A slow-down lowers the factor once per
    /// `settle` window; later matches in the window only extend the hold.
    pub fn apply(&mut self, action: BackoffAction, now: SystemTime, rules: &BackoffRules) {
        match action {
            BackoffAction::Slow { factor, hold } => {
                let current = self.factor_at(now, rules);
                let settling = current < 1.0 && now < after(self.slowed_at, rules.settle);
                if !settling {
                    self.factor = (current * factor).max(rules.min_factor);
                    self.slowed_at = now;
                }
                self.hold_until = self.hold_until.max(after(now, hold));
            }
            BackoffAction::Suspend { hold } => {
                let until = after(now, hold);
                self.suspended_until = Some(self.suspended_until.map_or(until, |u| u.max(until)));
            }
        }
        self.last_match = self.last_match.max(now);
    }

    /// The rate multiplier at `now`: the last slow-down's factor, recovering by `recover` per
    /// quiet period once the hold has passed and no matching reply came for `quiet`.
    pub fn factor_at(&self, now: SystemTime, rules: &BackoffRules) -> f64 {
        if self.factor >= 1.0 {
            return 1.0;
        }
        let recovers_from = self.hold_until.max(after(self.last_match, rules.quiet));
        let Ok(quiet_for) = now.duration_since(recovers_from) else {
            return self.factor;
        };
        let steps = 1.0 + (quiet_for.as_secs_f64() / rules.quiet.as_secs_f64()).floor();
        (self.factor * rules.recover.powf(steps)).min(1.0)
    }

    /// Until when the pair is suspended, if it is at `now`.
    pub fn suspended_until(&self, now: SystemTime) -> Option<SystemTime> {
        self.suspended_until.filter(|u| *u > now)
    }
}

/// `t + d`, saturating at a far-future time instead of overflowing (a rules file may say
/// `for = "10000000years"`).
fn after(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d)
        .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(text: &str) -> String {
        BackoffRules::parse(text, Path::new("b.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn the_shipped_rules_load_and_classify_known_replies() {
        let rules = BackoffRules::parse(DEFAULT_RULES, Path::new("backoff.toml")).expect("rules");
        assert_eq!(rules, BackoffRules::default());
        let m = |code, enh, text| rules.matching(Some(code), Some(enh), text);
        let tss04 = "[TSS04] Messages from 1.2.3.4 temporarily deferred due to unexpected volume";
        assert!(matches!(m(421, "4.7.0", tss04), Some(BackoffAction::Slow { .. })));
        let tss09 = "[TSS09] All messages from 1.2.3.4 will be permanently deferred";
        assert!(matches!(m(421, "4.7.0", tss09), Some(BackoffAction::Suspend { .. })));
        assert!(matches!(
            m(550, "5.7.1", "on our block list (S3150)"),
            Some(BackoffAction::Suspend { .. })
        ));
        assert!(matches!(
            m(451, "4.7.500", "Server busy (S775)"),
            Some(BackoffAction::Slow { .. })
        ));
        assert!(matches!(
            m(421, "4.7.0", "Too many connections"),
            Some(BackoffAction::Slow { .. })
        ));
        assert_eq!(m(450, "4.2.2", "mailbox full"), None);
        assert_eq!(m(550, "5.1.1", "user unknown"), None);
        assert_eq!(rules.matching(None, None, "all fine"), None);
    }

    #[test]
    fn bad_rules_are_refused_with_field_and_value() {
        let e = bad("[[rule]]\ntext = [\"x\"]\naction = \"slow\"\nfactor = 1.5\nfor = \"1m\"");
        assert!(e.contains("b.toml: rule[1].factor = 1.5"), "{e}");
        let e = bad("[[rule]]\naction = \"suspend\"\nfor = \"1m\"");
        assert!(e.contains("rule[1].action"), "{e}");
        let e = bad("[[rule]]\ncode = [\"4x\"]\naction = \"suspend\"\nfor = \"1m\"");
        assert!(e.contains("rule[1].code = \"4x\""), "{e}");
        let e = bad("[[rule]]\ntext = [\"x\"]\naction = \"pause\"\nfor = \"1m\"");
        assert!(e.contains("pause"), "{e}");
        let e = bad("recover = 0.5");
        assert!(e.contains("recover = 0.5"), "{e}");
    }

    #[test]
    fn slowdowns_compound_once_per_settle_window_hold_and_recover_after_quiet() {
        let rules = BackoffRules::default();
        assert_eq!(rules.settle, Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let min = Duration::from_secs(60);
        let slow = BackoffAction::Slow {
            factor: 0.5,
            hold: 30 * min,
        };
        let mut s = BackoffState::default();
        // A burst of matching replies answers mail sent at the old rate: one slow-down.
        for i in 0..200 {
            s.apply(slow, t0 + Duration::from_millis(i * 100), &rules);
        }
        assert_eq!(s.factor_at(t0 + min / 2, &rules), 0.5);
        // Still matching once the slower rate has had its minute: it compounds.
        s.apply(slow, t0 + 2 * min, &rules);
        assert_eq!(s.factor_at(t0 + 2 * min, &rules), 0.25);
        assert_eq!(s.factor_at(t0 + 31 * min, &rules), 0.25);
        assert_eq!(s.factor_at(t0 + 32 * min, &rules), 0.5);
        assert_eq!(s.factor_at(t0 + 42 * min, &rules), 1.0);
        s.apply(BackoffAction::Suspend { hold: 60 * min }, t0, &rules);
        assert_eq!(s.suspended_until(t0 + min), Some(t0 + 60 * min));
        assert_eq!(s.suspended_until(t0 + 60 * min), None);
    }

    #[test]
    fn ordinary_temporary_failures_do_not_slow_the_ip() {
        // Regression: "try again later" is in Postfix's and greylisting's plain 4xx texts; a
        // rule on it slowed whole runs to min_factor on a few percent of ordinary tempfails.
        let rules = BackoffRules::default();
        let m = |code, enh, text| rules.matching(Some(code), Some(enh), text);
        assert_eq!(m(451, "4.3.0", "Temporary failure, please try again later"), None);
        assert_eq!(m(450, "4.2.0", "Mailbox busy, try again later"), None);
    }

    #[test]
    fn greylisting_does_not_slow_the_ip() {
        // Regression: "451 4.7.1 Greylisted" (milter-greylist, greylistd, rspamd) matched the
        // catch-all 421/451 4.7.* rule and halved the pair's rate on every greylisted
        // recipient: a run with 20 % greylisting fell to a tenth of its speed. Greylisting
        // says nothing about the rate; other 451 4.7.x answers still slow.
        let rules = BackoffRules::default();
        let m = |code, enh, text| rules.matching(Some(code), Some(enh), text);
        assert_eq!(m(451, "4.7.1", "Greylisted, please try again later"), None);
        assert_eq!(m(451, "4.7.1", "Greylisting in action, please come back later"), None);
        assert_eq!(m(450, "4.7.1", "Recipient address rejected: Greylisted"), None);
        assert!(matches!(
            m(451, "4.7.1", "Temporarily rejected by policy"),
            Some(BackoffAction::Slow { .. })
        ));
        assert!(matches!(
            m(421, "4.7.0", "Try again later"),
            Some(BackoffAction::Slow { .. })
        ));
    }

    #[test]
    fn an_ignore_rule_needs_no_factor_or_hold_and_ends_the_search() {
        let rules = BackoffRules::parse(
            "[[rule]]\ntext = [\"grey\"]\naction = \"ignore\"\n             [[rule]]\ncode = [\"451\"]\naction = \"slow\"\nfactor = 0.5\nfor = \"1m\"\n",
            Path::new("b.toml"),
        )
        .expect("rules");
        assert_eq!(rules.matching(Some(451), None, "greylisted"), None);
        assert!(rules.matching(Some(451), None, "busy").is_some());
        let err = BackoffRules::parse(
            "[[rule]]\ntext = [\"grey\"]\naction = \"ignore\"\nfactor = 0.5\n",
            Path::new("b.toml"),
        )
        .expect_err("a factor on ignore");
        assert!(err.to_string().contains("rule[1].factor"), "{err}");
        let err = BackoffRules::parse(
            "[[rule]]\ncode = [\"451\"]\naction = \"suspend\"\n",
            Path::new("b.toml"),
        )
        .expect_err("suspend needs for");
        assert!(err.to_string().contains("rule[1].for"), "{err}");
    }

    #[test]
    fn huge_hold_and_quiet_saturate_instead_of_overflowing() {
        // Regression (found by fuzzing the rules loader): `for`/`quiet` of millions of years
        // overflowed SystemTime and panicked.
        let rules = BackoffRules::parse(
            "quiet = \"100000000years\"\n[[rule]]\ntext = [\"x\"]\naction = \"suspend\"\nfor = \"500000000years\"\n",
            Path::new("b.toml"),
        )
        .expect("rules");
        let Some(BackoffAction::Suspend { hold }) = rules.matching(Some(421), None, "x") else {
            panic!("the rule matches");
        };
        let now = SystemTime::now();
        let mut s = BackoffState::default();
        s.apply(BackoffAction::Suspend { hold }, now, &rules);
        s.apply(BackoffAction::Slow { factor: 0.5, hold }, now, &rules);
        assert!(s.suspended_until(now).is_some_and(|u| u > now));
        assert_eq!(s.factor_at(now + Duration::from_secs(3600), &rules), 0.5);
    }
}
