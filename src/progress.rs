//! Live progress of `volley send` on stderr: on a terminal, a few lines per campaign that fit
//! its width (see [`crate::progress_bars`]); when stderr is not a terminal, one JSON status
//! line per campaign every `--progress-every`. `volley serve` answers `GET /campaigns/{id}`
//! with the same [`Status`].
//!
//! Counts are the campaign's (earlier runs of a resumed campaign included, as in the
//! summary); `this_run`, `elapsed_s` and `msgs_per_s` are this run's.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::ValueEnum;
use volley_scheduler::live::{CampaignSnapshot, Live, OutcomeCounts, WarmupUse};
use volley_scheduler::outcome::Outcome;

use crate::progress_bars::Bars;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, JSON lines otherwise.
    Auto,
    /// A few lines per campaign, fitted to the terminal's width.
    Bar,
    /// A JSON status line per campaign, periodically.
    Json,
    /// Nothing.
    Off,
}

/// One campaign's status at a tick.
#[derive(Debug, serde::Serialize)]
pub struct Status<'a> {
    pub campaign: &'a str,
    /// When this status was taken (wall clock, RFC 3339 UTC with milliseconds).
    pub ts: String,
    /// Whether the campaign is paused (`volley serve`): nothing new is sent.
    pub paused: bool,
    /// Why a reputation guard holds the campaign (nothing new is sent until an operator lifts
    /// the hold: `volley reputation resume`); absent when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<&'a str>,
    /// Seconds since this run started (frozen at its end).
    pub elapsed_s: f64,
    /// Share of the recipient file read, 0 to 1.
    pub read: f64,
    /// The campaign's counts, earlier runs included (`delivered`, `deferred`, … at the top
    /// level of the JSON line).
    #[serde(flatten)]
    pub totals: OutcomeCounts,
    /// The same counts, this run only.
    pub this_run: OutcomeCounts,
    /// This run's final outcomes per second, recently (0 while paused and once ended).
    pub msgs_per_s: f64,
    pub queued: u64,
    pub retrying: u64,
    pub open_connections: u64,
    /// Estimated seconds to go (`None` until it can be estimated, while paused, once ended).
    pub eta_s: Option<f64>,
    /// Deliveries per source IP in this run.
    pub by_ip: BTreeMap<String, u64>,
    /// Each warming IP's use of today's budget per provider group (all campaigns).
    pub warmup: Vec<WarmupUse>,
    /// Source IPs a DNS blocklist lists: `127.0.0.2 on zen.spamhaus.org (paused)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocklisted: Vec<String>,
}

/// Whether a campaign still sends, for [`status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Running (or paused: the snapshot says so).
    Going,
    /// Finished, stopped or cancelled: no rate, no ETA.
    Ended,
}

/// The status of `c` now: `live` has the pool's connections and the warm-up use, `elapsed` is
/// the run's time so far, `rate` its recent final outcomes per second ([`RateMeter`]).
pub fn status<'a>(c: &'a CampaignSnapshot, live: &Live, elapsed: Duration, rate: f64, run: Run) -> Status<'a> {
    let sending = run == Run::Going && !c.paused && c.hold.is_none();
    let rate = if sending { rate } else { 0.0 };
    let read = c.read_share();
    let eta_s = if !sending {
        None
    } else if read > 0.0 && read < 1.0 {
        Some(elapsed.as_secs_f64() * (1.0 - read) / read)
    } else if read >= 1.0 && rate > 0.0 {
        Some((c.queued + c.retrying) as f64 / rate)
    } else {
        None
    };
    let mut by_ip = BTreeMap::new();
    for (labels, n) in &c.labelled {
        if let (Outcome::Delivered, Some(ip)) = (labels.outcome, &labels.source_ip) {
            *by_ip.entry(ip.clone()).or_default() += n;
        }
    }
    Status {
        campaign: &c.id,
        ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        paused: c.paused,
        hold: c.hold.as_deref(),
        elapsed_s: elapsed.as_secs_f64(),
        read,
        totals: c.totals(),
        this_run: c.this_run(),
        msgs_per_s: rate,
        queued: c.queued,
        retrying: c.retrying,
        open_connections: live.open_connections(),
        eta_s,
        by_ip,
        warmup: live.warmup(),
        blocklisted: live
            .listings()
            .iter()
            .filter(|v| !v.listed.is_empty())
            .map(|v| {
                let zones: Vec<&str> = v.listed.iter().map(|l| l.zone.as_str()).collect();
                let state = if v.held {
                    "paused"
                } else if v.overridden {
                    "overridden"
                } else {
                    "warn only"
                };
                format!("{} on {} ({state})", v.source_ip, zones.join(", "))
            })
            .collect(),
    }
}

/// A run's recent rate of final outcomes: the change between two samples at least `gap`
/// apart, over the time between them. A sample taken sooner keeps the last rate (`volley
/// serve` answers requests at any pace; a burst of them must not read 0 or infinity).
#[derive(Debug)]
pub struct RateMeter {
    gap: Duration,
    last: (u64, Instant),
    rate: f64,
}

impl RateMeter {
    /// A meter for a run that started at `started` (0 final outcomes then).
    pub fn new(started: Instant, gap: Duration) -> RateMeter {
        RateMeter {
            gap,
            last: (0, started),
            rate: 0.0,
        }
    }

