//! What is stored: [`Entry`] (one suppressed address), [`Update`] (one write), and the
//! merge / soft-bounce rules both backends apply (the Redis Lua scripts mirror
//! [`merge`] and [`soft_bounce`] line for line).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The scope every check consults, besides the campaign's own list scope.
pub const GLOBAL: &str = "global";

/// Why and since when one address is suppressed in one scope (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Human-readable reason: the bounce text, "unsubscribed", "complaint", ...
    pub reason: String,
    /// The SMTP reply code of the bounce, when there was one.
    #[serde(default)]
    pub code: Option<u16>,
    /// The enhanced status code (`"5.1.1"`), when there was one.
    #[serde(default)]
    pub enhanced: Option<String>,
    /// The bounce category (see `crate::outcome`), when known.
    #[serde(default)]
    pub category: Option<String>,
    /// When the address was first suppressed (unix seconds).
    pub first: u64,
    /// When it was last suppressed again (unix seconds).
    pub last: u64,
    /// How many suppressing events were recorded.
    pub count: u32,
    /// Where it came from: `bounce:<campaign>`, `import:<file>`, `manual`, `soft-bounces`.
    pub source: String,
}

impl Entry {
    /// A first-time entry at `at` (unix seconds) with count 1 and no codes.
    pub fn new(reason: impl Into<String>, source: impl Into<String>, at: u64) -> Entry {
        Entry {
            reason: reason.into(),
            code: None,
            enhanced: None,
            category: None,
            first: at,
            last: at,
            count: 1,
            source: source.into(),
        }
    }

    /// With the SMTP reply code and enhanced status code of a bounce.
    pub fn with_codes(mut self, code: Option<u16>, enhanced: Option<String>) -> Entry {
        self.code = code;
        self.enhanced = enhanced;
        self
    }

    /// With a bounce category.
    pub fn with_category(mut self, category: impl Into<String>) -> Entry {
        self.category = Some(category.into());
        self
    }
}

/// One write to the store. Serialised as one JSON object per line in the spill file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Update {
    /// Suppress `address` in `scope` (hard bounce, manual add, import). Merging with an
    /// existing entry adds the counts, keeps the earliest `first` and the latest `last`, and
    /// takes reason, codes, category and source from this update.
    Suppress {
        /// `global`, a list name or a tenant.
        scope: String,
        /// Normalised `local@domain` (lowercased again by the store).
        address: String,
        /// The entry to store or merge.
        entry: Entry,
    },
    /// Count one soft bounce. Once `soft_bounce_limit` of them fall within
    /// `soft_bounce_window`, the address is suppressed with reason
    /// `soft bounces: N within M days (last: <code> <enhanced> <reason>)` and the count resets.
    /// Ignored when the address is already suppressed in `scope`.
    SoftBounce {
        /// `global`, a list name or a tenant.
        scope: String,
        /// Normalised `local@domain`.
        address: String,
        /// The SMTP reply code.
        code: Option<u16>,
        /// The enhanced status code (`"4.2.2"`).
        enhanced: Option<String>,
        /// The reply text.
        reason: String,
        /// When it happened (unix seconds).
        at: u64,
    },
    /// Forget the soft bounces counted for `address` in `scope`: a message to it was
    /// delivered. Not kept through a store outage (dropped while the store fails, never
    /// spilled): losing one only leaves a count that a delivery would have reset.
    ForgetSoft {
        /// `global`, a list name or a tenant.
        scope: String,
        /// Normalised `local@domain`.
        address: String,
    },
    /// Remove `address` from `scope` (suppression entry and soft-bounce count).
    Remove {
        /// `global`, a list name or a tenant.
        scope: String,
        /// Normalised `local@domain`.
        address: String,
    },
}

impl Update {
    /// A [`Update::Suppress`].
    pub fn suppress(scope: impl Into<String>, address: impl Into<String>, entry: Entry) -> Update {
        Update::Suppress {
            scope: scope.into(),
            address: address.into(),
            entry,
        }
    }

