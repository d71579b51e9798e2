//! Mailbox provider groups: an MX site (its MX host names) is recognised as gmail, microsoft,
//! yahoo… by the suffixes of its host names, or — when its host names say nothing (a routing
//! override to an address) — by the recipient domain; a site that matches no group is
//! [`OTHER`].

use serde::Deserialize;

/// The group of every site that matches no configured group.
pub const OTHER: &str = "other";

/// One provider group: a name and the MX host suffixes that identify it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderGroup {
    /// The group's name, as used in warm-up curves (`"gmail"`).
    pub name: String,
    /// MX host name suffixes, matched on a label boundary, case-insensitively, trailing dot
    /// ignored: `"google.com"` matches `aspmx.l.google.com` but not `evilgoogle.com`.
    pub mx_suffixes: Vec<String>,
    /// Recipient domain suffixes (same matching), used when no MX host name matches any group:
    /// domains routed to an address by `[routes]`, and the planner's estimate before any MX
    /// lookup.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// The provider groups, in matching order (`[[warmup.providers]]` in volley.toml).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ProviderConfig(pub Vec<ProviderGroup>);

impl Default for ProviderConfig {
    /// gmail, microsoft and yahoo by their MX host names.
    fn default() -> ProviderConfig {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        let group = |name: &str, suffixes: &[&str], domains: &[&str]| ProviderGroup {
            name: name.to_string(),
            mx_suffixes: strings(suffixes),
            domains: strings(domains),
        };
        ProviderConfig(vec![
            group(
                "gmail",
                &["google.com", "googlemail.com"],
                &["gmail.com", "googlemail.com"],
            ),
            group(
                "microsoft",
                &["outlook.com", "protection.outlook.com", "hotmail.com"],
                &["outlook.com", "hotmail.com", "live.com", "msn.com"],
            ),
            group(
                "yahoo",
                &["yahoodns.net", "yahoo.com"],
                &["yahoo.com", "ymail.com", "rocketmail.com", "aol.com"],
            ),
        ])
    }
}

/// Recognises provider groups from MX host names.
#[derive(Clone, Debug)]
pub struct Providers {
    /// (normalised suffix, group name), in configuration order.
    suffixes: Vec<(String, String)>,
    /// (normalised recipient domain suffix, group name), in configuration order.
    domains: Vec<(String, String)>,
    names: Vec<String>,
}

impl Providers {
    /// The matcher for a configuration.
    pub fn new(config: &ProviderConfig) -> Providers {
        let suffixes = config
            .0
            .iter()
            .flat_map(|g| g.mx_suffixes.iter().map(|s| (normalise(s).to_string(), g.name.clone())))
            .collect();
        let domains = config
            .0
            .iter()
            .flat_map(|g| g.domains.iter().map(|s| (normalise(s).to_string(), g.name.clone())))
            .collect();
        let mut names: Vec<String> = config.0.iter().map(|g| g.name.clone()).collect();
        if !names.iter().any(|n| n == OTHER) {
            names.push(OTHER.to_string());
        }
        Providers {
            suffixes,
            domains,
            names,
        }
    }

    /// Every group name, [`OTHER`] included.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The group of one MX host name, if any group matches it.
    pub fn group_of_host(&self, host: &str) -> Option<&str> {
        let host = normalise(host);
        self.suffixes
            .iter()
            .find(|(suffix, _)| matches_suffix(host, suffix))
            .map(|(_, name)| name.as_str())
    }

    /// The group of an MX site: the first host that matches a group decides; [`OTHER`] when
    /// none does.
    pub fn group_of_site(&self, hosts: &[&str]) -> &str {
        hosts.iter().find_map(|h| self.group_of_host(h)).unwrap_or(OTHER)
    }

    /// The group of a recipient domain by the groups' `domains`, if any matches.
    pub fn group_of_domain(&self, domain: &str) -> Option<&str> {
        let domain = normalise(domain);
        self.domains
            .iter()
            .find(|(suffix, _)| matches_suffix(domain, suffix))
            .map(|(_, name)| name.as_str())
    }

    /// Like [`Providers::group_of`], also saying whether the recipient domain decided (no MX
    /// host name matched).
    pub fn group_and_source(&self, hosts: &[&str], domain: &str) -> (&str, bool) {
        match hosts.iter().find_map(|h| self.group_of_host(h)) {
            Some(group) => (group, false),
            None => match self.group_of_domain(domain) {
                Some(group) => (group, true),
                None => (OTHER, false),
            },
        }
    }

