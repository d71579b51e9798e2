//! Which queued recipients an operator's command is about: a destination domain, an MX site,
//! a source IP, or a (source IP, provider group) pair.

use std::net::IpAddr;

/// The scope of a queue command (suspend, resume, retry, bounce, purge).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum QueueScope {
    /// Every recipient of one destination domain (lower case).
    Domain {
        /// The recipient domain.
        domain: String,
    },
    /// Every recipient routed to one MX site (as `GET /queues?by=site` names it).
    Site {
        /// The site key.
        site: String,
    },
    /// One source IP's mail to one provider group.
    Route {
        /// The source IP.
        source_ip: IpAddr,
        /// The provider group (`gmail`, `microsoft`, `yahoo`, `other` or a warm-up group).
        provider: String,
    },
    /// Everything one source IP sends.
    SourceIp {
        /// The source IP.
        source_ip: IpAddr,
    },
}

impl std::fmt::Display for QueueScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueScope::Domain { domain } => write!(f, "domain {domain}"),
            QueueScope::Site { site } => write!(f, "site {site}"),
            QueueScope::Route { source_ip, provider } => write!(f, "source IP {source_ip} to {provider}"),
            QueueScope::SourceIp { source_ip } => write!(f, "source IP {source_ip}"),
        }
    }
}

/// A scope (or a reason) that cannot be used: the field, its value and why.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?}: {reason}")]
pub struct ScopeError {
    /// The request field (`domain`, `site`, `source_ip`, `provider`, `reason`, or `(body)`).
    pub field: String,
    /// The value given (empty when the field is missing).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ScopeError {
    fn new(field: &str, value: &str, reason: impl Into<String>) -> ScopeError {
        ScopeError {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// The fields a scope is made of.
pub const SCOPE_FIELDS: [&str; 4] = ["domain", "site", "source_ip", "provider"];

/// A name given in a scope: not empty, at most 255 bytes, no spaces or control characters.
fn name<'a>(field: &str, value: &'a str) -> Result<&'a str, ScopeError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ScopeError::new(field, value, "must not be empty"));
    }
    if v.len() > 255 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ScopeError::new(
            field,
            value,
            "at most 255 characters, without spaces or control characters",
        ));
    }
    Ok(v)
}

impl QueueScope {
    /// The scope the given fields name: `domain` alone, `site` alone, `source_ip` alone, or
    /// `source_ip` with `provider`. Each field's value is checked (a domain has no `@`, an IP
    /// parses).
    pub fn from_fields(
        domain: Option<&str>,
        site: Option<&str>,
        source_ip: Option<&str>,
        provider: Option<&str>,
    ) -> Result<QueueScope, ScopeError> {
        let ip = |raw: &str| {
            raw.trim()
                .parse::<IpAddr>()
                .map_err(|e| ScopeError::new("source_ip", raw, format!("not an IP address: {e}")))
        };
        match (domain, site, source_ip, provider) {
            (Some(d), None, None, None) => {
                let d = name("domain", d)?;
                if d.contains('@') {
                    return Err(ScopeError::new(
                        "domain",
                        d,
                        "a domain, not an address (the part after the @)",
                    ));
                }
                Ok(QueueScope::Domain {
                    domain: d.trim_end_matches('.').to_ascii_lowercase(),
                })
            }
            (None, Some(s), None, None) => Ok(QueueScope::Site {
                site: name("site", s)?.to_string(),
            }),
            (None, None, Some(raw), None) => Ok(QueueScope::SourceIp { source_ip: ip(raw)? }),
            (None, None, Some(raw), Some(p)) => Ok(QueueScope::Route {
                source_ip: ip(raw)?,
                provider: name("provider", p)?.to_ascii_lowercase(),
            }),
            (None, None, None, Some(p)) => Err(ScopeError::new(
                "provider",
                p,
                "a provider group needs a source_ip (the pair is the scope)",
            )),
            (None, None, None, None) => Err(ScopeError::new(
                "(body)",
                "",
                "name a scope: domain, site, source_ip, or source_ip with provider",
            )),
            _ => Err(ScopeError::new(
                "(body)",
                "",
                "name one scope: domain, site, source_ip, or source_ip with provider",
            )),
        }
    }

    /// Whether a recipient of `domain` at `site` (provider group `provider`), whose last
    /// attempt went out from `last_ip`, is in this scope. Source IP scopes only hold
    /// recipients an IP already tried: a queued recipient has no IP until it is sent.
    pub fn holds(&self, domain: &str, site: &str, provider: &str, last_ip: Option<IpAddr>) -> bool {
        match self {
            QueueScope::Domain { domain: d } => d == domain,
            // A site split per provider group (`#`) or destination block (`@`) is part of it.
            QueueScope::Site { site: s } => site
                .strip_prefix(s.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['#', '@'])),
            QueueScope::SourceIp { source_ip } => last_ip == Some(*source_ip),
            QueueScope::Route { source_ip, provider: p } => last_ip == Some(*source_ip) && p == provider,
        }
    }

    /// Whether this is a destination scope (domain or site): suspending it stops its
    /// recipients wherever they would go; an IP scope stops only that IP.
    pub fn is_destination(&self) -> bool {
        matches!(self, QueueScope::Domain { .. } | QueueScope::Site { .. })
    }
}

