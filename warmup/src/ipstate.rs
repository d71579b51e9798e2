//! Where each source IP stands in its warm-up: warm, or warming up on a named curve since a
//! start date. Day 1 is the start date itself.

use serde::Deserialize;

use crate::day::UtcDay;

/// The warm-up settings of one source IP, as written next to it in volley.toml:
/// `warmup = "standard"` + `warmup_start = "2026-11-01"`, or `warm = true`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpWarmup {
    /// The warm-up curve's name (a file `<curves_dir>/<name>.toml`).
    #[serde(default)]
    pub warmup: Option<String>,
    /// The first day of the warm-up (UTC), `YYYY-MM-DD`.
    #[serde(default)]
    pub warmup_start: Option<UtcDay>,
    /// The IP is warm: no warm-up caps.
    #[serde(default)]
    pub warm: bool,
}

/// An IP's warm-up settings that contradict each other.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpWarmupError {
    /// `warm = true` together with a curve.
    #[error("warm = true contradicts warmup = {curve:?}: an IP is either warm or warming up")]
    WarmWithCurve {
        /// The curve named.
        curve: String,
    },
    /// A curve without a start date.
    #[error("warmup = {curve:?} needs warmup_start = \"YYYY-MM-DD\" (the first day of the warm-up)")]
    MissingStart {
        /// The curve named.
        curve: String,
    },
    /// A start date without a curve.
    #[error("warmup_start = \"{start}\" needs warmup = \"<curve name>\"")]
    MissingCurve {
        /// The start date given.
        start: UtcDay,
    },
}

/// Where one source IP stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarmupState {
    /// No warm-up caps.
    Warm,
    /// Warming up on `curve` since `start`.
    Warming {
        /// The curve's name.
        curve: String,
        /// Day 1 of the warm-up.
        start: UtcDay,
    },
}

impl IpWarmup {
    /// The state these settings describe; no settings at all means warm.
    pub fn state(&self) -> Result<WarmupState, IpWarmupError> {
        match (&self.warmup, self.warmup_start, self.warm) {
            (Some(curve), _, true) => Err(IpWarmupError::WarmWithCurve { curve: curve.clone() }),
            (Some(curve), None, false) => Err(IpWarmupError::MissingStart { curve: curve.clone() }),
            (None, Some(start), _) => Err(IpWarmupError::MissingCurve { start }),
            (Some(curve), Some(start), false) => Ok(WarmupState::Warming {
                curve: curve.clone(),
                start,
            }),
            (None, None, _) => Ok(WarmupState::Warm),
        }
    }
}

/// The warm-up day `today` falls on for a warm-up started on `start`: 1 on the start date,
/// 2 the day after…; 0 before the start date.
pub fn day_of(start: UtcDay, today: UtcDay) -> u32 {
    if today < start {
        0
    } else {
        today.days() - start.days() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> UtcDay {
        s.parse().expect("date")
    }

    #[test]
    fn counts_days_from_the_start_date() {
        let start = day("2026-11-01");
        assert_eq!(day_of(start, day("2026-10-31")), 0);
        assert_eq!(day_of(start, start), 1);
        assert_eq!(day_of(start, day("2026-11-02")), 2);
        assert_eq!(day_of(start, day("2026-12-01")), 31);
    }

    #[test]
    fn settings_are_warm_or_a_curve_with_a_start() {
        let parse = |s: &str| toml::from_str::<IpWarmup>(s).expect("toml").state();
        assert_eq!(parse(""), Ok(WarmupState::Warm));
        assert_eq!(parse("warm = true"), Ok(WarmupState::Warm));
        assert_eq!(
            parse("warmup = \"standard\"\nwarmup_start = \"2026-11-01\""),
            Ok(WarmupState::Warming {
                curve: "standard".into(),
                start: day("2026-11-01")
            })
        );
        assert!(matches!(
            parse("warmup = \"standard\""),
            Err(IpWarmupError::MissingStart { .. })
        ));
        assert!(matches!(
            parse("warmup = \"x\"\nwarmup_start = \"2026-11-01\"\nwarm = true"),
            Err(IpWarmupError::WarmWithCurve { .. })
        ));
        assert!(toml::from_str::<IpWarmup>("warmup_start = \"2026-11-31\"").is_err());
    }
}
