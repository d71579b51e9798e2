use std::path::Path;

use super::*;
use crate::config::{ConfigError, SendConfig};

const IPS: &str = "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"a.test\"\n";

fn config(blocks: &str) -> SendConfig {
    match SendConfig::parse(&format!("{IPS}{blocks}"), Path::new("v.toml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// (line, field, value, reason) of every problem.
fn problems(blocks: &str) -> Vec<(usize, String, String, String)> {
    match SendConfig::parse(&format!("{IPS}{blocks}"), Path::new("v.toml")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Problems { problems, .. }) => problems
            .into_iter()
            .map(|p| (p.line.unwrap_or(0), p.field, p.value, p.reason))
            .collect(),
        Err(other) => panic!("{other}"),
    }
}

fn value<'a>(r: &'a Resolution, field: &str) -> (&'a str, &'a str) {
    r.fields
        .iter()
        .find(|f| f.field == field)
        .map_or(("?", "?"), |f| (f.value.as_str(), f.source.as_str()))
}

#[test]
fn the_builtin_blocks_parse_and_cover_the_big_providers() {
    let names: Vec<String> = builtin().into_iter().map(|b| b.name).collect();
    assert_eq!(names, ["gmail", "microsoft", "yahoo"]);
    assert!(builtin()
        .iter()
        .all(|b| b.level() == Some(Level::Provider) && b.rate.is_none()));
}

#[test]
fn domain_beats_mx_suffix_beats_provider_beats_smtp_field_by_field() {
    let c = config(
        "[smtp]\nidle_timeout = \"7s\"\n\
         [[destination]]\nname = \"google-mx\"\nmx_suffix = [\".google.com\"]\nmax_messages_per_connection = 20\nmax_connections_per_ip = 4\n\
         [[destination]]\nname = \"acme\"\ndomains = [\"acme.example\"]\nmax_connections_per_ip = 1\nrate = \"600/m\"\n",
    );
    let policies = c.destination_policies();
    let mx = ["alt1.gmail-smtp-in.l.google.com"];
    let r = policies.resolve("mail.acme.example", &mx, "gmail");
    assert_eq!(
        r.blocks,
        [
            "destination[1] \"acme\"",
            "destination[0] \"google-mx\"",
            "built-in \"gmail\""
        ]
    );
    assert_eq!(r.domain_block.as_deref(), Some("acme"));
    assert_eq!(value(&r, "max_connections_per_ip"), ("1", "destination[1] \"acme\""));
    assert_eq!(
        value(&r, "max_messages_per_connection"),
        ("20", "destination[0] \"google-mx\"")
    );
    assert_eq!(value(&r, "tls"), ("required", "built-in \"gmail\""));
    assert_eq!(value(&r, "idle_timeout"), ("7s", "[smtp] idle_timeout"));
    assert_eq!(value(&r, "rate"), ("600/m", "destination[1] \"acme\""));
    let policy = r.policy.expect("a policy");
    assert_eq!(
        (
            &*policy.name,
            policy.max_connections_per_ip,
            policy.max_messages_per_connection
        ),
        ("acme", 1, 20)
    );
    assert_eq!(
        r.rate.map(|(owner, rate)| (owner.to_string(), rate.to_string())),
        Some(("acme".into(), "600/m".into()))
    );

    // Another gmail domain: no domain block, the MX block first.
    let r = policies.resolve("gmail.com", &mx, "gmail");
    assert_eq!(r.domain_block, None);
    assert_eq!(
        value(&r, "max_connections_per_ip"),
        ("4", "destination[0] \"google-mx\"")
    );
    assert_eq!(value(&r, "initial_connections"), ("2", "built-in \"gmail\""));
    assert_eq!(value(&r, "rate"), ("none", "no block sets one"));

    // Nothing matches: the pool's settings, no policy.
    let r = policies.resolve("example.org", &["mx.example.org"], "other");
    assert!(r.blocks.is_empty() && r.policy.is_none() && r.rate.is_none());
    assert_eq!(
        value(&r, "max_connections_per_ip"),
        ("32", "[smtp] max_connections_per_host")
    );
}

#[test]
fn a_block_named_like_a_builtin_overrides_it_field_by_field_and_builtins_can_be_left_out() {
    let c = config("[[destination]]\nname = \"gmail\"\nmax_connections_per_ip = 3\nmax_connections = 12\n");
    let r = c.destination_policies().resolve("gmail.com", &[], "gmail");
    assert_eq!(
        value(&r, "max_connections_per_ip"),
        ("3", "destination[0] \"gmail\" over the built-in")
    );
    assert_eq!(
        value(&r, "max_messages_per_connection"),
        ("100", "destination[0] \"gmail\" over the built-in")
    );
    let total = r.policy.and_then(|p| p.total.clone());
    assert_eq!(total.map(|t| (t.owner.to_string(), t.max)), Some(("gmail".into(), 12)));

    let c = SendConfig::parse(&format!("builtin_destinations = false\n{IPS}"), Path::new("v.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = c
        .destination_policies()
        .resolve("gmail.com", &["gmail-smtp-in.l.google.com"], "gmail");
    assert!(r.policy.is_none(), "{r:?}");
    assert_eq!(value(&r, "tls"), ("opportunistic", "[smtp] tls"));
}

#[test]
fn a_total_cap_belongs_to_the_block_that_set_it() {
    let c = config(
        "[[destination]]\nname = \"acme\"\ndomains = [\"acme.example\"]\n\
         [[destination]]\nname = \"corp-mx\"\nmx_suffix = [\"corp.example\"]\nmax_connections = 6\n",
    );
    let r = c
        .destination_policies()
        .resolve("acme.example", &["mx1.corp.example"], "other");
    let policy = r.policy.expect("policy");
    assert_eq!(&*policy.name, "acme");
    let total = policy.total.clone().map(|t| (t.owner.to_string(), t.max));
    assert_eq!(
        total,
        Some(("corp-mx".into(), 6)),
        "shared with every route falling back to corp-mx"
    );
}

#[test]
fn bad_blocks_are_refused_with_line_field_and_value() {
    let found = problems(
        "[[destination]]\nname = \"a\"\ndomains = [\"a.example\"]\nmax_connections_per_ip = 0\n\
         [[destination]]\nname = \"a\"\nprovider = \"aol\"\n\
         [[destination]]\nname = \"nomatch\"\nmax_connections = 5\n\
         [[destination]]\nname = \"two\"\ndomains = [\"b.example\"]\nprovider = \"gmail\"\n\
         [[destination]]\nname = \"slow\"\nprovider = \"other\"\nrate = \"fast\"\n\
         [[destination]]\nname = \"typo\"\nprovider = \"other\"\nmax_conections = 3\n\
         [[destination]]\nname = \"t\"\nprovider = \"yahoo\"\ntls = \"always\"\ninitial_connections = 9\nmax_connections_per_ip = 2\n",
    );
    let brief: Vec<(usize, &str, &str)> = found.iter().map(|(l, f, v, _)| (*l, f.as_str(), v.as_str())).collect();
    assert_eq!(
        brief,
        [
            (21, "destination[4].rate", "fast"),
            (25, "destination[5].max_conections", "3"),
            (29, "destination[6].tls", "always"),
            (7, "destination[0].max_connections_per_ip", "0"),
            (9, "destination[1].name", "a"),
            (10, "destination[1].provider", "aol"),
            (11, "destination[2]", "nomatch"),
            (17, "destination[3].provider", ""),
            (30, "destination[6].initial_connections", "9"),
        ],
        "{found:#?}"
    );
    let reason = |i: usize| found[i].3.as_str();
    assert!(reason(1).contains("unknown field"), "{}", reason(1));
    assert!(reason(4).contains("also destination[0]"), "{}", reason(4));
    assert!(reason(5).contains("gmail, microsoft, yahoo, other"), "{}", reason(5));
    assert!(reason(6).contains("needs a matcher"), "{}", reason(6));
    assert!(reason(7).contains("domains and provider"), "{}", reason(7));
}
