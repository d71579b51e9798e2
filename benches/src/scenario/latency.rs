//! Delivery latency from volley's accounting log (one JSON line per attempt, `ts` = when the
//! outcome was recorded, millisecond resolution; `latency_ms` = from the start of the attempt
//! to its last reply).
//!
//! Two measures, both as hdrhistogram percentiles in milliseconds:
//! - **first attempt → 2xx**: from the start of the recipient's first attempt (its line's `ts`
//!   minus its `latency_ms`) to the `ts` of its `delivered` line. It covers the SMTP exchange,
//!   retries and the waits between them; it does not cover the time a message waited in
//!   volley's queues before a connection took it, which the log does not record.
//! - **launch → 2xx**: from the moment the runner started `volley send` to the `ts` of the
//!   `delivered` line: queueing included, so on a bulk run it grows with the list (p50 ≈ half
//!   the run).

use std::io::BufRead;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::error::ScenarioError;

/// Percentiles of one latency histogram, milliseconds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: u64,
    /// 90th percentile.
    pub p90_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Largest value.
    pub max_ms: u64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50_ms: h.value_at_quantile(0.50),
            p90_ms: h.value_at_quantile(0.90),
            p99_ms: h.value_at_quantile(0.99),
            max_ms: h.max(),
            mean_ms: h.mean(),
        }
    }
}

/// What the accounting log says.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LogFigures {
    /// Lines read.
    pub lines: u64,
    /// Distinct recipients (`line` values) in the log.
    pub recipients: u64,
    /// Of those, recipients with a final outcome (anything but `deferred`).
    pub with_final_outcome: u64,
    /// Recipients with more than one final outcome (should be 0).
    pub several_final_outcomes: u64,
    /// `delivered` lines.
    pub delivered: u64,
    /// Attempt lines (every outcome that went to a server: delivered, deferred, bounced,
    /// expired).
    pub attempts: u64,
    /// First attempt → 2xx.
    pub from_first_attempt: Percentiles,
    /// `volley send` started → 2xx.
    pub since_launch: Percentiles,
}

/// The largest latency the histograms hold (30 days).
const MAX_LATENCY_MS: u64 = 30 * 86_400 * 1000;

/// The fields of an accounting line read here.
#[derive(serde::Deserialize)]
struct Record {
    ts: String,
    outcome: Outcome,
    latency_ms: u64,
    line: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Delivered,
    Deferred,
    Bounced,
    Suppressed,
    Rejected,
    Expired,
}

/// Per recipient: start of the first attempt (ms since the epoch; `i64::MAX` = none yet) and
/// how many final outcomes.
#[derive(Clone, Copy)]
struct Seen {
    first_start: i64,
    finals: u32,
    present: bool,
}

const UNSEEN: Seen = Seen {
    first_start: i64::MAX,
    finals: 0,
    present: false,
};

/// Reads the accounting log at `path`; `launched` is when `volley send` was started and
/// `rows` the number of recipients (bounds the `line` numbers: rows + header + slack).
pub fn read_log(path: &Path, launched: SystemTime, rows: u64) -> Result<LogFigures, ScenarioError> {
    let file = std::fs::File::open(path).map_err(ScenarioError::io(path))?;
    let bad = |line: usize, reason: String| ScenarioError::Output {
        path: path.to_path_buf(),
        line: Some(line),
        reason,
    };
    let launched_ms = epoch_ms(launched);
    let max_line = rows.saturating_mul(2).saturating_add(16);
    let mut seen: Vec<Seen> = Vec::with_capacity(rows.min(50_000_000) as usize + 2);
    // 1 ms to 30 days at 3 significant digits; longer values are recorded as 30 days.
    let mut first =
        Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_MS, 3).map_err(|e| bad(0, format!("histogram: {e}")))?;
    let mut launch = first.clone();
    let mut figures = LogFigures::default();
    for (index, text) in std::io::BufReader::with_capacity(1 << 20, file).lines().enumerate() {
        let number = index + 1;
        let text = text.map_err(ScenarioError::io(path))?;
        if text.trim().is_empty() {
            continue;
        }
        let record: Record =
            serde_json::from_str(&text).map_err(|e| bad(number, format!("not an accounting line: {e}")))?;
        let ts = humantime::parse_rfc3339(&record.ts)
            .map(epoch_ms)
            .map_err(|e| bad(number, format!("ts {:?}: {e}", record.ts)))?;
        if record.line > max_line {
            return Err(bad(
                number,
                format!("line {} is past the {rows} rows of the list", record.line),
            ));
        }
        figures.lines += 1;
        let slot = record.line as usize;
        if seen.len() <= slot {
            seen.resize(slot + 1, UNSEEN);
        }
        let s = &mut seen[slot];
        if !s.present {
            s.present = true;
            figures.recipients += 1;
        }
        let sent = !matches!(record.outcome, Outcome::Suppressed | Outcome::Rejected);
        if sent {
            figures.attempts += 1;
            s.first_start = s.first_start.min(ts - record.latency_ms as i64);
        }
        if record.outcome != Outcome::Deferred {
            s.finals += 1;
            match s.finals {
                1 => figures.with_final_outcome += 1,
                2 => figures.several_final_outcomes += 1,
                _ => {}
            }
        }
        if record.outcome == Outcome::Delivered {
            figures.delivered += 1;
            first.saturating_record((ts - s.first_start).max(0) as u64);
            launch.saturating_record((ts - launched_ms).max(0) as u64);
        }
    }
    figures.from_first_attempt = Percentiles::of(&first);
    figures.since_launch = Percentiles::of(&launch);
    Ok(figures)
}

