//! [`RedisServer`]: a throwaway `redis-server` on an ephemeral loopback port, for tests and
//! benchmarks (never a system Redis).
//!
//! Started with `--bind 127.0.0.1 --port <free port> --save "" --appendonly no --dir <tempdir>`;
//! [`RedisServer::start`] returns once `PING` answers. [`RedisServer::stop`] and
//! [`RedisServer::restart`] (same port) simulate outages; dropping the handle kills the server.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server` child process.
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Append-only file with `appendfsync always`: a kill loses no acknowledged write.
    durable: bool,
}

impl RedisServer {
    /// Starts a server on a free loopback port.
    ///
    /// # Panics
    /// When `redis-server` is missing ("install the Debian package redis-server") or does not
    /// answer `PING` within 10 s; use [`RedisServer::try_start`] to handle that.
    pub fn start() -> RedisServer {
        RedisServer::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`RedisServer::start`], but persisting every write (`--appendonly yes
    /// --appendfsync always`) as a production Redis holding a suppression list should: after
    /// [`RedisServer::stop`] (SIGKILL) and [`RedisServer::restart`] every acknowledged write is
    /// back.
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_durable() -> RedisServer {
        RedisServer::try_start_with(true).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server on a free loopback port, or says why it could not.
    pub fn try_start() -> std::io::Result<RedisServer> {
        RedisServer::try_start_with(false)
    }

    fn try_start_with(durable: bool) -> std::io::Result<RedisServer> {
        let binary = find_binary()?;
        let mut last_err = None;
        // A freed port can be taken by someone else before redis binds it: retry a few times.
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = RedisServer {
                binary: binary.clone(),
                port,
                dir: tempfile::Builder::new().prefix("volley-redis-").tempdir()?,
                child: None,
                durable,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("redis-server did not start")))
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Snapshots the data to `<tempdir>/dump.rdb` (`SAVE`), so that a later
    /// [`RedisServer::restart`] comes back with it; without it a restart starts empty.
    ///
    /// # Panics
    /// When the server does not answer `+OK`.
    pub fn save(&self) {
        let reply = command(self.port, b"SAVE\r\n", 5);
        assert!(
            reply.as_deref() == Some(b"+OK\r\n".as_slice()),
            "redis-server SAVE on port {} failed: {reply:?}",
            self.port
        );
    }

    /// Kills the server (SIGKILL, simulating a crash). Without persistence the data is lost
    /// (see [`RedisServer::save`] and [`RedisServer::start_durable`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`RedisServer::stop`]).
    ///
    /// # Panics
    /// When it does not come back within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("redis-server restart on port {}: {e}", self.port),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let mut child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(if self.durable {
                ["--save", "", "--appendonly", "yes", "--appendfsync", "always"].as_slice()
            } else {
                ["--save", "", "--appendonly", "no"].as_slice()
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "redis-server on port {} exited with {status}",
                    self.port
                )));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "redis-server on port {} did not answer PING",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server` from `PATH`, else `/usr/bin/redis-server`.
fn find_binary() -> std::io::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file());
    let fallback = PathBuf::from("/usr/bin/redis-server");
    on_path
        .or_else(|| fallback.is_file().then_some(fallback))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "redis-server not found on PATH or at /usr/bin/redis-server: install the Debian package redis-server",
            )
        })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// True when `PING` on the port answers `+PONG`.
fn ping(port: u16) -> bool {
    command(port, b"PING\r\n", 7).as_deref() == Some(b"+PONG\r\n".as_slice())
}

/// Sends one inline command and reads a `reply_len`-byte reply.
fn command(port: u16, line: &[u8], reply_len: usize) -> Option<Vec<u8>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(line).ok()?;
    let mut reply = vec![0u8; reply_len];
    stream.read_exact(&mut reply).ok()?;
    Some(reply)
}
