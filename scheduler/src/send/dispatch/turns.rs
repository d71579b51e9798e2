//! Turns: each site in the ring takes a small batch of its ready jobs; each job gets a source IP
//! (the rotation's next, else overflow to any IP with engine room and warm-up budget) and goes
//! to the engine as one journaled batch. A site no IP can take is held (warm-up budget) or
//! blocked (engine queues full) until that changes. A job whose address another process
//! suppressed since it was checked is recorded as suppressed instead of sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use volley_engine::{Delivery, Disposition, Envelope, RouteKey};

use super::{Dispatcher, Tag, TURN_BATCH};
use crate::rotation::Refused;
use crate::routing::local;
use crate::send::job::SuppressedRow;
use crate::send::priority::RECHECK;
use crate::send::record::At;
use crate::send::sites::pick_host;

/// How soon a route held by a reputation guard, or an IP an operator suspended, is looked at
/// again (holds are lifted by an operator, and seen within about a second).
const GUARD_RECHECK: Duration = Duration::from_secs(1);
use crate::send::SendError;

/// Why no source IP took a site's next job. The order matters: the rotation names the
/// earliest refusal, and a full engine queue (room comes back with the next report) is
/// earlier than any warm-up hold — a site whose warm IP is merely busy must not wait for the
/// warming IP's next paced slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NoRoom {
    /// The route's queue in the engine is full (room comes back with a report).
    Full,
    /// No warm-up budget for the site's provider (`true`), or no rate left for its destination
    /// (`false`), until then.
    Hold(Instant, bool),
}