    /// The group of a site reached for `domain`: its MX host names decide; when none matches
    /// (a routing override to an address), the recipient domain; else [`OTHER`].
    pub fn group_of(&self, hosts: &[&str], domain: &str) -> &str {
        hosts
            .iter()
            .find_map(|h| self.group_of_host(h))
            .or_else(|| self.group_of_domain(domain))
            .unwrap_or(OTHER)
    }
}

impl Default for Providers {
    fn default() -> Providers {
        Providers::new(&ProviderConfig::default())
    }
}

fn normalise(name: &str) -> &str {
    let name = name.trim();
    let name = name.strip_suffix('.').unwrap_or(name);
    name.strip_prefix("*.").unwrap_or(name)
}

/// Whether the name `host` is `suffix` or ends with `.suffix` (ASCII case-insensitive), both
/// taken as written in configuration: a trailing dot and a leading `*.` or `.` are ignored.
pub fn name_has_suffix(host: &str, suffix: &str) -> bool {
    let suffix = normalise(suffix);
    matches_suffix(normalise(host), suffix.strip_prefix('.').unwrap_or(suffix))
}

/// `host` is `suffix` or ends with `.suffix` (ASCII case-insensitive).
fn matches_suffix(host: &str, suffix: &str) -> bool {
    if suffix.is_empty() || host.len() < suffix.len() {
        return false;
    }
    let split = host.len() - suffix.len();
    let (head, tail) = host.split_at_checked(split).unwrap_or((host, ""));
    tail.eq_ignore_ascii_case(suffix) && (head.is_empty() || head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_default_groups() {
        let p = Providers::default();
        assert_eq!(
            p.group_of_site(&["alt1.gmail-smtp-in.l.google.com", "gmail-smtp-in.l.google.com"]),
            "gmail"
        );
        assert_eq!(p.group_of_site(&["ASPMX.L.GOOGLE.COM."]), "gmail");
        assert_eq!(
            p.group_of_site(&["example-com.mail.protection.outlook.com"]),
            "microsoft"
        );
        assert_eq!(p.group_of_site(&["mx1.hotmail.com"]), "microsoft");
        assert_eq!(p.group_of_site(&["mta5.am0.yahoodns.net"]), "yahoo");
        assert_eq!(p.group_of_site(&["mx.example.org"]), "other");
        assert_eq!(p.group_of_site(&[]), "other");
    }

    #[test]
    fn matches_on_a_label_boundary_only() {
        let p = Providers::default();
        assert_eq!(p.group_of_site(&["evilgoogle.com"]), "other");
        assert_eq!(p.group_of_site(&["mx.notoutlook.com"]), "other");
        assert_eq!(p.group_of_site(&["google.com"]), "gmail");
        assert_eq!(p.group_of_site(&["google.com.evil.net"]), "other");
    }

    #[test]
    fn the_first_matching_host_decides_and_groups_are_configurable() {
        let config: ProviderConfig = toml::from_str::<std::collections::BTreeMap<String, ProviderConfig>>(
            "p = [{ name = \"corp\", mx_suffixes = [\"*.corp.example.\"] }]",
        )
        .expect("config")
        .remove("p")
        .expect("p");
        let p = Providers::new(&config);
        assert_eq!(p.group_of_site(&["mx.unknown.net", "MX1.Corp.Example"]), "corp");
        assert_eq!(p.group_of_site(&["aspmx.l.google.com"]), "other");
        assert_eq!(p.names(), ["corp", "other"]);
    }

    #[test]
    fn recipient_domains_decide_only_when_no_mx_host_matches() {
        let p = Providers::default();
        assert_eq!(p.group_of(&["127.0.0.1:2525"], "gmail.com"), "gmail");
        assert_eq!(p.group_of(&["127.0.0.1:2525"], "Sub.Yahoo.COM."), "yahoo");
        assert_eq!(p.group_of(&["mx.example.org"], "hotmail.com"), "microsoft");
        assert_eq!(p.group_of(&["aspmx.l.google.com"], "hotmail.com"), "gmail");
        assert_eq!(p.group_of(&[], "example.org"), "other");
        assert_eq!(p.group_of(&[], "notgmail.com"), "other");
        assert_eq!(p.group_of_domain("example.org"), None);
    }
}
