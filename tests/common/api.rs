//! `volley serve` for the binary's tests: starting it, and its HTTP API over plain TCP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{volley, wait_listening, Killed};

/// `volley serve`'s HTTP API, spoken over plain TCP (one request per connection).
pub struct Api {
    /// Where it listens.
    pub addr: String,
    /// Its bearer token.
    pub token: String,
}

impl Api {
    /// The API at `addr` with bearer token `token`.
    pub fn new(addr: impl Into<String>, token: &str) -> Api {
        Api {
            addr: addr.into(),
            token: token.to_string(),
        }
    }

    /// `method path` with `token` and a JSON `body`; the status and the JSON answer.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let mut s = TcpStream::connect(&self.addr).expect("connect to the API");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send request");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read response");
        let (head, payload) = response.split_once("\r\n\r\n").expect("HTTP response");
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status");
        let json = serde_json::from_str(payload).unwrap_or(Value::String(payload.to_string()));
        (status, json)
    }

    /// `method path` with the API's token.
    pub fn ok(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.call(method, path, Some(&self.token), body)
    }

    /// `GET /campaigns/{id}` (200 expected).
    pub fn campaign(&self, id: &str) -> Value {
        let (status, view) = self.ok("GET", &format!("/campaigns/{id}"), None);
        assert_eq!(status, 200, "{view}");
        view
    }

    /// Polls campaign `id` until `done` holds for its view (60 s at most; `what` names it).
    pub fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.campaign(id);
            if done(&view) {
                return view;
            }
            assert!(Instant::now() < deadline, "{id}: timed out waiting for {what}: {view}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `volley serve --config config`, once its API listens on `listen`.
pub fn start_serve(config: &Path, listen: &str) -> Killed {
    let server = Killed(
        volley()
            .arg("serve")
            .arg("--config")
            .arg(config)
            .spawn()
            .expect("volley serve"),
    );
    wait_listening(listen, "volley serve");
    server
}
