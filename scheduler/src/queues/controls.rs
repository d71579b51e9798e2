//! The suspensions on disk: `<state_dir>/queue-controls.json`, written atomically (temporary
//! file, fsync, rename) on every change, read at start. A damaged file refuses the start: sending
//! to a destination an operator suspended is worse than not starting.

use std::path::{Path, PathBuf};

use super::scope::QueueScope;

/// The file's name inside the state directory.
pub const CONTROLS_FILE: &str = "queue-controls.json";

/// The largest controls file read (a file of this size is damaged, not a list of scopes).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// One suspended scope.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    /// What is suspended.
    pub scope: QueueScope,
    /// When it was suspended (RFC 3339).
    pub since: String,
}

/// The file's contents.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlsFile {
    /// Every suspended scope, oldest first.
    suspended: Vec<Suspension>,
}

/// Why the controls file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ControlsError {
    /// The file cannot be read or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The controls file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a controls file this version wrote.
    #[error(
        "{}: damaged queue controls file ({reason}); fix or remove it (removing it resumes every suspended queue)",
        path.display()
    )]
    Damaged {
        /// The controls file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
}

/// Reads the suspensions of `state_dir` (none when the file does not exist).
pub fn load(state_dir: &Path) -> Result<Vec<Suspension>, ControlsError> {
    let path = state_dir.join(CONTROLS_FILE);
    let bytes = match volley_files::read_config_bytes(&path, MAX_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) if e.is_too_large() => {
            return Err(ControlsError::Damaged {
                path,
                reason: e.to_string(),
            })
        }
        Err(e) => {
            return Err(ControlsError::Io {
                path,
                action: "read the controls",
                source: std::io::Error::other(e.to_string()),
            })
        }
    };
    let file: ControlsFile = serde_json::from_slice(&bytes).map_err(|e| ControlsError::Damaged {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(file.suspended)
}

/// Writes `suspended` as the suspensions of `state_dir`, atomically.
pub fn save(state_dir: &Path, suspended: &[Suspension]) -> Result<(), ControlsError> {
    let path = state_dir.join(CONTROLS_FILE);
    let io = |action| {
        let path = path.clone();
        move |source| ControlsError::Io { path, action, source }
    };
    std::fs::create_dir_all(state_dir).map_err(io("create the state directory"))?;
    let file = ControlsFile {
        suspended: suspended.to_vec(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(|e| io("encode the controls")(std::io::Error::other(e)))?;
    volley_files::write_atomic(&path, &[&text]).map_err(io("write the controls"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspensions_round_trip_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), []);
        let s = vec![
            Suspension {
                scope: QueueScope::Domain {
                    domain: "b.test".into(),
                },
                since: "2026-12-04T12:00:00Z".into(),
            },
            Suspension {
                scope: QueueScope::Route {
                    source_ip: "127.0.0.2".parse().unwrap(),
                    provider: "gmail".into(),
                },
                since: "2026-12-04T12:01:00Z".into(),
            },
        ];
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).unwrap(), s);
        save(dir.path(), &[]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), []);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONTROLS_FILE);
        for damaged in [
            &b"{\"suspended\": [{\"scope\": "[..],
            b"[]",
            b"{\"suspended\": [], \"extra\": 1}",
        ] {
            std::fs::write(&path, damaged).unwrap();
            let e = load(dir.path()).unwrap_err().to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains("damaged queue controls file"), "{e}");
        }
    }
}