impl Dispatcher {
    /// Gives sites their turns until none can send, journals the batch, hands it over.
    pub(super) fn dispatch(&mut self) -> Result<(), SendError> {
        if self.rate_wait.is_some_and(|t| t > Instant::now()) {
            return Ok(());
        }
        self.rate_wait = None;
        let per_site = self.limits.per_site;
        let now = Instant::now();
        let mut turns = self.sites.ring_len();
        while turns > 0 {
            turns -= 1;
            let Some(key) = self.sites.next_turn() else { break };
            if let Some(seat) = &self.seat {
                if seat.gate.outranked(seat.campaign, &key) {
                    // A higher-priority campaign is waiting here: leave it the room.
                    self.recheck.get_or_insert(now + RECHECK);
                    continue;
                }
            }
            let mut deferred_here = Vec::new();
            let mut suppressed_here = Vec::new();
            let mut suspended_here = Vec::new();
            let mut hold = None;
            let Some(site) = self.sites.get_mut(&key) else { continue };
            let site_provider = site.provider.clone();
            let mut taken = 0;
            while taken < TURN_BATCH && site.in_flight < per_site && !site.blocked {
                let Some(job) = site.ready.pop_front() else { break };
                // Its domain or site was suspended since it was queued: it waits.
                if self.controls.destination_suspended(job.recipient.domain(), &key) {
                    suspended_here.push(job);
                    continue;
                }
                // Checked before rendering; suppressed since then by another process?
                if let Some(hit) = self.late_gate.as_ref().and_then(|g| g.late_hit(job.recipient.as_str())) {
                    suppressed_here.push((job, hit));
                    continue;
                }
                let Some(host) = pick_host(site, job.tried, &self.down, now) else {
                    deferred_here.push(job);
                    continue;
                };
                let mx = &site.dest.hosts[host].1;
                let provider = site
                    .provider
                    .clone()
                    .unwrap_or_else(|| Arc::from(volley_warmup::provider::OTHER));
                let (pool, batch, shaper) = (&self.pool, &self.batch, &self.shaper);
                let (policy, rate) = (&site.policy, &site.rate);
                let (guards, controls) = (&self.recorder.guards, &self.controls);
                // The IP whose turn it is, else any other with room in the engine and warm-up
                // budget for the site's provider (overflow).
                let picked = self.rotation.next_ip_with(|ip| {
                    // Held off this provider by a reputation guard: the other IPs carry it.
                    if guards.route_held(ip.ip, &provider) {
                        return Err(NoRoom::Hold(now + GUARD_RECHECK, false));
                    }
                    // Suspended by an operator (the IP, or the IP for this provider group).
                    if controls.ip_suspended(ip.ip, &provider) {
                        return Err(NoRoom::Hold(now + GUARD_RECHECK, false));
                    }
                    let route = RouteKey {
                        source: ip.clone(),
                        mx: mx.clone(),
                        policy: policy.clone(),
                    };
                    let queued_here = batch.iter().filter(|d| d.route == route).count();
                    if pool.room(&route) <= queued_here {
                        return Err(NoRoom::Full);
                    }
                    // The destination's rate for this IP before the warm-up budget: a rate
                    // token left unused costs less than a day's budget taken.
                    if let Some((owner, rate)) = rate {
                        shaper
                            .take_destination_rate(ip.ip, owner, *rate)
                            .map_err(|until| NoRoom::Hold(until, false))?;
                    }
                    shaper
                        .take(ip.ip, &provider, &key)
                        .map_err(|hold| NoRoom::Hold(hold.until, true))
                });
                let source = match picked {
                    Ok(ip) => ip.clone(),
                    Err(Refused::Rate(wait)) => {
                        site.ready.push_front(job);
                        self.rate_wait = Some(now + wait);
                        break;
                    }
                    Err(Refused::Other { rate, earliest }) => {
                        site.ready.push_front(job);
                        match earliest {
                            NoRoom::Hold(until, budget) => {
                                hold = Some((rate.map_or(until, |w| until.min(now + w)), budget))
                            }
                            NoRoom::Full => site.blocked = true,
                        }
                        break;
                    }
                };
                let route = RouteKey {
                    source,
                    mx: mx.clone(),
                    policy: site.policy.clone(),
                };
                if self.shaper.is_warming(route.source.ip) {
                    // Fewer and shorter connections for a warming IP, from today's caps.
                    // Past its curve the IP is warm again: the pool's own limits.
                    let limits =
                        self.shaper
                            .route_limits(route.source.ip, &provider)
                            .unwrap_or(volley_engine::RouteLimits {
                                max_connections: usize::MAX,
                                max_messages_per_connection: usize::MAX,
                            });
                    if self.route_limits.get(&route) != Some(&limits) {
                        self.pool.set_route_limits(&route, limits);
                        self.route_limits.insert(route.clone(), limits);
                    }
                }
                let mut job = job;
                if let Some(since) = job.held_since.take() {
                    let summary = &mut self.recorder.summary;
                    summary.warmup_waited += 1;
                    summary.warmup_wait_s += now.saturating_duration_since(since).as_secs_f64();
                }
                self.journal.record(job.line, job.attempt)?;
                self.queues.sent(&key, route.source.ip, job.recipient.domain());
                let envelope = Envelope {
                    mail_from: self
                        .mail_from
                        .mail_from(job.line, route.source.ip, job.sender.as_deref()),
                    recipients: vec![job.recipient.as_str().to_string()],
                };
                let payload = job.payload.clone();
                self.batch.push(Delivery {
                    tag: Tag {
                        job,
                        site: key.clone(),
                        provider,
                        host,
                        campaign: self.seat.as_ref().map_or(0, |s| s.campaign),
                    },
                    route,
                    envelope,
                    payload,
                });
                site.in_flight += 1;
                taken += 1;
            }
            if let Some(seat) = &self.seat {
                let ready = if site.in_flight < per_site { site.ready.len() } else { 0 };
                seat.gate.publish(seat.campaign, &key, ready, site.in_flight);
                if site.blocked {
                    // Room at this route may be freed by another campaign's deliveries.
                    self.recheck.get_or_insert(now + RECHECK);
                }
            }
            if let Some((until, budget)) = hold {
                self.sites.hold(&key, until, now, budget);
            }
            self.sites.wake(&key, per_site);
            for job in suspended_here {
                self.wait_suspended(job, &key);
            }
            for (job, (scope, entry)) in suppressed_here {
                self.rendered -= 1;
                self.recorder.suppressed(&SuppressedRow {
                    line: job.line,
                    recipient: job.recipient.as_str().to_string(),
                    domain: job.recipient.domain().to_string(),
                    scope,
                    reason: entry.reason,
                })?;
            }
            for job in deferred_here {
                let text = format!(
                    "every MX host of {key} failed within the last {:?}",
                    self.limits.retry.host_down
                );
                let status = local(Disposition::Deferred, (4, 4, 1), text);
                let at = At {
                    site: Some(&key),
                    provider: site_provider.as_deref(),
                    route: None,
                };
                self.settle(job, at, status, Duration::ZERO, false)?;
            }
            self.hand_over()?;
            if self.rate_wait.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Journals the turn's deliveries, then hands them to the engine.
    fn hand_over(&mut self) -> Result<(), SendError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // Journaled before the engine sees them: a kill from here on counts them as resent.
        self.journal.flush()?;
        let mut batch = std::mem::take(&mut self.batch);
        for delivery in batch.drain(..) {
            self.in_engine += 1;
            if let Err(d) = self.pool.try_submit(delivery) {
                // The route's queue filled up after `room()` was asked: another campaign
                // sharing the pool got there first (the pool only closes after every
                // dispatcher has finished). Not a failure: the job waits for room again.
                self.in_engine -= 1;
                self.pool_full(d)?;
            }
        }
        self.batch = batch;
        Ok(())
    }

    /// Puts a delivery the pool had no room for back at the head of its site's queue; the
    /// site waits for room (a report, or the recheck when the room is taken by others).
    fn pool_full(&mut self, d: Delivery<Tag>) -> Result<(), SendError> {
        let Tag { job, site, .. } = d.tag;
        self.queues.returned(&site, d.route.source.ip, job.recipient.domain());
        self.recheck.get_or_insert(Instant::now() + RECHECK);
        match self.sites.get_mut(&site) {
            Some(s) => {
                s.in_flight -= 1;
                s.blocked = true;
                s.ready.push_front(job);
                Ok(())
            }
            // Sites are never removed while jobs are out; should one be missing, the job is
            // retried rather than lost.
            None => {
                let status = local(Disposition::Deferred, (4, 4, 1), "no room in the delivery pool".into());
                self.settle(job, At::default(), status, Duration::ZERO, false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NoRoom;

    #[test]
    fn a_full_queue_is_earlier_than_any_warmup_hold() {
        // Regression: with Hold first, a warm IP whose engine queue was full and a warming IP
        // waiting for its paced slot held the whole site until that slot (a 12 s run took
        // 256 s), instead of waiting for the warm IP's next report.
        let soon = std::time::Instant::now();
        assert!(NoRoom::Full < NoRoom::Hold(soon, true));
        assert_eq!(NoRoom::Hold(soon, true).min(NoRoom::Full), NoRoom::Full);
    }
}
