//! [`PostfixSmtpd`]: a private Postfix instance (its own config, queue and data directories and
//! log, on a free 127.0.0.1 port) whose `smtpd` receives mail the way a real receiver does —
//! with its anvil-enforced client limits (`smtpd_client_connection_count_limit`, …) — and
//! discards what it accepted. For tests of how Volley copes with a receiver that defends
//! itself. Generated from the same templates as the relay peer of `benches/peers.sh`
//! (`benches/peers/postfix-relay-*.cf.in`) with `postconf -e` overrides; never touches the
//! system instance (/etc/postfix, /var/spool/postfix). Needs root (Postfix's master starts as
//! root and drops to `mail_owner = postfix`).

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::postfix::{find_program, free_loopback_port};

const MAIN_CF: &str = include_str!("../peers/postfix-relay-main.cf.in");
const MASTER_CF: &str = include_str!("../peers/postfix-relay-master.cf.in");
/// How long a started instance has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private Postfix instance; stopped (and its queue removed) on drop.
pub struct PostfixSmtpd {
    conf: PathBuf,
    queue: PathBuf,
    addr: SocketAddr,
    log: PathBuf,
}

impl PostfixSmtpd {
    /// Writes the instance's configuration under `dir` with `settings` (main.cf `name = value`
    /// pairs applied last), starts it and waits until its smtpd accepts connections. Mail is
    /// accepted from 127.0.0.0/8 for any domain and discarded after queueing.
    pub fn start(dir: &Path, settings: &[(&str, &str)]) -> io::Result<PostfixSmtpd> {
        PostfixSmtpd::start_with_services(dir, settings, &[])
    }

    /// [`PostfixSmtpd::start`] with extra master.cf lines (`services`), e.g. an `smtp` client
    /// service bound to another source address for a relay.
    pub fn start_with_services(dir: &Path, settings: &[(&str, &str)], services: &[String]) -> io::Result<PostfixSmtpd> {
        let postfix = find_program("postfix").ok_or_else(|| not_found("postfix"))?;
        let postconf = find_program("postconf").ok_or_else(|| not_found("postconf"))?;
        let addr = free_loopback_port()?;
        let conf = dir.join("conf");
        let data = dir.join("data");
        let log = dir.join("maillog");
        // The queue lives outside any tempdir that might be mounted noexec or be a tmpfs
        // Postfix's chroot-less setup dislikes; /var/tmp is on disk on Debian.
        let queue = tempfile::Builder::new()
            .prefix("volley-smtpd-")
            .tempdir_in("/var/tmp")?
            .keep();
        fs::create_dir_all(&conf)?;
        fs::create_dir_all(&data)?;
        fs::write(&log, b"")?;
        chmod(&queue, 0o755)?;
        chown_postfix(&data)?;
        let fill = |template: &str| {
            template
                .replace("@SMTPD_PORT@", &addr.port().to_string())
                .replace("@SINK_PORT@", "25")
                .replace("@QUEUE_DIR@", &queue.to_string_lossy())
                .replace("@DATA_DIR@", &data.to_string_lossy())
                .replace("@LOG_FILE@", &log.to_string_lossy())
                .replace("@RELAY_DIR@", &dir.to_string_lossy())
        };
        fs::write(conf.join("main.cf"), fill(MAIN_CF))?;
        let mut master = fill(MASTER_CF);
        for line in services {
            master.push_str(line);
            master.push('\n');
        }
        fs::write(conf.join("master.cf"), master)?;
        let mut all: Vec<(&str, &str)> = vec![
            // A receiver, not a relay: everything accepted is discarded.
            ("relayhost", ""),
            ("default_transport", "discard:accepted"),
            ("relay_transport", "discard:accepted"),
            ("myhostname", "smtpd.receiver.test"),
            // By default loopback clients ($mynetworks) are exempt from the client limits.
            ("smtpd_client_event_limit_exceptions", ""),
        ];
        all.extend_from_slice(settings);
        let server = PostfixSmtpd { conf, queue, addr, log };
        for (name, value) in all {
            run(Command::new(&postconf)
                .arg("-c")
                .arg(&server.conf)
                .arg("-e")
                .arg(format!("{name}={value}")))?;
        }
        run(Command::new(&postfix).arg("-c").arg(&server.conf).arg("check"))?;
        run(Command::new(&postfix).arg("-c").arg(&server.conf).arg("start"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(server.addr).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "private Postfix does not accept on {}; see {}",
                    server.addr,
                    server.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// Where its smtpd listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its configuration directory (for `postqueue -c`, `postsuper -c`).
    pub fn conf_dir(&self) -> &Path {
        &self.conf
    }

    /// Its queue directory.
    pub fn queue_dir(&self) -> &Path {
        &self.queue
    }

    /// The instance's log (postlogd writes it).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PostfixSmtpd {
    fn drop(&mut self) {
        if let Some(postfix) = find_program("postfix") {
            let _ = Command::new(postfix).arg("-c").arg(&self.conf).arg("stop").output();
        }
        let pid_file = self.queue.join("pid/master.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::remove_dir_all(&self.queue);
    }
}

fn not_found(program: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{program} (Debian package `postfix`) not found: run scripts/test.sh, which installs it"),
    )
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn chown_postfix(path: &Path) -> io::Result<()> {
    run(Command::new("chown").arg("postfix:").arg(path))
}
