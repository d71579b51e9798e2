//! [`DomainGroup`]: one entry of a scenario's domain mix (`[[domains]]`), its validation and
//! the domain names it expands to.

use std::collections::HashMap;

use super::spec::SinkSpec;

/// Most domains a group's `pattern` may expand to.
pub const MAX_GROUP_DOMAINS: u32 = 1_000_000;

/// One part of the recipient list: a provider-like group of one or more domains and its share.
///
/// ```toml
/// [[domains]]
/// name = "gmail-like"
/// weight = 30
/// domain = "gmail-like.bench.test"
///
/// [[domains]]
/// name = "tail"
/// weight = 45
/// pattern = "tail{i}.bench.test"   # {i} = 0 .. count-1
/// count = 1000
/// ```
///
/// Weights are relative (they need not add up to 100). A group's recipients are spread evenly
/// over its domains.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainGroup {
    /// A label for the group, shown in the report (unique within the scenario).
    pub name: String,
    /// The group's relative share of the recipients (> 0).
    pub weight: f64,
    /// The group's single domain; exclusive with `pattern`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// A domain name with `{i}` in it, expanded for `i` in `0..count`; exclusive with `domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// How many domains `pattern` expands to (needs `pattern`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// A sink process of the group's own with these settings (`[domains.sink]`), instead of
    /// one of the scenario's shared `[sink]` processes: a provider with its own limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<SinkSpec>,
}

/// What is wrong with one group: the field (relative to the group), the value and the reason.
pub(crate) type GroupProblem = (&'static str, String, String);

impl DomainGroup {
    /// How many domains the group holds (1 for `domain`, `count` for `pattern`).
    pub fn len(&self) -> u32 {
        if self.pattern.is_some() {
            self.count.unwrap_or(0)
        } else {
            1
        }
    }

    /// Whether the group holds no domain (an invalid `pattern` group with `count = 0`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th domain of the group (`i < len()`).
    pub fn domain_at(&self, i: u32) -> String {
        match (&self.pattern, &self.domain) {
            (Some(pattern), _) => pattern.replace("{i}", &i.to_string()),
            (None, Some(domain)) => domain.clone(),
            (None, None) => String::new(),
        }
    }

    /// Every domain of the group, in index order.
    pub fn domains(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.len()).map(|i| self.domain_at(i))
    }

    /// Checks the group on its own (not against the others).
    pub(crate) fn check(&self) -> Result<(), GroupProblem> {
        let bad = |field: &'static str, value: String, reason: &str| Err((field, value, reason.to_owned()));
        if self.name.trim().is_empty() {
            return bad("name", format!("{:?}", self.name), "must not be empty");
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return bad("weight", self.weight.to_string(), "must be a number greater than 0");
        }
        match (&self.domain, &self.pattern, self.count) {
            (Some(_), Some(_), _) => bad(
                "pattern",
                format!("{:?}", self.pattern.as_deref().unwrap_or_default()),
                "give either `domain` or `pattern` (+ `count`), not both",
            ),
            (None, None, _) => bad(
                "domain",
                "(missing)".to_owned(),
                "give `domain = \"name.test\"` or `pattern = \"x{i}.test\"` with `count`",
            ),
            (Some(_), None, Some(count)) => bad("count", count.to_string(), "`count` goes with `pattern`"),
            (Some(domain), None, None) => {
                check_domain(domain).or_else(|reason| bad("domain", format!("{domain:?}"), &reason))
            }
            (None, Some(pattern), count) => {
                if !pattern.contains("{i}") {
                    return bad("pattern", format!("{pattern:?}"), "must contain `{i}`");
                }
                let Some(count) = count else {
                    return bad("count", "(missing)".to_owned(), "a `pattern` needs `count`");
                };
                if count == 0 || count > MAX_GROUP_DOMAINS {
                    return bad(
                        "count",
                        count.to_string(),
                        &format!("must be between 1 and {MAX_GROUP_DOMAINS}"),
                    );
                }
                check_domain(&self.domain_at(0)).or_else(|reason| bad("pattern", format!("{pattern:?}"), &reason))
            }
        }
    }
}

