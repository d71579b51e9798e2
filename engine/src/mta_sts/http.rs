//! The HTTP exchanges MTA-STS and TLS-RPT need: `GET` of a policy and `POST` of a report over
//! HTTPS (HTTP/1.1, one request per connection). The response is read within a caller's deadline and size cap; `Content-Length`,
//! chunked and read-to-close bodies are accepted. No redirect is followed (RFC 8461 §3.3).
//! Sans-IO parsing ([`parse_response`]) so that it can be tested and fuzzed on bytes.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most octets of a status line and headers.
const MAX_HEAD: usize = 16 * 1024;

/// Why a response was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Connecting, the TLS handshake or reading failed.
    #[error("{0}")]
    Io(String),
    /// The server's certificate is not valid for the policy host (RFC 8461 §3.3).
    #[error("certificate: {0}")]
    Certificate(String),
    /// The response is not HTTP/1.x.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// A status other than 200 (a redirect included: RFC 8461 §3.3 forbids following it).
    #[error("HTTP status {0}")]
    Status(u16),
    /// `Content-Type` is not `text/plain` (RFC 8461 §3.2).
    #[error("Content-Type {0:?} is not text/plain")]
    ContentType(String),
    /// The body is longer than the cap.
    #[error("policy larger than {0} octets")]
    TooLarge(usize),
    /// The body is not UTF-8.
    #[error("policy is not UTF-8")]
    NotUtf8,
}

/// A complete response: its body, once the head checked out.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not all of it yet.
    Incomplete,
    /// The body.
    Body(Vec<u8>),
}

/// GETs `https://<host>/<path>` from `addr` over `tls`, the whole exchange within the caller's
/// timeout (the caller wraps this future), the body at most `max_body` octets.
pub async fn get(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    host: &str,
    path: &str,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: volley\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    );
    exchange(tls, addr, host, request.as_bytes(), |buf, closed| {
        Ok(match parse_response(buf, max_body, closed)? {
            Parsed::Body(body) => Some(body),
            Parsed::Incomplete => None,
        })
    })
    .await
}

/// POSTs `body` as `content_type` to `https://<host>/<path>` at `addr` over `tls` (within the
/// caller's timeout); a 2xx status is success, any other an [`HttpError::Status`]. Only the
/// response's status line and headers are read (at most 16 KiB).
pub async fn post(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    host: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<u16, HttpError> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: volley\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let request = [head.as_bytes(), body].concat();
    let status = exchange(tls, addr, host, &request, |buf, _| parse_status(buf)).await?;
    match status {
        200..=299 => Ok(status),
        other => Err(HttpError::Status(other)),
    }
}

/// Connects to `addr`, verifies `host`'s certificate, writes `request`, then reads until
/// `parse` (given the bytes so far and whether the server closed) has its answer.
async fn exchange<T>(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    host: &str,
    request: &[u8],
    mut parse: impl FnMut(&[u8], bool) -> Result<Option<T>, HttpError>,
) -> Result<T, HttpError> {
    let io = |e: std::io::Error| HttpError::Io(e.to_string());
    let name = ServerName::try_from(host.to_string()).map_err(|e| HttpError::Io(format!("{host}: {e}")))?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let mut stream = tls.connect(name, tcp).await.map_err(|e| classify_tls(&e))?;
    stream.write_all(request).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let mut chunk = [0u8; 8192];
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A close without close_notify after a complete body is common; judged below.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf, n == 0)? {
            Some(answer) => return Ok(answer),
            None if n == 0 => return Err(HttpError::Malformed("connection closed mid-response".into())),
            None => {}
        }
    }
}

/// The status of the response in `buf` once its head is complete (the body is not read).
pub fn parse_status(buf: &[u8]) -> Result<Option<u16>, HttpError> {
    let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::Malformed(format!("headers longer than {MAX_HEAD} octets")));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| HttpError::Malformed("headers not UTF-8".into()))?;
    status_of(head.split("\r\n").next().unwrap_or_default()).map(Some)
}

/// The status code of an HTTP/1.x status line.
fn status_of(status_line: &str) -> Result<u16, HttpError> {
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line {status_line:?}")));
    }
    parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))
}

/// The TLS error of a failed handshake, told apart: a certificate problem or anything else.
fn classify_tls(e: &std::io::Error) -> HttpError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => HttpError::Certificate(format!("{c:?}")),
        _ => HttpError::Io(format!("TLS: {e}")),
    }
}

/// Parses the response in `buf` (`closed`: the server has closed the connection, so a body
/// without a length ends here). Checks status 200 and `Content-Type: text/plain`.
pub fn parse_response(buf: &[u8], max_body: usize, closed: bool) -> Result<Parsed, HttpError> {
    let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err(HttpError::Malformed(format!("headers longer than {MAX_HEAD} octets")));
        }
        return Ok(Parsed::Incomplete);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| HttpError::Malformed("headers not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status = status_of(lines.next().unwrap_or_default())?;
    if status != 200 {
        return Err(HttpError::Status(status));
    }
    let (mut length, mut chunked, mut content_type) = (None, false, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Malformed(format!("header line {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| HttpError::Malformed(format!("Content-Length {value:?}")))?,
                )
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().split(',').any(|t| t.trim() == "chunked"),
            "content-type" => content_type = Some(value.to_string()),
            _ => {}
        }
    }
    let media = content_type.as_deref().unwrap_or_default();
    let media_type = media.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("text/plain") {
        return Err(HttpError::ContentType(media.to_string()));
    }
    let body = &buf[head_end + 4..];
    if chunked {
        return dechunk(body, max_body);
    }
    match length {
        Some(n) if n > max_body => Err(HttpError::TooLarge(max_body)),
        Some(n) if body.len() >= n => Ok(Parsed::Body(body[..n].to_vec())),
        Some(_) => Ok(Parsed::Incomplete),
        None if body.len() > max_body => Err(HttpError::TooLarge(max_body)),
        None if closed => Ok(Parsed::Body(body.to_vec())),
        None => Ok(Parsed::Incomplete),
    }
}

