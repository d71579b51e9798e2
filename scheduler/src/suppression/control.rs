//! The embedded store's control socket: how `volley suppress add|remove|check|import|export`
//! reaches the list while another volley process (a running `volley send`, `volley serve`)
//! holds the redb file.
//!
//! redb locks its file exclusively, so a second process cannot open it, not even to read.
//! Whoever opens the embedded store therefore also listens on `<state_dir>/suppression.sock`
//! (a Unix socket beside the database, as private as the state directory) and executes the
//! store's own operations for other processes: one JSON request per line, one JSON reply per
//! line (an export streams one line per entry, then the count). [`open_shared`](super::open_shared)
//! falls back to this socket when the file is locked.
//!
//! Why a socket into the holder rather than a journal file the holder replays:
//! - one copy of the data and one writer: an `add` is a redb write transaction in the holder,
//!   committed (durable) before the command prints success, and the running send's next
//!   suppression check ([`Checker`](super::Checker)) already sees it — no polling interval,
//!   no replay on the next open, no rotation or truncation to get right under a lock;
//! - `check` and `export` give the exact answer (a journal would leave them reading a stale
//!   snapshot of a file they cannot open);
//! - the holder's soft-bounce and merge rules apply unchanged, since the same code runs.
//!
//! The cost: the holder must be alive and serving. A holder that crashed leaves a socket file
//! that refuses connections, but then the lock is gone too and the next opener takes the file
//! (and replaces the socket). Requests are served one at a time on one thread, each connection
//! with a 30-second I/O timeout; a stuck client delays other clients, never the holder's own
//! work (its threads use the database directly, never the socket).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::late::LateSuppressions;
use super::{Entry, SoftRecord, SuppressionError, SuppressionStore, Update};

/// The socket's file name beside the database.
pub const CONTROL_SOCKET: &str = "suppression.sock";

/// I/O timeout of one connection, on both sides.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the holder's idle accept loop looks at its stop flag. Polling (rather than
/// waking a blocking accept by connecting to it) also stops a holder whose socket file was
/// deleted.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// The longest request line the holder reads (an import batch is far smaller).
const MAX_REQUEST: u64 = 64 << 20;

/// One operation of [`SuppressionStore`], as sent over the socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Check {
        scopes: Vec<String>,
        addresses: Vec<String>,
    },
    Apply {
        updates: Vec<Update>,
    },
    Soft {
        scope: String,
        address: String,
    },
    Export {
        scope: String,
    },
    Len {
        scope: String,
    },
}

/// One reply line: a value, an exported row (then more lines follow), or the holder's error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply<T> {
    Ok(T),
    Row(String, Entry),
    Error(String),
}

