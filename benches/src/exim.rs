//! [`EximServer`]: a private Exim 4 daemon on a free 127.0.0.1 port that receives mail the way
//! a real Exim receiver does — with its connection limits (`smtp_accept_max`,
//! `smtp_accept_max_per_host`, …) — and throws away what it accepted (`discard` in the RCPT
//! ACL: the message is received, logged and never delivered). For tests of how Volley copes
//! with a receiver that defends itself.
//!
//! Exim is **not installed**: Debian's `exim4` packages conflict with `postfix` (both provide
//! the system's `mail-transport-agent`). `scripts/fetch-exim.sh` downloads
//! `exim4-daemon-light` and `libidn12` with `apt-get download` and unpacks them with
//! `dpkg-deb -x` into `target/exim` (or `$VOLLEY_EXIM_DIR`); nothing of the system changes.
//! The binary has its user compiled in (`Debian-exim`, looked up by name at start, and never
//! uid 0), so the daemon runs in a private mount namespace (`unshare -m`) where a copy of
//! `/etc/passwd` and `/etc/group` with that user (as `nobody`) is bind-mounted over the real
//! ones — the real files are not touched. Its own config, spool, log and pid file live in the
//! instance's directory. Needs root (the namespace, the bind mounts, and Exim's daemon).

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::postfix::{find_program, free_loopback_port};

/// How long a started daemon has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The user and group Exim drops to (`nobody` / `nogroup` on Debian).
const EXIM_UID: u32 = 65534;

/// Where Exim's unpacked packages are: `$VOLLEY_EXIM_DIR`, else `target/exim` of the workspace.
pub fn exim_dir() -> PathBuf {
    std::env::var_os("VOLLEY_EXIM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/exim"))
}

/// The unpacked `exim4` binary, when `scripts/fetch-exim.sh` has run.
pub fn exim_binary() -> Option<PathBuf> {
    let binary = exim_dir().join("usr/sbin/exim4");
    binary.is_file().then_some(binary)
}

/// A running private Exim daemon; killed (and its directory left to the caller) on drop.
pub struct EximServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl EximServer {
    /// Writes the daemon's configuration under `dir` with `settings` (main-section
    /// `name = value` lines, e.g. `("smtp_accept_max", "8")`), starts it and waits until it
    /// accepts connections. Mail for any domain is accepted from anywhere on loopback and
    /// discarded.
    pub fn start(dir: &Path, settings: &[(&str, &str)]) -> io::Result<EximServer> {
        let binary = exim_binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no Exim in {}: run scripts/fetch-exim.sh (it unpacks Debian's exim4-daemon-light \
                     without installing it)",
                    exim_dir().display()
                ),
            )
        })?;
        let unshare = find_program("unshare").ok_or_else(|| io::Error::other("unshare (util-linux) not found"))?;
        let addr = free_loopback_port()?;
        let spool = dir.join("spool");
        let logs = dir.join("log");
        fs::create_dir_all(&spool)?;
        fs::create_dir_all(&logs)?;
        for path in [&spool, &logs] {
            std::os::unix::fs::chown(path, Some(EXIM_UID), Some(EXIM_UID))?;
        }
        let passwd = dir.join("passwd");
        let group = dir.join("group");
        let mut users = fs::read_to_string("/etc/passwd")?;
        users.push_str(&format!(
            "Debian-exim:x:{EXIM_UID}:{EXIM_UID}:private exim:/nonexistent:/usr/sbin/nologin\n"
        ));
        fs::write(&passwd, users)?;
        let mut groups = fs::read_to_string("/etc/group")?;
        groups.push_str(&format!("Debian-exim:x:{EXIM_UID}:\n"));
        fs::write(&group, groups)?;
        let config = dir.join("exim.conf");
        fs::write(&config, configuration(dir, addr, settings))?;
        let libs = library_path(&exim_dir());
        let script = format!(
            "mount --bind '{}' /etc/passwd && mount --bind '{}' /etc/group && \
             exec env LD_LIBRARY_PATH='{libs}' '{}' -C '{}' -bdf",
            passwd.display(),
            group.display(),
            binary.display(),
            config.display()
        );
        let out = fs::File::create(dir.join("daemon.out"))?;
        let child = Command::new(unshare)
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut server = EximServer {
            child,
            addr,
            log: logs.join("mainlog"),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = server.child.try_wait()? {
                let text = fs::read_to_string(dir.join("daemon.out")).unwrap_or_default();
                return Err(io::Error::other(format!("private Exim exited ({status}): {text}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "private Exim does not accept on {addr}; see {}",
                    dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its main log.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EximServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's configuration: its own spool, log and pid file, loopback only, no TLS, no
/// DNS or ident lookups, every recipient accepted and discarded; `settings` go last in the
/// main section.
fn configuration(dir: &Path, addr: SocketAddr, settings: &[(&str, &str)]) -> String {
    let mut text = format!(
        "# Private Exim receiver written by volley-bench (benches/src/exim.rs).\n\
         keep_environment =\n\
         exim_user = Debian-exim\n\
         exim_group = Debian-exim\n\
         spool_directory = {dir}/spool\n\
         log_file_path = {dir}/log/%slog\n\
         pid_file_path = {dir}/exim.pid\n\
         primary_hostname = exim.receiver.test\n\
         local_interfaces = {ip}\n\
         daemon_smtp_ports = {port}\n\
         tls_advertise_hosts =\n\
         host_lookup =\n\
         rfc1413_hosts =\n\
         acl_smtp_rcpt = acl_rcpt\n",
        dir = dir.display(),
        ip = addr.ip(),
        port = addr.port()
    );
    for (name, value) in settings {
        text.push_str(&format!("{name} = {value}\n"));
    }
    text.push_str("\nbegin acl\n\nacl_rcpt:\n  discard\n\nbegin routers\n\nbegin transports\n");
    text
}

/// `LD_LIBRARY_PATH` for the unpacked libraries (`usr/lib/<multiarch>` directories).
fn library_path(root: &Path) -> String {
    let lib = root.join("usr/lib");
    let mut dirs: Vec<String> = fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-linux-gnu"))
        .map(|e| e.path().display().to_string())
        .collect();
    dirs.sort();
    dirs.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_private_and_takes_the_settings_last() {
        let addr: SocketAddr = "127.0.0.1:2600".parse().unwrap();
        let text = configuration(Path::new("/tmp/x"), addr, &[("smtp_accept_max", "8")]);
        assert!(text.contains("spool_directory = /tmp/x/spool\n"), "{text}");
        assert!(text.contains("daemon_smtp_ports = 2600\n"));
        assert!(text.contains("local_interfaces = 127.0.0.1\n"));
        let main = text.split("begin acl").next().unwrap();
        assert!(main.trim_end().ends_with("smtp_accept_max = 8"), "{main}");
        assert!(text.contains("acl_rcpt:\n  discard\n"));
    }
}