/// An operator's reason for a bounce or a purge: required, one line, at most 500 characters.
pub fn reason(value: Option<&str>) -> Result<String, ScopeError> {
    let Some(raw) = value else {
        return Err(ScopeError::new(
            "reason",
            "",
            "missing: say why (it goes into every recipient's accounting line)",
        ));
    };
    let r = raw.trim();
    if r.is_empty() {
        return Err(ScopeError::new("reason", raw, "must not be empty"));
    }
    if r.len() > 500 || r.chars().any(char::is_control) {
        return Err(ScopeError::new("reason", raw, "one line of at most 500 characters"));
    }
    Ok(r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(d: Option<&str>, s: Option<&str>, ip: Option<&str>, p: Option<&str>) -> Result<QueueScope, ScopeError> {
        QueueScope::from_fields(d, s, ip, p)
    }

    #[test]
    fn each_scope_parses_and_is_normalised() {
        assert_eq!(
            parse(Some("Example.COM."), None, None, None),
            Ok(QueueScope::Domain {
                domain: "example.com".into()
            })
        );
        assert_eq!(
            parse(None, Some("route:127.0.0.1:2525"), None, None),
            Ok(QueueScope::Site {
                site: "route:127.0.0.1:2525".into()
            })
        );
        assert_eq!(
            parse(None, None, Some("127.0.0.2"), None),
            Ok(QueueScope::SourceIp {
                source_ip: "127.0.0.2".parse().unwrap()
            })
        );
        assert_eq!(
            parse(None, None, Some("::1"), Some("Gmail")),
            Ok(QueueScope::Route {
                source_ip: "::1".parse().unwrap(),
                provider: "gmail".into()
            })
        );
    }

    #[test]
    fn bad_scopes_name_the_field_and_value() {
        let e = parse(None, None, Some("127.0.0.300"), None).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("source_ip", "127.0.0.300"));
        assert!(e.to_string().contains("not an IP address"), "{e}");
        let e = parse(Some("a@b.test"), None, None, None).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("domain", "a@b.test"));
        let e = parse(Some(" "), None, None, None).unwrap_err();
        assert_eq!(e.field, "domain");
        let e = parse(None, None, None, Some("gmail")).unwrap_err();
        assert_eq!((e.field.as_str(), e.value.as_str()), ("provider", "gmail"));
        assert_eq!(parse(None, None, None, None).unwrap_err().field, "(body)");
        assert_eq!(
            parse(Some("a.test"), Some("s"), None, None).unwrap_err().field,
            "(body)"
        );
        let e = reason(None).unwrap_err();
        assert_eq!(e.field, "reason");
        assert!(e.reason.contains("missing"), "{e}");
        assert_eq!(reason(Some(" \n")).unwrap_err().field, "reason");
        assert_eq!(reason(Some("a\nb")).unwrap_err().field, "reason");
        assert_eq!(reason(Some(" provider asked ")), Ok("provider asked".into()));
    }

    #[test]
    fn scopes_hold_what_they_name() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let d = QueueScope::Domain {
            domain: "a.test".into(),
        };
        assert!(d.holds("a.test", "s1", "other", None));
        assert!(!d.holds("b.test", "s1", "other", None));
        let s = QueueScope::Site { site: "s1".into() };
        assert!(s.holds("b.test", "s1", "other", None));
        assert!(s.holds("b.test", "s1#gmail", "gmail", None));
        assert!(!s.holds("b.test", "s10", "other", None));
        let i = QueueScope::SourceIp { source_ip: ip };
        assert!(i.holds("a.test", "s1", "other", Some(ip)));
        assert!(!i.holds("a.test", "s1", "other", None), "not yet tried: no IP");
        let r = QueueScope::Route {
            source_ip: ip,
            provider: "gmail".into(),
        };
        assert!(r.holds("a.test", "s1", "gmail", Some(ip)));
        assert!(!r.holds("a.test", "s1", "other", Some(ip)));
        // The JSON forms the API and the controls file use.
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#"{"source_ip":"127.0.0.2","provider":"gmail"}"#);
        assert_eq!(serde_json::from_str::<QueueScope>(&json).unwrap(), r);
        let back: QueueScope = serde_json::from_str(r#"{"source_ip":"127.0.0.2"}"#).unwrap();
        assert_eq!(back, i);
    }
}