    /// A [`Update::Remove`].
    pub fn remove(scope: impl Into<String>, address: impl Into<String>) -> Update {
        Update::Remove {
            scope: scope.into(),
            address: address.into(),
        }
    }

    /// An [`Update::ForgetSoft`].
    pub fn forget_soft(scope: impl Into<String>, address: impl Into<String>) -> Update {
        Update::ForgetSoft {
            scope: scope.into(),
            address: address.into(),
        }
    }

    /// Whether the update may be dropped when the store cannot take it (see
    /// [`Update::ForgetSoft`]).
    pub fn is_expendable(&self) -> bool {
        matches!(self, Update::ForgetSoft { .. })
    }

    /// The scope this update writes to.
    pub fn scope(&self) -> &str {
        match self {
            Update::Suppress { scope, .. }
            | Update::SoftBounce { scope, .. }
            | Update::ForgetSoft { scope, .. }
            | Update::Remove { scope, .. } => scope,
        }
    }

    /// The address this update is about (as given, not yet lowercased).
    pub fn address(&self) -> &str {
        match self {
            Update::Suppress { address, .. }
            | Update::SoftBounce { address, .. }
            | Update::ForgetSoft { address, .. }
            | Update::Remove { address, .. } => address,
        }
    }
}

/// Recent soft bounces of one address in one scope (stored as JSON beside the entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftRecord {
    /// Unix seconds of the soft bounces still inside the window, oldest first.
    pub at: Vec<u64>,
    /// The last reply code.
    #[serde(default)]
    pub code: Option<u16>,
    /// The last enhanced status code.
    #[serde(default)]
    pub enhanced: Option<String>,
    /// The last reply text.
    #[serde(default)]
    pub reason: String,
}

/// The soft-bounce rule: `limit` bounces within `window` suppress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftPolicy {
    /// Soft bounces needed (at least 1).
    pub limit: u32,
    /// The window they must fall in.
    pub window: Duration,
}

impl SoftPolicy {
    /// The window in whole seconds (at least 1).
    pub(crate) fn window_secs(&self) -> u64 {
        self.window.as_secs().max(1)
    }

    /// `" within 7 days (last: 452 4.2.2 mailbox full)"`: the reason after the count.
    pub(crate) fn reason_tail(&self, code: Option<u16>, enhanced: Option<&str>, reason: &str) -> String {
        let secs = self.window_secs();
        let window = match secs % 86_400 {
            0 if secs == 86_400 => "1 day".to_owned(),
            0 => format!("{} days", secs / 86_400),
            _ => humantime::format_duration(Duration::from_secs(secs)).to_string(),
        };
        let mut last = Vec::new();
        let code = code.map(|c| c.to_string());
        last.extend(code.as_deref());
        last.extend(enhanced);
        if !reason.is_empty() {
            last.push(reason);
        }
        format!(" within {window} (last: {})", last.join(" "))
    }
}

/// The prefix of a promoted soft-bounce reason; the count follows, then [`SoftPolicy::reason_tail`].
pub(crate) const SOFT_REASON_HEAD: &str = "soft bounces: ";
/// The `source` of an entry created by soft-bounce promotion.
pub(crate) const SOFT_SOURCE: &str = "soft-bounces";

/// The source prefix of the suppressions a campaign's SMTP replies make (`bounce:<campaign>`).
pub(crate) const CAMPAIGN_BOUNCE_SOURCE: &str = "bounce:";

/// `new` merged into `old` (see [`Update::Suppress`]). A campaign gives each recipient one
/// final outcome, so a `bounce:<campaign>` update onto an entry from that same campaign is the
/// same event applied again (a run killed after its batch reached the store but before it
/// saved its mark replays the batch): the entry is kept as it is. Mirrored in
/// `redis/apply.lua`.
pub(crate) fn merge(old: Option<Entry>, new: &Entry) -> Entry {
    let mut merged = new.clone();
    if let Some(old) = old {
        if old.source == new.source && new.source.starts_with(CAMPAIGN_BOUNCE_SOURCE) {
            return old;
        }
        merged.first = old.first.min(new.first);
        merged.last = old.last.max(new.last);
        merged.count = old.count.saturating_add(new.count);
    }
    merged
}

