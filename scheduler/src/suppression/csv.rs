//! CSV export and import of suppression entries.
//!
//! Export columns (with a header):
//! `address,scope,reason,code,enhanced,category,first,last,count,source,first_at,last_at`
//! (`first`/`last` in unix seconds, `first_at`/`last_at` the same as RFC 3339 times).
//! Import needs an `address` (or `email`) column; `scope` (or `list`), `reason` and the other
//! export columns are optional (`first_at`/`last_at` are not read), so an export imports back
//! unchanged (into an empty store). Header names are
//! matched case-insensitively. Addresses are validated with [`EmailAddress::parse`].

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::address::EmailAddress;

use super::entry::{normalise, unix_now, Entry, Update};
use super::{SuppressionError, SuppressionStore};

const EXPORT_HEADER: [&str; 12] = [
    "address", "scope", "reason", "code", "enhanced", "category", "first", "last", "count", "source", "first_at",
    "last_at",
];

/// Writes every entry of `scopes` as CSV to `out` (`name` is used in error messages); returns
/// the number of rows. Rows come in the backend's order (sorted for embedded, unordered for Redis).
pub fn export_csv(
    store: &dyn SuppressionStore,
    scopes: &[&str],
    out: impl Write,
    name: &Path,
) -> Result<u64, SuppressionError> {
    let write_err = |e: csv::Error| SuppressionError::Io {
        path: name.to_path_buf(),
        op: "write CSV",
        source: std::io::Error::other(e),
    };
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(EXPORT_HEADER).map_err(write_err)?;
    let mut rows = 0;
    for scope in scopes {
        let mut failed = None;
        rows += store.export(scope, &mut |address, e| {
            if failed.is_some() {
                return;
            }
            let code = e.code.map(|c| c.to_string()).unwrap_or_default();
            let (first, last, count) = (e.first.to_string(), e.last.to_string(), e.count.to_string());
            let (first_at, last_at) = (unix_to_rfc3339(e.first), unix_to_rfc3339(e.last));
            let record = [
                address,
                scope,
                e.reason.as_str(),
                code.as_str(),
                e.enhanced.as_deref().unwrap_or(""),
                e.category.as_deref().unwrap_or(""),
                first.as_str(),
                last.as_str(),
                count.as_str(),
                e.source.as_str(),
                first_at.as_str(),
                last_at.as_str(),
            ];
            if let Err(err) = writer.write_record(record) {
                failed = Some(err);
            }
        })?;
        if let Some(err) = failed {
            return Err(write_err(err));
        }
    }
    writer.flush().map_err(|source| SuppressionError::Io {
        path: name.to_path_buf(),
        op: "write CSV",
        source,
    })?;
    Ok(rows)
}

/// How to import a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The scope for rows without a `scope` column value.
    pub scope: String,
    /// The reason for rows without a `reason` value (`"unsubscribed"`, `"complaint"`).
    pub reason: String,
    /// The entries' source; `None` means `import:<file name>`.
    pub source: Option<String>,
    /// `first`/`last` for rows without them (unix seconds).
    pub at: u64,
    /// Updates per [`SuppressionStore::apply`] call.
    pub batch: usize,
}

