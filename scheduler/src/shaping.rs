//! Traffic shaping of a run: every source IP's warm-up budget per provider group
//! ([`volley_warmup::Budgets`]: curve caps, pacing, adaptive backoff), shared by all the
//! campaigns of the process, on the warm-up clock (real time, or a rehearsal's fast clock).
//!
//! It also holds the `[[destination]]` policies ([`crate::destinations`]) and their rate
//! limiters, one GCRA limiter per (source IP, block that set the rate).
//!
//! The dispatcher asks [`Shaper::take`] before it hands a message to an IP; a refusal says
//! until when (as a real instant) that IP cannot send to that site. It feeds every reply to
//! [`Shaper::observe`], which slows down or suspends the (IP, site) pair a throttling reply
//! came from (see [`crate::site_backoff`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use volley_engine::{RecipientStatus, RouteLimits};
use volley_warmup::budget::Usage;
use volley_warmup::{BackoffAction, Budgets, CounterStore, Providers, Rate, SendLimiter, WaitReason, WarmupClock};

use crate::site_backoff::SiteBackoff;

use crate::config::SendConfig;

/// Not now: the real instant to ask again, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// When the pair may have budget again.
    pub until: Instant,
    /// What is spent or held.
    pub reason: WaitReason,
}

/// The warm-up budgets of the run's source IPs.
pub struct Shaper {
    budgets: Mutex<Budgets>,
    backoff: Mutex<SiteBackoff>,
    providers: Providers,
    /// Provider group names, shared with the sites that use them.
    names: Vec<Arc<str>>,
    clock: WarmupClock,
    /// IPs on a warm-up curve.
    warming: HashSet<IpAddr>,
    /// The `[[destination]]` blocks in effect.
    destinations: crate::destinations::DestinationPolicies,
    /// Destination rates per (source IP, block that set the rate).
    destination_rates: Mutex<HashMap<(IpAddr, Arc<str>), SendLimiter>>,
}

