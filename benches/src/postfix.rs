//! [`PostfixSink`]: Postfix's `smtp-sink` (Debian package `postfix`) on a loopback port, for
//! interop tests against a PIPELINING SMTP server nobody here wrote, and [`Dumped`]: one
//! transaction as it recorded it.
//!
//! smtp-sink is started with `-c` (message counters on stdout) and `-d` (one dump file per
//! transaction). A dump file is, per smtp-sink(1) "DUMP FILE FORMAT", LF-terminated lines:
//!
//! ```text
//! X-Client-Addr: 127.0.0.2              <- smtp-sink's records, then its 3-line Received:
//! X-Client-Proto: ESMTP
//! X-Helo-Args: mta2.volley.test
//! X-Mail-Args: <bounces@sender.test> SIZE=512
//! X-Rcpt-Args: <a@dest.test>
//! Received: from mta2.volley.test ([127.0.0.2])
//!         by smtp-sink (smtp-sink) with ESMTP id 0aea552a;
//!         Mon, 23 Nov 2026 16:43:56 +0000 (UTC)
//! From: ...                             <- the message as received: un-stuffed, CRLF -> LF
//! ...
//!                                       <- one empty line smtp-sink appends
//! ```
//!
//! [`Dumped::message_crlf`] restores the message the client sent (CRLF line ends), which is
//! what a DKIM verifier must see. Every socket is on 127.0.0.1.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started smtp-sink has to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`PostfixSink::transactions`] waits for the expected dump files.
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
/// smtp-sink's listen backlog.
const BACKLOG: &str = "256";

/// A running `smtp-sink`, killed on drop. Its files live in the directory given to
/// [`PostfixSink::start`]: `dump/msg.<hex>` (one per transaction), `counters.txt`, `stderr.txt`.
pub struct PostfixSink {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl PostfixSink {
    /// Starts smtp-sink on a free 127.0.0.1 port with its files under `dir` (created if needed);
    /// returns once it accepts connections.
    ///
    /// # Panics
    /// When smtp-sink is not installed or does not start; use [`PostfixSink::try_start`] to
    /// handle that.
    pub fn start(dir: &Path) -> PostfixSink {
        PostfixSink::try_start(dir).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`PostfixSink::start`], but says why smtp-sink could not be started.
    pub fn try_start(dir: &Path) -> io::Result<PostfixSink> {
        let program = find_program("smtp-sink").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "smtp-sink (Debian package `postfix`) not found in PATH or /usr/sbin: \
                 run scripts/test.sh, which installs it",
            )
        })?;
        let dump = dir.join("dump");
        fs::create_dir_all(&dump)?;
        let root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
            // smtp-sink refuses to run as root without -u; it then writes its dumps as `nobody`.
            for d in [dir, &dump] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o777))?;
            }
        }
        let addr = free_loopback_port()?;
        let mut cmd = Command::new(&program);
        if root {
            cmd.args(["-u", "nobody"]);
        }
        // -c: counters on stdout; -d: one dump file per transaction ("msg." + random hex).
        cmd.arg("-c")
            .arg("-d")
            .arg(dump.join("msg."))
            .arg(addr.to_string())
            .arg(BACKLOG)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("counters.txt"))?)
            .stderr(File::create(dir.join("stderr.txt"))?);
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("start {}: {e}", program.display())))?;
        let mut sink = PostfixSink {
            child,
            addr,
            dir: dir.to_owned(),
        };
        sink.wait_until_accepting()?;
        Ok(sink)
    }

    fn wait_until_accepting(&mut self) -> io::Result<()> {
        let until = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "smtp-sink exited at start-up ({status}): {}",
                    self.stderr()
                )));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "smtp-sink did not accept on {} within {READY_TIMEOUT:?}: {}",
                        self.addr,
                        self.stderr()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address it listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What smtp-sink wrote to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// The last `mesg=` value smtp-sink's `-c` counter printed (it rewrites one line with CR).
    pub fn message_counter(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dir.join("counters.txt")).ok()?;
        let last = text.split(['\r', '\n']).rev().find(|s| s.contains("mesg="))?;
        last.split_whitespace()
            .find_map(|f| f.strip_prefix("mesg="))?
            .parse()
            .ok()
    }

    /// Parses every dump file, waiting (up to 5 s) until `expected` complete transactions are
    /// on disk; returns early when there are more files than expected.
    ///
    /// # Panics
    /// When the dump directory cannot be read.
    pub fn transactions(&self, expected: usize) -> Vec<Dumped> {
        let until = Instant::now() + DUMP_TIMEOUT;
        loop {
            let dumped: Vec<Dumped> = fs::read_dir(self.dir.join("dump"))
                .unwrap_or_else(|e| panic!("read {}: {e}", self.dir.join("dump").display()))
                .filter_map(|e| e.ok())
                .filter_map(|e| Dumped::read(&e.path()).ok())
                .collect();
            let complete = dumped.iter().filter(|d| d.complete).count();
            if dumped.len() > expected || complete == expected || Instant::now() > until {
                return dumped;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("smtp-sink's files are in {}", self.dir.display());
        }
    }
}

