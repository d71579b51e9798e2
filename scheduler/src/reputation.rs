//! Reputation guards: a sliding-window hard-bounce rate and spam-complaint rate per campaign
//! and per route (source IP × provider group). Past a threshold (over a minimum sample) the
//! guard places a *hold*: a held campaign sends nothing new, a held route's IP takes no mail
//! for that provider group (the campaign's other IPs carry it). A hold stays until an operator
//! lifts it (`volley reputation resume`, `POST /reputation/resume`, or resuming the campaign),
//! across restarts.
//!
//! - `reputation/window.rs` — the sliding window of counts and its rates;
//! - `reputation/holds.rs` — holds on disk, one file each, shared by every process of a state
//!   directory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

mod config;
mod holds;
mod listings;
mod window;

pub use config::ReputationConfig;

pub use holds::{HoldDir, HOLDS_DIR};
pub use listings::{read_overrides, write_override, Listing, ListingView, OnListed};
pub use window::{Counts, Signal, Window};

/// What a guard watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// One campaign, over all its IPs and providers.
    Campaign { campaign: String },
    /// One source IP's mail to one provider group, over all campaigns.
    Route { source_ip: IpAddr, provider: String },
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Campaign { campaign } => write!(f, "campaign {campaign}"),
            Scope::Route { source_ip, provider } => write!(f, "source IP {source_ip} to {provider}"),
        }
    }
}

/// Which rate crossed its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ComplaintRate,
    HardBounceRate,
}

impl Metric {
    /// How the log and progress name it.
    pub fn label(self) -> &'static str {
        match self {
            Metric::ComplaintRate => "complaint rate",
            Metric::HardBounceRate => "hard-bounce rate",
        }
    }
}

/// A hold a guard placed: what, why, since when.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    #[serde(flatten)]
    pub scope: Scope,
    pub metric: Metric,
    /// The rate when the hold was placed, in percent.
    pub rate_percent: f64,
    /// The threshold it crossed, in percent.
    pub threshold_percent: f64,
    /// Messages the rate was computed over.
    pub sample: u64,
    /// The window's span, e.g. `24h`.
    pub window: String,
    /// When the hold was placed (RFC 3339).
    pub since: String,
}

impl Hold {
    /// One line for the log and progress: `hard-bounce rate 7.10 % over 1000 messages in 24h
    /// exceeds 5 %`.
    pub fn reason(&self) -> String {
        format!(
            "{} {:.2} % over {} messages in {} exceeds {} %",
            self.metric.label(),
            self.rate_percent,
            self.sample,
            self.window,
            self.threshold_percent
        )
    }
}

/// Why holds cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ReputationError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("hold file {} cannot be read: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// The rates of one scope now.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RateView {
    #[serde(flatten)]
    pub scope: Scope,
    pub delivered: u64,
    pub hard_bounced: u64,
    pub complained: u64,
    pub hard_bounce_rate_percent: f64,
    pub complaint_rate_percent: f64,
    pub held: bool,
}

#[derive(Default)]
struct Inner {
    campaigns: HashMap<Box<str>, Window>,
    routes: HashMap<IpAddr, HashMap<Box<str>, Window>>,
    holds: HashMap<Scope, Hold>,
    listings: listings::Listings,
}

/// The guards of a process: windows per scope and the holds of its state directory.
pub struct Guards {
    config: ReputationConfig,
    dir: HoldDir,
    inner: Mutex<Inner>,
    /// Fast paths for the dispatchers' per-message checks: whether any hold exists.
    any_campaign_hold: AtomicBool,
    any_route_hold: AtomicBool,
}

impl std::fmt::Debug for Guards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guards").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A map entry looked up by a borrowed key, inserted (allocated) only the first time.
fn window_of<'m>(map: &'m mut HashMap<Box<str>, Window>, key: &str, span: Duration) -> &'m mut Window {
    if !map.contains_key(key) {
        map.insert(key.into(), Window::new(span));
    }
    map.get_mut(key).expect("inserted above")
}

