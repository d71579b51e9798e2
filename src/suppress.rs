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
    export_csv, import_csv, open_shared, unix_now, valid_scope, Entry, ImportOptions, SuppressionStore, Update, GLOBAL,
};

/// Arguments of `volley suppress`.
#[derive(clap::Args)]
pub struct SuppressArgs {
    #[command(subcommand)]
    action: Action,
    /// The operator configuration (where the store is); default `volley.toml`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The list (scope): `global` (default; every campaign honours it) or a list name that
    /// campaigns name in `suppression_list`.
    #[arg(long, global = true, default_value = GLOBAL)]
    list: String,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Suppress addresses.
    Add {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why (kept with the entry).
        #[arg(long, default_value = "manual")]
        reason: String,
    },
    /// Take addresses off the list (and reset their soft-bounce count).
    Remove {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Print, for each address, whether it is suppressed (in `global` or `--list`) and why, as
    /// JSON lines. Exit status 1 when any is suppressed.
    Check {
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Load a CSV file with an `email` (or `address`) column and optional `reason` and `scope`
    /// columns. Bad rows are listed with their line numbers; the rest is loaded.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// The reason for rows without one.
        #[arg(long, default_value = "imported")]
        reason: String,
    },
    /// Write the list as CSV (`address,scope,reason,code,enhanced,category,first,last,count,source`).
    Export {
        /// The file to write; default standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs the command; `Ok(false)` when `check` found a suppressed address or `import` refused
/// rows.
pub fn run(args: SuppressArgs) -> anyhow::Result<bool> {
    let config_path = args.config.unwrap_or_else(|| PathBuf::from("volley.toml"));
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
            let updates: Vec<Update> = addresses.iter().map(|a| Update::remove(list, a.as_str())).collect();
            store.apply(&updates).context("remove")?;
            println!(
                "removed {} address(es) from `{list}` ({})",
                updates.len(),
                store.describe()
            );
            Ok(true)
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
        let line = match hit {
            Some((scope, entry)) => {
                none = false;
                serde_json::json!({"address": address, "suppressed": true, "scope": scope, "entry": entry})
            }
            None => serde_json::json!({"address": address, "suppressed": false}),
        };
        writeln!(out, "{line}")?;
    }
    Ok(none)
}

/// Every address valid, or an error naming the first bad one.
fn parse_all(addresses: &[String]) -> anyhow::Result<Vec<EmailAddress>> {
    addresses
        .iter()
        .map(|a| EmailAddress::parse(a).map_err(|e| anyhow::anyhow!("{e}")))
        .collect()
}
