//! The `dmarc` check of a From domain (RFC 7489 §6.6.3: the record at `_dmarc.<domain>`, else at
//! the organizational domain — approximated here, without the public suffix list, as the last
//! two labels) and the `alignment` check: the DKIM `d=` Volley signs with and the envelope
//! sender domains against the From domain under `adkim=` / `aspf=` (RFC 7489 §3.1).

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};
use volley_engine::dkim::DkimKeyConfig;
use volley_engine::mx::DnsAnswer;

use crate::check_spf::txt_line;
use crate::lookup::Dns;
use crate::plan::{normalize, SendingDomain};
use crate::report::{quoted, Check, CheckKind, Status};

/// The policy record that applies to a From domain, when one was found.
pub(crate) struct Applied {
    adkim: Alignment,
    aspf: Alignment,
}

/// The `dmarc` check of `domain`, and the record's alignment modes for the `alignment` check.
pub(crate) async fn check(dns: &Dns, domain: &str) -> (Check, Option<Applied>) {
    let advice = txt_line(
        &format!("_dmarc.{domain}"),
        &format!("v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@{domain}"),
    );
    let mut candidates = vec![domain.to_owned()];
    let organizational = organizational(domain);
    if organizational != domain {
        candidates.push(organizational.to_owned());
    }
    for at in &candidates {
        let name = format!("_dmarc.{at}");
        let txt = match dns.txt(&name).await {
            DnsAnswer::Records(txt, _) => txt,
            DnsAnswer::NoData | DnsAnswer::NxDomain => continue,
            DnsAnswer::Failed(reason) => {
                return (
                    Check::unchecked(CheckKind::Dmarc, domain, &format!("TXT {name}"), &reason),
                    None,
                )
            }
        };
        let new = |status, message: String| Check::new(CheckKind::Dmarc, domain, status, message);
        let records: Vec<&String> = txt
            .iter()
            .filter(|t| t.to_ascii_lowercase().starts_with("v=dmarc1"))
            .collect();
        let misplaced: Vec<&String> = txt
            .iter()
            .filter(|t| t.contains("v=DMARC1") && !records.contains(t))
            .collect();
        let record = match (&records[..], &misplaced[..]) {
            ([one], _) => (*one).clone(),
            ([], []) => continue,
            ([], [bad, ..]) => {
                let check = new(
                    Status::Fail,
                    format!(
                        "{} at {name}: v=DMARC1 must be the first tag (RFC 7489 §6.4)",
                        quoted(bad)
                    ),
                )
                .record(bad.as_str())
                .advice(advice);
                return (check, None);
            }
            (several, _) => {
                let found = several.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" | ");
                let check = new(
                    Status::Fail,
                    format!(
                        "{} DMARC records at {name} ({}): receivers ignore them all (RFC 7489 §6.6.3)",
                        several.len(),
                        quoted(&found)
                    ),
                )
                .record(found)
                .advice(advice);
                return (check, None);
            }
        };
        let shown = quoted(&record);
        let parsed = match Dmarc::parse(record.as_bytes()) {
            Ok(parsed) => parsed,
            Err(e) => {
                let check = new(Status::Fail, format!("{shown} at {name} does not parse: {e}"))
                    .record(record.as_str())
                    .advice(advice);
                return (check, None);
            }
        };
        let inherited = at != domain;
        // RFC 7489 §6.3: sp= applies to subdomains of the organizational domain.
        let policy = match (inherited, parsed.sp) {
            (true, Policy::Unspecified) | (false, _) => parsed.p,
            (true, sp) => sp,
        };
        let place = if inherited {
            format!("{name} (organizational domain of {domain})")
        } else {
            name.clone()
        };
        let (status, what) = match policy {
            Policy::Reject => (Status::Pass, "p=reject: failing mail is rejected"),
            Policy::Quarantine => (Status::Pass, "p=quarantine: failing mail goes to spam"),
            Policy::None => (Status::Warn, "p=none: monitoring only, failing mail is delivered"),
            Policy::Unspecified => (Status::Fail, "no p= policy"),
        };
        let mut check = new(status, format!("{shown} at {place}: {what}")).record(record.as_str());
        if status != Status::Pass {
            check = check.advice(txt_line(&name, &raise_policy(&record)));
        }
        let applied = Applied {
            adkim: parsed.adkim,
            aspf: parsed.aspf,
        };
        return (check, Some(applied));
    }
    let tried = candidates
        .iter()
        .map(|c| format!("_dmarc.{c}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let check = Check::new(
        CheckKind::Dmarc,
        domain,
        Status::Fail,
        format!("no DMARC record at {tried}"),
    )
    .advice(advice);
    (check, None)
}

/// `record` with `p=quarantine` (an unparsed tag list edited textually).
fn raise_policy(record: &str) -> String {
    let tags: Vec<String> = record
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.starts_with("p="))
        .map(str::to_owned)
        .collect();
    let mut out = vec![
        tags.first().cloned().unwrap_or_else(|| "v=DMARC1".into()),
        "p=quarantine".into(),
    ];
    out.extend(tags.into_iter().skip(1));
    out.join("; ")
}

