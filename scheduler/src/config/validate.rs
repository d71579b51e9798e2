//! Checking the values of a parsed `volley.toml`: every problem found, not only the first, each
//! naming its field path and value (the line is added by [`super::collect`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::SendConfig;

/// One value of `volley.toml` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the value in the file, when it is written there.
    pub line: Option<usize>,
    /// The field path, e.g. `source_ips[1].address`, `smtp.timeouts.data_end`, `routes."*"`.
    pub field: String,
    /// The value as given (empty when the field is missing or a whole table).
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl Problem {
    pub(super) fn new(field: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            line: None,
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "field `{}` = {:?}: {}", self.field, self.value, self.reason)
    }
}

impl SendConfig {
    /// Every value that parses but cannot work, in file order of the fields checked.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        self.source_ip_problems(&mut out);
        for (domain, target) in &self.routes {
            if let Err(reason) = crate::routing::parse_target(target) {
                out.push(Problem::new(format!("routes.{domain:?}"), target.clone(), reason));
            }
        }
        for (field, value) in [
            ("max_in_flight", self.max_in_flight),
            ("max_parked", self.max_parked),
            ("max_in_flight_per_site", self.max_in_flight_per_site),
        ] {
            if value == 0 {
                out.push(Problem::new(field, "0", "must be at least 1"));
            }
        }
        if self.retry.schedule.is_empty() {
            out.push(Problem::new("retry.schedule", "[]", "needs at least one wait"));
        }
        if let Some(d) = self.retry.schedule.iter().find(|d| d.is_zero()) {
            let value = humantime::format_duration(**d).to_string();
            out.push(Problem::new(
                "retry.schedule",
                value,
                "a retry wait must be longer than zero",
            ));
        }
        if self.retry.max_age.is_zero() {
            out.push(Problem::new("retry.max_age", "0s", "must be longer than zero"));
        }
        for e in self.smtp.problems() {
            let value = match &e {
                volley_engine::config::ConfigError::ZeroTimeout { .. } => "0s".to_string(),
                volley_engine::config::ConfigError::Zero { value, .. } => value.to_string(),
                volley_engine::config::ConfigError::ReplyCap(size) => size.to_string(),
                volley_engine::config::ConfigError::Tls(_) => String::new(),
            };
            out.push(Problem::new(e.field(), value, e.to_string()));
        }
        let providers = volley_warmup::Providers::new(&self.warmup.provider_config());
        for (field, value, reason) in crate::destinations::problems(&self.destination, providers.names()) {
            out.push(Problem::new(field, value, reason));
        }
        if let Some(dns) = &self.dns {
            if let Err(e) = dns.validate() {
                out.push(Problem::new("dns", "", e.to_string()));
            }
        }
        for e in self.mta_sts.problems() {
            if let volley_engine::mta_sts::MtaStsSetupError::Value { field, value, reason } = e {
                out.push(Problem::new(format!("mta_sts.{field}"), value, reason));
            }
        }
        if let Err(e) = self.suppression.validate() {
            out.push(Problem::new("suppression", "", e.to_string()));
        }
        if self.mx_port == 0 {
            out.push(Problem::new("mx_port", "0", "must be a TCP port (1-65535)"));
        }
        if let Err((field, value, reason)) = self.warmup.check() {
            out.push(Problem::new(field, value, reason));
        }
        if let Some(Err((field, value, reason))) = self.cluster.as_ref().map(|c| c.check()) {
            out.push(Problem::new(format!("cluster.{field}"), value, reason));
        }
        if let Err((field, value, reason)) = self.injection.check() {
            out.push(Problem::new(format!("injection.{field}"), value, reason));
        }
        if let Err(e) = crate::warmup_counters::redis_url(&self.warmup, self.suppression.redis.as_deref()) {
            out.push(Problem::new("warmup.redis", "", e.to_string()));
        }
        let blocklists = self.blocklists.as_ref().map(|b| b.problems()).unwrap_or_default();
        let inbound = self.inbound.as_ref().map(|i| i.problems()).unwrap_or_default();
        if self.inbound.is_some() && self.feedback.is_none() {
            out.push(Problem::new(
                "inbound",
                "",
                "needs [feedback] (the bounce domain and the token keys)",
            ));
        }
        let unsubscribe = self.unsubscribe.as_ref().map(|u| u.problems()).unwrap_or_default();
        if self.unsubscribe.is_some() && self.feedback.as_ref().is_none_or(|f| f.unsubscribe_url.is_none()) {
            out.push(Problem::new(
                "unsubscribe",
                "",
                "needs [feedback] with unsubscribe_url (the endpoint's public https:// address) and the token keys",
            ));
        }
        for (field, value, reason) in self
            .reputation
            .problems()
            .into_iter()
            .chain(blocklists)
            .chain(inbound)
            .chain(unsubscribe)
            .chain(self.submission.as_ref().map(|s| s.problems()).unwrap_or_default())
        {
            out.push(Problem::new(field, value, reason));
        }
        if let Err((field, reason)) = self.api.tls_files() {
            out.push(Problem::new(field, "", reason));
        }
        if let Some(feedback) = &self.feedback {
            feedback.problems(&mut out);
        }
        out
    }

    fn source_ip_problems(&self, out: &mut Vec<Problem>) {
        if self.source_ips.is_empty() {
            out.push(Problem::new("source_ips", "[]", "at least one source IP is needed"));
        } else if self.source_ips.iter().all(|s| s.weight == 0) {
            out.push(Problem::new("source_ips.weight", "0", "every source IP has weight 0"));
        }
        let mut seen: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let families = self.route_families();
        for (i, ip) in self.source_ips.iter().enumerate() {
            let field = |name: &str| format!("source_ips[{i}].{name}");
            let first = *seen.entry(ip.address).or_insert(i);
            if first != i {
                out.push(Problem::new(
                    field("address"),
                    ip.address.to_string(),
                    format!("also source_ips[{first}]: list each source IP once (use `weight` for a larger share)"),
                ));
            }
            if let Some(families) = &families {
                if !families.contains(&ip.address.is_ipv6()) {
                    let (mine, theirs) = if ip.address.is_ipv6() {
                        ("IPv6", "IPv4")
                    } else {
                        ("IPv4", "IPv6")
                    };
                    out.push(Problem::new(
                        field("address"),
                        ip.address.to_string(),
                        format!(
                            "an {mine} source cannot connect to any route (all {theirs}) and no [dns] finds \
                             other hosts"
                        ),
                    ));
                }
            }
            if volley_engine::smtp::command::check_helo_name(&ip.ehlo_name).is_err() {
                out.push(Problem::new(
                    field("ehlo_name"),
                    ip.ehlo_name.clone(),
                    "not a valid EHLO name",
                ));
            }
            if ip.pool.trim().is_empty() {
                out.push(Problem::new(field("pool"), ip.pool.clone(), "must not be empty"));
            }
            if let Err(e) = ip.warmup_state() {
                let value = ip
                    .warmup
                    .clone()
                    .unwrap_or_else(|| ip.warmup_start.map(|d| d.to_string()).unwrap_or_default());
                out.push(Problem::new(field("warmup"), value, e.to_string()));
            }
        }
    }

    /// The address families (`true` = IPv6) of every host mail can go to, when only the
    /// routes decide that (no `[dns]`); `None` when anything can be reached.
    fn route_families(&self) -> Option<Vec<bool>> {
        if self.dns.is_some() || self.routes.is_empty() {
            return None;
        }
        let families: Vec<bool> = self
            .routes
            .values()
            .filter_map(|target| crate::routing::parse_target(target).ok())
            .map(|addr| addr.is_ipv6())
            .collect();
        (!families.is_empty()).then_some(families)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::ConfigError;
    use super::*;

    const IPS: &str = "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"a.test\"\n";

    fn problems(text: &str) -> Vec<Problem> {
        match SendConfig::parse(text, Path::new("v.toml")) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Problems { problems, .. }) => problems,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn configs_that_cannot_work_are_refused_at_load() {
        let text = format!(
            "{IPS}[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"b.test\"\n\
             [[source_ips]]\naddress = \"::1\"\nehlo_name = \"c.test\"\n\
             [routes]\n\"*\" = \"127.0.0.1:2525\"\n\
             [smtp.timeouts]\ndata_end = \"0s\"\n\
             [api]\ntls_cert = \"api.crt\"\n"
        );
        let all = problems(&text);
        let found: Vec<(Option<usize>, &str, &str)> = all
            .iter()
            .map(|p| (p.line, p.field.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (Some(5), "source_ips[1].address", "127.0.0.2"),
                (Some(8), "source_ips[2].address", "::1"),
                (Some(13), "smtp.timeouts.data_end", "0s"),
                (Some(14), "api.tls_key", ""),
            ]
        );
        assert!(all[0].reason.contains("also source_ips[0]"), "{}", all[0]);
        assert!(all[1].reason.contains("IPv6 source"), "{}", all[1]);

        // With [dns], other hosts (IPv6 ones too) can be found: ::1 is fine.
        let with_dns = format!("{IPS}[[source_ips]]\naddress = \"::1\"\nehlo_name = \"c.test\"\n[routes]\n\"a.test\" = \"127.0.0.1:25\"\n[dns]\n");
        assert_eq!(problems(&with_dns), Vec::new());
    }

    #[test]
    fn mta_sts_settings_are_checked_by_field() {
        let text = format!("{IPS}[dns]\n[mta_sts]\nfetch_timeout = \"0s\"\nmax_policy_size = 10\npolicy_port = 0\n");
        let found: Vec<(Option<usize>, String, String)> = problems(&text)
            .into_iter()
            .map(|p| (p.line, p.field, p.value))
            .collect();
        let expected = [
            (Some(6), "mta_sts.fetch_timeout", "0s"),
            (Some(7), "mta_sts.max_policy_size", "10"),
            (Some(8), "mta_sts.policy_port", "0"),
        ];
        let expected: Vec<(Option<usize>, String, String)> = expected
            .iter()
            .map(|(l, f, v)| (*l, f.to_string(), v.to_string()))
            .collect();
        assert_eq!(found, expected);
        let unknown = format!("{IPS}[mta_sts]\nenforce_all = true\n");
        assert!(
            problems(&unknown).iter().any(|p| p.reason.contains("enforce_all")),
            "unknown fields are refused"
        );
        assert_eq!(
            problems(&format!("{IPS}[dns]\n[mta_sts]\nenabled = false\n")),
            Vec::new()
        );
    }
}