/// What smtp-sink recorded for one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dumped {
    /// The dump file.
    pub file: PathBuf,
    /// `X-Client-Addr`: the client's IP address.
    pub client_addr: String,
    /// `X-Client-Proto`: `SMTP`, `ESMTP` or `LMTP`.
    pub client_proto: String,
    /// `X-Helo-Args`: the argument of the last EHLO/HELO.
    pub helo: String,
    /// `X-Mail-Args`: the MAIL FROM arguments, e.g. `<a@b.test> SIZE=512`.
    pub mail_args: String,
    /// `X-Rcpt-Args`, one per RCPT command in order, e.g. `<c@d.test>`.
    pub rcpts: Vec<String>,
    /// The message as smtp-sink stored it: un-stuffed, LF line ends, without smtp-sink's own
    /// records, its `Received:` header and the empty line it appends.
    pub body: Vec<u8>,
    /// Whether the file ends as a finished transaction does (smtp-sink's trailing empty line).
    pub complete: bool,
}

impl Dumped {
    /// Reads and parses one dump file.
    pub fn read(path: &Path) -> io::Result<Dumped> {
        let mut dumped = Dumped::parse(&fs::read(path)?);
        dumped.file = path.to_owned();
        Ok(dumped)
    }

    /// Parses a dump file's bytes: smtp-sink's `X-*` records, its `Received:` header (the line and
    /// its continuation lines), then the message.
    pub fn parse(bytes: &[u8]) -> Dumped {
        let mut d = Dumped::default();
        let mut rest = bytes;
        let mut in_received = false;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&rest[..end]);
            let continuation = line.starts_with([' ', '\t']);
            if in_received && !continuation {
                break;
            }
            if let Some(v) = line.strip_prefix("X-Client-Addr: ") {
                d.client_addr = v.into();
            } else if let Some(v) = line.strip_prefix("X-Client-Proto: ") {
                d.client_proto = v.into();
            } else if let Some(v) = line.strip_prefix("X-Helo-Args: ") {
                d.helo = v.into();
            } else if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
                d.mail_args = v.into();
            } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
                d.rcpts.push(v.into());
            } else if line.starts_with("Received: ") {
                in_received = true;
            }
            rest = &rest[end + 1..];
        }
        if !in_received {
            // No Received: yet: smtp-sink has not reached DATA.
            return d;
        }
        // The message ends with CRLF (stored as LF); smtp-sink then appends one empty line.
        d.complete = rest.ends_with(b"\n\n");
        d.body = rest.strip_suffix(b"\n").unwrap_or(rest).to_vec();
        d
    }

    /// The message as the client sent it (before dot-stuffing): [`Dumped::body`] with LF line
    /// ends turned back into CRLF. This is what a DKIM verifier checks.
    pub fn message_crlf(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + self.body.len() / 32);
        for &b in &self.body {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    /// The unfolded value of the first header field `name` (case-insensitive) of the message.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// The unfolded values of every header field `name` (case-insensitive) of the message, in
    /// order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.body);
        let head = text.split("\n\n").next().unwrap_or_default();
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            match (line.starts_with([' ', '\t']), fields.last_mut()) {
                // RFC 5322 §2.2.3: a line starting with white space continues the field.
                (true, Some((_, value))) => value.push_str(line),
                _ => {
                    if let Some((n, v)) = line.split_once(':') {
                        fields.push((n.to_owned(), v.trim_start().to_owned()));
                    }
                }
            }
        }
        fields
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }
}

/// Looks for an executable in PATH, then in the sbin directories Debian installs Postfix into
/// (often missing from a non-root PATH).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// A loopback address with a port that was free a moment ago (bound to port 0, then released).
pub(crate) fn free_loopback_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &[u8] = b"X-Client-Addr: 127.0.0.2\nX-Client-Proto: ESMTP\nX-Helo-Args: mta2.test\n\
X-Mail-Args: <a@b.test> SIZE=60\nX-Rcpt-Args: <c@d.test>\nX-Rcpt-Args: <e@f.test>\n\
Received: from mta2.test ([127.0.0.2])\n\tby smtp-sink (smtp-sink) with ESMTP id 0aea552a;\n\
\tMon, 23 Nov 2026 16:43:56 +0000 (UTC)\nFrom: a@b.test\nX-Tag: one\n two\n\n.dot\n\xc3\xbc\n\n\n";

    #[test]
    fn parses_records_and_restores_the_crlf_message() {
        let d = Dumped::parse(DUMP);
        assert_eq!(d.client_addr, "127.0.0.2");
        assert_eq!(d.client_proto, "ESMTP");
        assert_eq!(d.helo, "mta2.test");
        assert_eq!(d.mail_args, "<a@b.test> SIZE=60");
        assert_eq!(d.rcpts, ["<c@d.test>", "<e@f.test>"]);
        assert!(d.complete);
        assert_eq!(
            d.message_crlf(),
            b"From: a@b.test\r\nX-Tag: one\r\n two\r\n\r\n.dot\r\n\xc3\xbc\r\n\r\n"
        );
        assert_eq!(d.header("x-tag").as_deref(), Some("one two"));
        assert_eq!(d.header("Subject"), None);
    }

    #[test]
    fn a_transaction_before_data_is_incomplete() {
        let d = Dumped::parse(b"X-Client-Addr: 127.0.0.2\nX-Mail-Args: <a@b.test>\n");
        assert!(!d.complete);
        assert!(d.body.is_empty());
    }
}
