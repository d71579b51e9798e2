//! Interop with a peer nobody here wrote: Postfix's `smtp-sink` (Debian package `postfix`), a
//! PIPELINING SMTP server. The engine delivers 500 messages from two source IPs through a
//! [`DeliveryPool`]; the test then checks what *smtp-sink* says it received — its `-d` dump files
//! (one per transaction, with the client address, EHLO, MAIL and RCPT arguments and the
//! un-stuffed message) and its `-c` message counter — against what was sent.
//!
//! Every socket is on 127.0.0.1; smtp-sink listens on a port the test picked free.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use volley_engine::smtp::dot::prepare;
use volley_engine::{
    Delivery, DeliveryPool, DeliveryReport, Disposition, Envelope, MxHost, RouteKey, SmtpConfig, SourceIp,
};

const MESSAGES: u64 = 500;
const SOURCES: [(&str, &str); 2] = [("127.0.0.2", "mta2.volley.test"), ("127.0.0.3", "mta3.volley.test")];
const MAIL_FROM: &str = "bounces@sender.test";
/// Upper bound on the whole exchange, so a stuck peer fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(15);

/// A running smtp-sink, killed (and its files removed, unless the test failed) on drop.
struct SmtpSink {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl SmtpSink {
    /// Starts smtp-sink on 127.0.0.1 at a free port, dumping every transaction under `dir/dump`
    /// and writing its counters to `dir/counters.txt`; returns once it accepts connections.
    fn start() -> SmtpSink {
        let program = find_program("smtp-sink").unwrap_or_else(|| {
            panic!(
                "smtp-sink (Debian package `postfix`) not found in PATH or /usr/sbin: \
                 run scripts/test.sh, which installs it"
            )
        });
        let dir = std::env::temp_dir().join(format!("volley-postfix-interop-{}", std::process::id()));
        let dump = dir.join("dump");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dump).expect("create the dump directory");
        let root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        if root {
            // smtp-sink refuses to run as root without -u; it then writes its dumps as `nobody`.
            for d in [&dir, &dump] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o777)).expect("chmod the dump directory");
            }
        }

        let addr = free_loopback_port();
        let stdout = File::create(dir.join("counters.txt")).expect("create counters.txt");
        let stderr = File::create(dir.join("stderr.txt")).expect("create stderr.txt");
        let mut cmd = Command::new(&program);
        if root {
            cmd.args(["-u", "nobody"]);
        }
        // -c: counters on stdout; -d: one dump file per transaction ("msg." + random hex).
        cmd.arg("-c")
            .arg("-d")
            .arg(dump.join("msg."))
            .arg(addr.to_string())
            .arg("256")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let mut sink = SmtpSink { child, addr, dir };
        sink.wait_until_accepting();
        sink
    }

    fn wait_until_accepting(&mut self) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("smtp-sink exited at start-up ({status}): {}", self.stderr());
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < until,
                "smtp-sink did not accept on {} within 5 s: {}",
                self.addr,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
    }

    /// The last `mesg=` value smtp-sink's `-c` counter printed (it rewrites one line with CR).
    fn message_counter(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dir.join("counters.txt")).ok()?;
        let last = text.split(['\r', '\n']).rev().find(|s| s.contains("mesg="))?;
        last.split_whitespace()
            .find_map(|f| f.strip_prefix("mesg="))?
            .parse()
            .ok()
    }

    /// Parses every dump file; waits (briefly) until `expected` transactions are on disk.
    fn transactions(&self, expected: usize) -> Vec<Dumped> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let dumped: Vec<Dumped> = fs::read_dir(self.dir.join("dump"))
                .expect("read the dump directory")
                .map(|e| Dumped::parse(&e.expect("dump entry").path()))
                .collect();
            let complete = dumped.iter().filter(|d| d.tag.is_some()).count();
            if dumped.len() > expected || complete == expected || Instant::now() > until {
                return dumped;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("smtp-sink's files are kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// What smtp-sink recorded for one transaction.
#[derive(Debug, Default)]
struct Dumped {
    file: PathBuf,
    client_addr: String,
    helo: String,
    mail_args: String,
    rcpts: Vec<String>,
    /// Our `X-Interop-Tag` header, found in the message smtp-sink stored.
    tag: Option<u64>,
    body: String,
}

impl Dumped {
    /// Reads one dump file: smtp-sink's `X-*` records up to its `Received:` line, then the
    /// message as received (un-stuffed, LF line ends).
    fn parse(path: &Path) -> Dumped {
        let text = fs::read_to_string(path).unwrap_or_default();
        let mut d = Dumped {
            file: path.to_path_buf(),
            ..Dumped::default()
        };
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("X-Client-Addr: ") {
                d.client_addr = v.into();
            } else if let Some(v) = line.strip_prefix("X-Helo-Args: ") {
                d.helo = v.into();
            } else if let Some(v) = line.strip_prefix("X-Mail-Args: ") {
                d.mail_args = v.into();
            } else if let Some(v) = line.strip_prefix("X-Rcpt-Args: ") {
                d.rcpts.push(v.into());
            } else if let Some(v) = line.strip_prefix("X-Interop-Tag: ") {
                d.tag = v.trim().parse().ok();
            }
        }
        d.body = text;
        d
    }
}

/// What the test sends as message `tag`.
struct Sent {
    source: usize,
    recipients: Vec<String>,
    message: Vec<u8>,
}

fn sent(tag: u64) -> Sent {
    let recipients = (0..1 + tag % 3)
        .map(|k| format!("rcpt{tag}-{k}@dest{}.test", tag % 7))
        .collect();
    // Lines starting with dots check the dot-stuffing round trip (RFC 5321 §4.5.2).
    let message = format!(
        "From: Interop <{MAIL_FROM}>\r\nTo: undisclosed-recipients:;\r\nSubject: interop {tag}\r\n\
         Message-ID: <{tag}.interop@sender.test>\r\nX-Interop-Tag: {tag}\r\n\r\n\
         Hello {tag}.\r\n.leading dot {tag}\r\n..two dots {tag}\r\n.\r\nend {tag}\r\n"
    );
    Sent {
        source: (tag % 2) as usize,
        recipients,
        message: message.into_bytes(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_sink_receives_exactly_what_the_pool_reports_delivered() {
    let sink = SmtpSink::start();
    assert!(sink.addr.ip().is_loopback());

    let config = SmtpConfig::default();
    let params = config.session_params().expect("default SMTP config is valid");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DeliveryReport<u64>>();
    let pool = DeliveryPool::new(config, params, tx);
    let routes: Vec<RouteKey> = SOURCES
        .iter()
        .map(|(ip, name)| RouteKey {
            source: SourceIp {
                ip: ip.parse::<IpAddr>().expect("source IP"),
                ehlo_name: (*name).into(),
            },
            mx: MxHost {
                name: "127.0.0.1".into(),
                addr: sink.addr,
            },
        })
        .collect();

    let mut reports = BTreeMap::new();
    let exchange = async {
        for tag in 0..MESSAGES {
            let s = sent(tag);
            let delivery = Delivery {
                tag,
                route: routes[s.source].clone(),
                envelope: Envelope {
                    mail_from: MAIL_FROM.into(),
                    recipients: s.recipients,
                },
                payload: prepare(&s.message).expect("test message is valid"),
            };
            pool.submit(delivery).await;
        }
        pool.close().await;
        while reports.len() < MESSAGES as usize {
            let report = rx.recv().await.expect("one report per delivery");
            assert!(
                reports.insert(report.tag, report).is_none(),
                "two reports for one delivery"
            );
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("500 deliveries to smtp-sink did not finish within {DEADLINE:?}"));

    // The engine's view: every recipient of every message delivered, in clear (no STARTTLS offered).
    for (tag, report) in &reports {
        assert_eq!(
            report.statuses.len(),
            sent(*tag).recipients.len(),
            "message {tag}: one status per recipient"
        );
        for status in &report.statuses {
            assert_eq!(status.disposition, Disposition::Delivered, "message {tag}: {status:?}");
            assert_eq!(status.code, Some(250), "message {tag}: {status:?}");
        }
        assert!(!report.tls, "smtp-sink does not offer STARTTLS");
    }
    let stats = pool.stats();
    assert!(
        stats.connections_opened >= 2,
        "one connection per source IP at least: {stats:?}"
    );
    assert!(
        stats.connections_opened < MESSAGES,
        "connections are reused, not opened per message: {stats:?}"
    );

    // smtp-sink's view: exactly those transactions, envelopes, sources and messages.
    let dumped = sink.transactions(MESSAGES as usize);
    assert_eq!(
        dumped.len(),
        MESSAGES as usize,
        "smtp-sink recorded {} transactions",
        dumped.len()
    );
    let mut seen = BTreeMap::new();
    for d in &dumped {
        let tag = d
            .tag
            .unwrap_or_else(|| panic!("{}: no X-Interop-Tag in what smtp-sink stored", d.file.display()));
        assert!(
            seen.insert(tag, d).is_none(),
            "message {tag} received twice by smtp-sink"
        );
    }
    for tag in 0..MESSAGES {
        let d = seen
            .get(&tag)
            .unwrap_or_else(|| panic!("smtp-sink never received message {tag}"));
        let s = sent(tag);
        let (ip, ehlo) = SOURCES[s.source];
        assert_eq!(d.client_addr, ip, "message {tag}: client address seen by smtp-sink");
        assert_eq!(d.helo, ehlo, "message {tag}: EHLO argument");
        let mut mail = d.mail_args.split_whitespace();
        assert_eq!(
            mail.next(),
            Some(format!("<{MAIL_FROM}>").as_str()),
            "message {tag}: MAIL FROM"
        );
        for param in mail {
            if let Some(size) = param.strip_prefix("SIZE=") {
                let payload = prepare(&s.message).expect("test message is valid");
                assert_eq!(
                    size,
                    payload.message_size().to_string(),
                    "message {tag}: SIZE= (RFC 1870)"
                );
            }
        }
        let rcpts: Vec<&str> = d.rcpts.iter().filter_map(|r| r.split_whitespace().next()).collect();
        let expected: Vec<String> = s.recipients.iter().map(|r| format!("<{r}>")).collect();
        assert_eq!(rcpts, expected, "message {tag}: RCPT TO, in order");
        for line in [
            format!("\n.leading dot {tag}\n"),
            format!("\n..two dots {tag}\n"),
            format!("\n.\nend {tag}\n"),
        ] {
            assert!(
                d.body.contains(&line),
                "message {tag}: {line:?} not un-stuffed as sent:\n{}",
                d.body
            );
        }
    }
    let recipients: usize = dumped.iter().map(|d| d.rcpts.len()).sum();
    let expected: usize = (0..MESSAGES).map(|t| sent(t).recipients.len()).sum();
    assert_eq!(recipients, expected, "RCPT records at smtp-sink");
    assert_eq!(
        sink.message_counter(),
        Some(MESSAGES),
        "smtp-sink's own -c message counter"
    );
}

/// Looks for an executable in PATH, then in the sbin directories Debian installs Postfix into
/// (often missing from a non-root PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// A loopback address with a port that was free a moment ago (bound to port 0, then released).
fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}
