//! What the submission tests share: a listener on free loopback ports with a self-signed
//! certificate, a users file, and a recording injector (the test double standing in for the
//! durable spool); a raw SMTP client for plaintext sessions; running swaks and Python's
//! smtplib.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use volley_scheduler::inject::{Accepted, InjectError, Injected, Injector};
use volley_scheduler::submission::{users, SubmissionConfig, SubmissionService};

/// The application user of every test and its password.
pub const USER: &str = "app";
pub const PASSWORD: &str = "app-secret-1";
/// The relay user (for clients of `relay_networks`), from relay.example.
pub const RELAY_USER: &str = "relay";
/// A user limited to one message per hour, from slow.example.
pub const SLOW_USER: &str = "slow";

/// Records what it is given; answers with one id per recipient, or with `fail` when set.
#[derive(Default)]
pub struct Recorder {
    pub messages: Mutex<Vec<Injected>>,
    pub fail: Mutex<Option<InjectError>>,
}

impl Recorder {
    pub fn recorded(&self) -> Vec<Injected> {
        self.messages.lock().expect("lock").clone()
    }
}

impl Injector for Recorder {
    async fn inject(&self, message: Injected) -> Result<Accepted, InjectError> {
        if let Some(e) = self.fail.lock().expect("lock").clone() {
            return Err(e);
        }
        let mut messages = self.messages.lock().expect("lock");
        let n = messages.len();
        let ids = (0..message.recipients.len()).map(|i| format!("m{n}r{i}")).collect();
        let campaign = message.user.clone();
        messages.push(message);
        Ok(Accepted { campaign, ids })
    }
}

/// A running listener and what the test looks at.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub service: SubmissionService,
    pub recorder: Arc<Recorder>,
    pub users: PathBuf,
}

impl Setup {
    pub fn starttls(&self) -> SocketAddr {
        self.service.starttls_addr().expect("listen")
    }

    pub fn tls(&self) -> SocketAddr {
        self.service.tls_addr().expect("listen_tls")
    }
}

/// [`prepare`], then the listener started.
pub async fn setup(tweak: impl FnOnce(&mut SubmissionConfig)) -> Setup {
    let (dir, config, users) = prepare(tweak);
    let recorder = Arc::new(Recorder::default());
    let service = SubmissionService::start(&config, users.clone(), recorder.clone())
        .await
        .expect("submission starts");
    Setup {
        dir,
        service,
        recorder,
        users,
    }
}

/// A config for both ports on 127.0.0.1:0 with a self-signed certificate, AUTH failures
/// paused 50 ms, changed by `tweak`; the users file with `app` (app.example), `relay`
/// (relay.example) and `slow` (slow.example, 1/h).
pub fn prepare(tweak: impl FnOnce(&mut SubmissionConfig)) -> (tempfile::TempDir, SubmissionConfig, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    std::fs::write(dir.path().join("sub.crt"), cert.pem()).expect("cert");
    std::fs::write(dir.path().join("sub.key"), key_pair.serialize_pem()).expect("key");
    let users = dir.path().join("state/submission/users.jsonl");
    users::add(&users, USER, &["app.example".into()], None, PASSWORD).expect("add app");
    users::add(&users, RELAY_USER, &["relay.example".into()], None, "relay-password").expect("add relay");
    users::add(
        &users,
        SLOW_USER,
        &["slow.example".into()],
        Some("1/h".parse().expect("rate")),
        "slow-password",
    )
    .expect("add slow");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut config = SubmissionConfig::new(
        Some(any),
        Some(any),
        dir.path().join("sub.crt"),
        dir.path().join("sub.key"),
        "submit.volley.test",
    );
    config.auth_failure_delay = Duration::from_millis(50);
    tweak(&mut config);
    (dir, config, users)
}

/// A plaintext SMTP client speaking raw protocol lines.
pub struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    /// Connects from `local` (e.g. 127.0.0.2, outside a relay network) and reads the greeting.
    pub fn connect_from(addr: SocketAddr, local: &str) -> (Raw, String) {
        let stream = connect_bound(local, addr);
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        };
        let greeting = raw.reply();
        (raw, greeting)
    }

    /// Connects from 127.0.0.1.
    pub fn connect(addr: SocketAddr) -> (Raw, String) {
        Raw::connect_from(addr, "127.0.0.1")
    }

    /// The next reply, all its lines.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    /// `BDAT <size> LAST` with `message` as its one chunk (RFC 3030), and its reply.
    pub fn bdat_last(&mut self, message: &[u8]) -> String {
        write!(self.writer, "BDAT {} LAST\r\n", message.len()).expect("write");
        self.writer.write_all(message).expect("write");
        self.reply()
    }

    /// Sends `line` and reads its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        write!(self.writer, "{line}\r\n").expect("write");
        self.reply()
    }

    /// DATA, the message (dot-stuffed by the engine's codec) and its final reply; the 354 must come.
    pub fn data(&mut self, message: &[u8]) -> String {
        let go = self.cmd("DATA");
        assert!(go.starts_with("354"), "{go}");
        let payload = volley_engine::smtp::dot::prepare(message).expect("a message SMTP can carry");
        self.writer.write_all(payload.wire_bytes()).expect("write");
        self.reply()
    }
}

/// A TCP connection to `addr` from the local address `local`.
fn connect_bound(local: &str, addr: SocketAddr) -> TcpStream {
    // std has no bind-before-connect: a tokio socket on a runtime of its own (this runs on
    // a blocking thread).
    let local: std::net::IpAddr = local.parse().expect("local address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(local, 0)).expect("bind the local address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = rt.block_on(socket.connect(addr)).expect("connect");
    let std_stream = stream.into_std().expect("std stream");
    std_stream.set_nonblocking(false).expect("blocking");
    std_stream
}

/// Runs a blocking client (swaks, python, a raw session) off the runtime's workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client thread")
}

/// Runs `swaks` with `args`; its exit status and transcript (stdout and stderr).
pub fn swaks(args: &[String]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
        .arg("--timeout")
        .arg("30")
        .output()
        .expect("swaks runs (apt-get install swaks; scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `script` with Python 3 and `args`; its exit status and output.
pub fn python(dir: &Path, script: &str, args: &[String]) -> (bool, String) {
    let path = dir.join("client.py");
    std::fs::write(&path, script).expect("script");
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The strings of `args`.
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
