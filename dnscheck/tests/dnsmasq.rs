//! The same records and verdicts as `loopback.rs`, served by dnsmasq (Debian `dnsmasq-base`)
//! started as a private process on a free loopback port: a second, independent DNS server
//! implementation, so the checks do not depend on quirks of our own. Skipped, saying so, when
//! the binary is missing (`scripts/test.sh` installs it).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use volley_bench::dns::ZoneRecord;
use volley_dnscheck::run;

/// A private dnsmasq, killed when dropped.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// dnsmasq's options serving `records`: TXT (strings of at most 255 bytes, comma-separated),
/// A (`--address`, which adds no PTR), MX and PTR; names under `test` and `in-addr.arpa` that
/// have no record are NXDOMAIN (`--local`), nothing is forwarded.
fn record_options(records: &[(String, ZoneRecord)]) -> Vec<String> {
    records
        .iter()
        .map(|(name, record)| match record {
            ZoneRecord::Txt(text) => {
                let strings: Vec<&str> = text
                    .as_bytes()
                    .chunks(255)
                    .map(|c| std::str::from_utf8(c).expect("ASCII records"))
                    .collect();
                assert!(!text.contains(','), "dnsmasq splits TXT strings at commas: {text}");
                format!("--txt-record={name},{}", strings.join(","))
            }
            ZoneRecord::A(ip) => format!("--address=/{name}/{ip}"),
            ZoneRecord::Aaaa(ip) => format!("--address=/{name}/{ip}"),
            ZoneRecord::Mx(preference, host) => format!("--mx-host={name},{host},{preference}"),
            ZoneRecord::Ptr(host) => format!("--ptr-record={name},{host}"),
        })
        .collect()
}

fn start(binary: &PathBuf, records: &[(String, ZoneRecord)]) -> Dnsmasq {
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary)
        .args([
            "--no-daemon".to_owned(),
            format!("--port={port}"),
            "--listen-address=127.0.0.1".to_owned(),
            "--bind-interfaces".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--pid-file".to_owned(),
            "--local=/test/".to_owned(),
            "--local=/in-addr.arpa/".to_owned(),
        ])
        .args(record_options(records))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dnsmasq");
    let server = Dnsmasq {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_until_answering(server.addr);
    server
}

/// Sends a TXT query for `good.test` until dnsmasq answers (it binds within milliseconds).
fn wait_until_answering(addr: SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // ID 0x1234, RD, one question: good.test TXT IN.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["good", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 16, 0, 1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 512];
    while Instant::now() < deadline {
        socket.send_to(&query, addr).unwrap();
        if matches!(socket.recv_from(&mut buffer), Ok((n, _)) if n > 12 && buffer[..2] == [0x12, 0x34]) {
            return;
        }
    }
    panic!("dnsmasq on {addr} did not answer within 10 s");
}

#[tokio::test]
async fn dnsmasq_serving_good_and_broken_records_gives_the_same_verdicts() {
    let Some(binary) = binary() else {
        eprintln!("SKIPPED: dnsmasq not installed (apt-get install dnsmasq-base; scripts/test.sh does)");
        return;
    };
    let world = common::world();
    let dnsmasq = start(&binary, &world.records);
    let checks = run(&world.plan, &common::dns_config(dnsmasq.addr)).await.unwrap();
    common::assert_world(&checks);
}
