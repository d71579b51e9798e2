//! `volley suppress add|remove|check|import|export`: the suppression list by hand — load
//! unsubscribe and complaint lists, look addresses up, take them off again.
//!
//! The store is the one `volley.toml` configures (`[suppression] redis`, or the embedded
//! `<state_dir>/suppression.redb`; while another volley process holds that file, through its
//! control socket, so the list can be edited during a run). Blocking calls: this runs outside
//! the async runtime.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use volley_scheduler::address::EmailAddress;
use volley_scheduler::config::SendConfig;
use volley_scheduler::suppression::{
    export_csv, import_csv, open_shared, unix_now, unix_to_rfc3339, valid_scope, Entry, ImportOptions,
    SuppressionStore, Update, GLOBAL,
};

/// Arguments of `volley suppress`.
#[derive(clap::Args)]
pub struct SuppressArgs {
    #[command(subcommand)]
    action: Action,
    /// The operator configuration (where the store is).
    #[arg(long, global = true, default_value = "volley.toml")]
    config: PathBuf,
    /// The list: `global` (every campaign honours it) or a list name that campaigns name in
    /// `suppression_list`. `--scope` is the same (the CSV column's name).
    #[arg(long, visible_alias = "scope", global = true, default_value = GLOBAL)]
    list: String,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Suppress addresses.
    #[command(after_help = "Example:\n  volley suppress add someone@example.com other@example.org --reason complaint")]
    Add {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why (kept with the entry).
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Take addresses off the list (and reset their soft-bounce count). Prints how many were
    /// on it and names those that were not; exit status 1 when any was not.
    #[command(after_help = "Example:\n  volley suppress remove someone@example.com --list news")]
    Remove {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Print, for each address, whether it is suppressed (in `global` or `--list`) and why, as
    /// JSON lines. Exit status 1 when any is suppressed.
    #[command(after_help = "Example:\n  volley suppress check someone@example.com --list news")]
    Check {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Load a CSV file with an `email` (or `address`) column and optional `reason` and `scope`
    /// columns. Bad rows are listed with their line numbers; the rest is loaded.
    #[command(after_help = "Example:\n  volley suppress import unsubscribes.csv --list news --reason unsubscribed")]
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The reason for rows without one.
        #[arg(long, default_value = "imported")]
        reason: String,
    },
    /// Write the list as CSV (`address,scope,reason,code,enhanced,category,first,last,count,source`).
    #[command(after_help = "Example:\n  volley suppress export --list news --out news-suppressed.csv")]
    Export {
        /// The file to write (without it: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs the command; `Ok(false)` when `check` found a suppressed address or `import` refused
/// rows.
pub fn run(args: SuppressArgs) -> anyhow::Result<bool> {
    let config_path = args.config;
    let config = SendConfig::load(&config_path).context("refusing to start: the configuration is invalid")?;
    let store = open_shared(&config.suppression, &config.state_dir).context("cannot open the suppression list")?;
    let list = args.list.as_str();
    if !valid_scope(list) {
        bail!("--list {list:?}: use 1-64 letters, digits, '.', '_' or '-'");
    }
    match args.action {
        Action::Add { addresses, reason } => {
            let addresses = parse_all(&addresses)?;
            let at = unix_now();
            let updates: Vec<Update> = addresses
                .iter()
                .map(|a| Update::suppress(list, a.as_str(), Entry::new(&reason, "manual", at)))
                .collect();
            store.apply(&updates).context("suppress")?;
            println!(
                "suppressed {} address(es) in `{list}` ({})",
                updates.len(),
                store.describe()
            );
            Ok(true)
        }
        Action::Remove { addresses } => {
            let addresses = parse_all(&addresses)?;
            let refs: Vec<&str> = addresses.iter().map(EmailAddress::as_str).collect();
            let removed = remove_present(&*store, list, &refs).context("remove")?;
            let absent: Vec<&str> = refs
                .iter()
                .zip(&removed)
                .filter(|(_, r)| !**r)
                .map(|(a, _)| *a)
                .collect();
            println!(
                "removed {} of {} address(es) from `{list}` ({})",
                refs.len() - absent.len(),
                refs.len(),
                store.describe()
            );
            if !absent.is_empty() {
                println!("not in `{list}`: {}", absent.join(", "));
            }
            Ok(absent.is_empty())
        }
        Action::Check { addresses } => check(&*store, list, &parse_all(&addresses)?),
        Action::Import { file, reason } => {
            let options = ImportOptions {
                batch: config.suppression.batch,
                ..ImportOptions::new(list, reason)
            };
            let report = import_csv(&*store, &file, &options).context("import")?;
            for bad in &report.invalid {
                eprintln!("{}:{}: {:?}: {}", file.display(), bad.line, bad.value, bad.reason);
            }
            println!(
                "imported {} address(es) into `{list}`, refused {} row(s) ({})",
                report.imported,
                report.invalid.len(),
                store.describe()
            );
            Ok(report.invalid.is_empty())
        }
        Action::Export { out } => {
            let scopes = if list == GLOBAL { vec![GLOBAL] } else { vec![list] };
            let rows = match &out {
                Some(path) => {
                    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
                    export_csv(&*store, &scopes, std::io::BufWriter::new(file), path)?
                }
                None => export_csv(&*store, &scopes, std::io::stdout().lock(), Path::new("<stdout>"))?,
            };
            if let Some(path) = out {
                eprintln!("exported {rows} row(s) to {}", path.display());
            }
            Ok(true)
        }
    }
}

fn check(store: &dyn SuppressionStore, list: &str, addresses: &[EmailAddress]) -> anyhow::Result<bool> {
    let scopes: Vec<&str> = if list == GLOBAL {
        vec![GLOBAL]
    } else {
        vec![GLOBAL, list]
    };
    let refs: Vec<&str> = addresses.iter().map(EmailAddress::as_str).collect();
    let hits = store.check(&scopes, &refs).context("check")?;
    let mut out = std::io::stdout().lock();
    let mut none = true;
    for (address, hit) in refs.iter().zip(hits) {
        none &= hit.is_none();
        writeln!(out, "{}", check_line(address, hit.as_ref()))?;
    }
    Ok(none)
}

/// What a check says of one address (the CLI's JSON line and the API's answer): `list` names
/// the list that holds it (`scope` too, its earlier name), and the entry carries its times as
/// RFC 3339 (`first_at`, `last_at`) beside the unix seconds.
pub fn check_line(address: &str, hit: Option<&(String, Entry)>) -> serde_json::Value {
    match hit {
        Some((list, entry)) => serde_json::json!({
            "address": address,
            "suppressed": true,
            "list": list,
            "scope": list,
            "entry": entry_json(entry),
        }),
        None => serde_json::json!({"address": address, "suppressed": false}),
    }
}

/// An entry as JSON, with `first_at` and `last_at` as RFC 3339 times.
fn entry_json(entry: &Entry) -> serde_json::Value {
    let mut json = serde_json::to_value(entry).unwrap_or(serde_json::Value::Null);
    if let Some(map) = json.as_object_mut() {
        for (field, secs) in [("first_at", entry.first), ("last_at", entry.last)] {
            map.insert(field.into(), unix_to_rfc3339(secs).into());
        }
    }
    json
}

/// Takes from `list` those of `addresses` it holds; per address, whether it was there. (The
/// CLI reports what it removed; the API answers 404 for an address that was not there.)
pub fn remove_present(
    store: &dyn SuppressionStore,
    list: &str,
    addresses: &[&str],
) -> Result<Vec<bool>, volley_scheduler::suppression::SuppressionError> {
    let present: Vec<bool> = store.check(&[list], addresses)?.iter().map(Option::is_some).collect();
    let updates: Vec<Update> = addresses
        .iter()
        .zip(&present)
        .filter(|(_, here)| **here)
        .map(|(a, _)| Update::remove(list, *a))
        .collect();
    if !updates.is_empty() {
        store.apply(&updates)?;
    }
    Ok(present)
}

/// Every address valid, or an error naming the first bad one.
fn parse_all(addresses: &[String]) -> anyhow::Result<Vec<EmailAddress>> {
    addresses
        .iter()
        .map(|a| EmailAddress::parse(a).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}
