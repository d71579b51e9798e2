//! The human-readable end-of-run report.

use volley_scheduler::summary::{Summary, Tally};

/// Prints the summary: totals, rate, tallies per source IP and the `top` busiest domains.
pub fn print(s: &Summary, top: usize) {
    println!("campaign {}", s.campaign);
    // Totals cover the whole campaign (earlier runs of a resumed one included); the rate and
    // the connections cover this run.
    println!(
        "  campaign totals: rows {}  recipients {}  delivered {}  deferred {}  bounced {}  suppressed {}  rejected {}  duplicates {}",
        s.rows, s.recipients, s.delivered, s.deferred, s.bounced, s.suppressed, s.rejected, s.duplicates
    );
    println!(
        "  expired {}  deferrals {}  retried {}  resent after restart {}  complete {}",
        s.expired, s.deferrals, s.retried, s.resent_after_restart, s.complete
    );
    println!(
        "  this run: {:.2} s  delivered {}  {:.0} msg/s  connections {} (failed {})  maybe-duplicates {}",
        s.elapsed_s, s.this_run.delivered, s.msgs_per_s, s.connections_opened, s.connect_failures, s.maybe_duplicates
    );
    println!("  per source IP:");
    for (ip, t) in &s.by_source_ip {
        println!("    {ip:<16} {}", tally(t));
    }
    if !s.connection_limits.is_empty() {
        println!(
            "  connection limits learned from receivers ({} refusals, none deferred):",
            s.connections_refused
        );
        for r in s.connection_limits.iter().take(top) {
            println!(
                "    {:<16} -> {:<32} limit {:>3} of {:>3}  refused {}",
                r.source_ip.to_string(),
                format!("{} ({})", r.mx, r.mx_addr),
                r.limit,
                r.cap,
                r.refusals
            );
        }
    }
    print_busiest("MX site", "sites", &s.by_site, top, 40);
    print_busiest("domain", "domains", &s.by_domain, top, 24);
    println!("  accounting log: {}", s.accounting_log.display());
    if s.rejected > 0 {
        println!("  rejects file:   {}", s.rejects_file.display());
    }
}

/// The `top` keys of `map` with the most recipients, busiest first.
fn print_busiest(what: &str, plural: &str, map: &std::collections::BTreeMap<String, Tally>, top: usize, width: usize) {
    let mut rows: Vec<_> = map.iter().collect();
    rows.sort_by_key(|(k, t)| (std::cmp::Reverse(t.delivered + t.deferred + t.bounced), k.to_string()));
    println!(
        "  per {what} ({} {plural}, busiest {}):",
        rows.len(),
        top.min(rows.len())
    );
    for (k, t) in rows.iter().take(top) {
        println!("    {k:<width$} {}", tally(t));
    }
}

fn tally(t: &Tally) -> String {
    format!(
        "delivered {:>7}  deferred {:>6}  bounced {:>6}",
        t.delivered, t.deferred, t.bounced
    )
}

/// The warm-up caps of `config` for the HTML report; `None` (with a warning) when its warm-up
/// settings cannot be loaded. `config_path` is only named in the warning.
pub fn warmup_caps(
    config: &volley_scheduler::config::SendConfig,
    config_path: &std::path::Path,
) -> Option<crate::html_report::WarmupCaps> {
    match config.warmup_policy(config_path) {
        Ok(policy) => Some(crate::html_report::WarmupCaps::new(config, &policy)),
        Err(e) => {
            eprintln!("volley: the HTML report shows no warm-up caps: {e}");
            None
        }
    }
}

/// Writes the HTML report (`report.html` beside the accounting log, with the warm-up `caps`)
/// and prints where; a report that cannot be written is a warning, never a failed run.
pub fn write_html(s: &Summary, caps: Option<&crate::html_report::WarmupCaps>) {
    let out = s.accounting_log.with_file_name("report.html");
    match crate::html_report::write(&s.accounting_log, None, &out, caps) {
        Ok(_) => println!("  HTML report:    {}", out.display()),
        Err(e) => eprintln!("volley: no HTML report for campaign {}: {e:#}", s.campaign),
    }
}
