//! The end-of-run summary (`--summary-json`), with per-source-IP and per-domain tallies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::live::OutcomeCounts;
use crate::outcome::Outcome;

/// Counts of outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Delivered.
    pub delivered: u64,
    /// Deferred.
    pub deferred: u64,
    /// Bounced.
    pub bounced: u64,
}

impl Tally {
    /// Adds one outcome (others than delivered/deferred/bounced are not tallied here).
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Deferred => self.deferred += 1,
            Outcome::Bounced | Outcome::Expired => self.bounced += 1,
            Outcome::Suppressed | Outcome::Rejected => {}
        }
    }
}

/// Outcomes of one provider group.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProviderTally {
    /// Counts of outcomes.
    #[serde(flatten)]
    pub tally: Tally,
    /// When the group's last final outcome of this run happened (warm-up clock, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
    /// The same as a time (`last_at` is written from it when the run ends).
    #[serde(skip)]
    pub last: Option<std::time::SystemTime>,
}

/// What a run did. The first fields are the stable contract of DESIGN.md.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// Distinct valid recipients scheduled (after rejects and duplicates).
    pub recipients: u64,
    /// Recipients accepted by their servers.
    pub delivered: u64,
    /// Recipients still waiting for a retry when the run stopped (0 when it completed).
    pub deferred: u64,
    /// Recipients that failed permanently.
    pub bounced: u64,
    /// Recipients skipped because they are suppressed.
    pub suppressed: u64,
    /// Rows refused (bad address, bad row, header injection); see the rejects file.
    pub rejected: u64,
    /// Wall-clock seconds of this run.
    pub elapsed_s: f64,
    /// This run's deliveries per second of this run (`this_run.delivered / elapsed_s`; the
    /// counts above cover the whole campaign after a resume, a rate covers one run).
    pub msgs_per_s: f64,
    /// Campaign id.
    pub campaign: String,
    /// Rows read from the recipients file.
    pub rows: u64,
    /// Rows skipped as duplicates of an earlier address.
    pub duplicates: u64,
    /// Recipients given up after the retry period (`retry.max_age`); counted in `bounced` too.
    pub expired: u64,
    /// Temporary failures recorded (one per deferred attempt; a recipient may have several).
    pub deferrals: u64,
    /// Attempts after the first (retries of deferred recipients).
    pub retried: u64,
    /// Deliveries that were on the wire when an earlier run was killed and were sent again:
    /// the only recipients that may have received the message twice.
    pub resent_after_restart: u64,
    /// True when every recipient has a final outcome.
    pub complete: bool,
    /// Most recipients parked at once (kept as line + offset behind a busy site).
    pub peak_parked: u64,
    /// Seconds reading paused because the suppression list could not be checked (fail-closed).
    pub suppression_paused_s: f64,
    /// Addresses sent without a suppression check (only with `on_unavailable = "send"`).
    pub suppression_unchecked: u64,
    /// Suppression-list updates (hard and soft bounces) written during the run.
    pub suppression_updates: u64,
    /// Updates that could not be written before the run ended: saved to
    /// `<state_dir>/suppression-pending.jsonl` and written by the next run.
    pub suppression_pending: u64,
    /// Attempts where the connection broke after the final dot (possible duplicates on retry).
    pub maybe_duplicates: u64,
    /// SMTP connections opened.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// New connections receivers refused at their connection cap while others to them were
    /// open (learned, not failures: nothing was deferred for them).
    pub connections_refused: u64,
    /// The connection limits learned from receivers' refusals, per (source IP, MX host).
    pub connection_limits: Vec<volley_engine::pool::RouteConcurrency>,
    /// Reputation holds in place when the run ended: on this campaign (it stopped sending), and
    /// on every (source IP, provider group) route (those IPs sent nothing to that group).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reputation_holds: Vec<crate::reputation::Hold>,
    /// Tallies per source IP.
    pub by_source_ip: BTreeMap<String, Tally>,
    /// Tallies per recipient domain.
    pub by_domain: BTreeMap<String, Tally>,
    /// Tallies per MX site (the MX host set a group of domains shares, or `route:ip:port`).
    pub by_site: BTreeMap<String, Tally>,
    /// Tallies per provider group (warm-up budgets: gmail, microsoft, yahoo, other…), with
    /// when each group's last final outcome of this run happened on the warm-up clock.
    pub by_provider: BTreeMap<String, ProviderTally>,
    /// Messages that waited for warm-up budget (no IP of the pool had budget for their
    /// provider) at least once before they were sent.
    pub warmup_waited: u64,
    /// Those waits added up, in seconds.
    pub warmup_wait_s: f64,
    /// Replies that slowed down or suspended an (IP, provider) pair (adaptive backoff).
    pub backoff_events: u64,
    /// Permanent policy rejections (5xx matching a backoff rule, e.g. 5.7.x) retried later
    /// instead of bounced: they are about the sending IP, not the recipient.
    pub policy_retries: u64,
    /// What this run alone recorded (after a resume, the counts above include earlier runs;
    /// here `bounced` leaves out expiries and `deferred` counts deferrals).
    pub this_run: OutcomeCounts,
    /// The accounting log.
    pub accounting_log: PathBuf,
    /// The rejects file.
    pub rejects_file: PathBuf,
}

impl Summary {
    /// The counts per outcome recorded so far, as the live counters keep them (`bounced`
    /// without expiries, `deferred` as deferrals).
    pub fn outcome_counts(&self) -> OutcomeCounts {
        OutcomeCounts {
            delivered: self.delivered,
            deferred: self.deferrals,
            bounced: self.bounced.saturating_sub(self.expired),
            expired: self.expired,
            suppressed: self.suppressed,
            rejected: self.rejected,
        }
    }

    /// Counts one final outcome for a recipient (`deferred` is counted at the end of a run, from
    /// the recipients still waiting).
    pub fn record(
        &mut self,
        outcome: Outcome,
        source_ip: Option<&str>,
        domain: &str,
        site: Option<&str>,
        provider: Option<&str>,
    ) {
        match outcome {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Deferred => self.deferred += 1,
            Outcome::Bounced => self.bounced += 1,
            Outcome::Expired => {
                self.expired += 1;
                self.bounced += 1;
            }
            Outcome::Suppressed => self.suppressed += 1,
            Outcome::Rejected => self.rejected += 1,
        }
        if matches!(outcome, Outcome::Suppressed | Outcome::Rejected) {
            return;
        }
        if let Some(ip) = source_ip {
            tally(&mut self.by_source_ip, ip, outcome);
        }
        if let Some(site) = site {
            tally(&mut self.by_site, site, outcome);
        }
        if let Some(provider) = provider {
            match self.by_provider.get_mut(provider) {
                Some(t) => t.tally.add(outcome),
                None => self
                    .by_provider
                    .entry(provider.to_string())
                    .or_default()
                    .tally
                    .add(outcome),
            }
        }
        tally(&mut self.by_domain, domain, outcome);
    }
}

fn tally(map: &mut BTreeMap<String, Tally>, key: &str, outcome: Outcome) {
    match map.get_mut(key) {
        Some(t) => t.add(outcome),
        None => map.entry(key.to_string()).or_default().add(outcome),
    }
}
