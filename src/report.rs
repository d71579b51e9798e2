//! The human-readable end-of-run report.

use volley_scheduler::summary::{Summary, Tally};

/// Prints the summary: totals, rate, tallies per source IP and the `top` busiest domains.
pub fn print(s: &Summary, top: usize) {
    println!("campaign {}", s.campaign);
    println!(
        "  rows {}  recipients {}  delivered {}  deferred {}  bounced {}  suppressed {}  rejected {}  duplicates {}",
        s.rows, s.recipients, s.delivered, s.deferred, s.bounced, s.suppressed, s.rejected, s.duplicates
    );
    println!(
        "  expired {}  deferrals {}  retried {}  resent after restart {}  complete {}",
        s.expired, s.deferrals, s.retried, s.resent_after_restart, s.complete
    );
    println!(
        "  elapsed {:.2} s  {:.0} msg/s  connections {} (failed {})  maybe-duplicates {}",
        s.elapsed_s, s.msgs_per_s, s.connections_opened, s.connect_failures, s.maybe_duplicates
    );
    println!("  per source IP:");
    for (ip, t) in &s.by_source_ip {
        println!("    {ip:<16} {}", tally(t));
    }
    let mut sites: Vec<_> = s.by_site.iter().collect();
    sites.sort_by_key(|(k, t)| (std::cmp::Reverse(t.delivered + t.deferred + t.bounced), k.to_string()));
    println!(
        "  per MX site ({} sites, busiest {}):",
        sites.len(),
        top.min(sites.len())
    );
    for (k, t) in sites.iter().take(top) {
        println!("    {k:<40} {}", tally(t));
    }
    let mut domains: Vec<_> = s.by_domain.iter().collect();
    domains.sort_by_key(|(d, t)| (std::cmp::Reverse(t.delivered + t.deferred + t.bounced), d.to_string()));
    println!(
        "  per domain ({} domains, busiest {}):",
        domains.len(),
        top.min(domains.len())
    );
    for (d, t) in domains.iter().take(top) {
        println!("    {d:<24} {}", tally(t));
    }
    println!("  accounting log: {}", s.accounting_log.display());
    if s.rejected > 0 {
        println!("  rejects file:   {}", s.rejects_file.display());
    }
}

fn tally(t: &Tally) -> String {
    format!(
        "delivered {:>7}  deferred {:>6}  bounced {:>6}",
        t.delivered, t.deferred, t.bounced
    )
}