    /// The rate at `now`, given the run's final outcomes so far.
    pub fn sample(&mut self, finals: u64, now: Instant) -> f64 {
        let (before, at) = self.last;
        let dt = now.saturating_duration_since(at);
        if dt >= self.gap && !dt.is_zero() {
            self.rate = finals.saturating_sub(before) as f64 / dt.as_secs_f64();
            self.last = (finals, now);
        }
        self.rate
    }
}

/// The progress task; [`Progress::finish`] stops it and clears a terminal display.
pub struct Progress {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts showing the progress of `live` in `mode`, or `None` for [`Mode::Off`].
    pub fn start(live: Arc<Live>, mode: Mode, every: Duration) -> Option<Progress> {
        let bar = match mode {
            Mode::Off => return None,
            Mode::Bar => true,
            Mode::Json => false,
            Mode::Auto => std::io::stderr().is_terminal(),
        };
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let tick = if bar {
            Duration::from_millis(500)
        } else {
            every.max(Duration::from_millis(100))
        };
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut display = bar.then(Bars::new);
            let mut meters: BTreeMap<String, RateMeter> = BTreeMap::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = stopped.changed() => break,
                }
                let now = Instant::now();
                for c in live.snapshot() {
                    let meter = meters
                        .entry(c.id.clone())
                        .or_insert_with(|| RateMeter::new(started, Duration::ZERO));
                    let rate = meter.sample(c.finals(), now);
                    let s = status(&c, &live, now - started, rate, Run::Going);
                    match &mut display {
                        Some(bars) => bars.show(&s),
                        None => {
                            if let Ok(line) = serde_json::to_string(&s) {
                                eprintln!("{line}");
                            }
                        }
                    }
                }
            }
            if let Some(bars) = display {
                bars.clear();
            }
        });
        Some(Progress { stop, task })
    }

    /// Stops the display (a terminal display is cleared; the final report follows it).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_scheduler::live::AttemptLabels;

    fn delivered(ip: &str) -> AttemptLabels<'_> {
        AttemptLabels {
            outcome: Outcome::Delivered,
            source_ip: ip.parse().ok(),
            site: None,
            category: "delivered",
        }
    }

    #[test]
    fn status_has_rate_eta_and_deliveries_per_ip() {
        let live = Live::default();
        let c = live.campaign("c");
        for ip in ["127.0.0.2", "127.0.0.2", "127.0.0.3"] {
            c.attempt(delivered(ip), Some(Duration::from_millis(1)));
        }
        c.set_read(250, 1000);
        let snap = &live.snapshot()[0];
        let s = status(snap, &live, Duration::from_secs(10), 1.0, Run::Going);
        assert_eq!(s.totals.delivered, 3);
        assert_eq!(s.msgs_per_s, 1.0);
        assert_eq!(s.eta_s, Some(30.0), "a quarter read in 10 s: 30 s to go");
        assert_eq!(s.by_ip["127.0.0.2"], 2);
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["campaign"], "c");
        assert_eq!(json["read"], 0.25);
    }

    /// Regression (issue 17): the status line had no wall-clock time.
    #[test]
    fn status_lines_carry_a_wall_clock_timestamp() {
        let live = Live::default();
        live.campaign("c");
        let before = SystemTime::now() - Duration::from_secs(1);
        let snap = live.snapshot();
        let s = status(&snap[0], &live, Duration::ZERO, 0.0, Run::Going);
        let json = serde_json::to_value(&s).expect("json");
        let ts = json["ts"].as_str().map(humantime::parse_rfc3339);
        assert!(matches!(ts, Some(Ok(t)) if t >= before), "{json}");
    }

    /// Regression (issue 17): after a relaunch `delivered` counted this run only while the
    /// summary counted the campaign; a paused or ended run kept a rate and an ETA.
    #[test]
    fn counts_are_the_campaigns_and_paused_or_ended_runs_have_no_rate_or_eta() {
        let live = Live::default();
        let c = live.campaign("c");
        c.set_earlier(OutcomeCounts {
            delivered: 100,
            bounced: 4,
            ..OutcomeCounts::default()
        });
        c.attempt(delivered("127.0.0.2"), None);
        c.set_read(500, 1000);
        let snap = live.snapshot();
        let s = status(&snap[0], &live, Duration::from_secs(10), 5.0, Run::Going);
        assert_eq!(
            (s.totals.delivered, s.totals.bounced, s.this_run.delivered),
            (101, 4, 1)
        );
        assert_eq!((s.msgs_per_s, s.eta_s), (5.0, Some(10.0)));

        c.set_paused(true);
        let snap = live.snapshot();
        let s = status(&snap[0], &live, Duration::from_secs(10), 5.0, Run::Going);
        assert_eq!((s.paused, s.msgs_per_s, s.eta_s), (true, 0.0, None));
        c.set_paused(false);
        let snap = live.snapshot();
        let s = status(&snap[0], &live, Duration::from_secs(10), 5.0, Run::Ended);
        assert_eq!((s.msgs_per_s, s.eta_s), (0.0, None));
    }

    #[test]
    fn the_rate_meter_measures_between_samples_a_gap_apart() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0, Duration::from_secs(1));
        assert_eq!(m.sample(100, t0 + Duration::from_secs(2)), 50.0);
        // Too soon: the last rate stands (no division by a tiny interval).
        assert_eq!(m.sample(101, t0 + Duration::from_millis(2001)), 50.0);
        // 10 more in the 2 s since the last sample taken.
        assert_eq!(m.sample(110, t0 + Duration::from_secs(4)), 5.0);
        // Nothing more: the rate falls to 0 (a paused or stalled run).
        assert_eq!(m.sample(110, t0 + Duration::from_secs(6)), 0.0);
    }
}
