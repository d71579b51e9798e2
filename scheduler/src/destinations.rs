//! Per-destination policy: `[[destination]]` blocks of `volley.toml`, matched by recipient
//! domain, MX host suffix or provider group, each setting some of the connection settings of
//! `[smtp]` (and a rate) for the mail it matches.
//!
//! A delivery's settings come from a chain of at most three blocks — the first block (in file
//! order, built-in blocks last) whose `domains` match the recipient domain, the first whose
//! `mx_suffix` matches one of the site's MX host names, the first whose `provider` is the
//! site's provider group — then `[smtp]`: each field from the first of them that sets it.
//! The built-in blocks (gmail, microsoft, yahoo; `destinations/builtin.toml`, every value with
//! its source) are provider blocks; an operator block of the same name overrides them field by
//! field.
//!
//! - `destinations/validate.rs` — every problem of the blocks, by field path.

use std::sync::Arc;
use std::time::Duration;

use volley_engine::mta_sts::StsRoute;
use volley_engine::tls::TlsPolicy;
use volley_engine::{RoutePolicy, SmtpConfig, TotalCap};
use volley_warmup::provider::name_has_suffix;
use volley_warmup::Rate;

mod validate;

pub(crate) use validate::problems;

/// One `[[destination]]` block.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationBlock {
    /// The block's name, unique; a built-in block's name (`gmail`, `microsoft`, `yahoo`)
    /// overrides that block field by field.
    pub name: String,
    /// Matcher: recipient domains (a domain matches itself and its subdomains).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Matcher: MX host name suffixes, on a label boundary (`".google.com"` or `"google.com"`
    /// match `alt1.gmail-smtp-in.l.google.com`).
    #[serde(default)]
    pub mx_suffix: Vec<String>,
    /// Matcher: a provider group of `[warmup]` (`gmail`, `microsoft`, `yahoo`, `other`, or a
    /// configured one).
    #[serde(default)]
    pub provider: Option<String>,
    /// Most connections open at once per (source IP, MX host): the ceiling of the learned
    /// limit (`[smtp] max_connections_per_host` otherwise).
    pub max_connections_per_ip: Option<usize>,
    /// Most connections open at once to this destination over every source IP (none
    /// otherwise; the pool-wide `[smtp] max_connections` always applies).
    pub max_connections: Option<usize>,
    /// Connections a route may open before any has delivered
    /// (`[smtp] initial_connections_per_host` otherwise).
    pub initial_connections: Option<usize>,
    /// Messages sent on one connection before it is replaced.
    pub max_messages_per_connection: Option<usize>,
    /// Most recipients in one transaction.
    pub max_recipients_per_transaction: Option<usize>,
    /// Messages per source IP to this destination, e.g. `"20/s"`, `"600/m"` (GCRA); none
    /// otherwise.
    pub rate: Option<Rate>,
    /// STARTTLS policy: `disabled`, `opportunistic` or `required`.
    pub tls: Option<TlsPolicy>,
    /// How long an unused connection stays open.
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
}

/// Which kind of matcher a block has: the order is the precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `domains`.
    Domain,
    /// `mx_suffix`.
    MxSuffix,
    /// `provider`.
    Provider,
}

impl DestinationBlock {
    /// The block's matcher kind; `None` when it has none (or, invalid, several).
    pub fn level(&self) -> Option<Level> {
        match (
            !self.domains.is_empty(),
            !self.mx_suffix.is_empty(),
            self.provider.is_some(),
        ) {
            (true, false, false) => Some(Level::Domain),
            (false, true, false) => Some(Level::MxSuffix),
            (false, false, true) => Some(Level::Provider),
            _ => None,
        }
    }

    fn matches(&self, domain: &str, hosts: &[&str], provider: &str) -> bool {
        match self.level() {
            Some(Level::Domain) => self.domains.iter().any(|d| name_has_suffix(domain, d)),
            Some(Level::MxSuffix) => hosts
                .iter()
                .any(|h| self.mx_suffix.iter().any(|s| name_has_suffix(h, s))),
            Some(Level::Provider) => self
                .provider
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(provider)),
            None => false,
        }
    }

    /// `over`'s fields where it sets them, this block's elsewhere; `over`'s matcher when it
    /// has one.
    fn overlaid(&self, over: &DestinationBlock) -> DestinationBlock {
        let matcher = over.level().is_some();
        DestinationBlock {
            name: over.name.clone(),
            domains: if matcher {
                over.domains.clone()
            } else {
                self.domains.clone()
            },
            mx_suffix: if matcher {
                over.mx_suffix.clone()
            } else {
                self.mx_suffix.clone()
            },
            provider: if matcher {
                over.provider.clone()
            } else {
                self.provider.clone()
            },
            max_connections_per_ip: over.max_connections_per_ip.or(self.max_connections_per_ip),
            max_connections: over.max_connections.or(self.max_connections),
            initial_connections: over.initial_connections.or(self.initial_connections),
            max_messages_per_connection: over.max_messages_per_connection.or(self.max_messages_per_connection),
            max_recipients_per_transaction: over
                .max_recipients_per_transaction
                .or(self.max_recipients_per_transaction),
            rate: over.rate.or(self.rate),
            tls: over.tls.or(self.tls),
            idle_timeout: over.idle_timeout.or(self.idle_timeout),
        }
    }
}

