//! Turning outcomes into accounting lines and summary tallies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use volley_engine::{RecipientStatus, RouteKey};

use super::job::{Job, Refused, SuppressedRow};
use super::SendError;
use crate::accounting::{now_rfc3339, AccountingLog, AccountingRecord};
use crate::bounces::{Action, BounceRules, Classification};
use crate::outcome::Outcome;
use crate::rejects::RejectsWriter;
use crate::reputation::Signal;
use crate::summary::Summary;
use crate::suppression::mark::LoggedOutcome;
use crate::suppression::{unix_now, Origin, SuppressionWriter, Update, WrittenMark, GLOBAL};

/// Where an attempt went, as far as it got: its site and provider group once routed, the
/// route once handed to the engine.
#[derive(Clone, Copy, Default)]
pub(crate) struct At<'a> {
    pub site: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub route: Option<&'a RouteKey>,
}

/// Writes the accounting log and keeps the summary's tallies.
pub(crate) struct Recorder {
    /// The warm-up clock (when each provider group's last outcome happened).
    pub clock: volley_warmup::WarmupClock,
    pub log: AccountingLog,
    pub path: PathBuf,
    /// The rejects file: a line for every `rejected` accounting line.
    pub rejects: RejectsWriter,
    pub rejects_path: PathBuf,
    pub summary: Summary,
    pub rules: std::sync::Arc<BounceRules>,
    /// Where hard and soft bounces go (taken back at the end of the run to be closed).
    pub suppression: Option<std::sync::Arc<SuppressionWriter>>,
    /// How far this campaign's log is known to be in the suppression store.
    pub mark: std::sync::Arc<WrittenMark>,
    /// Live counters (progress, metrics).
    pub live: std::sync::Arc<crate::live::CampaignLive>,
    /// Reputation guards: every final delivery and hard bounce counts toward the campaign's
    /// and its route's rates.
    pub guards: std::sync::Arc<crate::reputation::Guards>,
    /// The campaign the guards count this one's outcomes for: itself, or the cluster campaign
    /// a chunk is part of (its rates over all the node's chunks, not one chunk's).
    pub guarded_as: String,
    /// An injection campaign's spent-segment collector, and the lines finished since the
    /// last flush (handed to it once their lines are with the OS).
    pub spent: Option<(crate::spool::SegmentGc, Vec<u64>)>,
}

impl Recorder {
    /// Whether a reputation guard holds the campaign (shown in its live counters).
    pub fn held(&self) -> bool {
        let hold = self.guards.campaign_hold(&self.guarded_as);
        self.live.set_hold(hold.as_ref().map(|h| h.reason()));
        hold.is_some()
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> SendError + '_ {
        |source| SendError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// One attempt's line: a final outcome (tallied), a deferral with its next attempt time,
    /// or (no `next`) a deferral on one MX host that goes on to the next host.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt(
        &mut self,
        job: &Job,
        at: At<'_>,
        status: &RecipientStatus,
        latency: Duration,
        tls: bool,
        outcome: Outcome,
        next: Option<SystemTime>,
    ) -> Result<Classification, SendError> {
        let At { site, provider, route } = at;
        let source: Option<IpAddr> = route.map(|r| r.source.ip);
        let s = &mut self.summary;
        if status.maybe_delivered {
            s.maybe_duplicates += 1;
        }
        let hop = outcome == Outcome::Deferred && next.is_none();
        if job.attempt > 1 && !hop {
            s.retried += 1;
        }
        if outcome.is_final() {
            if let Some((_, lines)) = &mut self.spent {
                lines.push(job.line);
            }
            let ip = source.map(|ip| ip.to_string());
            s.record(outcome, ip.as_deref(), job.recipient.domain(), site, provider);
            if let Some(t) = provider.and_then(|p| s.by_provider.get_mut(p)) {
                t.last = Some(self.clock.now());
            }
        } else {
            s.deferrals += 1;
        }
        let class = self.rules.classify_final(outcome, status);
        let signal = match outcome {
            Outcome::Delivered => Some(Signal::Delivered),
            // A 5xx the sending side caused (SIZE, TLS required, MAIL FROM) says nothing of the
            // list or the IP.
            Outcome::Bounced if !status.sender_fault => Some(Signal::HardBounce),
            _ => None,
        };
        if let Some(signal) = signal {
            let route = source.map(|ip| (ip, provider.unwrap_or(volley_warmup::provider::OTHER)));
            self.guards.record(&self.guarded_as, route, signal, SystemTime::now());
        }
        // Only a final bounce or expiry acts, and never one the sending side caused (an
        // unbindable IP, our SIZE refusal, TLS required, a refused MAIL FROM).
        let action = match class.action {
            Action::None => None,
            _ if !matches!(outcome, Outcome::Bounced | Outcome::Expired) || status.sender_fault => None,
            action => Some(action),
        };
        self.live.attempt(
            crate::live::AttemptLabels {
                outcome,
                source_ip: source,
                site,
                category: class.category,
            },
            Some(latency),
        );
        let record = AccountingRecord {
            ts: now_rfc3339(),
            campaign: &s.campaign,
            recipient: job.recipient.as_str(),
            domain: job.recipient.domain(),
            source_ip: source,
            mx: route.map(|r| &*r.mx.name),
            site,
            provider,
            outcome,
            code: status.code,
            enhanced: status.enhanced.map(|e| e.to_string()),
            category: class.category,
            attempt: job.attempt,
            latency_ms: latency.as_millis() as u64,
            message_id: Some(&job.message_id),
            phase: Some(status.phase.as_str()),
            text: &status.text,
            tls,
            maybe_duplicate: status.maybe_delivered,
            line: job.line,
            next_attempt: next.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            suppression: action,
        };
        self.log.write(&record).map_err(self.io())?;
        if let Some(writer) = &self.suppression {
            if let Some(action) = action {
                // Hard bounces suppress at once, soft ones are counted (all in `global`).
                let outcome = LoggedOutcome {
                    campaign: &self.summary.campaign,
                    recipient: job.recipient.as_str(),
                    code: status.code,
                    enhanced: status.enhanced.map(|e| e.to_string()),
                    category: class.category,
                    text: &status.text,
                    at: unix_now(),
                };
                if let Some(update) = outcome.update(action) {
                    let origin = Origin {
                        mark: self.mark.clone(),
                        end: self.log.end(),
                    };
                    writer.push_logged(update, origin);
                }
            } else if outcome == Outcome::Delivered {
                // A delivery resets the address's soft-bounce count.
                writer.push(Update::forget_soft(GLOBAL, job.recipient.as_str()));
            }
        }
        Ok(class)
    }

