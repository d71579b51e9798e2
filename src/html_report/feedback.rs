//! What came back after delivery — asynchronous bounces, spam complaints, unsubscribes — read
//! from the campaign's `feedback.jsonl` (written by the inbound listener beside the accounting
//! log) and shown as rates of what was delivered, per campaign, source IP and provider group.
//!
//! The denominators come from the accounting log: a complaint or an unsubscribe is a share of
//! the messages delivered (how Gmail and Yahoo state the 0.3 % complaint limit); the bounce rate
//! counts the bounces in the SMTP conversation and the asynchronous ones together, of every
//! recipient with a final outcome (an asynchronous bounce was first counted as delivered, so the
//! denominator is unchanged).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use volley_scheduler::inbound::{FeedbackRecord, FEEDBACK_LOG};

use super::aggregate::{Tally, Totals};
use super::page::{escape, skipped_lines};
use crate::numbers::thousands;

/// The complaint rate past which the report marks a row (Gmail's and Yahoo's limit, and the
/// reputation guard's default), in percent.
const COMPLAINT_LIMIT_PERCENT: f64 = 0.3;

/// Reports that came back for one row (a campaign, a source IP or a provider group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Returned {
    /// Asynchronous bounces (a DSN after the message was accepted).
    pub bounced: u64,
    /// Spam complaints (ARF `abuse`/`fraud`).
    pub complained: u64,
    /// Unsubscribes (one-click, mailto or the confirmation page).
    pub unsubscribed: u64,
}

/// A feedback log, counted.
#[derive(Debug, Default)]
pub struct Feedback {
    /// The log read.
    pub path: PathBuf,
    /// Lines read, and the ones that are not feedback records: (line number, why) of the first.
    pub lines: u64,
    pub malformed: u64,
    pub first_malformed: Option<(u64, String)>,
    /// Events logged twice (same event id), counted once.
    pub duplicates: u64,
    pub by_campaign: BTreeMap<String, Returned>,
    pub by_ip: BTreeMap<String, Returned>,
    pub by_provider: BTreeMap<String, Returned>,
}

/// The feedback log that belongs to the accounting log `log`: `feedback.jsonl` in its folder.
pub fn beside(log: &Path) -> PathBuf {
    log.parent().unwrap_or(Path::new(".")).join(FEEDBACK_LOG)
}

impl Feedback {
    /// Reads the feedback log at `path`; `None` when there is none (no report came back, or
    /// the inbound listener is not used).
    pub fn read(path: &Path) -> anyhow::Result<Option<Feedback>> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening feedback log {}", path.display())),
        };
        let mut feedback = Feedback {
            path: path.to_path_buf(),
            ..Feedback::default()
        };
        let mut seen = HashSet::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading {} after line {}", path.display(), feedback.lines))?;
            feedback.lines += 1;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<FeedbackRecord>(&line) {
                Ok(record) if seen.insert(record.event_id.clone()) => feedback.add(&record),
                Ok(_) => feedback.duplicates += 1,
                Err(e) => {
                    feedback.malformed += 1;
                    feedback.first_malformed.get_or_insert((feedback.lines, e.to_string()));
                }
            }
        }
        Ok(Some(feedback))
    }

    fn add(&mut self, record: &FeedbackRecord) {
        let bump: fn(&mut Returned) = match record.outcome.as_str() {
            "bounced" => |r| r.bounced += 1,
            "complained" => |r| r.complained += 1,
            "unsubscribed" => |r| r.unsubscribed += 1,
            // `delayed`, `notice`, `reported`: recorded by the listener, no rate of their own.
            _ => return,
        };
        let none = || "(none)".to_string();
        bump(
            self.by_campaign
                .entry(record.campaign.clone().unwrap_or_else(none))
                .or_default(),
        );
        let ip = record.source_ip.map_or_else(none, |ip| ip.to_string());
        bump(self.by_ip.entry(ip).or_default());
        bump(
            self.by_provider
                .entry(record.provider.clone().unwrap_or_else(none))
                .or_default(),
        );
    }
}

/// The rates of one row: (part, whole) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rates {
    /// Bounces in the conversation and asynchronous ones, of the recipients with a final
    /// outcome that were mailed (delivered, bounced, expired).
    pub bounce: (u64, u64),
    /// Asynchronous bounces of the delivered.
    pub async_bounce: (u64, u64),
    /// Complaints of the delivered.
    pub complaint: (u64, u64),
    /// Unsubscribes of the delivered.
    pub unsubscribe: (u64, u64),
}

