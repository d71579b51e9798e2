//! What the warm-up planner needs from a campaign: its recipients counted per provider group,
//! each distinct domain classified the way a run routes it. The recipient file is streamed
//! (memory grows with the number of distinct domains, not rows); bad rows are counted as
//! rejected and duplicates (as a run skips them) as duplicates, never fatal.
//!
//! Classification of a domain:
//! - a routing override covers it: its provider group by recipient domain
//!   ([`Providers::group_of`] with the route's target as the host, so the `domains` of the
//!   groups decide), else `other`;
//! - otherwise, with `[dns]`: an MX lookup through the [`Router`] (at most
//!   [`MAX_LOOKUPS`] at once), the group of its MX hosts (then of the domain);
//! - otherwise (no route, no `[dns]`: a run defers these), or when the lookup fails: the group
//!   by recipient domain, else `other`, and the domain is listed as unresolved.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use volley_warmup::provider::OTHER;
use volley_warmup::Providers;

use crate::lineset::LineSet;
use crate::recipients::{scan_duplicates, DuplicateScanError, RecipientError, RecipientReader, Row};
use crate::routing::{Destination, Router};

/// MX lookups in flight at once while classifying domains.
pub const MAX_LOOKUPS: usize = 32;

/// A recipient file that cannot be counted.
#[derive(Debug, thiserror::Error)]
pub enum PlanInputError {
    /// The file cannot be opened or read.
    #[error(transparent)]
    Recipients(#[from] RecipientError),
    /// The duplicate scan failed.
    #[error(transparent)]
    Duplicates(#[from] DuplicateScanError),
}

/// A campaign's recipients counted per domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainCounts {
    /// Rows read (recipients and rejected rows).
    pub rows: u64,
    /// Rows refused (bad address, malformed row).
    pub rejected: u64,
    /// Rows whose address an earlier row already had (a run sends it once).
    pub duplicates: u64,
    /// Recipients earlier runs of the campaign already finished (a rerun skips them).
    pub finished: u64,
    /// Recipients per (lower-case) domain.
    pub per_domain: HashMap<String, u64>,
}

/// Streams `recipients` and counts its sendable recipients per domain; the duplicate scan's
/// scratch files go under `work_dir`.
pub fn count_domains(recipients: &Path, email_column: &str, work_dir: &Path) -> Result<DomainCounts, PlanInputError> {
    count_domains_left(recipients, email_column, work_dir, &LineSet::new())
}

/// Like [`count_domains`], leaving out the lines earlier runs `finished` (counted apart; see
/// [`crate::send::state::finished_lines`]): what a rerun still has to send.
pub fn count_domains_left(
    recipients: &Path,
    email_column: &str,
    work_dir: &Path,
    finished: &LineSet,
) -> Result<DomainCounts, PlanInputError> {
    let duplicates = scan_duplicates(recipients, email_column, work_dir)?.duplicates;
    let mut counts = DomainCounts::default();
    for row in RecipientReader::open(recipients, email_column)? {
        counts.rows += 1;
        match row? {
            Row::Rejected(_) => counts.rejected += 1,
            Row::Recipient(r) if duplicates.contains(r.line) => counts.duplicates += 1,
            Row::Recipient(r) if finished.contains(r.line) => counts.finished += 1,
            Row::Recipient(r) => {
                *counts
                    .per_domain
                    .entry(r.email.domain().to_ascii_lowercase())
                    .or_default() += 1
            }
        }
    }
    Ok(counts)
}

/// A domain classified without a destination.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unresolved {
    /// The domain.
    pub domain: String,
    /// Its recipients.
    pub recipients: u64,
    /// The group it was counted in (by its name alone).
    pub provider: String,
    /// Why it has no destination.
    pub reason: String,
}

/// Recipients per provider group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderCounts {
    /// Recipients per group (unresolved domains included, by their name).
    pub per_provider: BTreeMap<String, u64>,
    /// Domains with no destination, most recipients first.
    pub unresolved: Vec<Unresolved>,
}

