//! Rates written the way operators write them: `"50/s"`, `"3000/m"`, `"1000/h"`, `"20000/d"`.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// A number of messages per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    per: Duration,
    unit: char,
}

/// A rate that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {value:?}: {reason} (expected N/s, N/m, N/h or N/d with N >= 1, e.g. \"1000/h\")")]
pub struct RateError {
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Rate {
    /// `count` messages per `unit` (`s`, `m`, `h` or `d`).
    pub fn new(count: u32, unit: char) -> Result<Rate, RateError> {
        let err = |reason| RateError {
            value: format!("{count}/{unit}"),
            reason,
        };
        let count = NonZeroU32::new(count).ok_or_else(|| err("the count must be at least 1"))?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err("unknown unit")),
        };
        Ok(Rate {
            count,
            per: Duration::from_secs(secs),
            unit,
        })
    }

    /// `count` messages per hour.
    pub fn per_hour(count: NonZeroU32) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(3600),
            unit: 'h',
        }
    }

    /// Messages per period.
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.per
    }

    /// The steady-state interval between two messages.
    pub fn interval(&self) -> Duration {
        self.per / self.count.get()
    }

    /// This rate multiplied by `factor` (over the same period), at least 1 per period.
    pub fn scaled(&self, factor: f64) -> Rate {
        let count = (f64::from(self.count.get()) * factor)
            .round()
            .clamp(1.0, f64::from(u32::MAX)) as u32;
        Rate {
            count: NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN),
            ..*self
        }
    }

    /// Messages per second, as a float (for reports and planning).
    pub fn per_second(&self) -> f64 {
        f64::from(self.count.get()) / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Rate, RateError> {
        let err = |reason| RateError {
            value: s.to_string(),
            reason,
        };
        let (count, unit) = s.trim().split_once('/').ok_or_else(|| err("missing '/'"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| err("the count is not a whole number"))?;
        let unit = match unit.trim() {
            "s" | "sec" | "second" => 's',
            "m" | "min" | "minute" => 'm',
            "h" | "hour" => 'h',
            "d" | "day" => 'd',
            _ => return Err(err("unknown unit")),
        };
        Rate::new(count, unit).map_err(|e| RateError {
            value: s.to_string(),
            reason: e.reason,
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit)
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operator_rates() {
        let r: Rate = "1000/h".parse().expect("rate");
        assert_eq!((r.count().get(), r.period()), (1000, Duration::from_secs(3600)));
        assert_eq!(r.interval(), Duration::from_millis(3600));
        assert_eq!(r.to_string(), "1000/h");
        assert_eq!("50 / s".parse::<Rate>().map(|r| r.per_second()), Ok(50.0));
        assert_eq!("7/day".parse::<Rate>().map(|r| r.to_string()), Ok("7/d".into()));
    }

    #[test]
    fn refuses_nonsense_with_the_value() {
        for bad in ["0/s", "10", "x/s", "10/fortnight", "-1/h", ""] {
            let e = bad.parse::<Rate>().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
