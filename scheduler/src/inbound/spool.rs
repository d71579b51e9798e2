//! The inbound spool: each accepted message is a file `<id>.msg` — one JSON line with its
//! envelope, then the raw message — written to a temporary name, synced, renamed and the
//! folder synced before the listener answers 250. A message is deleted only once its effects
//! are durable, so a crash between the two replays it (its events are counted once: see
//! `apply.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use volley_feedback::InboundEnvelope;

use super::InboundError;

/// The envelope line of a spool file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct EnvelopeLine {
    mail_from: String,
    rcpt_to: Vec<String>,
    /// The client's address.
    peer: String,
    /// Unix seconds.
    received: u64,
}

/// A spooled message.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub envelope: InboundEnvelope,
    pub peer: String,
    pub raw: Vec<u8>,
}

/// The spool folder.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    counter: AtomicU64,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> InboundError + 'a {
    move |source| InboundError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

impl Spool {
    /// Opens (creating) the spool folder.
    pub fn open(dir: &Path) -> Result<Spool, InboundError> {
        std::fs::create_dir_all(dir).map_err(io(dir, "create the spool folder"))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            counter: AtomicU64::new(0),
        })
    }

    /// Writes a message durably; its path.
    pub fn put(&self, envelope: &InboundEnvelope, peer: &str, raw: &[u8]) -> Result<PathBuf, InboundError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{}-{}-{n}", now.as_secs(), now.subsec_nanos(), std::process::id());
        let path = self.dir.join(format!("{name}.msg"));
        let line = EnvelopeLine {
            mail_from: envelope.mail_from.clone(),
            rcpt_to: envelope.rcpt_to.clone(),
            peer: peer.to_string(),
            received: now.as_secs(),
        };
        let mut head =
            serde_json::to_vec(&line).map_err(|e| io(&path, "encode an envelope")(std::io::Error::other(e)))?;
        head.push(b'\n');
        volley_files::write_atomic(&path, &[&head, raw]).map_err(io(&path, "write a spool file"))?;
        Ok(path)
    }

    /// The spooled messages waiting to be processed, oldest first (left by a crash); stray
    /// temporary files (a write that never completed, never acknowledged) are removed.
    pub fn pending(&self) -> Result<Vec<PathBuf>, InboundError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir, "list the spool"))?
            .flatten()
        {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("msg") => out.push(path),
                Some("tmp") => {
                    let _ = std::fs::remove_file(&path);
                }
                _ => {}
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads a spooled message back.
    pub fn read(path: &Path) -> Result<Spooled, InboundError> {
        let bytes = std::fs::read(path).map_err(io(path, "read a spool file"))?;
        let split = memchr::memchr(b'\n', &bytes).ok_or_else(|| InboundError::CorruptSpool {
            path: path.to_path_buf(),
            reason: "no envelope line".into(),
        })?;
        let line: EnvelopeLine = serde_json::from_slice(&bytes[..split]).map_err(|e| InboundError::CorruptSpool {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Spooled {
            path: path.to_path_buf(),
            envelope: InboundEnvelope {
                mail_from: line.mail_from,
                rcpt_to: line.rcpt_to,
            },
            peer: line.peer,
            raw: bytes[split + 1..].to_vec(),
        })
    }

    /// Deletes a processed message.
    pub fn remove(path: &Path) -> Result<(), InboundError> {
        std::fs::remove_file(path).map_err(io(path, "remove a spool file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_message_reads_back_and_leftovers_are_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool")).unwrap();
        let env = InboundEnvelope {
            mail_from: String::new(),
            rcpt_to: vec!["bounces+abc@bounce.test".into()],
        };
        let a = spool
            .put(&env, "127.0.0.9:4000", b"Subject: a\r\n\r\nbody\r\n")
            .unwrap();
        let b = spool.put(&env, "127.0.0.9:4001", b"Subject: b\r\n\r\n").unwrap();
        std::fs::write(dir.path().join("spool/x.tmp"), b"half").unwrap();
        assert_eq!(spool.pending().unwrap(), vec![a.clone(), b]);
        assert!(
            !dir.path().join("spool/x.tmp").exists(),
            "an unacknowledged partial write goes"
        );
        let back = Spool::read(&a).unwrap();
        assert_eq!(back.envelope, env);
        assert_eq!(back.peer, "127.0.0.9:4000");
        assert_eq!(back.raw, b"Subject: a\r\n\r\nbody\r\n");
        Spool::remove(&a).unwrap();
        assert_eq!(spool.pending().unwrap().len(), 1);
    }
}