/// The holder's side: a thread answering on the socket until dropped.
pub(crate) struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path` (replacing a stale socket file: the caller holds the database lock,
    /// so no other process serves it) and answers with `store`; the suppressions and removals
    /// it applies are noted in `late`.
    pub fn start(
        path: &Path,
        store: Arc<dyn SuppressionStore>,
        late: Arc<LateSuppressions>,
    ) -> std::io::Result<ControlServer> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("suppression-control".into())
                .spawn(move || accept_loop(&listener, &*store, &late, &stop))?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, store: &dyn SuppressionStore, late: &LateSuppressions, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => {
                tracing::warn!("suppression control socket: accept failed: {e}");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        if let Err(e) = serve(conn, store, late) {
            tracing::warn!("suppression control socket: {e}");
        }
    }
}

/// Answers the requests of one connection until the client closes it.
fn serve(conn: UnixStream, store: &dyn SuppressionStore, late: &LateSuppressions) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = std::io::BufWriter::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if (&mut reader).take(MAX_REQUEST).read_line(&mut line)? == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST {
            send(
                &mut out,
                &Reply::<()>::Error(format!("request longer than {MAX_REQUEST} bytes")),
            )?;
            return out.flush();
        }
        match serde_json::from_str::<Request>(&line) {
            Ok(request) => answer(request, store, late, &mut out)?,
            Err(e) => send(&mut out, &Reply::<()>::Error(format!("bad request: {e}")))?,
        }
        out.flush()?;
    }
}

fn answer(
    request: Request,
    store: &dyn SuppressionStore,
    late: &LateSuppressions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    fn reply<T: Serialize>(out: &mut impl Write, result: Result<T, SuppressionError>) -> std::io::Result<()> {
        match result {
            Ok(value) => send(out, &Reply::Ok(value)),
            Err(e) => send(out, &Reply::<()>::Error(e.to_string())),
        }
    }
    match request {
        Request::Check { scopes, addresses } => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
            reply(out, store.check(&scopes, &addresses))
        }
        Request::Apply { updates } => {
            let result = store.apply(&updates);
            if result.is_ok() {
                late.record(&updates);
            }
            reply(out, result)
        }
        Request::Soft { scope, address } => reply(out, store.soft(&scope, &address)),
        Request::Len { scope } => reply(out, store.len(&scope)),
        Request::Export { scope } => {
            let mut failed = None;
            let n = store.export(&scope, &mut |address, entry| {
                if failed.is_none() {
                    failed = send(out, &Reply::<()>::Row(address.to_owned(), entry.clone())).err();
                }
            });
            match failed {
                Some(e) => Err(e),
                None => reply(out, n),
            }
        }
    }
}

fn send<T: Serialize>(out: &mut impl Write, reply: &Reply<T>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, reply).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// The client's side: a [`SuppressionStore`] whose every call is one request to the holder.
pub struct RemoteStore {
    socket: PathBuf,
    database: PathBuf,
}

impl RemoteStore {
    /// A store reaching the holder of `database` through `socket`; fails when nothing answers
    /// there (the caller then retries opening the database itself).
    pub(crate) fn connect(socket: &Path, database: &Path) -> Result<RemoteStore, SuppressionError> {
        let store = RemoteStore {
            socket: socket.to_path_buf(),
            database: database.to_path_buf(),
        };
        store.open_connection("connect")?;
        Ok(store)
    }

    fn io_error(&self, op: &'static str, source: std::io::Error) -> SuppressionError {
        SuppressionError::Io {
            path: self.socket.clone(),
            op,
            source,
        }
    }

    fn open_connection(&self, op: &'static str) -> Result<UnixStream, SuppressionError> {
        let conn = UnixStream::connect(&self.socket).map_err(|e| self.io_error(op, e))?;
        conn.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| self.io_error(op, e))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| self.io_error(op, e))?;
        Ok(conn)
    }

    /// Sends `request`; calls `row` for each exported row; returns the final value.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        request: &Request,
        row: &mut dyn FnMut(&str, &Entry),
    ) -> Result<T, SuppressionError> {
        let mut conn = self.open_connection(op)?;
        let mut line = serde_json::to_vec(request).map_err(|e| self.io_error(op, std::io::Error::other(e)))?;
        line.push(b'\n');
        conn.write_all(&line).map_err(|e| self.io_error(op, e))?;
        let mut reader = BufReader::new(conn);
        let mut text = String::new();
        loop {
            text.clear();
            if reader.read_line(&mut text).map_err(|e| self.io_error(op, e))? == 0 {
                let closed = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the holder closed the connection");
                return Err(self.io_error(op, closed));
            }
            let reply: Reply<T> = serde_json::from_str(&text).map_err(|e| {
                let why = format!("unreadable reply: {e}");
                self.io_error(op, std::io::Error::new(std::io::ErrorKind::InvalidData, why))
            })?;
            match reply {
                Reply::Ok(value) => return Ok(value),
                Reply::Row(address, entry) => row(&address, &entry),
                Reply::Error(message) => {
                    return Err(SuppressionError::Remote {
                        socket: self.socket.clone(),
                        op,
                        message,
                    })
                }
            }
        }
    }

    fn simple<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        request: &Request,
    ) -> Result<T, SuppressionError> {
        self.call(op, request, &mut |_, _| {})
    }
}

impl SuppressionStore for RemoteStore {
    fn check(&self, scopes: &[&str], addresses: &[&str]) -> Result<Vec<Option<(String, Entry)>>, SuppressionError> {
        let request = Request::Check {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
        };
        self.simple("check", &request)
    }

    fn apply(&self, updates: &[Update]) -> Result<(), SuppressionError> {
        self.simple(
            "apply",
            &Request::Apply {
                updates: updates.to_vec(),
            },
        )
    }

    fn soft(&self, scope: &str, address: &str) -> Result<Option<SoftRecord>, SuppressionError> {
        let request = Request::Soft {
            scope: scope.to_owned(),
            address: address.to_owned(),
        };
        self.simple("soft", &request)
    }

    fn export(&self, scope: &str, visit: &mut dyn FnMut(&str, &Entry)) -> Result<u64, SuppressionError> {
        let request = Request::Export {
            scope: scope.to_owned(),
        };
        self.call("export", &request, visit)
    }

    fn len(&self, scope: &str) -> Result<u64, SuppressionError> {
        self.simple(
            "len",
            &Request::Len {
                scope: scope.to_owned(),
            },
        )
    }

    fn describe(&self) -> String {
        format!(
            "{}, through the volley process holding it ({})",
            self.database.display(),
            self.socket.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suppression::{EmbeddedStore, SoftPolicy};

    #[test]
    fn a_bad_request_gets_an_error_line_and_the_connection_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = SoftPolicy {
            limit: 3,
            window: Duration::from_secs(86_400),
        };
        let store = EmbeddedStore::open(&dir.path().join("suppression.redb"), policy).expect("open");
        assert!(store.serves_others());
        let conn = UnixStream::connect(dir.path().join(CONTROL_SOCKET)).expect("connect");
        let mut reader = BufReader::new(conn.try_clone().expect("clone"));
        let mut conn = conn;
        let mut answer = |request: &str| {
            conn.write_all(request.as_bytes()).expect("write");
            let mut line = String::new();
            reader.read_line(&mut line).expect("read");
            serde_json::from_str::<serde_json::Value>(&line).expect("json reply")
        };
        let reply = answer("{\"op\":\"drop_everything\"}\n");
        assert!(
            reply["error"].as_str().is_some_and(|e| e.starts_with("bad request")),
            "{reply}"
        );
        let reply = answer("{\"op\":\"len\",\"scope\":\"global\"}\n");
        assert_eq!(reply["ok"], 0, "{reply}");
    }
}
