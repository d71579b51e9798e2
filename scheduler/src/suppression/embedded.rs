//! [`EmbeddedStore`]: the default store, a redb database in the state directory.
//!
//! Tables `suppressed` and `soft`, both keyed by `(scope, address)`, values the same JSON as in
//! Redis. Each [`SuppressionStore::apply`] call is one write transaction (atomic, durable on
//! return). redb locks the file, so a second process opening it gets [`SuppressionError::Locked`];
//! the holder answers for it on the control socket beside the file (see [`super::control`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::control::{ControlServer, CONTROL_SOCKET};
use super::entry::{merge, normalise, soft_bounce, Entry, SoftOutcome, SoftPolicy, SoftRecord, Update};
use super::late::LateSuppressions;
use super::{SuppressionError, SuppressionStore};

const SUPPRESSED: TableDefinition<(&str, &str), &str> = TableDefinition::new("suppressed");
const SOFT: TableDefinition<(&str, &str), &str> = TableDefinition::new("soft");

/// The on-disk store (`<state_dir>/suppression.redb`), serving other processes on
/// `<state_dir>/suppression.sock` while open.
pub struct EmbeddedStore {
    // Declared first: dropped (its thread joined) before the tables close.
    control: Option<ControlServer>,
    tables: Arc<Tables>,
    late: Arc<LateSuppressions>,
}

