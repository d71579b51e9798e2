//! The report's warm-up section: deliveries per source IP, provider group and UTC day, next
//! to that day's cap on the IP's warm-up curve and the share of it used. The caps come from
//! the configuration (`volley report --config`, or the run's own at the end of a send); without
//! one the section shows the deliveries only.

use std::collections::HashMap;
use std::fmt::Write as _;

use volley_scheduler::config::{SendConfig, WarmupPolicy};
use volley_warmup::{day_of, CurveSet, UtcDay, WarmupState};

use super::aggregate::Totals;
use super::page::escape;
use crate::numbers::{percent, thousands};

/// What the configuration says about each source IP's warm-up.
pub struct WarmupCaps {
    states: HashMap<String, WarmupState>,
    curves: CurveSet,
    /// The run used a rehearsal clock: its budgets counted warm-up days, not wall-clock days.
    rehearsal: bool,
}

/// An IP's cap for one provider group on one day.
#[derive(Debug, PartialEq, Eq)]
enum Cap {
    /// Warm (or past the end of its curve): no cap.
    Warm,
    /// Warm-up day `day`, at most `daily` messages.
    Daily { day: u32, daily: u64 },
    /// Not a configured source IP, or its curve lists no cap for the group.
    Unknown,
}

impl WarmupCaps {
    /// The caps of `config`'s source IPs under `policy` (`SendConfig::warmup_policy`).
    pub fn new(config: &SendConfig, policy: &WarmupPolicy) -> WarmupCaps {
        WarmupCaps {
            states: policy
                .states
                .iter()
                .map(|(ip, state)| (ip.to_string(), state.clone()))
                .collect(),
            curves: policy.curves.clone(),
            rehearsal: config.warmup.speed != 1.0 || config.warmup.clock_start.is_some(),
        }
    }

    fn cap(&self, ip: &str, provider: &str, day: UtcDay) -> Cap {
        match self.states.get(ip) {
            None => Cap::Unknown,
            Some(WarmupState::Warm) => Cap::Warm,
            Some(WarmupState::Warming { curve, start }) => {
                let Some(curve) = self.curves.get(curve) else {
                    return Cap::Unknown;
                };
                let n = day_of(*start, day);
                if n > curve.last_day() {
                    return Cap::Warm;
                }
                match curve.caps(n, provider) {
                    Some(caps) => Cap::Daily {
                        day: n.max(1),
                        daily: caps.daily,
                    },
                    None => Cap::Unknown,
                }
            }
        }
    }
}

fn date(day: UtcDay) -> String {
    let (y, m, d) = day.ymd();
    format!("{y:04}-{m:02}-{d:02}")
}

/// The section's table (and notes) for `totals`.
pub fn section(out: &mut String, totals: &Totals, caps: Option<&WarmupCaps>) {
    out.push_str("<h2>Warm-up: deliveries against each day's cap</h2>\n");
    match caps {
        None => out.push_str(
            "<p class=\"meta\">No configuration given: caps unknown \
             (<code>volley report --config volley.toml</code> adds them).</p>\n",
        ),
        Some(c) if c.rehearsal => out.push_str(
            "<p class=\"warn\">The configuration rehearses on a warm-up clock \
             (<code>[warmup] speed</code> / <code>clock_start</code>): its budgets counted warm-up \
             days, the days here are wall-clock days, so the caps are indicative.</p>\n",
        ),
        Some(_) => {}
    }
    out.push_str(
        "<table><tr><th>source IP</th><th>provider</th><th>date (UTC)</th><th>warm-up day</th>\
         <th>delivered</th><th>daily cap</th><th>% of cap</th></tr>\n",
    );
    for ((ip, provider, day), delivered) in &totals.ip_provider {
        let cap = caps.map_or(Cap::Unknown, |c| c.cap(ip, provider, *day));
        let (warmup_day, cap_text, used) = match cap {
            Cap::Warm => ("warm".to_string(), "no cap".to_string(), "—".to_string()),
            Cap::Daily { day, daily } => (day.to_string(), thousands(daily), percent(*delivered, daily)),
            Cap::Unknown => ("—".to_string(), "—".to_string(), "—".to_string()),
        };
        let over = matches!(cap, Cap::Daily { daily, .. } if *delivered > daily);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{warmup_day}</td><td>{}</td><td>{cap_text}</td><td{}>{used}</td></tr>",
            escape(ip),
            escape(provider),
            date(*day),
            thousands(*delivered),
            if over { " class=\"over\"" } else { "" },
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_curve_day_and_end_warm() {
        let curve = volley_warmup::Curve::parse(
            "name = \"t\"\nlast_day = 6\n\
             [[day]]\nday = 1\ngmail = { daily = 50, hourly = 10 }\nother = { daily = 100, hourly = 20 }\n\
             [[day]]\nday = 3\ngmail = { daily = 500, hourly = 100 }\n",
            std::path::Path::new("t.toml"),
        )
        .expect("curve");
        let start = UtcDay::from_ymd(2026, 12, 1).expect("date");
        let mut curves = CurveSet::default();
        curves.insert(curve);
        let caps = WarmupCaps {
            states: [
                (
                    "127.0.0.2".to_string(),
                    WarmupState::Warming {
                        curve: "t".into(),
                        start,
                    },
                ),
                ("127.0.0.3".to_string(), WarmupState::Warm),
            ]
            .into_iter()
            .collect(),
            curves,
            rehearsal: false,
        };
        let day = |d| UtcDay::from_days(start.days() + d - 1);
        assert_eq!(caps.cap("127.0.0.2", "gmail", day(1)), Cap::Daily { day: 1, daily: 50 });
        assert_eq!(
            caps.cap("127.0.0.2", "gmail", day(4)),
            Cap::Daily { day: 4, daily: 500 }
        );
        assert_eq!(
            caps.cap("127.0.0.2", "yahoo", day(4)),
            Cap::Daily { day: 4, daily: 100 }
        );
        assert_eq!(caps.cap("127.0.0.2", "gmail", day(7)), Cap::Warm, "past last_day");
        assert_eq!(caps.cap("127.0.0.3", "gmail", day(1)), Cap::Warm);
        assert_eq!(caps.cap("10.0.0.1", "gmail", day(1)), Cap::Unknown);
    }
}
