//! The quarantine: messages the intake could not use, kept for an operator. Each is two
//! files in one directory: `<name>.eml` (the raw message) and `<name>.json` (the reason, the
//! envelope, the size and the time). Both are fsync'd, then the directory, before
//! [`Quarantine::store`] returns, so a listener may answer 250 after it.
//!
//! Names are `<unix seconds>-<pid>-<counter>-<random>`: unique across processes and restarts
//! (files are created with `create_new`, a clash is retried with a new name).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::event::QuarantineReason;
use crate::intake::InboundEnvelope;

/// Why a message could not be quarantined.
#[derive(Debug, thiserror::Error)]
#[error("quarantine {}: {source}", .path.display())]
pub struct QuarantineError {
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

/// The sidecar written next to each quarantined message.
#[derive(Debug, serde::Serialize)]
struct Sidecar<'a> {
    reason: &'a QuarantineReason,
    /// The reason as a sentence.
    message: String,
    mail_from: &'a str,
    rcpt_to: &'a [String],
    size: usize,
    received_unix: u64,
}

/// A quarantine directory.
#[derive(Debug)]
pub struct Quarantine {
    dir: PathBuf,
    counter: AtomicU64,
}

impl Quarantine {
    /// Opens (creating it if needed) the directory `dir`.
    pub fn open(dir: &Path) -> Result<Quarantine, QuarantineError> {
        fs::create_dir_all(dir).map_err(|source| QuarantineError {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Quarantine {
            dir: dir.to_owned(),
            counter: AtomicU64::new(0),
        })
    }

    /// Stores `raw` with its reason; returns the path of the `.eml` file.
    pub fn store(
        &self,
        raw: &[u8],
        envelope: &InboundEnvelope,
        reason: &QuarantineReason,
    ) -> Result<PathBuf, QuarantineError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let sidecar = Sidecar {
            reason,
            message: reason.to_string(),
            mail_from: &envelope.mail_from,
            rcpt_to: &envelope.rcpt_to,
            size: raw.len(),
            received_unix: now,
        };
        let json = serde_json::to_vec_pretty(&sidecar).map_err(|e| QuarantineError {
            path: self.dir.clone(),
            source: io::Error::other(e),
        })?;
        let (eml, mut file) = self.create_unique(now)?;
        write_synced(&mut file, raw, &eml)?;
        let json_path = eml.with_extension("json");
        let mut sidecar_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&json_path)
            .map_err(|source| QuarantineError {
                path: json_path.clone(),
                source,
            })?;
        write_synced(&mut sidecar_file, &json, &json_path)?;
        volley_files::sync_dir(&self.dir).map_err(|source| QuarantineError {
            path: self.dir.clone(),
            source,
        })?;
        Ok(eml)
    }

    fn create_unique(&self, now: u64) -> Result<(PathBuf, File), QuarantineError> {
        loop {
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let name = format!("{now}-{}-{n}-{:08x}.eml", std::process::id(), fastrand::u32(..));
            let path = self.dir.join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(QuarantineError { path, source }),
            }
        }
    }
}

fn write_synced(file: &mut File, bytes: &[u8], path: &Path) -> Result<(), QuarantineError> {
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| QuarantineError {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_message_and_reason_under_unique_names() {
        let dir = tempfile::tempdir().unwrap();
        let q = Quarantine::open(&dir.path().join("q")).unwrap();
        let envelope = InboundEnvelope {
            mail_from: String::new(),
            rcpt_to: vec!["bounces+x@b.test".into()],
        };
        let reason = QuarantineReason::NotMime;
        let a = q.store(b"garbage", &envelope, &reason).unwrap();
        let b = q.store(b"garbage", &envelope, &reason).unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read(&a).unwrap(), b"garbage");
        let sidecar: serde_json::Value = serde_json::from_slice(&fs::read(a.with_extension("json")).unwrap()).unwrap();
        assert_eq!(sidecar["reason"]["reason"], "not-mime");
        assert_eq!(sidecar["message"], "not a parseable MIME message");
        assert_eq!(sidecar["rcpt_to"][0], "bounces+x@b.test");
        assert_eq!(sidecar["size"], 7);
    }
}
