//! Bounded reads of the files an operator (or an API client) names as configuration, template,
//! key or rules: a regular file only (never `/dev/zero`, a FIFO or a directory), at most a
//! cap of bytes, read with `take(cap + 1)` so that even a file that grows or is swapped while
//! being read cannot take more memory than the cap.
//!
//! # Layout
//! - [`read_config_file`] / [`read_config_bytes`] — open, check the opened file's metadata,
//!   read at most `max_bytes`.
//! - [`FileError`] — what went wrong, naming the path; [`FileError::is_too_large`] and
//!   [`FileError::is_not_found`] classify it.
//! - The caps: [`CONFIG_MAX`] (TOML settings, rules, curves, tokens), [`TEMPLATE_MAX`]
//!   (message bodies, campaign files), [`PEM_MAX`] (keys, certificates, CA bundles).
//! - `durable.rs` — [`write_atomic`] (temporary file, sync, rename, folder sync),
//!   [`write_atomic_private`] (the same, mode 0600) and [`sync_dir`], for the state files that must survive a crash whole.

mod durable;

pub use durable::{sync_dir, write_atomic, write_atomic_private};

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest TOML settings file, rules, curve or token file: 1 MiB.
pub const CONFIG_MAX: u64 = 1 << 20;
/// Largest `text_file` / `html_file` body template, and campaign file (its bodies may be
/// inline): 8 MiB.
pub const TEMPLATE_MAX: u64 = 8 << 20;
/// Largest PEM file (private key, certificate chain, CA bundle): 4 MiB.
pub const PEM_MAX: u64 = 4 << 20;

/// A file that could not be read within the rules. The message says why, not which file:
/// callers name the file in their own context (`config x.toml: field …`); [`FileError::path`]
/// has it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed.
    #[error("{source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Not a regular file (a device, FIFO, socket or directory).
    #[error("not a regular file ({kind})")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead: `directory`, `character device`, `FIFO`…
        kind: &'static str,
    },
    /// Larger than the cap.
    #[error("larger than the {max_bytes}-byte limit for this kind of file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max_bytes: u64,
    },
    /// Not UTF-8 text.
    #[error("not valid UTF-8 (byte {at})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        at: usize,
    },
}

impl FileError {
    /// The file is over its cap.
    pub fn is_too_large(&self) -> bool {
        matches!(self, FileError::TooLarge { .. })
    }

    /// The file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::TooLarge { path, .. }
            | FileError::NotUtf8 { path, .. } => path,
        }
    }
}

/// Reads the regular file at `path` as UTF-8, refusing more than `max_bytes`.
pub fn read_config_file(path: &Path, max_bytes: u64) -> Result<String, FileError> {
    let bytes = read_config_bytes(path, max_bytes)?;
    String::from_utf8(bytes).map_err(|e| FileError::NotUtf8 {
        path: path.to_owned(),
        at: e.utf8_error().valid_up_to(),
    })
}

/// Reads the regular file at `path`, refusing more than `max_bytes`.
pub fn read_config_bytes(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    // Checked before opening: opening a FIFO for reading would wait for a writer.
    regular(path, &std::fs::metadata(path).map_err(io)?)?;
    let file = File::open(path).map_err(io)?;
    // Checked again on the opened file: the path may have been replaced in between.
    let metadata = file.metadata().map_err(io)?;
    regular(path, &metadata)?;
    if metadata.len() > max_bytes {
        return Err(too_large(path, max_bytes));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(path, max_bytes));
    }
    Ok(bytes)
}

fn too_large(path: &Path, max_bytes: u64) -> FileError {
    FileError::TooLarge {
        path: path.to_owned(),
        max_bytes,
    }
}

fn regular(path: &Path, metadata: &std::fs::Metadata) -> Result<(), FileError> {
    let t = metadata.file_type();
    if t.is_file() {
        return Ok(());
    }
    let kind = if t.is_dir() { "directory" } else { special_kind(&t) };
    Err(FileError::NotRegular {
        path: path.to_owned(),
        kind,
    })
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_without_reading() {
        let e = read_config_file(Path::new("/dev/zero"), CONFIG_MAX).expect_err("/dev/zero");
        assert!(
            matches!(
                &e,
                FileError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.path(), Path::new("/dev/zero"));
        let dir = tempfile::tempdir().expect("tempdir");
        let e = read_config_file(dir.path(), CONFIG_MAX).expect_err("a directory");
        assert!(matches!(e, FileError::NotRegular { kind: "directory", .. }), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let e = read_config_file(&fifo, CONFIG_MAX).expect_err("a FIFO");
        assert!(matches!(e, FileError::NotRegular { kind: "FIFO", .. }), "{e}");
    }

    #[test]
    fn the_cap_is_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "x".repeat(10)).expect("write");
        assert_eq!(read_config_file(&path, 10).expect("at the cap").len(), 10);
        let e = read_config_file(&path, 9).expect_err("over the cap");
        assert!(e.is_too_large(), "{e}");
        assert!(e.path().ends_with("f.toml") && e.to_string().contains("9-byte"), "{e}");
        let e = read_config_file(&dir.path().join("none.toml"), 9).expect_err("missing");
        assert!(e.is_not_found() && e.path().ends_with("none.toml"), "{e}");
        std::fs::write(&path, b"ok\xff").expect("write");
        assert!(matches!(
            read_config_file(&path, 10),
            Err(FileError::NotUtf8 { at: 2, .. })
        ));
    }
}