/// The `alignment` check of one sending domain: Volley signs mail From `F` only with the
/// `[[dkim]]` keys whose domain is `F`, so DKIM aligns exactly when such a key exists; SPF
/// aligns when the envelope domain equals the From domain (strict) or is its parent or child
/// (relaxed, the default).
pub(crate) fn alignment(domain: &SendingDomain, keys: &[DkimKeyConfig], applied: Option<&Applied>) -> Check {
    let from = &domain.from_domain;
    let (adkim, aspf) = applied.map_or((Alignment::Relaxed, Alignment::Relaxed), |a| (a.adkim, a.aspf));
    let signing: Vec<&DkimKeyConfig> = keys.iter().filter(|k| normalize(&k.domain) == *from).collect();
    // Volley's default envelope sender is the From address.
    let envelopes: Vec<&str> = if domain.envelope_domains.is_empty() {
        vec![from.as_str()]
    } else {
        domain.envelope_domains.iter().map(String::as_str).collect()
    };
    let spf_parts: Vec<String> = envelopes
        .iter()
        .map(|e| {
            let word = if aligned(e, from, aspf) {
                "aligns"
            } else {
                "does not align"
            };
            format!("envelope domain {e} {word} for SPF (aspf={})", mode(aspf))
        })
        .collect();
    let spf_aligned = envelopes.iter().all(|e| aligned(e, from, aspf));
    let new = |status, message: String| Check::new(CheckKind::Alignment, from, status, message);
    if !signing.is_empty() {
        let selectors: Vec<String> = signing.iter().map(|k| format!("d={from} s={}", k.selector)).collect();
        let status = if spf_aligned { Status::Pass } else { Status::Warn };
        return new(
            status,
            format!(
                "DKIM {} aligns with From {from}; {}",
                selectors.join(", "),
                spf_parts.join("; ")
            ),
        );
    }
    let mut key_domains: Vec<String> = keys.iter().map(|k| normalize(&k.domain)).collect();
    key_domains.dedup();
    let others: Vec<String> = key_domains
        .into_iter()
        .map(|d| {
            let note = if aligned(&d, from, adkim) {
                "would align but Volley signs only with keys of the From domain itself"
            } else {
                "does not align"
            };
            format!("d={d} {note} (adkim={})", mode(adkim))
        })
        .collect();
    let keys_text = if others.is_empty() {
        "no [[dkim]] keys".to_owned()
    } else {
        others.join("; ")
    };
    let message = format!(
        "mail From {from} goes out without an aligned DKIM signature: no [[dkim]] key has domain = {from} ({keys_text}); {}",
        spf_parts.join("; ")
    );
    let advice = format!("a [[dkim]] key with domain = \"{from}\" (volley dkim keygen --domain {from} ...)");
    if spf_aligned {
        new(
            Status::Warn,
            format!("{message}: DMARC rests on SPF alone, which forwarding breaks"),
        )
        .advice(advice)
    } else {
        new(Status::Fail, format!("{message}: DMARC fails")).advice(advice)
    }
}

/// Identifier alignment (RFC 7489 §3.1): equal names, or under relaxed mode one a parent of the
/// other.
pub fn aligned(a: &str, b: &str, mode: Alignment) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    a == b || (mode == Alignment::Relaxed && (a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))))
}

fn mode(alignment: Alignment) -> &'static str {
    match alignment {
        Alignment::Relaxed => "r",
        Alignment::Strict => "s",
    }
}

/// The last two labels of `domain` (the organizational domain without the public suffix list).
fn organizational(domain: &str) -> &str {
    let mut dots = domain.rmatch_indices('.');
    dots.next();
    match dots.next() {
        Some((i, _)) => &domain[i + 1..],
        None => domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_modes() {
        assert!(aligned("example.test", "Example.test.", Alignment::Strict));
        assert!(!aligned("mail.example.test", "example.test", Alignment::Strict));
        assert!(aligned("mail.example.test", "example.test", Alignment::Relaxed));
        assert!(aligned("example.test", "news.example.test", Alignment::Relaxed));
        assert!(!aligned("badexample.test", "example.test", Alignment::Relaxed));
        assert!(!aligned("other.test", "example.test", Alignment::Relaxed));
    }

    #[test]
    fn organizational_domain_is_the_last_two_labels() {
        assert_eq!(organizational("news.mail.example.test"), "example.test");
        assert_eq!(organizational("example.test"), "example.test");
        assert_eq!(organizational("test"), "test");
    }

    #[test]
    fn raising_the_policy_keeps_the_other_tags() {
        assert_eq!(
            raise_policy("v=DMARC1; p=none; rua=mailto:d@example.test"),
            "v=DMARC1; p=quarantine; rua=mailto:d@example.test"
        );
    }
}
