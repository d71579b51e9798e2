//! Reads an accounting log (JSONL, one line per attempt) once, streaming, into the totals the
//! report shows. Lines that are not accounting records are counted and named, never fatal.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Deserialize;
use volley_warmup::UtcDay;

/// Outcomes in the order the report shows them.
pub const OUTCOMES: [&str; 6] = ["delivered", "deferred", "bounced", "expired", "suppressed", "rejected"];

/// Latencies are counted per millisecond up to this bound (and above it in one bucket).
const LATENCY_MS_MAX: usize = 60_000;

/// Attempts per outcome (indexes of [`OUTCOMES`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally(pub [u64; 6]);

impl Tally {
    fn add(&mut self, outcome: usize) {
        self.0[outcome] += 1;
    }

    /// Attempts of every outcome.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Final outcomes (all but deferrals).
    pub fn finals(&self) -> u64 {
        self.total() - self.0[1]
    }

    /// Bounces, of the recipients mailed that have a final outcome (delivered, bounced,
    /// expired): the bounce rate as (part, whole).
    pub fn bounce_rate(&self) -> (u64, u64) {
        let [delivered, _, bounced, expired, _, _] = self.0;
        (bounced, delivered + bounced + expired)
    }

    /// Deferrals, of the attempts a server answered (delivered, deferred, bounced): the
    /// deferral rate as (part, whole).
    pub fn deferral_rate(&self) -> (u64, u64) {
        let [delivered, deferred, bounced, _, _, _] = self.0;
        (deferred, delivered + deferred + bounced)
    }
}

/// A map of tallies keyed by name: `map[key]`, the key allocated only on its first line.
trait Tallies {
    fn tally_mut(&mut self, key: &str) -> Option<&mut Tally>;
    fn insert_key(&mut self, key: &str) -> &mut Tally;
}

impl Tallies for BTreeMap<String, Tally> {
    fn tally_mut(&mut self, key: &str) -> Option<&mut Tally> {
        self.get_mut(key)
    }
    fn insert_key(&mut self, key: &str) -> &mut Tally {
        self.entry(key.to_owned()).or_default()
    }
}

impl Tallies for HashMap<String, Tally> {
    fn tally_mut(&mut self, key: &str) -> Option<&mut Tally> {
        self.get_mut(key)
    }
    fn insert_key(&mut self, key: &str) -> &mut Tally {
        self.entry(key.to_owned()).or_default()
    }
}

fn tally(map: &mut impl Tallies, key: &str, outcome: usize) {
    match map.tally_mut(key) {
        Some(t) => t.add(outcome),
        None => map.insert_key(key).add(outcome),
    }
}

/// A line of the log as far as the report needs it.
#[derive(Deserialize)]
struct Line<'a> {
    ts: &'a str,
    // Borrowed from the line unless it holds escapes: a key is allocated once per map entry.
    #[serde(default, borrow)]
    campaign: Cow<'a, str>,
    #[serde(borrow)]
    domain: Cow<'a, str>,
    #[serde(default, borrow)]
    source_ip: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    site: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    provider: Option<Cow<'a, str>>,
    outcome: &'a str,
    #[serde(default, borrow)]
    category: Cow<'a, str>,
    #[serde(default)]
    latency_ms: u64,
}

/// Everything the report shows, from one pass over the log.
#[derive(Debug, Default)]
pub struct Totals {
    /// Lines read (records and malformed ones).
    pub lines: u64,
    /// Lines that are not accounting records, and the first of them: (line number, why).
    pub malformed: u64,
    pub first_malformed: Option<(u64, String)>,
    pub campaigns: BTreeMap<String, Tally>,
    pub all: Tally,
    pub by_domain: HashMap<String, Tally>,
    pub by_site: HashMap<String, Tally>,
    pub by_ip: BTreeMap<String, Tally>,
    pub by_provider: BTreeMap<String, Tally>,
    /// Deliveries per (source IP, provider group, UTC day): the warm-up budget each IP used.
    pub ip_provider: BTreeMap<(String, String, UtcDay), u64>,
    /// Categories of every attempt that did not deliver (bounce, deferral and expiry reasons).
    pub categories: BTreeMap<String, Tally>,
    /// Attempts per second since the epoch, per outcome.
    pub per_second: BTreeMap<u64, Tally>,
    /// Delivered attempts per latency in milliseconds (the last bucket: everything above).
    latency: Vec<u64>,
    pub first_ts: Option<SystemTime>,
    pub last_ts: Option<SystemTime>,
}