/// What a soft bounce does to the stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SoftOutcome {
    /// Still below the limit: store this record.
    Counting(SoftRecord),
    /// The limit is reached: store this entry and delete the record.
    Suppress(Entry),
}

/// Applies one soft bounce at `at` to the previous record.
pub(crate) fn soft_bounce(
    policy: &SoftPolicy,
    old: Option<SoftRecord>,
    code: Option<u16>,
    enhanced: Option<&str>,
    reason: &str,
    at: u64,
) -> SoftOutcome {
    let window = policy.window_secs();
    let mut stamps: Vec<u64> = old
        .map(|r| r.at)
        .unwrap_or_default()
        .into_iter()
        .filter(|&t| t.saturating_add(window) > at)
        .collect();
    stamps.push(at);
    stamps.sort_unstable();
    if stamps.len() >= policy.limit.max(1) as usize {
        let n = stamps.len();
        let reason = format!("{SOFT_REASON_HEAD}{n}{}", policy.reason_tail(code, enhanced, reason));
        let first = stamps.first().copied().unwrap_or(at);
        let last = stamps.last().copied().unwrap_or(at);
        let mut entry = Entry::new(reason, SOFT_SOURCE, at).with_codes(code, enhanced.map(str::to_owned));
        entry.first = first;
        entry.last = last;
        entry.count = u32::try_from(n).unwrap_or(u32::MAX);
        SoftOutcome::Suppress(entry)
    } else {
        SoftOutcome::Counting(SoftRecord {
            at: stamps,
            code,
            enhanced: enhanced.map(str::to_owned),
            reason: reason.to_owned(),
        })
    }
}

/// The form addresses are stored under: trimmed and lowercased.
pub fn normalise(address: &str) -> String {
    address.trim().to_lowercase()
}

/// Whether `name` can name a scope: 1-64 letters, digits, `.`, `_` or `-`.
pub fn valid_scope(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Now, in unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SoftPolicy {
        SoftPolicy {
            limit: 3,
            window: Duration::from_secs(7 * 86_400),
        }
    }

    #[test]
    fn merge_keeps_first_bumps_count_and_last() {
        let old = Entry::new("a", "manual", 100);
        let mut new = Entry::new("b", "bounce:c", 200);
        new.first = 200;
        let m = merge(Some(old), &new);
        assert_eq!((m.first, m.last, m.count, m.reason.as_str()), (100, 200, 2, "b"));
    }

    #[test]
    fn soft_bounces_promote_at_limit_and_forget_old_ones() {
        let day = 86_400;
        let p = policy();
        let SoftOutcome::Counting(r) = soft_bounce(&p, None, Some(452), Some("4.2.2"), "full", 0) else {
            panic!("first bounce suppressed")
        };
        // Ten days later the first one is outside the window.
        let SoftOutcome::Counting(r) = soft_bounce(&p, Some(r), Some(452), None, "full", 10 * day) else {
            panic!("second bounce suppressed")
        };
        assert_eq!(r.at, vec![10 * day]);
        let SoftOutcome::Counting(r) = soft_bounce(&p, Some(r), None, None, "x", 11 * day) else {
            panic!("third bounce suppressed")
        };
        let SoftOutcome::Suppress(e) = soft_bounce(&p, Some(r), Some(452), Some("4.2.2"), "full", 12 * day) else {
            panic!("not suppressed at the limit")
        };
        assert_eq!(e.reason, "soft bounces: 3 within 7 days (last: 452 4.2.2 full)");
        assert_eq!((e.first, e.last, e.count), (10 * day, 12 * day, 3));
    }

    #[test]
    fn update_json_is_tagged() {
        let u = Update::remove("global", "a@b.c");
        let json = serde_json::to_string(&u).unwrap();
        assert_eq!(json, r#"{"op":"remove","scope":"global","address":"a@b.c"}"#);
        assert_eq!(serde_json::from_str::<Update>(&json).unwrap(), u);
    }
}
