//! The HTML page: one self-contained file (inline CSS, inline SVG, no scripts, no fetches),
//! readable offline. Every text that comes from the log is escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::aggregate::{Tally, Totals, OUTCOMES};
use super::charts;
use super::feedback::{self, Feedback};
use super::warmup::{self, WarmupCaps};
use crate::numbers::{percent, thousands};

/// How many rows the busiest-domains and busiest-sites tables show.
const TOP: usize = 50;

/// `text` escaped for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    volley_scheduler::template::push_html_escaped(text, &mut out);
    out
}

fn time(t: Option<std::time::SystemTime>) -> String {
    t.map_or_else(|| "—".into(), |t| humantime::format_rfc3339_seconds(t).to_string())
}

/// Counts per outcome, then (with `rates`) the bounce and deferral rates (see [`RATES_NOTE`]);
/// rates make no sense for rows that are themselves kinds of failure (bounce categories).
fn tally_table(out: &mut String, key: &str, rows: &[(&String, &Tally)], rates: bool) {
    let _ = write!(out, "<table><tr><th>{}</th>", escape(key));
    for o in OUTCOMES {
        let _ = write!(out, "<th>{o}</th>");
    }
    out.push_str("<th>final</th>");
    if rates {
        out.push_str("<th class=\"rate\">bounce %</th><th class=\"rate\">deferral %</th>");
    }
    out.push_str("</tr>\n");
    for (name, t) in rows {
        let _ = write!(out, "<tr><td>{}</td>", escape(name));
        for n in t.0 {
            let _ = write!(out, "<td>{}</td>", thousands(n));
        }
        let _ = write!(out, "<td>{}</td>", thousands(t.finals()));
        if rates {
            let (bounced, mailed) = t.bounce_rate();
            let (deferred, answered) = t.deferral_rate();
            let _ = write!(
                out,
                "<td class=\"rate\">{}</td><td class=\"rate\">{}</td>",
                percent(bounced, mailed),
                percent(deferred, answered)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The warning about `count` lines of a `what` log that were skipped, naming the first.
pub fn skipped_lines(out: &mut String, what: &str, count: u64, first: Option<&(u64, String)>) {
    if let Some((line, why)) = first {
        let _ = writeln!(
            out,
            "<p class=\"warn\">{count} line(s) are not {what} records and were skipped; the first is line {line}: {}</p>",
            escape(why)
        );
    }
}

/// How the rate columns are computed, shown once under the outcomes table.
const RATES_NOTE: &str = "<p class=\"meta\">bounce % = bounced / (delivered + bounced + expired); \
     deferral % = deferred / (delivered + deferred + bounced), the attempts a server answered.</p>\n";

/// A latency band by its upper bound, short enough for 14 of them side by side: `500 ms`,
/// `5 s`.
fn band_name(bound_ms: u64) -> String {
    if bound_ms >= 1000 && bound_ms % 1000 == 0 {
        format!("{} s", bound_ms / 1000)
    } else {
        format!("{bound_ms} ms")
    }
}

/// The heading of a busiest-N table: `"Busiest domains (top 40 of 40)"`.
fn busiest_heading(what: &str, shown: usize, of: usize) -> String {
    format!("<h2>Busiest {what} (top {shown} of {of})</h2>\n")
}

fn busiest(map: &HashMap<String, Tally>) -> Vec<(&String, &Tally)> {
    let mut rows: Vec<(&String, &Tally)> = map.iter().collect();
    rows.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(b.0)));
    rows.truncate(TOP);
    rows
}

fn bars_of<'a>(rows: impl Iterator<Item = (&'a String, &'a Tally)>) -> Vec<(String, Vec<u64>)> {
    rows.map(|(name, t)| (name.clone(), t.0.to_vec())).take(24).collect()
}

/// A chart of outcomes per row (grouped bars, log scale), then the same rows as a table.
fn outcome_bars_and_table(
    out: &mut String,
    title: &str,
    key: &str,
    rows: &[(&String, &Tally)],
    rates: bool,
) -> anyhow::Result<()> {
    out.push_str(&charts::grouped_bars(
        title,
        &bars_of(rows.iter().copied()),
        &charts::outcome_series(),
    )?);
    tally_table(out, key, rows, rates);
    Ok(())
}

/// The whole page for `totals` read from `source` (shown as the log's name), with the rates of
/// `returned` (the feedback log); `caps` gives the warm-up section its caps.
pub fn render(
    totals: &Totals,
    source: &str,
    returned: Option<&Feedback>,
    caps: Option<&WarmupCaps>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let title = format!(
        "Volley report — {}",
        totals.campaigns.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let span = match (totals.first_ts, totals.last_ts) {
        (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    };
    let finals = totals.all.finals();
    let _ = writeln!(
        out,
        "<p class=\"meta\">From <code>{}</code>: {} lines, first attempt {}, last {} ({span:.1} s); \
         {} final outcomes, {} deferrals; {:.1} final outcomes/s.</p>",
        escape(source),
        thousands(totals.lines),
        time(totals.first_ts),
        time(totals.last_ts),
        thousands(finals),
        thousands(totals.all.0[1]),
        if span > 0.0 {
            finals as f64 / span
        } else {
            finals as f64
        },
    );
    skipped_lines(
        &mut out,
        "accounting",
        totals.malformed,
        totals.first_malformed.as_ref(),
    );
    out.push_str("<h2>Outcomes</h2>\n");
    let campaigns: Vec<(&String, &Tally)> = totals.campaigns.iter().collect();
    tally_table(&mut out, "campaign", &campaigns, true);
    out.push_str(RATES_NOTE);

    out.push_str("<h2>Throughput over time</h2>\n");
    let (series, width) = totals.timeline(240);
    out.push_str(&charts::timeline(&series, width)?);

    out.push_str("\n<h2>Per provider group</h2>\n");
    let providers: Vec<(&String, &Tally)> = totals.by_provider.iter().collect();
    outcome_bars_and_table(&mut out, "Outcomes per provider group", "provider", &providers, true)?;

    out.push_str("<h2>Per source IP</h2>\n");
    let ips: Vec<(&String, &Tally)> = totals.by_ip.iter().collect();
    outcome_bars_and_table(&mut out, "Outcomes per source IP", "source IP", &ips, true)?;

    feedback::section(&mut out, totals, returned);

    warmup::section(&mut out, totals, caps);

    out.push_str("<h2>Why attempts did not deliver (bounce categories)</h2>\n");
    let mut categories: Vec<(&String, &Tally)> = totals.categories.iter().collect();
    categories.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then(a.0.cmp(b.0)));
    if categories.is_empty() {
        out.push_str("<p>Every attempt delivered.</p>\n");
    } else {
        outcome_bars_and_table(&mut out, "Attempts per category", "category", &categories, false)?;
    }

    out.push_str("<h2>Delivery latency</h2>\n");
    let q = |q| {
        totals
            .latency_quantile(q)
            .map_or_else(|| "—".into(), |ms| format!("{ms} ms"))
    };
    let _ = writeln!(
        out,
        "<p>From the start of the attempt to the server's final reply: p50 {}, p90 {}, p99 {}, max {}.</p>",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    let bands: Vec<(String, Vec<u64>)> = totals
        .latency_bands()
        .into_iter()
        .map(|(bound, n)| {
            let name = if bound == u64::MAX {
                "more".to_string()
            } else {
                band_name(bound)
            };
            (name, vec![n])
        })
        .collect();
    out.push_str(&charts::grouped_bars(
        "Deliveries per latency band, by upper bound",
        &bands,
        &[("delivered", charts::outcome_series()[0].1)],
    )?);

    for (what, key, map) in [
        ("MX sites", "site", &totals.by_site),
        ("domains", "domain", &totals.by_domain),
    ] {
        let rows = busiest(map);
        out.push_str(&busiest_heading(what, rows.len(), map.len()));
        tally_table(&mut out, key, &rows, true);
    }
    out.push_str("<footer>Made by <code>volley report</code>. Counts are attempts: a deferred recipient appears once per deferral and once with its final outcome.</footer>\n</body></html>\n");
    Ok(out)
}

const CSS: &str = "body{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}.meta{color:#555}\
.warn{background:#fff3cd;padding:6px}.rate{background:#f7f7ff}td.text{text-align:left}td.over{color:#b00;font-weight:bold}svg{max-width:100%;height:auto}footer{color:#777;font-size:small;margin-top:2em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_heading_says_how_many_of_how_many() {
        assert_eq!(
            busiest_heading("domains", 40, 40),
            "<h2>Busiest domains (top 40 of 40)</h2>\n"
        );
        let map: HashMap<String, Tally> = (0..49).map(|i| (format!("d{i}.test"), Tally::default())).collect();
        assert_eq!(busiest(&map).len(), 49, "49 of 49, not 50");
        let map: HashMap<String, Tally> = (0..70).map(|i| (format!("d{i}.test"), Tally::default())).collect();
        assert_eq!(busiest(&map).len(), TOP);
    }

    #[test]
    fn latency_bands_are_named_briefly() {
        assert_eq!(band_name(500), "500 ms");
        assert_eq!(band_name(30_000), "30 s");
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