/// Classifies every domain of `counts` into a provider group (see the module docs); `dns` says
/// whether the router has a resolver.
pub async fn classify(
    counts: &HashMap<String, u64>,
    router: &Router,
    providers: &Providers,
    dns: bool,
) -> ProviderCounts {
    let mut out = ProviderCounts::default();
    let mut lookups: tokio::task::JoinSet<(String, u64, Result<String, String>)> = tokio::task::JoinSet::new();
    let add = |domain: &str, n: u64, found: Result<String, String>, out: &mut ProviderCounts| {
        let provider = match found {
            Ok(group) => group,
            Err(reason) => {
                let provider = by_domain(providers, domain);
                out.unresolved.push(Unresolved {
                    domain: domain.to_string(),
                    recipients: n,
                    provider: provider.clone(),
                    reason,
                });
                provider
            }
        };
        *out.per_provider.entry(provider).or_default() += n;
    };
    for (domain, n) in counts {
        if let Some(dest) = router.route_override(domain) {
            add(domain, *n, Ok(group(providers, dest, domain)), &mut out);
        } else if !dns {
            let reason = "no route and no [dns]: a run defers these".to_string();
            add(domain, *n, Err(reason), &mut out);
        } else {
            // Bounded: wait for one lookup to end before starting another.
            while lookups.len() >= MAX_LOOKUPS {
                if let Some(Ok((domain, n, found))) = lookups.join_next().await {
                    add(&domain, n, found, &mut out);
                }
            }
            let (router, providers, domain, n) = (router.clone(), providers.clone(), domain.clone(), *n);
            lookups.spawn(async move {
                let found = match router.destination(&domain).await {
                    Ok(dest) => Ok(group(&providers, &dest, &domain)),
                    Err(status) => Err(status.text.to_string()),
                };
                (domain, n, found)
            });
        }
    }
    while let Some(done) = lookups.join_next().await {
        match done {
            Ok((domain, n, found)) => add(&domain, n, found, &mut out),
            // A lookup task that panicked: its domain is not counted; say so.
            Err(e) => tracing::warn!("planner: an MX lookup stopped: {e}"),
        }
    }
    out.unresolved
        .sort_by(|a, b| b.recipients.cmp(&a.recipients).then_with(|| a.domain.cmp(&b.domain)));
    out
}

fn group(providers: &Providers, dest: &Destination, domain: &str) -> String {
    let hosts: Vec<&str> = dest.hosts.iter().map(|(_, h)| &*h.name).collect();
    providers.group_of(&hosts, domain).to_string()
}

fn by_domain(providers: &Providers, domain: &str) -> String {
    providers.group_of_domain(domain).unwrap_or(OTHER).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Routes;

    #[tokio::test]
    async fn routed_domains_go_by_name_and_unrouted_ones_are_listed() {
        let routes = [("gmail.com".to_string(), "127.0.0.1:2525".to_string())];
        let router = Router::new(
            Routes::new(routes.iter().map(|(a, b)| (a, b))).expect("routes"),
            None,
            25,
        );
        let counts: HashMap<String, u64> = [("gmail.com", 5), ("yahoo.com", 3), ("example.org", 2)]
            .into_iter()
            .map(|(d, n)| (d.to_string(), n))
            .collect();
        let out = classify(&counts, &router, &Providers::default(), false).await;
        let expected: BTreeMap<String, u64> = [("gmail", 5), ("yahoo", 3), ("other", 2)]
            .into_iter()
            .map(|(p, n)| (p.to_string(), n))
            .collect();
        assert_eq!(out.per_provider, expected);
        let unresolved: Vec<(&str, u64)> = out
            .unresolved
            .iter()
            .map(|u| (u.domain.as_str(), u.recipients))
            .collect();
        assert_eq!(unresolved, [("yahoo.com", 3), ("example.org", 2)]);
    }

    #[test]
    fn counts_domains_rejects_and_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("r.csv");
        std::fs::write(
            &file,
            "email\na@gmail.com\nB@Gmail.com\nnot an address\na@GMAIL.com\nc@yahoo.com\n",
        )
        .expect("write");
        let counts = count_domains(&file, "email", dir.path()).expect("counts");
        assert_eq!((counts.rows, counts.rejected, counts.duplicates), (5, 1, 1));
        assert_eq!(counts.per_domain.get("gmail.com"), Some(&2));
        assert_eq!(counts.per_domain.get("yahoo.com"), Some(&1));
    }
}