impl ImportOptions {
    /// Rows go to `scope` with `reason`, dated now, applied 500 at a time.
    pub fn new(scope: impl Into<String>, reason: impl Into<String>) -> ImportOptions {
        ImportOptions {
            scope: scope.into(),
            reason: reason.into(),
            source: None,
            at: unix_now(),
            batch: 500,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows applied to the store.
    pub imported: u64,
    /// Rows refused, in file order.
    pub invalid: Vec<InvalidRow>,
}

/// One refused import row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// The address column's value.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

/// Imports the CSV file at `path`; see [`import_csv_reader`].
pub fn import_csv(
    store: &dyn SuppressionStore,
    path: &Path,
    options: &ImportOptions,
) -> Result<ImportReport, SuppressionError> {
    let file = File::open(path).map_err(|source| SuppressionError::Io {
        path: path.to_path_buf(),
        op: "open",
        source,
    })?;
    import_csv_reader(store, file, path, options)
}

/// Column positions found in the header.
struct Columns {
    address: usize,
    scope: Option<usize>,
    reason: Option<usize>,
    code: Option<usize>,
    enhanced: Option<usize>,
    category: Option<usize>,
    first: Option<usize>,
    last: Option<usize>,
    count: Option<usize>,
    source: Option<usize>,
}

impl Columns {
    fn find(header: &csv::StringRecord, path: &Path) -> Result<Columns, SuppressionError> {
        let col = |name: &str| header.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let address = col("address")
            .or_else(|| col("email"))
            .ok_or_else(|| SuppressionError::BadFile {
                path: path.to_path_buf(),
                line: 1,
                message: "no `address` or `email` column in the header".to_owned(),
            })?;
        Ok(Columns {
            address,
            scope: col("scope").or_else(|| col("list")),
            reason: col("reason"),
            code: col("code"),
            enhanced: col("enhanced"),
            category: col("category"),
            first: col("first"),
            last: col("last"),
            count: col("count"),
            source: col("source"),
        })
    }
}

/// Reads CSV rows from `reader` (`path` names it in errors and in the default source), validates
/// each address, and applies the valid ones in batches of `options.batch`. Bad rows are
/// reported, not fatal; unreadable CSV and store errors are.
pub fn import_csv_reader(
    store: &dyn SuppressionStore,
    reader: impl Read,
    path: &Path,
    options: &ImportOptions,
) -> Result<ImportReport, SuppressionError> {
    let bad_file = |line: u64, e: csv::Error| SuppressionError::BadFile {
        path: PathBuf::from(path),
        line,
        message: e.to_string(),
    };
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header = csv.headers().map_err(|e| bad_file(1, e))?.clone();
    let columns = Columns::find(&header, path)?;
    let default_source = options.source.clone().unwrap_or_else(|| {
        let file = path.file_name().map(|f| f.to_string_lossy()).unwrap_or_default();
        format!("import:{file}")
    });
    let mut report = ImportReport::default();
    let mut updates = Vec::with_capacity(options.batch.max(1));
    let mut raw = csv::ByteRecord::new();
    loop {
        let line_hint = csv.position().line();
        match csv.read_byte_record(&mut raw) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(bad_file(e.position().map_or(line_hint, |p| p.line()), e)),
        }
        let line = raw.position().map_or(line_hint, |p| p.line());
        let record = match csv::StringRecord::from_byte_record(raw.clone()) {
            Ok(record) => record,
            Err(e) => {
                report.invalid.push(InvalidRow {
                    line,
                    value: String::from_utf8_lossy(raw.get(columns.address).unwrap_or_default()).into_owned(),
                    reason: format!("not UTF-8: {e}"),
                });
                continue;
            }
        };
        let value = record.get(columns.address).unwrap_or("").to_owned();
        match row_update(&record, &columns, options, &default_source) {
            Ok(update) => updates.push(update),
            Err(reason) => {
                report.invalid.push(InvalidRow { line, value, reason });
                continue;
            }
        }
        if updates.len() >= options.batch.max(1) {
            store.apply(&updates)?;
            report.imported += updates.len() as u64;
            updates.clear();
        }
    }
    if !updates.is_empty() {
        store.apply(&updates)?;
        report.imported += updates.len() as u64;
    }
    Ok(report)
}

/// The update one row asks for, or why it is refused.
fn row_update(
    record: &csv::StringRecord,
    columns: &Columns,
    options: &ImportOptions,
    default_source: &str,
) -> Result<Update, String> {
    let field = |col: Option<usize>| col.and_then(|c| record.get(c)).map(str::trim).filter(|v| !v.is_empty());
    let address = EmailAddress::parse(record.get(columns.address).unwrap_or("")).map_err(|e| e.problem.to_string())?;
    fn number<T: std::str::FromStr>(name: &str, value: Option<&str>) -> Result<Option<T>, String> {
        value
            .map(|v| v.parse::<T>().map_err(|_| format!("{name} {v:?} is not a number")))
            .transpose()
    }
    let code = number::<u16>("code", field(columns.code))?;
    let first = number::<u64>("first", field(columns.first))?.unwrap_or(options.at);
    let last = number::<u64>("last", field(columns.last))?.unwrap_or(first);
    let count = number::<u32>("count", field(columns.count))?.unwrap_or(1);
    let scope = field(columns.scope).unwrap_or(&options.scope);
    let entry = Entry {
        reason: field(columns.reason).unwrap_or(&options.reason).to_owned(),
        code,
        enhanced: field(columns.enhanced).map(str::to_owned),
        category: field(columns.category).map(str::to_owned),
        first,
        last,
        count,
        source: field(columns.source).unwrap_or(default_source).to_owned(),
    };
    Ok(Update::suppress(scope, normalise(address.as_str()), entry))
}

/// Unix seconds as an RFC 3339 UTC time (`2026-12-03T21:45:00Z`).
pub fn unix_to_rfc3339(unix_secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
    humantime::format_rfc3339_seconds(at).to_string()
}