/// The built-in blocks, as shipped.
pub fn builtin() -> Vec<DestinationBlock> {
    #[derive(serde::Deserialize)]
    struct File {
        destination: Vec<DestinationBlock>,
    }
    // Shipped with the binary and checked by a unit test: it always parses.
    toml::from_str::<File>(include_str!("destinations/builtin.toml")).map_or_else(|_| Vec::new(), |f| f.destination)
}

/// Where a block comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Shipped with Volley.
    Builtin,
    /// `destination[i]` of the config file.
    Config(usize),
    /// `destination[i]` of the config file over the built-in block of the same name.
    Override(usize),
}

/// One block in effect, with its origin.
#[derive(Clone, Debug)]
struct Effective {
    block: DestinationBlock,
    /// `block.name`, shared with the sites and routes that use it.
    name: Arc<str>,
    origin: Origin,
}

impl Effective {
    fn new(block: DestinationBlock, origin: Origin) -> Effective {
        Effective {
            name: Arc::from(block.name.as_str()),
            block,
            origin,
        }
    }

    fn describe(&self) -> String {
        let name = &self.block.name;
        match self.origin {
            Origin::Builtin => format!("built-in \"{name}\""),
            Origin::Config(i) => format!("destination[{i}] \"{name}\""),
            Origin::Override(i) => format!("destination[{i}] \"{name}\" over the built-in"),
        }
    }
}

/// The blocks in effect and the `[smtp]` settings they fall back to.
#[derive(Clone, Debug)]
pub struct DestinationPolicies {
    blocks: Vec<Effective>,
    smtp: SmtpConfig,
}

/// One resolved field: its value and the block (or `[smtp]` setting) it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSource {
    /// The field's name in a `[[destination]]` block.
    pub field: &'static str,
    /// The value in effect (`none` when nothing sets it).
    pub value: String,
    /// Where it came from: `built-in "gmail"`, `destination[0] "acme"`, `[smtp] tls`.
    pub source: String,
}

/// The settings of one destination.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// The matching blocks, most specific first (empty: `[smtp]` only), described.
    pub blocks: Vec<String>,
    /// The name of the first matching `domains` block: its mail gets a site of its own.
    pub domain_block: Option<Arc<str>>,
    /// The engine's connection settings (`None`: the pool's, no block matched).
    pub policy: Option<Arc<RoutePolicy>>,
    /// The rate per source IP and the name of the block that set it (the rate is shared by
    /// every destination falling back to that block).
    pub rate: Option<(Arc<str>, Rate)>,
    /// Every field, with its source.
    pub fields: Vec<FieldSource>,
}