impl Rates {
    /// The rates of a row whose attempts are `tally` and whose reports are `returned`.
    pub fn of(tally: &Tally, returned: &Returned) -> Rates {
        let (bounced, mailed) = tally.bounce_rate();
        let delivered = tally.0[0];
        Rates {
            bounce: (bounced + returned.bounced, mailed),
            async_bounce: (returned.bounced, delivered),
            complaint: (returned.complained, delivered),
            unsubscribe: (returned.unsubscribed, delivered),
        }
    }
}

/// `part` of `whole` in percent with two decimals (`"0.35%"`: complaint limits are in tenths
/// of a percent), or `"—"` when `whole` is 0.
pub fn percent2(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".into();
    }
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

fn over_limit(part: u64, whole: u64) -> bool {
    whole > 0 && part as f64 * 100.0 / whole as f64 > COMPLAINT_LIMIT_PERCENT
}

/// One table: a row per key that has attempts or reports.
fn table(out: &mut String, key: &str, attempts: &BTreeMap<String, Tally>, returned: &BTreeMap<String, Returned>) {
    let _ = writeln!(
        out,
        "<table><tr><th>{}</th><th>delivered</th><th>bounced async</th><th>complaints</th>\
         <th>unsubscribes</th><th class=\"rate\">bounce %</th><th class=\"rate\">async bounce %</th>\
         <th class=\"rate\">complaint %</th><th class=\"rate\">unsubscribe %</th></tr>",
        escape(key)
    );
    let keys: std::collections::BTreeSet<&String> = attempts.keys().chain(returned.keys()).collect();
    for name in keys {
        let tally = attempts.get(name).copied().unwrap_or_default();
        let back = returned.get(name).copied().unwrap_or_default();
        let rates = Rates::of(&tally, &back);
        let complaint_class = if over_limit(rates.complaint.0, rates.complaint.1) {
            "rate over"
        } else {
            "rate"
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"rate\">{}</td>\
             <td class=\"rate\">{}</td><td class=\"{complaint_class}\">{}</td><td class=\"rate\">{}</td></tr>",
            escape(name),
            thousands(tally.0[0]),
            thousands(back.bounced),
            thousands(back.complained),
            thousands(back.unsubscribed),
            percent2(rates.bounce.0, rates.bounce.1),
            percent2(rates.async_bounce.0, rates.async_bounce.1),
            percent2(rates.complaint.0, rates.complaint.1),
            percent2(rates.unsubscribe.0, rates.unsubscribe.1),
        );
    }
    out.push_str("</table>\n");
}

/// The page's feedback section.
pub fn section(out: &mut String, totals: &Totals, feedback: Option<&Feedback>) {
    out.push_str("<h2>After delivery: bounces, complaints, unsubscribes</h2>\n");
    let Some(feedback) = feedback else {
        out.push_str(
            "<p class=\"meta\">No feedback log beside the accounting log: no report came back, \
             or the inbound listener (<code>[inbound]</code>, <code>[feedback]</code>) is not used.</p>\n",
        );
        return;
    };
    let _ = writeln!(
        out,
        "<p class=\"meta\">From <code>{}</code>: {} lines{}.</p>",
        escape(&feedback.path.display().to_string()),
        thousands(feedback.lines),
        if feedback.duplicates > 0 {
            format!(", {} repeated events counted once", thousands(feedback.duplicates))
        } else {
            String::new()
        }
    );
    skipped_lines(out, "feedback", feedback.malformed, feedback.first_malformed.as_ref());
    table(out, "campaign", &totals.campaigns, &feedback.by_campaign);
    table(out, "provider", &totals.by_provider, &feedback.by_provider);
    table(out, "source IP", &totals.by_ip, &feedback.by_ip);
    let _ = writeln!(
        out,
        "<p class=\"meta\">bounce % = (bounced + bounced async) / (delivered + bounced + expired); \
         async bounce %, complaint % and unsubscribe % are of the delivered. A complaint rate over \
         {COMPLAINT_LIMIT_PERCENT} % (Gmail's and Yahoo's limit) is marked.</p>"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_use_delivered_and_final_outcomes() {
        // 1,000 delivered, 20 bounced in the conversation, 5 expired; 10 bounced later,
        // 4 complaints, 7 unsubscribes.
        let tally = Tally([1000, 30, 20, 5, 3, 1]);
        let back = Returned {
            bounced: 10,
            complained: 4,
            unsubscribed: 7,
        };
        let r = Rates::of(&tally, &back);
        assert_eq!(r.bounce, (30, 1025));
        assert_eq!(r.async_bounce, (10, 1000));
        assert_eq!(r.complaint, (4, 1000));
        assert_eq!(r.unsubscribe, (7, 1000));
        assert_eq!(percent2(4, 1000), "0.40%");
        assert_eq!(percent2(30, 1025), "2.93%");
        assert_eq!(percent2(1, 0), "—");
        assert!(over_limit(4, 1000) && !over_limit(3, 1000));
    }
}