/// Checks that every group is valid and no domain appears in two groups; the error names the
/// group by index (`domains[2].weight`).
pub(crate) fn check_groups(groups: &[DomainGroup]) -> Result<(), (String, String, String)> {
    if groups.is_empty() {
        return Err((
            "domains".to_owned(),
            "[]".to_owned(),
            "needs at least one [[domains]] group".to_owned(),
        ));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (index, group) in groups.iter().enumerate() {
        group
            .check()
            .map_err(|(field, value, reason)| (format!("domains[{index}].{field}"), value, reason))?;
        if let Some(first) = names.insert(group.name.as_str(), index) {
            return Err((
                format!("domains[{index}].name"),
                format!("{:?}", group.name),
                format!("already used by domains[{first}]"),
            ));
        }
    }
    let total: u64 = groups.iter().map(|g| u64::from(g.len())).sum();
    if total > u64::from(MAX_GROUP_DOMAINS) {
        return Err((
            "domains".to_owned(),
            format!("{total} domains"),
            format!("at most {MAX_GROUP_DOMAINS} domains in all"),
        ));
    }
    let mut owner: HashMap<String, usize> = HashMap::with_capacity(total as usize);
    for (index, group) in groups.iter().enumerate() {
        for domain in group.domains() {
            if let Some(first) = owner.get(&domain) {
                if *first != index {
                    return Err((
                        format!("domains[{index}]"),
                        format!("{domain:?}"),
                        format!("this domain is also in domains[{first}]"),
                    ));
                }
            }
            owner.insert(domain, index);
        }
    }
    Ok(())
}

/// A lowercase DNS name of two or more labels of `a-z`, `0-9` and `-`.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.len() > 253 {
        return Err("longer than 253 characters".to_owned());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err("needs at least two labels, e.g. `name.test`".to_owned());
    }
    for label in labels {
        if label.is_empty() || label.len() > 63 {
            return Err("every label must have 1 to 63 characters".to_owned());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("label {label:?}: only a-z, 0-9 and '-' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with '-'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, domain: &str) -> DomainGroup {
        DomainGroup {
            name: name.to_owned(),
            weight: 1.0,
            domain: Some(domain.to_owned()),
            pattern: None,
            count: None,
            sink: None,
        }
    }

    #[test]
    fn a_pattern_expands_to_count_domains() {
        let group = DomainGroup {
            name: "tail".to_owned(),
            weight: 45.0,
            domain: None,
            pattern: Some("tail{i}.bench.test".to_owned()),
            count: Some(3),
            sink: None,
        };
        assert_eq!(group.check(), Ok(()));
        assert_eq!(
            group.domains().collect::<Vec<_>>(),
            ["tail0.bench.test", "tail1.bench.test", "tail2.bench.test"]
        );
    }

    #[test]
    fn bad_groups_name_the_field() {
        let mut g = one("a", "Upper.test");
        assert_eq!(g.check().map_err(|e| e.0), Err("domain"));
        g.domain = Some("ok.test".to_owned());
        g.weight = 0.0;
        assert_eq!(g.check().map_err(|e| e.0), Err("weight"));
        g.weight = 1.0;
        g.pattern = Some("x{i}.test".to_owned());
        assert_eq!(g.check().map_err(|e| e.0), Err("pattern"));
        g.domain = None;
        assert_eq!(g.check().map_err(|e| e.0), Err("count"));
        g.count = Some(2);
        assert_eq!(g.check(), Ok(()));
        g.pattern = Some("x.test".to_owned());
        assert_eq!(g.check().map_err(|e| e.0), Err("pattern"));
    }

    #[test]
    fn a_domain_in_two_groups_is_refused() {
        let err = check_groups(&[one("a", "x.test"), one("b", "x.test")]).unwrap_err();
        assert_eq!(err.0, "domains[1]");
        assert!(err.2.contains("domains[0]"), "{err:?}");
        let err = check_groups(&[one("a", "x.test"), one("a", "y.test")]).unwrap_err();
        assert_eq!(err.0, "domains[1].name");
        assert!(check_groups(&[]).is_err());
    }
}