impl DestinationPolicies {
    /// The blocks in effect: the operator's (in file order; one named like a built-in block
    /// overrides it field by field), then the remaining built-in ones unless `builtin` is off.
    pub fn new(blocks: &[DestinationBlock], builtin: bool, smtp: &SmtpConfig) -> DestinationPolicies {
        let shipped = if builtin { self::builtin() } else { Vec::new() };
        let mut effective: Vec<Effective> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| match shipped.iter().find(|s| s.name == b.name) {
                Some(s) => Effective::new(s.overlaid(b), Origin::Override(i)),
                None => Effective::new(b.clone(), Origin::Config(i)),
            })
            .collect();
        for s in shipped {
            if !blocks.iter().any(|b| b.name == s.name) {
                effective.push(Effective::new(s, Origin::Builtin));
            }
        }
        DestinationPolicies {
            blocks: effective,
            smtp: smtp.clone(),
        }
    }

    /// The first block of `level` matching.
    fn first(&self, level: Level, domain: &str, hosts: &[&str], provider: &str) -> Option<&Effective> {
        self.blocks
            .iter()
            .find(|e| e.block.level() == Some(level) && e.block.matches(domain, hosts, provider))
    }

    /// The name of the first `domains` block matching `domain`.
    pub fn domain_block(&self, domain: &str) -> Option<Arc<str>> {
        self.first(Level::Domain, domain, &[], "").map(|e| e.name.clone())
    }

    /// The settings of mail to `domain` over MX hosts `hosts` (names) of provider group
    /// `provider`.
    pub fn resolve(&self, domain: &str, hosts: &[&str], provider: &str) -> Resolution {
        let chain: Vec<&Effective> = [Level::Domain, Level::MxSuffix, Level::Provider]
            .into_iter()
            .filter_map(|level| self.first(level, domain, hosts, provider))
            .collect();
        let mut fields = Vec::new();
        // The first block of the chain that sets a field, else the `[smtp]` value.
        macro_rules! pick {
            ($field:ident, $smtp_name:expr, $smtp:expr, $show:expr) => {{
                let found = chain
                    .iter()
                    .find_map(|e| e.block.$field.map(|v| (v, e.describe())));
                let (value, source) = found.unwrap_or_else(|| ($smtp, format!("[smtp] {}", $smtp_name)));
                fields.push(FieldSource {
                    field: stringify!($field),
                    value: $show(&value),
                    source,
                });
                value
            }};
        }
        let count = |v: &usize| v.to_string();
        let smtp = &self.smtp;
        let per_ip = pick!(
            max_connections_per_ip,
            "max_connections_per_host",
            smtp.max_connections_per_host,
            count
        );
        let initial = pick!(
            initial_connections,
            "initial_connections_per_host",
            smtp.initial_connections_per_host,
            count
        );
        let messages = pick!(
            max_messages_per_connection,
            "max_messages_per_connection",
            smtp.max_messages_per_connection,
            count
        );
        let recipients = pick!(
            max_recipients_per_transaction,
            "max_recipients_per_transaction",
            smtp.max_recipients_per_transaction,
            count
        );
        let tls = pick!(tls, "tls", smtp.tls, |t: &TlsPolicy| format!("{t:?}").to_lowercase());
        let idle = pick!(idle_timeout, "idle_timeout", smtp.idle_timeout, |d: &Duration| {
            humantime::format_duration(*d).to_string()
        });
        let owned = |field: fn(&DestinationBlock) -> bool| chain.iter().find(|e| field(&e.block));
        let total = owned(|b| b.max_connections.is_some()).and_then(|e| {
            e.block.max_connections.map(|max| {
                (
                    e.describe(),
                    TotalCap {
                        owner: e.name.clone(),
                        max,
                    },
                )
            })
        });
        fields.push(match &total {
            Some((source, cap)) => FieldSource {
                field: "max_connections",
                value: cap.max.to_string(),
                source: source.clone(),
            },
            None => FieldSource {
                field: "max_connections",
                value: "none".into(),
                source: format!("only the pool-wide [smtp] max_connections = {}", smtp.max_connections),
            },
        });
        let rate = owned(|b| b.rate.is_some()).and_then(|e| e.block.rate.map(|r| (e.describe(), e.name.clone(), r)));
        fields.push(FieldSource {
            field: "rate",
            value: rate.as_ref().map_or_else(|| "none".into(), |(_, _, r)| r.to_string()),
            source: rate
                .as_ref()
                .map_or_else(|| "no block sets one".into(), |(s, _, _)| s.clone()),
        });
        let policy = chain.first().map(|first| {
            Arc::new(RoutePolicy {
                name: first.name.clone(),
                max_connections_per_ip: per_ip,
                initial_connections: initial,
                total: total.map(|(_, cap)| cap),
                max_messages_per_connection: messages,
                max_recipients_per_transaction: recipients,
                tls,
                idle_timeout: idle,
                mta_sts: None,
            })
        });
        Resolution {
            blocks: chain.iter().map(|e| e.describe()).collect(),
            domain_block: chain
                .first()
                .filter(|e| e.block.level() == Some(Level::Domain))
                .map(|e| e.name.clone()),
            policy,
            rate: rate.map(|(_, owner, r)| (owner, r)),
            fields,
        }
    }
}

impl DestinationPolicies {
    /// `policy` (the destination's settings; `None`: `[smtp]`'s) for mail to a domain under
    /// MTA-STS policy `route`: its routes get connections of their own, checked against it.
    pub fn under_mta_sts(&self, policy: Option<&RoutePolicy>, route: Arc<StsRoute>) -> Arc<RoutePolicy> {
        let base = policy
            .cloned()
            .unwrap_or_else(|| RoutePolicy::from_config("smtp", &self.smtp));
        Arc::new(RoutePolicy {
            mta_sts: Some(route),
            ..base
        })
    }
}

#[cfg(test)]
mod tests;
