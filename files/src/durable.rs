//! Durable, atomic replacement of small state files (holds, marks, spooled messages): the
//! content goes to a temporary file beside the target, is synced, renamed over the target, and
//! the folder is synced, so a reader sees the old content or the new, never part of it, and once
//! [`write_atomic`] returns the new content survives a crash or power loss.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Tells temporary names of one process apart (two threads replacing the same file).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary name for `path`: `.<name>.<pid>.<n>.tmp` in the same folder (same file
/// system, so the rename is atomic). Ends in `.tmp`, so a folder scan can remove leftovers.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `parts`, one after the other, as the new content of `path`, atomically and durably
/// (see the module docs). On an error the temporary file is removed and `path` is unchanged.
pub fn write_atomic(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    write_atomic_with(path, parts, File::options().write(true).create(true).truncate(true))
}

/// [`write_atomic`] for a secret (a password file): the file is created with mode 0600 (owner
/// read and write only), so its content is never readable by others, not even for a moment.
pub fn write_atomic_private(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    write_atomic_with(path, parts, &options)
}

fn write_atomic_with(path: &Path, parts: &[&[u8]], options: &std::fs::OpenOptions) -> io::Result<()> {
    let tmp = temporary(path);
    let written = (|| {
        let mut file = options.open(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Syncs the folder `dir`, so that names created, renamed or removed in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mark");
        write_atomic(&path, &[b"12", b"\n"]).expect("first write");
        write_atomic(&path, &[b"345\n"]).expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"345\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["mark"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_private_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        write_atomic_private(&path, &[b"secret\n"]).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"secret\n");
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held");
        write_atomic(&path, &[b"old"]).expect("write");
        // A folder where the target is: the rename fails.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).expect("dir");
        std::fs::write(blocked.join("x"), b"x").expect("fill");
        assert!(write_atomic(&blocked, &[b"new"]).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        let temporaries = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(temporaries, 0);
    }
}
