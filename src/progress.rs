//! Live progress of `volley send` on stderr: on a terminal an indicatif bar per campaign
//! (share of the recipient file read, outcomes, msg/s, queues, open connections, ETA); when
//! stderr is not a terminal, one JSON status line per campaign every `--progress-every`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use volley_scheduler::live::{CampaignSnapshot, Live};
use volley_scheduler::outcome::Outcome;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, JSON lines otherwise.
    Auto,
    /// An indicatif bar per campaign.
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
    pub elapsed_s: f64,
    /// Share of the recipient file read, 0 to 1.
    pub read: f64,
    pub delivered: u64,
    /// Deferrals so far (a recipient deferred twice counts twice).
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    pub suppressed: u64,
    pub rejected: u64,
    /// Final outcomes per second since the previous tick.
    pub msgs_per_s: f64,
    pub queued: u64,
    pub retrying: u64,
    pub open_connections: u64,
    /// Estimated seconds to go (`None` until it can be estimated).
    pub eta_s: Option<f64>,
    /// Deliveries per source IP in this run.
    pub by_ip: BTreeMap<String, u64>,
    /// Each warming IP's use of today's budget per provider group (all campaigns).
    pub warmup: Vec<volley_scheduler::live::WarmupUse>,
}

/// The status of `c` now, given its final outcomes at the previous tick `dt` ago.
pub fn status<'a>(c: &'a CampaignSnapshot, open: u64, elapsed: Duration, previous: u64, dt: Duration) -> Status<'a> {
    let finals = c.finals();
    let rate = if dt.is_zero() {
        0.0
    } else {
        finals.saturating_sub(previous) as f64 / dt.as_secs_f64()
    };
    let read = c.read_share();
    let eta_s = if read > 0.0 && read < 1.0 {
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
        elapsed_s: elapsed.as_secs_f64(),
        read,
        delivered: c.count(Outcome::Delivered),
        deferred: c.count(Outcome::Deferred),
        bounced: c.count(Outcome::Bounced),
        expired: c.count(Outcome::Expired),
        suppressed: c.count(Outcome::Suppressed),
        rejected: c.count(Outcome::Rejected),
        msgs_per_s: rate,
        queued: c.queued,
        retrying: c.retrying,
        open_connections: open,
        eta_s,
        by_ip,
        warmup: Vec::new(),
    }
}

/// The progress task; [`Progress::finish`] stops it and clears a bar display.
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
            let mut previous: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = stopped.changed() => break,
                }
                let now = Instant::now();
                let open = live.open_connections();
                for c in live.snapshot() {
                    let (before, at) = previous.get(&c.id).copied().unwrap_or((0, started));
                    let mut s = status(&c, open, now - started, before, now - at);
                    s.warmup = live.warmup();
                    match &mut display {
                        Some(bars) => bars.show(&s),
                        None => {
                            if let Ok(line) = serde_json::to_string(&s) {
                                eprintln!("{line}");
                            }
                        }
                    }
                    previous.insert(c.id.clone(), (c.finals(), now));
                }
            }
            if let Some(bars) = display {
                bars.clear();
            }
        });
        Some(Progress { stop, task })
    }

    /// Stops the display (a bar is cleared; the final report follows it).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A bar per campaign.
struct Bars {
    multi: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: BTreeMap::new(),
        }
    }

    fn show(&mut self, s: &Status<'_>) {
        let multi = &self.multi;
        let bar = self.bars.entry(s.campaign.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(1000));
            let style = ProgressStyle::with_template("{prefix:.bold} [{bar:24}] {percent:>3}% read  {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(s.campaign.to_string());
            bar
        });
        bar.set_position((s.read * 1000.0) as u64);
        let eta = s.eta_s.map_or_else(
            || "—".to_string(),
            |e| humantime::format_duration(Duration::from_secs(e as u64)).to_string(),
        );
        let ips: Vec<String> = s
            .by_ip
            .iter()
            .map(|(ip, n)| format!("{ip}:{n}"))
            .chain(
                s.warmup
                    .iter()
                    .map(|w| format!("{} {} {}/{} today", w.ip, w.provider, w.sent_today, w.daily_cap)),
            )
            .collect();
        bar.set_message(format!(
            "delivered {} deferred {} bounced {} expired {} suppressed {} rejected {} | {:.0} msg/s | queue {} retry {} | conns {} | ETA {eta} | {}",
            s.delivered,
            s.deferred,
            s.bounced,
            s.expired,
            s.suppressed,
            s.rejected,
            s.msgs_per_s,
            s.queued,
            s.retrying,
            s.open_connections,
            ips.join(" ")
        ));
    }

    fn clear(self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volley_scheduler::live::AttemptLabels;

    #[test]
    fn status_has_rate_eta_and_deliveries_per_ip() {
        let live = Live::default();
        let c = live.campaign("c");
        for ip in ["127.0.0.2", "127.0.0.2", "127.0.0.3"] {
            c.attempt(
                AttemptLabels {
                    outcome: Outcome::Delivered,
                    source_ip: ip.parse().ok(),
                    site: None,
                    category: "delivered",
                },
                Some(Duration::from_millis(1)),
            );
        }
        c.set_read(250, 1000);
        let snap = &live.snapshot()[0];
        let s = status(snap, 7, Duration::from_secs(10), 1, Duration::from_secs(2));
        assert_eq!((s.delivered, s.open_connections), (3, 7));
        assert_eq!(s.msgs_per_s, 1.0, "2 more final outcomes in 2 s");
        assert_eq!(s.eta_s, Some(30.0), "a quarter read in 10 s: 30 s to go");
        assert_eq!(s.by_ip["127.0.0.2"], 2);
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["campaign"], "c");
        assert_eq!(json["read"], 0.25);
    }
}