impl std::fmt::Debug for Shaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shaper")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Shaper {
    /// The budgets of `config`'s source IPs over `store` (the counters of earlier runs), on
    /// the configured warm-up clock. `config_path` is named in errors.
    pub fn open(config: &SendConfig, config_path: &Path, store: Box<dyn CounterStore>) -> Result<Shaper, String> {
        let policy = config.warmup_policy(config_path).map_err(|e| e.to_string())?;
        let backoff = SiteBackoff::new(policy.rules.clone());
        let mut budgets = Budgets::new(policy.curves, policy.rules, store);
        let warming = policy
            .states
            .iter()
            .filter(|(_, state)| matches!(state, volley_warmup::WarmupState::Warming { .. }))
            .map(|(ip, _)| *ip)
            .collect();
        for (ip, state) in policy.states {
            budgets.add_ip(ip, state).map_err(|e| e.to_string())?;
        }
        for ip in &config.source_ips {
            if let Some(rate) = ip.rate {
                budgets.set_warm_rate(ip.address, rate);
            }
        }
        let names = policy.providers.names().iter().map(|n| Arc::from(n.as_str())).collect();
        Ok(Shaper {
            budgets: Mutex::new(budgets),
            backoff: Mutex::new(backoff),
            providers: policy.providers,
            names,
            clock: config.warmup.clock(),
            warming,
            destinations: config.destination_policies(),
            destination_rates: Mutex::new(HashMap::new()),
        })
    }

    fn budgets(&self) -> MutexGuard<'_, Budgets> {
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.budgets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The provider group of a site reached for `domain` over MX hosts `hosts`, and whether
    /// the recipient domain decided it (no MX host name matched a group).
    pub fn provider(&self, hosts: &[&str], domain: &str) -> (Arc<str>, bool) {
        let (name, by_domain) = self.providers.group_and_source(hosts, domain);
        let name = match self.names.iter().find(|n| ***n == *name) {
            Some(n) => n.clone(),
            None => Arc::from(name),
        };
        (name, by_domain)
    }

    /// The `[[destination]]` blocks in effect.
    pub fn destinations(&self) -> &crate::destinations::DestinationPolicies {
        &self.destinations
    }

    /// Takes one message of `ip`'s rate to the destination whose block `owner` set `rate`, or
    /// says from when it has one again (GCRA, real time).
    pub fn take_destination_rate(&self, ip: IpAddr, owner: &Arc<str>, rate: Rate) -> Result<(), Instant> {
        let mut limiters = self.destination_rates.lock().unwrap_or_else(|e| e.into_inner());
        let limiter = limiters
            .entry((ip, owner.clone()))
            .or_insert_with(|| SendLimiter::new(rate));
        limiter.try_acquire().map_err(|wait| Instant::now() + wait)
    }

    fn site_backoff(&self) -> MutexGuard<'_, SiteBackoff> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one message of `ip`'s budget for `provider` at `site`, or says until when it
    /// has none: the pair's backoff at this site first (slowed or suspended), then the
    /// warm-up budget for the provider.
    pub fn take(&self, ip: IpAddr, provider: &str, site: &Arc<str>) -> Result<(), Hold> {
        let now = self.clock.now();
        {
            let mut backoff = self.site_backoff();
            if !backoff.is_empty() {
                backoff
                    .check(ip, site, now, |t| self.clock.instant_of(t))
                    .map_err(|(until, reason)| Hold { until, reason })?;
            }
        }
        self.budgets().try_take(ip, provider, now).map_err(|wait| Hold {
            until: self.clock.instant_of(wait.until),
            reason: wait.reason,
        })?;
        self.site_backoff().sent(ip, site, Instant::now());
        Ok(())
    }

    /// Feeds a remote reply from `site` to `ip` to adaptive backoff (a slow-down scales what
    /// the IP has been sending there, counted by [`Shaper::take`] for every campaign of the
    /// process); the action taken when a rule matched. Local statuses (Volley's own
    /// decisions) are not replies and are ignored.
    pub fn observe(&self, ip: IpAddr, site: &Arc<str>, status: &RecipientStatus) -> Option<BackoffAction> {
        let code = status.code?;
        if code < 400 {
            return None;
        }
        let enhanced = status.enhanced.map(|e| e.to_string());
        let now = self.clock.now();
        let mut backoff = self.site_backoff();
        let rate_per_s = backoff.rate(ip, site, Instant::now());
        let action = backoff.observe(ip, site, Some(code), enhanced.as_deref(), &status.text, rate_per_s, now);
        drop(backoff);
        if let Some(action) = action {
            tracing::info!("backoff: {ip} -> {site}: {action:?} after \"{code} {}\"", status.text);
        }
        action
    }

    /// The (IP, site) pair's backoff: rate factor (1.0: not slowed) and suspension end.
    pub fn backoff_state(&self, ip: IpAddr, site: &Arc<str>) -> (f64, Option<SystemTime>) {
        let now = self.clock.now();
        self.site_backoff().state(ip, site, now)
    }

    /// The pair's caps, usage and backoff now.
    pub fn usage(&self, ip: IpAddr, provider: &str) -> Usage {
        let now = self.clock.now();
        self.budgets().usage(ip, provider, now)
    }

    /// Every warming IP's use of today's budget per provider group.
    pub fn warming_usage(&self) -> Vec<crate::live::WarmupUse> {
        let mut ips: Vec<IpAddr> = self.warming.iter().copied().collect();
        ips.sort();
        let mut out = Vec::new();
        for ip in ips {
            for provider in &self.names {
                let usage = self.usage(ip, provider);
                if let Some(caps) = usage.caps {
                    out.push(crate::live::WarmupUse {
                        ip,
                        provider: provider.to_string(),
                        sent_today: usage.counts.day,
                        daily_cap: caps.daily,
                    });
                }
            }
        }
        out
    }

    /// The warm-up clock.
    pub fn clock(&self) -> WarmupClock {
        self.clock
    }

    /// Connection limits for a warming `ip` sending to `provider` today, derived from today's
    /// hourly cap: a connection per 300 messages an hour (at least one), and a tenth of the
    /// hourly cap per connection (at least 5) — a new IP does not open many connections to a
    /// provider or push many messages down one. `None` for a warm IP (the pool's limits).
    pub fn route_limits(&self, ip: IpAddr, provider: &str) -> Option<RouteLimits> {
        if !self.warming.contains(&ip) {
            return None;
        }
        let caps = self.usage(ip, provider).caps?;
        Some(limits_for(caps.hourly))
    }

    /// Whether `ip` is warming up (has caps on some day).
    pub fn is_warming(&self, ip: IpAddr) -> bool {
        self.warming.contains(&ip)
    }

    /// The provider group names, `other` included.
    pub fn provider_names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Writes the counters (at the end of a run); logs what cannot be written.
    pub fn flush(&self) {
        let now = self.clock.now();
        let mut budgets = self.budgets();
        if let Some(e) = budgets.take_store_error() {
            tracing::warn!("warm-up counters: {e}");
        }
        if let Err(e) = budgets.flush(now) {
            tracing::error!("warm-up counters could not be saved: {e}");
        }
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Route limits for an hourly cap (see [`Shaper::route_limits`]).
pub fn limits_for(hourly: u64) -> RouteLimits {
    let hourly = usize::try_from(hourly).unwrap_or(usize::MAX);
    RouteLimits {
        max_connections: hourly.div_ceil(300).max(1),
        max_messages_per_connection: (hourly / 10).max(5),
    }
}

/// A time on the warm-up clock as RFC 3339 (for summaries and logs).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ip_gets_few_connections_and_short_ones() {
        let day1 = limits_for(20);
        assert_eq!((day1.max_connections, day1.max_messages_per_connection), (1, 5));
        let later = limits_for(3000);
        assert_eq!((later.max_connections, later.max_messages_per_connection), (10, 300));
    }
}