impl Totals {
    /// Reads accounting logs (several are read as one: the nodes of a cluster campaign each
    /// write their own); with several, a malformed line is named with its file.
    pub fn read_all(paths: &[&Path]) -> anyhow::Result<Totals> {
        let mut totals = Totals {
            latency: vec![0; LATENCY_MS_MAX + 2],
            ..Totals::default()
        };
        for path in paths {
            let before = (totals.lines, totals.first_malformed.is_some());
            totals.add_file(path)?;
            if paths.len() > 1 && !before.1 {
                if let Some((line, why)) = &mut totals.first_malformed {
                    *line -= before.0;
                    *why = format!("{}: {why}", path.display());
                }
            }
        }
        Ok(totals)
    }

    fn add_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let totals = self;
        let file = std::fs::File::open(path).with_context(|| format!("opening accounting log {}", path.display()))?;
        let mut reader = std::io::BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {} after line {}", path.display(), totals.lines))?;
            if n == 0 {
                break;
            }
            totals.lines += 1;
            // The log is UTF-8 (volley writes it); `from_utf8` checks that faster than the
            // lossy conversion, which is only needed for a damaged line.
            let text = match std::str::from_utf8(&buf) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(&buf),
            };
            if text.trim().is_empty() {
                continue;
            }
            if let Err(why) = totals.add_line(text.trim_end()) {
                totals.malformed += 1;
                totals.first_malformed.get_or_insert((totals.lines, why));
            }
        }
        Ok(())
    }

    fn add_line(&mut self, text: &str) -> Result<(), String> {
        let line: Line<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let outcome = OUTCOMES
            .iter()
            .position(|o| *o == line.outcome)
            .ok_or_else(|| format!("field `outcome` = {:?}: not an outcome", line.outcome))?;
        let ts = humantime::parse_rfc3339_weak(line.ts).map_err(|e| format!("field `ts` = {:?}: {e}", line.ts))?;
        self.first_ts = Some(self.first_ts.map_or(ts, |t| t.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |t| t.max(ts)));
        let second = ts.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        self.per_second.entry(second).or_default().add(outcome);
        self.all.add(outcome);
        tally(&mut self.campaigns, &line.campaign, outcome);
        tally(&mut self.by_domain, &line.domain, outcome);
        if let Some(site) = &line.site {
            tally(&mut self.by_site, site, outcome);
        }
        let ip = line.source_ip.as_deref().unwrap_or("(none)");
        let provider = line.provider.as_deref().unwrap_or("(none)");
        if outcome == 0 {
            *self
                .ip_provider
                .entry((ip.to_owned(), provider.to_owned(), UtcDay::of(ts)))
                .or_default() += 1;
            let ms = usize::try_from(line.latency_ms)
                .unwrap_or(usize::MAX)
                .min(LATENCY_MS_MAX + 1);
            self.latency[ms] += 1;
        } else if !line.category.is_empty() {
            tally(&mut self.categories, &line.category, outcome);
        }
        tally(&mut self.by_ip, ip, outcome);
        tally(&mut self.by_provider, provider, outcome);
        Ok(())
    }

    /// The delivery latency at quantile `q` (0..=1) in milliseconds; `None` without deliveries.
    /// Above the counted range the answer is the range's bound.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        Some(LATENCY_MS_MAX as u64 + 1)
    }

    /// Delivered attempts per latency band: (upper bound in ms, count); the last band is open.
    pub fn latency_bands(&self) -> Vec<(u64, u64)> {
        const BOUNDS: [u64; 13] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 30_000, 60_000];
        let mut bands: Vec<(u64, u64)> = BOUNDS.iter().map(|b| (*b, 0)).collect();
        bands.push((u64::MAX, 0));
        for (ms, n) in self.latency.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let i = BOUNDS.iter().position(|b| ms as u64 <= *b).unwrap_or(BOUNDS.len());
            bands[i].1 += n;
        }
        bands
    }

    /// The attempts per outcome over time in at most `points` buckets: (seconds since the
    /// first attempt at the bucket's start, attempts per second in the bucket), and the bucket
    /// width in seconds.
    pub fn timeline(&self, points: u64) -> (Vec<(f64, [f64; 6])>, u64) {
        let (Some((&first, _)), Some((&last, _))) =
            (self.per_second.first_key_value(), self.per_second.last_key_value())
        else {
            return (Vec::new(), 1);
        };
        let span = last - first + 1;
        let width = span.div_ceil(points.max(1)).max(1);
        let mut buckets = vec![[0u64; 6]; usize::try_from(span.div_ceil(width)).unwrap_or(0)];
        for (second, tally) in &self.per_second {
            let i = usize::try_from((second - first) / width).unwrap_or(0);
            if let Some(b) = buckets.get_mut(i) {
                for (acc, n) in b.iter_mut().zip(tally.0) {
                    *acc += n;
                }
            }
        }
        let series = buckets
            .into_iter()
            .enumerate()
            .map(|(i, b)| ((i as u64 * width) as f64, b.map(|n| n as f64 / width as f64)))
            .collect();
        (series, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, domain: &str, ip: &str, outcome: &str, category: &str, latency: u64) -> String {
        format!(
            r#"{{"ts":"{ts}","campaign":"c","recipient":"a@{domain}","domain":"{domain}","source_ip":"{ip}","site":"mx.{domain}","provider":"gmail","outcome":"{outcome}","code":250,"category":"{category}","attempt":1,"latency_ms":{latency},"text":"x"}}"#
        )
    }

    fn totals(lines: &[String]) -> Totals {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounting.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        Totals::read_all(&[&path]).expect("read")
    }

    #[test]
    fn tallies_outcomes_per_domain_ip_provider_and_category() {
        let t = totals(&[
            line(
                "2026-12-01T10:00:00.100Z",
                "a.test",
                "127.0.0.2",
                "delivered",
                "delivered",
                4,
            ),
            line(
                "2026-12-01T10:00:00.900Z",
                "a.test",
                "127.0.0.3",
                "delivered",
                "delivered",
                10,
            ),
            line(
                "2026-12-01T10:00:01.000Z",
                "b.test",
                "127.0.0.2",
                "deferred",
                "mailbox-full",
                3,
            ),
            line(
                "2026-12-01T10:00:09.000Z",
                "b.test",
                "127.0.0.2",
                "bounced",
                "bad-mailbox",
                3,
            ),
        ]);
        assert_eq!((t.lines, t.malformed), (4, 0));
        assert_eq!(t.all.0, [2, 1, 1, 0, 0, 0]);
        assert_eq!(t.all.finals(), 3);
        assert_eq!(t.by_domain["b.test"].0, [0, 1, 1, 0, 0, 0]);
        assert_eq!(t.by_ip["127.0.0.2"].total(), 3);
        let day = UtcDay::from_ymd(2026, 12, 1).expect("date");
        assert_eq!(t.ip_provider[&("127.0.0.3".to_string(), "gmail".to_string(), day)], 1);
        assert_eq!(t.by_ip["127.0.0.2"].bounce_rate(), (1, 2), "1 bounce of 2 finals");
        assert_eq!(t.by_ip["127.0.0.2"].deferral_rate(), (1, 3), "1 deferral of 3 answers");
        assert_eq!(t.categories["bad-mailbox"].0[2], 1);
        assert_eq!(t.latency_quantile(0.5), Some(4));
        assert_eq!(t.latency_quantile(1.0), Some(10));
        let (series, width) = t.timeline(5);
        assert_eq!(width, 2, "10 s in at most 5 buckets");
        assert_eq!(series.len(), 5);
        assert_eq!(series[0].1[0], 1.0, "two deliveries in the first 2 s: 1/s");
        assert_eq!(series[4].1[2], 0.5);
        assert_eq!(t.latency_bands().iter().map(|b| b.1).sum::<u64>(), 2);
    }

    #[test]
    fn malformed_lines_are_counted_and_the_first_is_named() {
        let t = totals(&[
            line(
                "2026-12-01T10:00:00Z",
                "a.test",
                "127.0.0.2",
                "delivered",
                "delivered",
                1,
            ),
            "not json".into(),
            line("yesterday", "a.test", "127.0.0.2", "delivered", "delivered", 1),
            line("2026-12-01T10:00:00Z", "a.test", "127.0.0.2", "lost", "x", 1),
        ]);
        assert_eq!((t.lines, t.malformed, t.all.total()), (4, 3, 1));
        let (line, why) = t.first_malformed.expect("named");
        assert_eq!(line, 2, "{why}");
    }
}
