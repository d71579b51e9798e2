//! Every problem of the `[[destination]]` blocks, as (field path, value, reason): the config
//! loader adds the file and line.

use std::collections::BTreeMap;

use super::{builtin, DestinationBlock};

/// Problems of `blocks` (`provider_names`: the provider groups in effect, `other` included).
pub(crate) fn problems(blocks: &[DestinationBlock], provider_names: &[String]) -> Vec<(String, String, String)> {
    let shipped: Vec<String> = builtin().into_iter().map(|b| b.name).collect();
    let mut out = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, block) in blocks.iter().enumerate() {
        let field = |name: &str| format!("destination[{i}].{name}");
        let mut push = |f: String, value: String, reason: String| out.push((f, value, reason));
        if block.name.trim().is_empty() {
            push(field("name"), block.name.clone(), "a block needs a name".into());
        }
        let first = *seen.entry(block.name.as_str()).or_insert(i);
        if first != i {
            push(
                field("name"),
                block.name.clone(),
                format!("also destination[{first}]: block names must be unique"),
            );
        }
        let matchers: Vec<&str> = [
            ("domains", !block.domains.is_empty()),
            ("mx_suffix", !block.mx_suffix.is_empty()),
            ("provider", block.provider.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if matchers.len() > 1 {
            push(
                field(matchers[1]),
                String::new(),
                format!(
                    "one matcher per block (this one has {}): write one block per kind",
                    matchers.join(" and ")
                ),
            );
        } else if matchers.is_empty() && !shipped.contains(&block.name) {
            push(
                format!("destination[{i}]"),
                block.name.clone(),
                "a block needs a matcher: domains, mx_suffix or provider".into(),
            );
        }
        for (list, values) in [("domains", &block.domains), ("mx_suffix", &block.mx_suffix)] {
            for (k, v) in values.iter().enumerate() {
                let bare = v.trim().trim_start_matches("*.").trim_matches('.');
                if bare.is_empty() || bare.contains(char::is_whitespace) {
                    push(
                        format!("destination[{i}].{list}[{k}]"),
                        v.clone(),
                        "not a domain name".into(),
                    );
                }
            }
        }
        if let Some(p) = &block.provider {
            if !provider_names.iter().any(|n| n.eq_ignore_ascii_case(p)) {
                push(
                    field("provider"),
                    p.clone(),
                    format!("no such provider group (groups: {})", provider_names.join(", ")),
                );
            }
        }
        for (name, value) in [
            ("max_connections_per_ip", block.max_connections_per_ip),
            ("max_connections", block.max_connections),
            ("initial_connections", block.initial_connections),
            ("max_messages_per_connection", block.max_messages_per_connection),
            ("max_recipients_per_transaction", block.max_recipients_per_transaction),
        ] {
            if value == Some(0) {
                push(field(name), "0".into(), "must be at least 1".into());
            }
        }
        if let (Some(initial), Some(max)) = (block.initial_connections, block.max_connections_per_ip) {
            if initial > max {
                push(
                    field("initial_connections"),
                    initial.to_string(),
                    format!("above this block's max_connections_per_ip ({max})"),
                );
            }
        }
        if block.idle_timeout.is_some_and(|d| d.is_zero()) {
            push(field("idle_timeout"), "0s".into(), "must be longer than zero".into());
        }
    }
    out
}