/// The database itself.
struct Tables {
    db: Database,
    path: PathBuf,
    policy: SoftPolicy,
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`, creating its directory if needed, and
    /// listens on the control socket beside it (a socket that cannot be created is a warning:
    /// this process still uses the store, others cannot reach it while it runs).
    pub fn open(path: &Path, policy: SoftPolicy) -> Result<EmbeddedStore, SuppressionError> {
        let tables = Arc::new(Tables::open(path, policy)?);
        let socket = control_socket(path);
        let late = Arc::new(LateSuppressions::default());
        let control = match ControlServer::start(
            &socket,
            Arc::clone(&tables) as Arc<dyn SuppressionStore>,
            Arc::clone(&late),
        ) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(
                    "suppression store {}: cannot listen on {} ({e}); `volley suppress` cannot reach \
                     the list while this process runs",
                    path.display(),
                    socket.display()
                );
                None
            }
        };
        Ok(EmbeddedStore { control, tables, late })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.tables.path
    }

    /// True when other processes can reach the store through the control socket.
    pub fn serves_others(&self) -> bool {
        self.control.is_some()
    }
}

/// The control socket of the database at `path`.
pub(crate) fn control_socket(path: &Path) -> PathBuf {
    path.with_file_name(CONTROL_SOCKET)
}

impl SuppressionStore for EmbeddedStore {
    fn check(&self, scopes: &[&str], addresses: &[&str]) -> Result<Vec<Option<(String, Entry)>>, SuppressionError> {
        self.tables.check(scopes, addresses)
    }
    fn apply(&self, updates: &[Update]) -> Result<(), SuppressionError> {
        self.tables.apply(updates)
    }
    fn soft(&self, scope: &str, address: &str) -> Result<Option<SoftRecord>, SuppressionError> {
        self.tables.soft(scope, address)
    }
    fn export(&self, scope: &str, visit: &mut dyn FnMut(&str, &Entry)) -> Result<u64, SuppressionError> {
        self.tables.export(scope, visit)
    }
    fn len(&self, scope: &str) -> Result<u64, SuppressionError> {
        self.tables.len(scope)
    }
    fn describe(&self) -> String {
        self.tables.describe()
    }
    fn late(&self) -> Option<&LateSuppressions> {
        Some(&self.late)
    }
}

impl Tables {
    fn open(path: &Path, policy: SoftPolicy) -> Result<Tables, SuppressionError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SuppressionError::Io {
                path: dir.to_path_buf(),
                op: "create the state directory",
                source,
            })?;
        }
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => SuppressionError::Locked {
                path: path.to_path_buf(),
            },
            other => embedded_error(path, "open", other),
        })?;
        let store = Tables {
            db,
            path: path.to_path_buf(),
            policy,
        };
        // Create both tables so that readers never meet a missing table.
        let txn = store.db.begin_write().map_err(|e| store.err("open", e))?;
        txn.open_table(SUPPRESSED).map_err(|e| store.err("open", e))?;
        txn.open_table(SOFT).map_err(|e| store.err("open", e))?;
        txn.commit().map_err(|e| store.err("open", e))?;
        Ok(store)
    }

    fn err(&self, op: &'static str, e: impl Into<redb::Error>) -> SuppressionError {
        embedded_error(&self.path, op, e)
    }

    /// `updates` without the [`Update::ForgetSoft`]s that would remove nothing: no soft-bounce
    /// record for the address before the batch, and no soft bounce of it earlier in the batch.
    /// Every delivery forgets its address's soft bounces, and almost none has any: a batch of
    /// only those then needs no write transaction (no commit, no fsync) — one read.
    fn needed<'u>(&self, updates: &'u [Update]) -> Result<Vec<&'u Update>, SuppressionError> {
        if !updates.iter().any(Update::is_expendable) {
            return Ok(updates.iter().collect());
        }
        let txn = self.db.begin_read().map_err(|e| self.err("apply", e))?;
        let soft = txn.open_table(SOFT).map_err(|e| self.err("apply", e))?;
        let none_recorded = soft.is_empty().map_err(|e| self.err("apply", e))?;
        let mut bounced_here: std::collections::HashSet<(&str, String)> = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(updates.len());
        for update in updates {
            let key = (update.scope(), normalise(update.address()));
            match update {
                Update::SoftBounce { .. } => {
                    bounced_here.insert(key);
                }
                Update::ForgetSoft { .. } if !bounced_here.contains(&key) => {
                    let recorded = !none_recorded
                        && soft
                            .get((key.0, key.1.as_str()))
                            .map_err(|e| self.err("apply", e))?
                            .is_some();
                    if !recorded {
                        continue;
                    }
                }
                _ => {}
            }
            out.push(update);
        }
        Ok(out)
    }
}

fn embedded_error(path: &Path, op: &'static str, e: impl Into<redb::Error>) -> SuppressionError {
    SuppressionError::Embedded {
        path: path.to_path_buf(),
        op,
        source: Box::new(e.into()),
    }
}

/// An unreadable stored entry still suppresses (fail closed), with a reason saying so.
pub(crate) fn parse_entry(json: &str, scope: &str, address: &str) -> Entry {
    serde_json::from_str(json).unwrap_or_else(|e| {
        tracing::warn!(
            scope,
            address,
            "unreadable suppression entry ({e}); treating the address as suppressed"
        );
        Entry::new(format!("unreadable suppression entry: {e}"), "unknown", 0)
    })
}

/// An unreadable soft-bounce record counts as none.
pub(crate) fn parse_soft(json: &str) -> Option<SoftRecord> {
    serde_json::from_str(json).ok()
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Entries and records are plain structs of strings and integers: serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

impl SuppressionStore for Tables {
    fn check(&self, scopes: &[&str], addresses: &[&str]) -> Result<Vec<Option<(String, Entry)>>, SuppressionError> {
        let txn = self.db.begin_read().map_err(|e| self.err("check", e))?;
        let table = txn.open_table(SUPPRESSED).map_err(|e| self.err("check", e))?;
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let address = normalise(address);
            let mut hit = None;
            for scope in scopes {
                if let Some(json) = table
                    .get((*scope, address.as_str()))
                    .map_err(|e| self.err("check", e))?
                {
                    hit = Some((scope.to_string(), parse_entry(json.value(), scope, &address)));
                    break;
                }
            }
            out.push(hit);
        }
        Ok(out)
    }

    fn apply(&self, updates: &[Update]) -> Result<(), SuppressionError> {
        let updates = self.needed(updates)?;
        if updates.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.err("apply", e))?;
        {
            let mut suppressed = txn.open_table(SUPPRESSED).map_err(|e| self.err("apply", e))?;
            let mut soft = txn.open_table(SOFT).map_err(|e| self.err("apply", e))?;
            for update in updates {
                let scope = update.scope();
                let address = normalise(update.address());
                let key = (scope, address.as_str());
                match update {
                    Update::Suppress { entry, .. } => {
                        let old = suppressed
                            .get(key)
                            .map_err(|e| self.err("apply", e))?
                            .and_then(|j| serde_json::from_str::<Entry>(j.value()).ok());
                        let json = to_json(&merge(old, entry));
                        suppressed
                            .insert(key, json.as_str())
                            .map_err(|e| self.err("apply", e))?;
                    }
                    Update::SoftBounce {
                        code,
                        enhanced,
                        reason,
                        at,
                        ..
                    } => {
                        if suppressed.get(key).map_err(|e| self.err("apply", e))?.is_some() {
                            continue;
                        }
                        let old = soft
                            .get(key)
                            .map_err(|e| self.err("apply", e))?
                            .and_then(|j| parse_soft(j.value()));
                        match soft_bounce(&self.policy, old, *code, enhanced.as_deref(), reason, *at) {
                            SoftOutcome::Counting(record) => {
                                let json = to_json(&record);
                                soft.insert(key, json.as_str()).map_err(|e| self.err("apply", e))?;
                            }
                            SoftOutcome::Suppress(entry) => {
                                let json = to_json(&entry);
                                suppressed
                                    .insert(key, json.as_str())
                                    .map_err(|e| self.err("apply", e))?;
                                soft.remove(key).map_err(|e| self.err("apply", e))?;
                            }
                        }
                    }
                    Update::ForgetSoft { .. } => {
                        soft.remove(key).map_err(|e| self.err("apply", e))?;
                    }
                    Update::Remove { .. } => {
                        suppressed.remove(key).map_err(|e| self.err("apply", e))?;
                        soft.remove(key).map_err(|e| self.err("apply", e))?;
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.err("apply", e))
    }

    fn soft(&self, scope: &str, address: &str) -> Result<Option<SoftRecord>, SuppressionError> {
        let txn = self.db.begin_read().map_err(|e| self.err("soft", e))?;
        let table = txn.open_table(SOFT).map_err(|e| self.err("soft", e))?;
        let address = normalise(address);
        let json = table.get((scope, address.as_str())).map_err(|e| self.err("soft", e))?;
        Ok(json.and_then(|j| parse_soft(j.value())))
    }

    fn export(&self, scope: &str, visit: &mut dyn FnMut(&str, &Entry)) -> Result<u64, SuppressionError> {
        let txn = self.db.begin_read().map_err(|e| self.err("export", e))?;
        let table = txn.open_table(SUPPRESSED).map_err(|e| self.err("export", e))?;
        let mut n = 0;
        for row in table.range((scope, "")..).map_err(|e| self.err("export", e))? {
            let (key, json) = row.map_err(|e| self.err("export", e))?;
            let (row_scope, address) = key.value();
            if row_scope != scope {
                break;
            }
            visit(address, &parse_entry(json.value(), scope, address));
            n += 1;
        }
        Ok(n)
    }

    fn len(&self, scope: &str) -> Result<u64, SuppressionError> {
        let txn = self.db.begin_read().map_err(|e| self.err("len", e))?;
        let table = txn.open_table(SUPPRESSED).map_err(|e| self.err("len", e))?;
        if scopes_is_single(&table, scope).map_err(|e| self.err("len", e))? {
            return table.len().map_err(|e| self.err("len", e));
        }
        let mut n = 0;
        for row in table.range((scope, "")..).map_err(|e| self.err("len", e))? {
            let (key, _) = row.map_err(|e| self.err("len", e))?;
            if key.value().0 != scope {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// True when every row of the table belongs to `scope` (then its length is the scope's).
fn scopes_is_single(
    table: &redb::ReadOnlyTable<(&'static str, &'static str), &'static str>,
    scope: &str,
) -> Result<bool, redb::StorageError> {
    let first = table.first()?.map(|(k, _)| k.value().0 == scope);
    let last = table.last()?.map(|(k, _)| k.value().0 == scope);
    Ok(first.unwrap_or(true) && last.unwrap_or(true))
}
