//! [`PolicyHost`]: an HTTPS server on loopback that serves one canned response to every
//! request, as an MTA-STS policy host (`mta-sts.<domain>`) does, and keeps the requests (a
//! TLS-RPT `https:` report endpoint is tested with it too); and [`TestCa`], a throwaway
//! certificate authority whose PEM a test gives its client as a trust anchor.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use volley_bench::policy_host::{PolicyHost, Response, TestCa};
//! let ca = TestCa::new().expect("ca");
//! let policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 86400\r\n";
//! let host = PolicyHost::start("127.0.0.1:0".parse().unwrap(), &ca, &["mta-sts.a.test"], Response::policy(policy)).await?;
//! println!("policy on {}; trust {}", host.local_addr(), ca.pem());
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A certificate authority for tests.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// A new CA (`Volley test CA`).
    pub fn new() -> Result<TestCa, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Volley test CA");
        let key = rcgen::KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(TestCa { cert, key })
    }

    /// The CA certificate (PEM), to trust.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf certificate for `names` signed by the CA, and its key.
    pub fn issue(&self, names: &[&str]) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((cert.der().clone(), der))
    }
}

/// What the server answers.
#[derive(Clone, Debug)]
pub enum Response {
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// Nothing: the request is read and the connection held open (a stalled host).
    Silent,
}

impl Response {
    /// `200 OK`, `Content-Type: text/plain`, `policy` as the body.
    pub fn policy(policy: &str) -> Response {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            policy.len()
        );
        Response::Raw([head.as_bytes(), policy.as_bytes()].concat())
    }

    /// `status` with an empty body.
    pub fn status(status: u16) -> Response {
        Response::Raw(
            format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
        )
    }
}

/// Most octets of a request body kept.
const MAX_BODY: usize = 1 << 20;

/// The `Content-Length` of a request head (0 without one).
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A running policy host; stops when dropped.
pub struct PolicyHost {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    response: Arc<Mutex<Response>>,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyHost {
    /// Listens on `listen` (loopback only) with a certificate for `names` issued by `ca`.
    pub async fn start(listen: SocketAddr, ca: &TestCa, names: &[&str], response: Response) -> io::Result<PolicyHost> {
        if !listen.ip().is_loopback() {
            return Err(io::Error::other(format!("{listen} is not a loopback address")));
        }
        let (cert, key) = ca.issue(names).map_err(io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .map_err(io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let response = Arc::new(Mutex::new(response));
        let task = tokio::spawn({
            let (requests, received, response) = (requests.clone(), received.clone(), response.clone());
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let response = response.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let (acceptor, requests, received) = (acceptor.clone(), requests.clone(), received.clone());
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head_end = request
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(request.len(), |i| i + 4);
                        let want = head_end + content_length(&request[..head_end]).min(MAX_BODY);
                        while request.len() < want {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        received.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                        requests.fetch_add(1, Ordering::Relaxed);
                        match response {
                            Response::Raw(bytes) => {
                                let _ = tls.write_all(&bytes).await;
                                let _ = tls.shutdown().await;
                            }
                            Response::Silent => std::future::pending::<()>().await,
                        }
                    });
                }
            }
        });
        Ok(PolicyHost {
            addr,
            requests,
            received,
            response,
            task,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far: its head and (up to 1 MiB of) its `Content-Length` body.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers `response` to the connections accepted from now on.
    pub fn answer(&self, response: Response) {
        *self.response.lock().unwrap_or_else(|e| e.into_inner()) = response;
    }

    /// Requests answered (or held) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for PolicyHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}
