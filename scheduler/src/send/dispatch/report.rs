//! What the engine reports back for a delivery: throttling replies go to the shaper, a
//! connection failure moves on to the site's next MX host within the attempt, and otherwise
//! the attempt ends — a final outcome, or a deferral scheduled for retry (or expired past
//! `max_age`).

use std::time::{Duration, Instant, SystemTime};

use volley_engine::{DeliveryReport, Disposition, Phase, RecipientStatus};

use super::{Dispatcher, Tag};
use crate::outcome::Outcome;
use crate::send::job::Job;
use crate::send::record::At;
use crate::send::retry::{next_step, Next};
use crate::send::sites::has_untried;
use crate::send::SendError;

impl Dispatcher {
    pub(super) fn on_report(&mut self, report: DeliveryReport<Tag>) -> Result<(), SendError> {
        self.in_engine -= 1;
        let DeliveryReport {
            tag,
            route,
            statuses,
            tls,
            latency,
        } = report;
        let Tag {
            mut job,
            site,
            provider,
            host,
            ..
        } = tag;
        self.queues.returned(&site, route.source.ip, job.recipient.domain());
        let per_site = self.limits.per_site;
        if let Some(s) = self.sites.get_mut(&site) {
            s.in_flight -= 1;
            s.blocked = false;
            if let Some(seat) = &self.seat {
                let ready = if s.in_flight < per_site { s.ready.len() } else { 0 };
                seat.gate.publish(seat.campaign, &site, ready, s.in_flight);
            }
        }
        self.sites.wake(&site, per_site);
        let now = SystemTime::now();
        job.attempt_began(now.checked_sub(latency).unwrap_or(now));
        let Some(mut status) = statuses.into_iter().next() else {
            self.rendered -= 1;
            return Ok(());
        };
        // Throttling replies slow down or suspend this (IP, provider) pair only.
        if self.shaper.observe(route.source.ip, &site, &status).is_some() {
            self.recorder.summary.backoff_events += 1;
            if status.disposition == Disposition::Bounced {
                // A policy block is about the sending IP, not the recipient: retried later
                // (by then perhaps from another IP), never suppressed for it.
                status.disposition = Disposition::Deferred;
                self.recorder.summary.policy_retries += 1;
            }
        }
        let at = At {
            site: Some(&site),
            provider: Some(&provider),
            route: Some(&route),
        };
        let connection_failed = status.disposition == Disposition::Deferred
            && !status.maybe_delivered
            && matches!(
                status.phase,
                Phase::Connect | Phase::Banner | Phase::Ehlo | Phase::StartTls
            );
        if connection_failed {
            // RFC 5321 §5.1: try the next MX host; this one sits out for `host_down` — unless
            // our side refused it (`tls = "required"` without STARTTLS): the host is not down,
            // and its later deferrals must keep saying whose fault they are; or it refused
            // for its cap on connections from this address ("421 too many connections from"),
            // held by another sender on it: up, and free again when a slot is.
            if !status.sender_fault && !status.is_connection_cap() {
                self.down
                    .insert(route.mx.addr, Instant::now() + self.limits.retry.host_down);
            }
            job.tried |= 1u64.checked_shl(host as u32).unwrap_or(0);
            let untried = self.sites.get_mut(&site).is_some_and(|s| has_untried(s, job.tried));
            if untried {
                self.recorder
                    .attempt(&job, at, &status, latency, tls, Outcome::Deferred, None)?;
                if let Some(s) = self.sites.get_mut(&site) {
                    s.ready.push_front(job);
                }
                self.sites.wake(&site, per_site);
                return Ok(());
            }
        }
        self.settle(job, at, status, latency, tls)
    }

    /// Records the end of an attempt: final outcome, or a deferral scheduled for retry (or
    /// expired past `max_age`). The job's message is released either way.
    pub(super) fn settle(
        &mut self,
        job: Job,
        at: At<'_>,
        status: RecipientStatus,
        latency: Duration,
        tls: bool,
    ) -> Result<(), SendError> {
        self.rendered -= 1;
        if status.disposition != Disposition::Deferred {
            let outcome = Outcome::from(status.disposition);
            self.recorder.attempt(&job, at, &status, latency, tls, outcome, None)?;
            return Ok(());
        }
        let now = SystemTime::now();
        match next_step(&self.limits.retry, job.attempt, job.first_at, now) {
            Next::Expire => {
                self.recorder
                    .attempt(&job, at, &status, latency, tls, Outcome::Expired, None)?;
                Ok(())
            }
            Next::RetryAt(when) => {
                self.recorder
                    .attempt(&job, at, &status, latency, tls, Outcome::Deferred, Some(when))?;
                self.queues.retrying(&job, at, when);
                let mut r = job.to_ref();
                r.attempt += 1;
                self.retries.push(when, r);
                Ok(())
            }
        }
    }
}