/// Decodes a chunked body (RFC 9112 §7.1); chunk extensions and trailers are skipped.
fn dechunk(mut rest: &[u8], max_body: usize) -> Result<Parsed, HttpError> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = memchr::memmem::find(rest, b"\r\n") else {
            return Ok(Parsed::Incomplete);
        };
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| HttpError::Malformed("chunk size".into()))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            // Trailers end with an empty line; the body is complete once it is here.
            return match memchr::memmem::find(rest, b"\r\n") {
                Some(_) => Ok(Parsed::Body(body)),
                None => Ok(Parsed::Incomplete),
            };
        }
        if body.len().saturating_add(size) > max_body {
            return Err(HttpError::TooLarge(max_body));
        }
        if rest.len() < size.saturating_add(2) {
            return Ok(Parsed::Incomplete);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A TLS connector that verifies servers against `roots` (no client certificate, no ALPN).
pub fn connector(roots: Arc<rustls::RootCertStore>) -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n";

    #[test]
    fn content_length_bodies_wait_for_every_octet() {
        let full = format!("{OK}Content-Length: 5\r\n\r\nhello");
        assert_eq!(
            parse_response(full.as_bytes(), 100, false),
            Ok(Parsed::Body(b"hello".to_vec()))
        );
        assert_eq!(
            parse_response(&full.as_bytes()[..full.len() - 1], 100, false),
            Ok(Parsed::Incomplete)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n", 100, false),
            Ok(Parsed::Incomplete)
        );
    }

    #[test]
    fn chunked_and_read_to_close_bodies_are_decoded() {
        let chunked = format!("{OK}Transfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n1\r\n!\r\n0\r\n\r\n");
        assert_eq!(
            parse_response(chunked.as_bytes(), 100, false),
            Ok(Parsed::Body(b"hello!".to_vec()))
        );
        let cut = &chunked.as_bytes()[..chunked.len() - 4];
        assert_eq!(parse_response(cut, 100, false), Ok(Parsed::Incomplete));
        let close = format!("{OK}\r\nbody");
        assert_eq!(parse_response(close.as_bytes(), 100, false), Ok(Parsed::Incomplete));
        assert_eq!(
            parse_response(close.as_bytes(), 100, true),
            Ok(Parsed::Body(b"body".to_vec()))
        );
    }

    #[test]
    fn redirects_wrong_types_and_oversized_bodies_are_refused() {
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere/\r\n\r\n";
        assert_eq!(parse_response(redirect, 100, false), Err(HttpError::Status(301)));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1\r\n\r\nx";
        assert!(matches!(
            parse_response(html, 100, false),
            Err(HttpError::ContentType(_))
        ));
        let big = format!("{OK}Content-Length: 101\r\n\r\n");
        assert_eq!(
            parse_response(big.as_bytes(), 100, false),
            Err(HttpError::TooLarge(100))
        );
        let big_chunk = format!("{OK}Transfer-Encoding: chunked\r\n\r\nffffffff\r\n");
        assert_eq!(
            parse_response(big_chunk.as_bytes(), 100, false),
            Err(HttpError::TooLarge(100))
        );
        let unbounded = format!("{OK}\r\n{}", "x".repeat(101));
        assert_eq!(
            parse_response(unbounded.as_bytes(), 100, false),
            Err(HttpError::TooLarge(100))
        );
        let endless_head = vec![b'a'; MAX_HEAD + 1];
        assert!(matches!(
            parse_response(&endless_head, 100, false),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(b"SMTP 220 hi\r\n\r\n", 100, false),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: x\r\n\r\n",
                100,
                false
            ),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn post_answers_are_judged_by_their_status_line_alone() {
        assert_eq!(parse_status(b"HTTP/1.1 201 Created\r\nX: y\r\n\r\n"), Ok(Some(201)));
        assert_eq!(parse_status(b"HTTP/1.1 500 Oops\r\n"), Ok(None));
        assert!(matches!(
            parse_status(b"SMTP 220\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
    }

    proptest::proptest! {
        /// Whatever a server sends, the parser neither panics nor hands back more than the cap.
        #[test]
        fn any_bytes_parse_without_panic_within_the_cap(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), closed: bool) {
            let mut response = OK.as_bytes().to_vec();
            response.extend_from_slice(&bytes);
            for input in [&bytes[..], &response[..]] {
                if let Ok(Parsed::Body(body)) = parse_response(input, 64, closed) {
                    proptest::prop_assert!(body.len() <= 64);
                }
            }
        }
    }
}
