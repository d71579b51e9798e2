//! The terminal display of `volley send`'s progress: a few lines per campaign, each fitted to
//! the terminal's width, most important first (one indicatif bar per line in a
//! `MultiProgress`):
//!
//! ```text
//! news [=============>          ] 54% read
//!   delivered 9,013  deferred 112  bounced 7  172 msg/s  ETA 3m 12s
//!   expired 0  suppressed 12  rejected 3  queue 800  retry 40  conns 16
//!   per IP: 127.0.0.2 4,500  127.0.0.3 4,513
//!   warm-up: 127.0.0.4 gmail 1,892/2,000 today
//! ```
//! Fields that do not fit a line move to the next; a narrow terminal gets more lines, never
//! cut ones.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Status;

/// Lines of per-IP or warm-up fields at most; the rest is counted in a last "+N more".
const MAX_GROUP_LINES: usize = 3;

/// Width assumed when the terminal does not say.
const DEFAULT_WIDTH: usize = 80;

/// The display: the lines of every campaign.
pub struct Bars {
    multi: MultiProgress,
    lines: BTreeMap<String, Vec<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            lines: BTreeMap::new(),
        }
    }

    /// Shows `s`, fitted to the terminal's width now (it may have been resized).
    pub fn show(&mut self, s: &Status<'_>) {
        let width = console::Term::stderr()
            .size_checked()
            .map_or(DEFAULT_WIDTH, |(_, cols)| usize::from(cols));
        let text = layout(s, width);
        let bars = self.lines.entry(s.campaign.to_string()).or_default();
        while bars.len() < text.len() {
            let bar = ProgressBar::new(0).with_style(line_style());
            let bar = match bars.last() {
                Some(last) => self.multi.insert_after(last, bar),
                None => self.multi.add(bar),
            };
            bars.push(bar);
        }
        while bars.len() > text.len() {
            if let Some(bar) = bars.pop() {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
        }
        for (bar, line) in bars.iter().zip(text) {
            bar.set_message(line);
        }
    }

    pub fn clear(self) {
        for bar in self.lines.values().flatten() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

fn line_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The lines showing `s` on a terminal `width` columns wide: none longer than `width`, the
/// most important fields first (read share, outcomes, rate and ETA; then the rest of the
/// counts and queues; then per-IP deliveries; then warm-up use).
pub fn layout(s: &Status<'_>, width: usize) -> Vec<String> {
    let width = width.max(20);
    let mut lines = vec![head(s, width)];
    let eta = if s.hold.is_some() {
        "HELD".to_string()
    } else if s.paused {
        "PAUSED".to_string()
    } else {
        let eta = s.eta_s.map_or_else(
            || "—".to_string(),
            |e| humantime::format_duration(Duration::from_secs(e as u64)).to_string(),
        );
        format!("ETA {eta}")
    };
    let main = vec![
        format!("delivered {}", thousands(s.totals.delivered)),
        format!("deferred {}", thousands(s.totals.deferred)),
        format!("bounced {}", thousands(s.totals.bounced)),
        format!("{:.0} msg/s", s.msgs_per_s),
        eta,
    ];
    lines.extend(pack(&main, width, usize::MAX));
    if let Some(hold) = s.hold {
        let held = [
            format!("held by the reputation guard: {hold}"),
            format!("lift: volley reputation resume --campaign {}", s.campaign),
        ];
        lines.extend(pack(&held, width, usize::MAX));
    }
    let mut more = vec![
        format!("expired {}", thousands(s.totals.expired)),
        format!("suppressed {}", thousands(s.totals.suppressed)),
        format!("rejected {}", thousands(s.totals.rejected)),
        format!("queue {}", thousands(s.queued)),
        format!("retry {}", thousands(s.retrying)),
        format!("conns {}", s.open_connections),
    ];
    if s.this_run.delivered != s.totals.delivered {
        // A resumed campaign: the counts above include earlier runs.
        more.push(format!("this run: delivered {}", thousands(s.this_run.delivered)));
    }
    lines.extend(pack(&more, width, usize::MAX));
    let by_ip: Vec<String> = s
        .by_ip
        .iter()
        .map(|(ip, n)| format!("{ip} {}", thousands(*n)))
        .collect();
    lines.extend(group("per IP:", by_ip, width));
    lines.extend(group("blocklisted:", s.blocklisted.clone(), width));
    let warmup: Vec<String> = s
        .warmup
        .iter()
        .map(|w| {
            format!(
                "{} {} {}/{} today",
                w.ip,
                w.provider,
                thousands(w.sent_today),
                thousands(w.daily_cap)
            )
        })
        .collect();
    lines.extend(group("warm-up:", warmup, width));
    lines
}

/// The first line: the campaign, a bar of the share read and the percentage, fitted.
fn head(s: &Status<'_>, width: usize) -> String {
    let percent = format!(" {:>3.0}% read", s.read * 100.0);
    // Name, " [", the bar, "]", the percentage; the bar gets what is left, 10 to 30 columns.
    let name_max = width.saturating_sub(2 + 10 + 1 + percent.len()).max(8);
    let name = fit(s.campaign, name_max);
    let room = width.saturating_sub(chars(&name) + 2 + 1 + percent.len());
    if room < 10 {
        return fit(&format!("{name}{percent}"), width);
    }
    let cells = room.min(30);
    let filled = ((s.read.clamp(0.0, 1.0) * cells as f64) as usize).min(cells);
    let bar: String = (0..cells)
        .map(|i| match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal if filled < cells => '>',
            _ => ' ',
        })
        .collect();
    format!("{name} [{bar}]{percent}")
}

/// A labelled group (`per IP:`, `warm-up:`) of at most [`MAX_GROUP_LINES`] lines.
fn group(label: &str, items: Vec<String>, width: usize) -> Vec<String> {
    if items.is_empty() {
        return Vec::new();
    }
    let mut all = Vec::with_capacity(items.len() + 1);
    all.push(label.to_string());
    all.extend(items);
    pack(&all, width, MAX_GROUP_LINES)
}

/// `items` joined by two spaces into lines of at most `width` columns (indented by two), at
/// most `max_lines` of them: when they do not all fit, the last line ends with "+N more".
fn pack(items: &[String], width: usize, max_lines: usize) -> Vec<String> {
    const INDENT: &str = "  ";
    let room = width - INDENT.len();
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for (i, item) in items.iter().enumerate() {
        let item = fit(item, room);
        if !line.is_empty() && chars(&line) + 2 + chars(&item) > room {
            if lines.len() + 1 == max_lines {
                // The last line allowed: say what is left out.
                let mut left = items.len() - i;
                let more = |left: usize| format!("+{left} more");
                // Items leave the line to make room for the count of those left out.
                while !line.is_empty() && chars(&line) + 2 + more(left + 1).len() > room {
                    line = match line.rsplit_once("  ") {
                        Some((kept, _)) => kept.to_string(),
                        None => String::new(),
                    };
                    left += 1;
                }
                line = if line.is_empty() {
                    more(left)
                } else {
                    format!("{line}  {}", more(left))
                };
                lines.push(format!("{INDENT}{line}"));
                return lines;
            }
            lines.push(format!("{INDENT}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push_str("  ");
        }
        line.push_str(&item);
    }
    if !line.is_empty() {
        lines.push(format!("{INDENT}{line}"));
    }
    lines
}

/// `text` cut to `max` columns, with "…" when cut.
fn fit(text: &str, max: usize) -> String {
    if chars(text) <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Columns of `text` (every character here is one column wide).
fn chars(text: &str) -> usize {
    text.chars().count()
}

/// `n` with thousands separators (`9,013`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use volley_scheduler::live::{AttemptLabels, Live, WarmupUse};
    use volley_scheduler::outcome::Outcome;

    use crate::progress::{status, Run};

    /// A busy campaign: four IPs, two of them warming.
    fn busy(live: &Live) {
        let c = live.campaign("newsletter-2026-12");
        for (ip, n) in [
            ("127.0.0.2", 9_013),
            ("127.0.0.3", 8_889),
            ("127.0.0.4", 1_892),
            ("127.0.0.5", 11),
        ] {
            for _ in 0..n {
                c.attempt(
                    AttemptLabels {
                        outcome: Outcome::Delivered,
                        source_ip: ip.parse().ok(),
                        site: None,
                        category: "delivered",
                    },
                    None,
                );
            }
        }
        c.set_read(540, 1000);
        c.set_queues(800, 40);
    }

    fn warming() -> Vec<WarmupUse> {
        ["gmail", "microsoft", "yahoo", "other"]
            .iter()
            .flat_map(|p| {
                ["127.0.0.4", "127.0.0.5"].map(|ip| WarmupUse {
                    ip: ip.parse().expect("ip"),
                    provider: p.to_string(),
                    sent_today: 1_892,
                    daily_cap: 2_000,
                })
            })
            .collect()
    }

    /// Regression (issue 17): at 80 columns the one-line bar showed only delivered, deferred
    /// and bounced; msg/s, ETA, the per-IP counts and the warm-up use were cut off.
    #[test]
    fn every_line_fits_the_width_and_the_important_fields_show() {
        let live = Live::default();
        busy(&live);
        let snap = &live.snapshot()[0];
        let mut s = status(snap, &live, Duration::from_secs(60), 172.4, Run::Going);
        s.warmup = warming();
        for width in [40, 60, 80, 120, 200] {
            let lines = layout(&s, width);
            let all = lines.join("\n");
            for line in &lines {
                assert!(chars(line) <= width, "{width} columns: {line:?}\n{all}");
            }
            assert!(lines[0].starts_with("newsletter-2026-12 [") || width < 60, "{all}");
            assert!(lines[0].contains("54% read"), "{all}");
            for field in [
                "delivered 19,805",
                "deferred 0",
                "bounced 0",
                "172 msg/s",
                "ETA 51s",
                "queue 800",
                "conns",
                "per IP:",
                "127.0.0.2 9,013",
                "127.0.0.3 8,889",
                "warm-up:",
                "127.0.0.4 gmail 1,892/2,000 today",
            ] {
                assert!(all.contains(field), "{width} columns: no {field:?}\n{all}");
            }
            // Most important first: outcomes and rate on the line after the bar.
            assert!(
                lines[1].contains("delivered") && all.find("msg/s") < all.find("per IP:"),
                "{all}"
            );
            if width >= 80 {
                assert!(lines[1].contains("msg/s") && lines[1].contains("ETA"), "{all}");
            }
        }
    }

    /// A campaign held by a reputation guard says so, with the reason and how to lift it, and
    /// has no ETA.
    #[test]
    fn a_held_campaign_shows_held_the_reason_and_the_command_that_lifts_it() {
        let live = Live::default();
        busy(&live);
        live.snapshot();
        let c = live.campaign("news");
        c.set_hold(Some(
            "hard-bounce rate 7.10 % over 1000 messages in 1day exceeds 5 %".into(),
        ));
        let snap = &live.snapshot()[1];
        let s = status(snap, &live, Duration::from_secs(60), 172.4, Run::Going);
        assert_eq!((s.msgs_per_s, s.eta_s), (0.0, None));
        let all = layout(&s, 120).join("\n");
        assert!(all.contains("HELD"), "{all}");
        assert!(!all.contains("ETA"), "{all}");
        assert!(
            all.contains(
                "held by the reputation guard: hard-bounce rate 7.10 % over 1000 messages in 1day exceeds 5 %"
            ),
            "{all}"
        );
        assert!(all.contains("lift: volley reputation resume --campaign news"), "{all}");
    }

    #[test]
    fn long_groups_end_in_a_count_of_what_is_left_out() {
        let items: Vec<String> = (0..40).map(|i| format!("127.0.1.{i} 1,000")).collect();
        let lines = group("per IP:", items, 60);
        assert_eq!(lines.len(), MAX_GROUP_LINES, "{lines:#?}");
        assert!(lines.iter().all(|l| chars(l) <= 60), "{lines:#?}");
        let last = lines.last().map(String::as_str).unwrap_or("");
        let shown = lines.iter().map(|l| l.matches(" 1,000").count()).sum::<usize>();
        assert!(last.ends_with(&format!("+{} more", 40 - shown)), "{lines:#?}");
    }

    #[test]
    fn numbers_have_thousands_separators_and_cut_text_says_so() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(9_013), "9,013");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
