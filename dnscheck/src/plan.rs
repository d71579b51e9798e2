//! [`CheckPlan`]: what to check — the sending domains (From and envelope), the DKIM keys, the
//! source IPs with their EHLO names, and optionally the bounce domain. Built by the caller
//! from its configuration; this crate reads no configuration file.

use std::net::IpAddr;

use volley_engine::dkim::DkimKeyConfig;

/// A From domain and the envelope sender (`MAIL FROM`) domains used with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendingDomain {
    /// The From header's domain, lowercase.
    pub from_domain: String,
    /// Envelope sender domains of mail with this From domain, lowercase; SPF is evaluated for
    /// these (RFC 7208 §2.4) and they align for DMARC or not (RFC 7489 §3.1.2).
    pub envelope_domains: Vec<String>,
}

/// A source IP and the name it greets with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceIpName {
    /// The address mail is sent from.
    pub ip: IpAddr,
    /// Its `ehlo_name`; its PTR should name it.
    pub ehlo_name: String,
}

/// Everything `volley check-dns` checks.
#[derive(Clone, Debug, Default)]
pub struct CheckPlan {
    /// Sending domains, in the order given, each once.
    pub domains: Vec<SendingDomain>,
    /// The `[[dkim]]` keys; each selector's record is checked against the key's public half.
    pub dkim: Vec<DkimKeyConfig>,
    /// The source IPs (SPF must authorise each; each needs FCrDNS).
    pub source_ips: Vec<SourceIpName>,
    /// The domain DSNs are addressed to, which needs an MX.
    pub bounce_domain: Option<String>,
}

impl CheckPlan {
    /// Adds `from_domain` (and `envelope_domain`, when given) unless already present; both are
    /// lowercased and stripped of a trailing dot.
    pub fn add_domain(&mut self, from_domain: &str, envelope_domain: Option<&str>) {
        let from = normalize(from_domain);
        let index = match self.domains.iter().position(|d| d.from_domain == from) {
            Some(i) => i,
            None => {
                self.domains.push(SendingDomain {
                    from_domain: from,
                    envelope_domains: Vec::new(),
                });
                self.domains.len() - 1
            }
        };
        if let Some(envelope) = envelope_domain.map(normalize) {
            let envelopes = &mut self.domains[index].envelope_domains;
            if !envelopes.contains(&envelope) {
                envelopes.push(envelope);
            }
        }
    }

    /// The domains whose SPF is checked: every From domain, then every envelope domain not
    /// already listed.
    pub fn spf_domains(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let all = self
            .domains
            .iter()
            .flat_map(|d| std::iter::once(d.from_domain.as_str()).chain(d.envelope_domains.iter().map(String::as_str)));
        for domain in all {
            if !out.contains(&domain) {
                out.push(domain);
            }
        }
        out
    }
}

/// Lowercase, no surrounding space, no trailing dot.
pub(crate) fn normalize(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_merged_and_spf_domains_listed_once() {
        let mut plan = CheckPlan::default();
        plan.add_domain("Example.test.", None);
        plan.add_domain("example.test", Some("bounces.example.test"));
        plan.add_domain("other.test", Some("bounces.example.test"));
        assert_eq!(plan.domains.len(), 2);
        assert_eq!(plan.domains[0].envelope_domains, ["bounces.example.test"]);
        assert_eq!(
            plan.spf_domains(),
            ["example.test", "bounces.example.test", "other.test"]
        );
    }
}
