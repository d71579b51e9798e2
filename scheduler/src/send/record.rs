//! Turning outcomes into accounting lines and summary tallies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use volley_engine::{RecipientStatus, RouteKey};

use super::job::{Job, Refused};
use super::SendError;
use crate::accounting::{now_rfc3339, AccountingLog, AccountingRecord};
use crate::bounces::{BounceRules, Classification};
use crate::outcome::Outcome;
use crate::summary::Summary;

/// Writes the accounting log and keeps the summary's tallies.
pub(crate) struct Recorder {
    pub log: AccountingLog,
    pub path: PathBuf,
    pub summary: Summary,
    pub rules: std::sync::Arc<BounceRules>,
}

impl Recorder {
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
        site: Option<&str>,
        route: Option<&RouteKey>,
        status: &RecipientStatus,
        latency: Duration,
        tls: bool,
        outcome: Outcome,
        next: Option<SystemTime>,
    ) -> Result<Classification, SendError> {
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
            let ip = source.map(|ip| ip.to_string());
            s.record(outcome, ip.as_deref(), job.recipient.domain(), site);
        } else {
            s.deferrals += 1;
        }
        let class = self.rules.classify_final(outcome, status);
        let record = AccountingRecord {
            ts: now_rfc3339(),
            campaign: &s.campaign,
            recipient: job.recipient.as_str(),
            domain: job.recipient.domain(),
            source_ip: source,
            mx: route.map(|r| &*r.mx.name),
            site,
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
        };
        self.log.write(&record).map_err(self.io())?;
        Ok(class)
    }

    /// A refused row.
    pub fn rejected(&mut self, refused: &Refused) -> Result<(), SendError> {
        let r = &refused.row;
        self.summary.record(Outcome::Rejected, None, &refused.domain, None);
        let text = format!("line {}: {}: {}", r.line, r.field, r.reason);
        let record = AccountingRecord {
            ts: now_rfc3339(),
            campaign: &self.summary.campaign,
            recipient: &refused.recipient,
            domain: &refused.domain,
            source_ip: None,
            mx: None,
            site: None,
            outcome: Outcome::Rejected,
            code: None,
            enhanced: None,
            category: "invalid-recipient",
            attempt: 1,
            latency_ms: 0,
            message_id: None,
            phase: None,
            text: &text,
            tls: false,
            maybe_duplicate: false,
            line: r.line,
            next_attempt: None,
        };
        self.log.write(&record).map_err(self.io())
    }

    /// Pushes buffered lines to the OS.
    pub fn flush(&mut self) -> Result<(), SendError> {
        self.log.flush().map_err(self.io())
    }
}