    /// Whether more suppression updates wait to be written than may be held: new mail waits.
    pub fn suppression_over_bound(&self) -> bool {
        self.suppression.as_ref().is_some_and(|w| w.over_bound())
    }

    /// A refused row: its accounting line and its rejects-file line.
    pub fn rejected(&mut self, refused: &Refused) -> Result<(), SendError> {
        let r = &refused.row;
        self.rejects.write(r).map_err(|source| SendError::Io {
            path: self.rejects_path.clone(),
            source,
        })?;
        let text = format!("line {}: {}: {}", r.line, r.field, r.reason);
        let (recipient, domain) = (&refused.recipient, &refused.domain);
        self.unsent(Unsent::row(
            Outcome::Rejected,
            "invalid-recipient",
            recipient,
            domain,
            &text,
            r.line,
        ))
    }

    /// A recipient the suppression list holds: not sent.
    pub fn suppressed(&mut self, row: &SuppressedRow) -> Result<(), SendError> {
        let text = format!("suppressed ({}): {}", row.scope, row.reason);
        let (recipient, domain) = (&row.recipient, &row.domain);
        self.unsent(Unsent::row(
            Outcome::Suppressed,
            "suppressed",
            recipient,
            domain,
            &text,
            row.line,
        ))
    }

    /// A queued recipient an operator bounced (`bounced`) or purged (`expired`): its final
    /// line, category `operator`, with the operator's reason. Never suppressed: it is not the
    /// recipient's fault.
    pub fn by_operator(&mut self, job: &Job, at: At<'_>, outcome: Outcome, reason: &str) -> Result<(), SendError> {
        let verb = if outcome == Outcome::Bounced {
            "bounced"
        } else {
            "purged"
        };
        let text = format!("{verb} by the operator: {reason}");
        self.unsent(Unsent {
            outcome,
            category: "operator",
            recipient: job.recipient.as_str(),
            domain: job.recipient.domain(),
            text: &text,
            line: job.line,
            site: at.site,
            provider: at.provider,
            attempt: job.attempt,
            message_id: Some(&job.message_id),
        })
    }

    /// The line of a recipient that was never sent (this time).
    fn unsent(&mut self, u: Unsent<'_>) -> Result<(), SendError> {
        self.summary.record(u.outcome, None, u.domain, u.site, u.provider);
        if let Some((_, lines)) = &mut self.spent {
            lines.push(u.line);
        }
        self.live.attempt(
            crate::live::AttemptLabels {
                outcome: u.outcome,
                source_ip: None,
                site: u.site,
                category: u.category,
            },
            None,
        );
        let record = AccountingRecord {
            ts: now_rfc3339(),
            campaign: &self.summary.campaign,
            recipient: u.recipient,
            domain: u.domain,
            source_ip: None,
            mx: None,
            site: u.site,
            provider: u.provider,
            outcome: u.outcome,
            code: None,
            enhanced: None,
            category: u.category,
            attempt: u.attempt.max(1),
            latency_ms: 0,
            message_id: u.message_id,
            phase: None,
            text: u.text,
            tls: false,
            maybe_duplicate: false,
            line: u.line,
            next_attempt: None,
            suppression: None,
        };
        self.log.write(&record).map_err(self.io())
    }

    /// Pushes buffered lines (accounting log, rejects file) to the OS.
    pub fn flush(&mut self) -> Result<(), SendError> {
        self.rejects.flush().map_err(|source| SendError::Io {
            path: self.rejects_path.clone(),
            source,
        })?;
        self.log.flush().map_err(self.io())?;
        if let Some((gc, lines)) = &mut self.spent {
            gc.finished(lines);
            lines.clear();
        }
        Ok(())
    }
}

/// A line for a recipient not sent: why, and as much as is known of where it was queued.
struct Unsent<'a> {
    outcome: Outcome,
    category: &'a str,
    recipient: &'a str,
    domain: &'a str,
    text: &'a str,
    line: u64,
    site: Option<&'a str>,
    provider: Option<&'a str>,
    attempt: u32,
    message_id: Option<&'a str>,
}

impl<'a> Unsent<'a> {
    /// A row never queued (refused or suppressed on reading).
    fn row(outcome: Outcome, category: &'a str, recipient: &'a str, domain: &'a str, text: &'a str, line: u64) -> Self {
        Unsent {
            outcome,
            category,
            recipient,
            domain,
            text,
            line,
            site: None,
            provider: None,
            attempt: 1,
            message_id: None,
        }
    }
}