fn epoch_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(ts: &str, outcome: &str, latency: u64, row: u64) -> String {
        format!(
            r#"{{"ts":"{ts}","campaign":"c","recipient":"u@x.test","outcome":"{outcome}","attempt":1,"latency_ms":{latency},"line":{row},"tls":true}}"#
        )
    }

    #[test]
    fn latency_runs_from_the_first_attempt_and_from_launch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounting.jsonl");
        let lines = [
            // Row 2: delivered at once, 30 ms attempt.
            line("2026-12-01T10:00:01.030Z", "delivered", 30, 2),
            // Row 3: deferred (attempt started at 1.000), delivered at 3.050.
            line("2026-12-01T10:00:01.040Z", "deferred", 40, 3),
            line("2026-12-01T10:00:03.050Z", "delivered", 20, 3),
            // Row 4: bounced.
            line("2026-12-01T10:00:01.100Z", "bounced", 5, 4),
            // Row 5: rejected row, never sent.
            line("2026-12-01T10:00:00.500Z", "rejected", 0, 5),
        ];
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let launched = humantime::parse_rfc3339("2026-12-01T10:00:00.000Z").unwrap();
        let f = read_log(&path, launched, 4).unwrap();
        assert_eq!(
            (f.lines, f.recipients, f.with_final_outcome, f.several_final_outcomes),
            (5, 4, 4, 0)
        );
        assert_eq!((f.delivered, f.attempts), (2, 4));
        assert_eq!(f.from_first_attempt.count, 2);
        assert_eq!(f.from_first_attempt.p50_ms, 30, "{f:?}");
        // hdrhistogram keeps 3 significant digits: 2050 ms is recorded within 1 ms.
        assert!(f.from_first_attempt.max_ms.abs_diff(2050) <= 1, "{f:?}");
        assert_eq!(f.since_launch.p50_ms, 1030);
        assert!(f.since_launch.max_ms.abs_diff(3050) <= 1, "{f:?}");
        let later = launched + Duration::from_secs(2);
        assert_eq!(
            read_log(&path, later, 4).unwrap().since_launch.p50_ms,
            0,
            "clamped at 0"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounting.jsonl");
        std::fs::write(&path, line("2026-12-01T10:00:01Z", "delivered", 1, 2) + "\nnot json\n").unwrap();
        let err = read_log(&path, SystemTime::now(), 10).unwrap_err().to_string();
        assert!(err.contains("accounting.jsonl:2"), "{err}");
        std::fs::write(&path, line("yesterday", "delivered", 1, 2)).unwrap();
        let err = read_log(&path, SystemTime::now(), 10).unwrap_err().to_string();
        assert!(err.contains("yesterday"), "{err}");
        std::fs::write(&path, line("2026-12-01T10:00:01Z", "delivered", 1, 9999)).unwrap();
        assert!(read_log(&path, SystemTime::now(), 10).is_err());
    }
}
