//! Helpers shared by the `volley` binary's tests: running it, reading what it printed, writing
//! fixture files, and a `volley sink` child process on a free loopback port.
#![allow(dead_code)] // each test file uses its own subset

pub mod api;
pub mod cluster;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The `volley` binary under test.
pub fn volley() -> Command {
    Command::new(env!("CARGO_BIN_EXE_volley"))
}

/// Its stdout followed by its stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Writes `body` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    p
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process, killed on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `volley sink` child with `extra` flags, once it accepts connections; and its address.
pub fn start_sink(extra: &[&str]) -> (Killed, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = volley()
        .args(["sink", "--listen", &addr])
        .args(extra)
        .spawn()
        .expect("spawn sink");
    let sink = Killed(child);
    wait_listening(&addr, "sink");
    (sink, addr)
}

/// Waits (up to 20 s) until something accepts connections on `addr`; `what` names it.
pub fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `dir/r.csv` (`n` rows `user{i}@d{i % 40}.kill.test`) and `dir/c.toml`, a campaign
/// with id `id` over it.
pub fn write_news_campaign(dir: &Path, id: &str, n: usize) {
    let mut csv = String::from("email,name\n");
    for i in 0..n {
        csv.push_str(&format!("user{i}@d{}.kill.test,Reader {i}\n", i % 40));
    }
    std::fs::write(dir.join("r.csv"), csv).expect("csv");
    std::fs::write(
        dir.join("c.toml"),
        format!(
            "id = \"{id}\"\nfrom = \"News <news@sender.test>\"\nsubject = \"Hi {{{{name}}}}\"\n\
             text = \"Hello {{{{name}}}}\"\nrecipients = \"r.csv\"\n"
        ),
    )
    .expect("campaign");
}

/// `volley user add NAME --from-domain DOMAIN --password-stdin --config CONFIG` with `password`.
pub fn add_user(config: &Path, name: &str, domain: &str, password: &str) {
    use std::io::Write;
    let mut add = volley()
        .args([
            "user",
            "add",
            name,
            "--from-domain",
            domain,
            "--password-stdin",
            "--config",
        ])
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("volley user add");
    let mut stdin = add.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("password");
    drop(stdin);
    assert!(add.wait().expect("user add").success(), "volley user add {name}");
}