impl Guards {
    /// The guards over `state_dir`'s holds (read now; an unreadable hold file is logged).
    pub fn open(config: &ReputationConfig, state_dir: &Path) -> Guards {
        let guards = Guards {
            config: config.clone(),
            dir: HoldDir::new(state_dir),
            inner: Mutex::new(Inner::default()),
            any_campaign_hold: AtomicBool::new(false),
            any_route_hold: AtomicBool::new(false),
        };
        guards.refresh();
        guards
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings.
    pub fn config(&self) -> &ReputationConfig {
        &self.config
    }

    /// Counts one message's signal for its campaign and route (`(source IP, provider)`, when
    /// it had one); the holds this placed (already on disk, and logged).
    pub fn record(&self, campaign: &str, route: Option<(IpAddr, &str)>, signal: Signal, now: SystemTime) -> Vec<Hold> {
        if !self.config.enabled {
            return Vec::new();
        }
        let span = self.config.window;
        let mut placed = Vec::new();
        let mut inner = self.inner();
        if self.config.campaigns {
            let w = window_of(&mut inner.campaigns, campaign, span);
            w.add(signal, now);
            if signal != Signal::Delivered {
                let counts = w.counts(now);
                let scope = Scope::Campaign {
                    campaign: campaign.to_string(),
                };
                if !inner.holds.contains_key(&scope) {
                    placed.extend(self.judge(scope, counts, now));
                }
            }
        }
        if let Some((ip, provider)) = route.filter(|_| self.config.routes) {
            let w = window_of(inner.routes.entry(ip).or_default(), provider, span);
            w.add(signal, now);
            if signal != Signal::Delivered {
                let counts = w.counts(now);
                let scope = Scope::Route {
                    source_ip: ip,
                    provider: provider.to_string(),
                };
                if !inner.holds.contains_key(&scope) {
                    placed.extend(self.judge(scope, counts, now));
                }
            }
        }
        for hold in &placed {
            tracing::warn!("reputation guard: {} held: {}", hold.scope, hold.reason());
            if let Err(e) = self.dir.place(hold) {
                tracing::error!(
                    "reputation guard: the hold on {} is kept in memory only: {e}",
                    hold.scope
                );
            }
            inner.holds.insert(hold.scope.clone(), hold.clone());
        }
        drop(inner);
        if !placed.is_empty() {
            self.update_flags();
        }
        placed
    }

    /// The hold a scope's counts call for, if any: complaints first (the stronger signal).
    fn judge(&self, scope: Scope, counts: Counts, now: SystemTime) -> Option<Hold> {
        let c = &self.config;
        let checks = [
            (Metric::ComplaintRate, counts.complaint_rate(), c.max_complaint_rate),
            (
                Metric::HardBounceRate,
                counts.hard_bounce_rate(),
                c.max_hard_bounce_rate,
            ),
        ];
        let (metric, (rate, sample), threshold) = checks
            .into_iter()
            .find(|(_, (rate, sample), max)| *sample >= c.min_sample && rate > max)?;
        Some(Hold {
            scope,
            metric,
            rate_percent: rate,
            threshold_percent: threshold,
            sample,
            window: humantime::format_duration(c.window).to_string(),
            since: humantime::format_rfc3339_seconds(now).to_string(),
        })
    }

    fn update_flags(&self) {
        let inner = self.inner();
        let (mut campaign, mut route) = (false, inner.listings.any_blocking());
        for scope in inner.holds.keys() {
            match scope {
                Scope::Campaign { .. } => campaign = true,
                Scope::Route { .. } => route = true,
            }
        }
        self.any_campaign_hold.store(campaign, Ordering::Relaxed);
        self.any_route_hold.store(route, Ordering::Relaxed);
    }

    /// The hold on `campaign`, if any.
    pub fn campaign_hold(&self, campaign: &str) -> Option<Hold> {
        if !self.any_campaign_hold.load(Ordering::Relaxed) {
            return None;
        }
        let scope = Scope::Campaign {
            campaign: campaign.to_string(),
        };
        self.inner().holds.get(&scope).cloned()
    }

    /// Whether `ip` is held off `provider`: by a guard's hold on the route, or (with
    /// `on_listed = "pause"`) by a blocklist listing of the IP no operator overrode.
    pub fn route_held(&self, ip: IpAddr, provider: &str) -> bool {
        if !self.any_route_hold.load(Ordering::Relaxed) {
            return false;
        }
        let inner = self.inner();
        inner.listings.blocks(ip)
            || inner.holds.keys().any(|s| match s {
                Scope::Route { source_ip, provider: p } => *source_ip == ip && p == provider,
                Scope::Campaign { .. } => false,
            })
    }

    /// Sets what the blocklist monitor found for `ip` (zone -> listing, the zones it checked);
    /// logs listings and delistings. A listing that cleared also ends an operator's override.
    pub fn set_listings(&self, ip: IpAddr, checked: &[String], listed: Vec<Listing>, on_listed: OnListed) {
        let mut inner = self.inner();
        let cleared = inner.listings.set(ip, checked, listed, on_listed);
        drop(inner);
        if cleared {
            if let Err(e) = listings::remove_override(&self.dir, ip) {
                tracing::warn!("blocklists: {e}");
            }
        }
        self.update_flags();
    }

    /// An operator's decision to send from a listed `ip` anyway, until its listings clear
    /// (kept across restarts). Whether the IP is listed (nothing to override otherwise).
    pub fn override_listing(&self, ip: IpAddr) -> Result<bool, ReputationError> {
        let mut inner = self.inner();
        if !inner.listings.is_listed(ip) {
            return Ok(false);
        }
        listings::write_override(&self.dir, ip)?;
        inner.listings.set_override(ip, true);
        drop(inner);
        self.update_flags();
        tracing::warn!("blocklists: {ip} sends although listed (operator override)");
        Ok(true)
    }

    /// Every source IP's listings, the zones checked and whether it is held, sorted by IP.
    pub fn listings(&self) -> Vec<ListingView> {
        self.inner().listings.views()
    }

    /// Lifts the hold on `scope` (an operator's resume): the file goes, and the scope's window
    /// starts empty so that the counts that placed the hold do not place it again at once.
    /// Whether there was a hold.
    pub fn lift(&self, scope: &Scope) -> Result<bool, ReputationError> {
        let on_disk = self.dir.lift(scope)?;
        let mut inner = self.inner();
        let in_memory = inner.holds.remove(scope).is_some();
        Self::clear_window(&mut inner, scope);
        drop(inner);
        self.update_flags();
        if on_disk || in_memory {
            tracing::info!("reputation guard: hold on {scope} lifted");
        }
        Ok(on_disk || in_memory)
    }

    fn clear_window(inner: &mut Inner, scope: &Scope) {
        match scope {
            Scope::Campaign { campaign } => {
                inner.campaigns.remove(campaign.as_str());
            }
            Scope::Route { source_ip, provider } => {
                if let Some(by_provider) = inner.routes.get_mut(source_ip) {
                    by_provider.remove(provider.as_str());
                }
            }
        }
    }

    /// Reads the hold folder again: holds placed by another process are taken, holds lifted by
    /// another process (`volley reputation resume`) are lifted here too.
    pub fn refresh(&self) {
        let (on_disk, errors) = self.dir.list();
        for e in errors {
            tracing::warn!("reputation guard: {e}");
        }
        let mut inner = self.inner();
        inner.listings.load_overrides(&listings::read_overrides(&self.dir));
        // An override of an IP that turned out not to be listed would cancel its next listing.
        for ip in inner.listings.stale_overrides() {
            inner.listings.set_override(ip, false);
            if let Err(e) = listings::remove_override(&self.dir, ip) {
                tracing::warn!("blocklists: {e}");
            }
        }
        let lifted: Vec<Scope> = inner
            .holds
            .keys()
            .filter(|s| !on_disk.iter().any(|h| &h.scope == *s))
            .cloned()
            .collect();
        for scope in lifted {
            inner.holds.remove(&scope);
            Self::clear_window(&mut inner, &scope);
            tracing::info!("reputation guard: hold on {scope} lifted");
        }
        for hold in on_disk {
            inner.holds.entry(hold.scope.clone()).or_insert(hold);
        }
        drop(inner);
        self.update_flags();
    }

    /// Every hold, sorted by scope.
    pub fn holds(&self) -> Vec<Hold> {
        let mut holds: Vec<Hold> = self.inner().holds.values().cloned().collect();
        holds.sort_by(|a, b| a.scope.cmp(&b.scope));
        holds
    }

    /// The rates of every scope with counts in its window, or a hold, at `now`, sorted.
    pub fn rates(&self, now: SystemTime) -> Vec<RateView> {
        let mut inner = self.inner();
        let inner = &mut *inner;
        let mut scopes: Vec<(Scope, Counts)> = Vec::new();
        for (campaign, w) in &mut inner.campaigns {
            let scope = Scope::Campaign {
                campaign: campaign.to_string(),
            };
            scopes.push((scope, w.counts(now)));
        }
        for (ip, by_provider) in &mut inner.routes {
            for (provider, w) in by_provider {
                let scope = Scope::Route {
                    source_ip: *ip,
                    provider: provider.to_string(),
                };
                scopes.push((scope, w.counts(now)));
            }
        }
        for scope in inner.holds.keys() {
            if !scopes.iter().any(|(s, _)| s == scope) {
                scopes.push((scope.clone(), Counts::default()));
            }
        }
        let mut out: Vec<RateView> = scopes
            .into_iter()
            .filter_map(|(scope, counts)| {
                let held = inner.holds.contains_key(&scope);
                (counts != Counts::default() || held).then(|| RateView {
                    delivered: counts.delivered,
                    hard_bounced: counts.hard_bounced,
                    complained: counts.complained,
                    hard_bounce_rate_percent: counts.hard_bounce_rate().0,
                    complaint_rate_percent: counts.complaint_rate().0,
                    held,
                    scope,
                })
            })
            .collect();
        out.sort_by(|a, b| a.scope.cmp(&b.scope));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_sample: u64) -> ReputationConfig {
        ReputationConfig {
            min_sample,
            ..ReputationConfig::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        NOW + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn a_hard_bounce_rate_past_the_threshold_holds_campaign_and_route_once_the_sample_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guards::open(&config(100), dir.path());
        // 10 bounces among the first 60: 16 %, but the sample is too small.
        for i in 0..60 {
            let signal = if i % 6 == 0 {
                Signal::HardBounce
            } else {
                Signal::Delivered
            };
            assert!(g.record("news", Some((ip(2), "gmail")), signal, at(1)).is_empty());
        }
        for _ in 0..39 {
            g.record("news", Some((ip(3), "gmail")), Signal::Delivered, at(2));
        }
        // The 100th message of the campaign is a bounce: 11 %, past 5 %.
        let placed = g.record("news", Some((ip(3), "gmail")), Signal::HardBounce, at(3));
        assert_eq!(placed.len(), 1, "{placed:?}");
        assert_eq!(
            placed[0].scope,
            Scope::Campaign {
                campaign: "news".into()
            }
        );
        assert_eq!(placed[0].metric, Metric::HardBounceRate);
        assert_eq!((placed[0].sample, placed[0].rate_percent), (100, 11.0));
        assert!(g.campaign_hold("news").is_some());
        assert!(g.campaign_hold("other").is_none());
        // 127.0.0.3 has 40 messages: under the sample, not held.
        assert!(!g.route_held(ip(3), "gmail"));
        // Holds are on disk: a new process sees them.
        let again = Guards::open(&config(100), dir.path());
        assert_eq!(again.holds(), g.holds());
        assert!(dir.path().join("holds/campaign-news.json").is_file());
    }

    #[test]
    fn a_route_hold_takes_one_ip_off_one_provider_and_lifting_clears_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(50);
        cfg.campaigns = false;
        let g = Guards::open(&cfg, dir.path());
        for _ in 0..49 {
            g.record("a", Some((ip(2), "yahoo")), Signal::Delivered, at(0));
        }
        let placed = g.record("b", Some((ip(2), "yahoo")), Signal::Complaint, at(1));
        assert!(placed.is_empty(), "49 delivered: under the sample");
        g.record("b", Some((ip(2), "yahoo")), Signal::Delivered, at(1));
        let placed = g.record("b", Some((ip(2), "yahoo")), Signal::Complaint, at(2));
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].metric, Metric::ComplaintRate);
        assert_eq!(placed[0].rate_percent, 4.0, "2 complaints per 50 delivered");
        assert!(g.route_held(ip(2), "yahoo"));
        assert!(!g.route_held(ip(2), "gmail"));
        assert!(!g.route_held(ip(3), "yahoo"));
        assert!(g.campaign_hold("b").is_none(), "campaign guards are off");
        let scope = Scope::Route {
            source_ip: ip(2),
            provider: "yahoo".into(),
        };
        assert!(g.lift(&scope).unwrap());
        assert!(!g.route_held(ip(2), "yahoo"));
        assert!(!g.lift(&scope).unwrap(), "nothing left to lift");
        // The window started over: one more complaint is under the sample.
        assert!(g
            .record("b", Some((ip(2), "yahoo")), Signal::Complaint, at(3))
            .is_empty());
    }

    #[test]
    fn a_hold_lifted_by_another_process_is_lifted_on_refresh_and_one_placed_elsewhere_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guards::open(&config(1), dir.path());
        g.record("news", None, Signal::HardBounce, at(0));
        assert!(g.campaign_hold("news").is_some());
        let other = Guards::open(&config(1), dir.path());
        assert!(other
            .lift(&Scope::Campaign {
                campaign: "news".into()
            })
            .unwrap());
        other.record("promo", None, Signal::HardBounce, at(0));
        assert!(g.campaign_hold("news").is_some(), "until the next refresh");
        g.refresh();
        assert!(g.campaign_hold("news").is_none());
        assert!(g.campaign_hold("promo").is_some());
    }

    #[test]
    fn disabled_guards_count_nothing_and_rates_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guards::open(
            &ReputationConfig {
                enabled: false,
                min_sample: 1,
                ..ReputationConfig::default()
            },
            dir.path(),
        );
        assert!(g.record("x", None, Signal::HardBounce, at(0)).is_empty());
        assert!(g.rates(at(0)).is_empty());
        let g = Guards::open(&config(10), dir.path());
        g.record("x", Some((ip(9), "other")), Signal::Delivered, at(0));
        g.record("x", Some((ip(9), "other")), Signal::HardBounce, at(0));
        let rates = g.rates(at(0));
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].scope, Scope::Campaign { campaign: "x".into() });
        assert_eq!(rates[0].hard_bounce_rate_percent, 50.0);
        assert!(!rates[0].held);
    }

    #[test]
    fn config_problems_name_the_field_and_value() {
        let bad = ReputationConfig {
            max_complaint_rate: 0.0,
            max_hard_bounce_rate: 150.0,
            min_sample: 0,
            window: Duration::ZERO,
            ..ReputationConfig::default()
        };
        let fields: Vec<String> = bad.problems().into_iter().map(|(f, v, _)| format!("{f}={v}")).collect();
        assert_eq!(
            fields,
            [
                "reputation.max_complaint_rate=0",
                "reputation.max_hard_bounce_rate=150",
                "reputation.min_sample=0",
                "reputation.window=0s"
            ]
        );
        assert!(ReputationConfig::default().problems().is_empty());
    }

    #[test]
    fn a_corrupt_hold_file_is_reported_and_the_others_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let g = Guards::open(&config(1), dir.path());
        g.record("news", None, Signal::HardBounce, at(0));
        std::fs::write(dir.path().join("holds/campaign-bad.json"), b"{not json").unwrap();
        let (holds, errors) = HoldDir::new(dir.path()).list();
        assert_eq!(holds.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("campaign-bad.json"), "{}", errors[0]);
    }
}
