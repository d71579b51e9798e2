//! UTC calendar days without a date crate: a day is a count of days since 1970-01-01, written
//! and read as `YYYY-MM-DD` (proleptic Gregorian calendar).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: u64 = 86_400;

/// One UTC calendar day, as days since the Unix epoch (1970-01-01 is day 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDay(u32);

/// A date that is not a valid `YYYY-MM-DD` on or after 1970-01-01.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid date {value:?}: expected YYYY-MM-DD on or after 1970-01-01 (UTC), e.g. \"2026-11-01\"")]
pub struct DateError {
    /// The text given.
    pub value: String,
}

impl UtcDay {
    /// The day `days` days after 1970-01-01.
    pub fn from_days(days: u32) -> UtcDay {
        UtcDay(days)
    }

    /// Days since 1970-01-01.
    pub fn days(self) -> u32 {
        self.0
    }

    /// The UTC day containing `t` (times before the epoch count as day 0).
    pub fn of(t: SystemTime) -> UtcDay {
        let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        UtcDay(u32::try_from(secs / SECS_PER_DAY).unwrap_or(u32::MAX))
    }

    /// The day from a calendar date; `None` when the date does not exist or is before 1970.
    pub fn from_ymd(year: u32, month: u32, day: u32) -> Option<UtcDay> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || year < 1970 {
            return None;
        }
        // Howard Hinnant's days_from_civil, shifted so March is the first month of a year.
        let (y, m) = if month <= 2 {
            (year - 1, month + 9)
        } else {
            (year, month - 3)
        };
        let era = y / 400;
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = u64::from(era) * 146_097 + u64::from(doe);
        u32::try_from(days.checked_sub(719_468)?).ok().map(UtcDay)
    }

    /// The calendar date `(year, month, day)`.
    pub fn ymd(self) -> (u32, u32, u32) {
        let z = u64::from(self.0) + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + u64::from(m <= 2);
        // A u32 day count stays far below u32::MAX years.
        (y as u32, m as u32, d as u32)
    }

    /// Midnight UTC at the start of this day.
    pub fn start(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::from(self.0) * SECS_PER_DAY)
    }

    /// The next day.
    pub fn next(self) -> UtcDay {
        UtcDay(self.0.saturating_add(1))
    }
}

/// The UTC hour containing `t`, as hours since the Unix epoch.
pub fn hour_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 3600
}

/// The start of an hour numbered by [`hour_of`].
pub fn hour_start(hour: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(hour.saturating_mul(3600))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for UtcDay {
    type Err = DateError;

    fn from_str(s: &str) -> Result<UtcDay, DateError> {
        let err = || DateError { value: s.to_string() };
        let mut parts = s.trim().splitn(3, '-');
        let mut field = |len: usize| {
            parts
                .next()
                .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u32>().ok())
                .ok_or_else(err)
        };
        let (y, m, d) = (field(4)?, field(2)?, field(2)?);
        UtcDay::from_ymd(y, m, d).ok_or_else(err)
    }
}

impl fmt::Display for UtcDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl<'de> serde::Deserialize<'de> for UtcDay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UtcDay, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for UtcDay {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_day_numbers() {
        assert_eq!("1970-01-01".parse::<UtcDay>().map(UtcDay::days), Ok(0));
        assert_eq!("2000-03-01".parse::<UtcDay>().map(UtcDay::days), Ok(11_017));
        assert_eq!("2026-11-01".parse::<UtcDay>().map(UtcDay::days), Ok(20_758));
        for days in (0..80_000).step_by(7) {
            let d = UtcDay::from_days(days);
            assert_eq!(d.to_string().parse::<UtcDay>(), Ok(d));
        }
        assert_eq!(
            UtcDay::of(UtcDay::from_days(20_758).start() + Duration::from_secs(86_399)).days(),
            20_758
        );
    }

    #[test]
    fn refuses_impossible_dates_with_the_value() {
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "1969-12-31",
            "26-11-01",
            "2026-11-01x",
            "",
        ] {
            let e = bad.parse::<UtcDay>().err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        assert!("2024-02-29".parse::<UtcDay>().is_ok());
    }
}
