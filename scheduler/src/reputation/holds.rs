//! Reputation holds on disk: one small JSON file per hold in `<state_dir>/holds/`, so that a
//! hold survives a restart and any process sharing the state directory (a running `volley
//! send`, `volley serve`, the `volley reputation` command) sees and lifts the same holds.
//!
//! One file per hold rather than one file of all holds: placing a hold is an atomic rename
//! and lifting one is an unlink, so two processes never read-modify-write a shared file and
//! need no lock between them. A running process lists the folder about once a second.

use std::path::{Path, PathBuf};

use super::{Hold, ReputationError, Scope};

/// The folder of hold files inside the state directory.
pub const HOLDS_DIR: &str = "holds";

/// The hold files of one state directory.
#[derive(Clone, Debug)]
pub struct HoldDir {
    dir: PathBuf,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ReputationError + 'a {
    move |source| ReputationError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

impl HoldDir {
    /// The holds of `state_dir` (the folder is made when the first hold is placed).
    pub fn new(state_dir: &Path) -> HoldDir {
        HoldDir {
            dir: state_dir.join(HOLDS_DIR),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A scope's file name: `campaign-<id>.json` (campaign ids are file-name safe) or
    /// `route-<ip>-<provider>.json` (an IPv6 address's colons written as `_`).
    pub fn file_name(scope: &Scope) -> String {
        match scope {
            Scope::Campaign { campaign } => format!("campaign-{campaign}.json"),
            Scope::Route { source_ip, provider } => {
                let ip = source_ip.to_string().replace(':', "_");
                let provider: String = provider
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("route-{ip}-{provider}.json")
            }
        }
    }

    /// Places (or replaces) a hold: written to a temporary file, synced, renamed, and the
    /// folder synced, so that a hold that was reported is still there after a crash.
    pub fn place(&self, hold: &Hold) -> Result<(), ReputationError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir, "create the holds folder"))?;
        let path = self.dir.join(Self::file_name(&hold.scope));
        let text = serde_json::to_vec_pretty(hold).map_err(|e| ReputationError::Io {
            path: path.clone(),
            action: "encode a hold",
            source: std::io::Error::other(e),
        })?;
        volley_files::write_atomic(&path, &[&text]).map_err(io(&path, "place a hold"))?;
        Ok(())
    }

    /// Lifts a hold; whether there was one.
    pub fn lift(&self, scope: &Scope) -> Result<bool, ReputationError> {
        let path = self.dir.join(Self::file_name(scope));
        match std::fs::remove_file(&path) {
            Ok(()) => {
                let _ = volley_files::sync_dir(&self.dir);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(&path, "lift a hold")(e)),
        }
    }

    /// Every hold in the folder, sorted by scope. A file that cannot be read or parsed is
    /// reported (with its path) and left alone; the others are returned.
    pub fn list(&self) -> (Vec<Hold>, Vec<ReputationError>) {
        let mut holds = Vec::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (holds, errors),
            Err(e) => {
                errors.push(io(&self.dir, "list the holds")(e));
                return (holds, errors);
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match volley_files::read_config_bytes(&path, 64 * 1024) {
                Ok(bytes) => match serde_json::from_slice::<Hold>(&bytes) {
                    Ok(hold) => holds.push(hold),
                    Err(e) => errors.push(ReputationError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    }),
                },
                Err(e) if e.is_not_found() => {}
                Err(e) => errors.push(ReputationError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            }
        }
        holds.sort_by(|a, b| a.scope.cmp(&b.scope));
        (holds, errors)
    }
}
