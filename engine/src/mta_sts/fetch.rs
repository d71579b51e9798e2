//! Policy discovery and fetch (RFC 8461 §3.1, §3.3): the `_mta-sts.<domain>` TXT record, then
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` with the certificate verified for that
//! name, within a timeout and a size cap, no redirects followed.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use super::http::{self, HttpError};
use super::policy::{parse_policy, parse_record, parse_tlsrpt_record, PolicyBody, PolicyError};
use crate::mx::{classify, DnsAnswer};

/// The path of the policy file (RFC 8461 §3.3).
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// Why no policy could be had for a domain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The TXT or address lookup failed (not "no record": nothing is known).
    #[error("DNS lookup of {name} failed: {reason}")]
    Dns {
        /// The name asked for.
        name: String,
        /// The resolver's message.
        reason: String,
    },
    /// `mta-sts.<domain>` has no address.
    #[error("{0} has no address")]
    NoAddress(String),
    /// The `_mta-sts` record is invalid.
    #[error("_mta-sts record: {0}")]
    Record(PolicyError),
    /// The HTTPS fetch failed.
    #[error("fetching https://{host}{POLICY_PATH}: {error}")]
    Http {
        /// `mta-sts.<domain>`.
        host: String,
        /// What went wrong.
        error: HttpError,
    },
    /// The fetch took longer than the timeout.
    #[error("fetching https://{host}{POLICY_PATH}: no complete answer within {after:?}")]
    Timeout {
        /// `mta-sts.<domain>`.
        host: String,
        /// The timeout.
        after: Duration,
    },
    /// The policy file is invalid.
    #[error("policy of {domain}: {error}")]
    Policy {
        /// The policy domain.
        domain: String,
        /// What is wrong.
        error: PolicyError,
    },
}

impl FetchError {
    /// The RFC 8460 §4.3.2.2 result type a report gives this failure.
    pub fn result_type(&self) -> &'static str {
        match self {
            FetchError::Http {
                error: HttpError::Certificate(_),
                ..
            } => "sts-webpki-invalid",
            FetchError::Record(_) | FetchError::Policy { .. } => "sts-policy-invalid",
            _ => "sts-policy-fetch-error",
        }
    }
}

/// Why a report could not be posted to an `https:` `rua` (RFC 8460 §5.4).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The URI is not `https://<host>[:<port>][/<path>]`.
    #[error("not an https URI with a host name: {0:?}")]
    Uri(String),
    /// The host's address could not be had.
    #[error("{0}")]
    Address(FetchError),
    /// Connecting, TLS or the answer failed (a status other than 2xx included).
    #[error("{0}")]
    Http(HttpError),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The host, port (`default_port` when none is given) and path of an `https:` URI.
pub fn split_https_uri(uri: &str, default_port: u16) -> Option<(String, u16, String)> {
    let rest = uri.strip_prefix("https://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (authority, default_port),
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let path_ok = path.bytes().all(|b| b.is_ascii_graphic());
    (host_ok && path_ok).then(|| (host.to_ascii_lowercase(), port, path))
}

/// What the `_mta-sts` TXT lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordLookup {
    /// One valid STSv1 record and its `id`.
    Id(String),
    /// No STSv1 record (none, or several: RFC 8461 §3.1 treats that as none).
    Absent,
}

/// Discovers and fetches policies.
#[derive(Clone)]
pub struct PolicyFetcher {
    resolver: TokioResolver,
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_size: usize,
    port: u16,
}

impl std::fmt::Debug for PolicyFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyFetcher")
            .field("timeout", &self.timeout)
            .field("max_size", &self.max_size)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PolicyFetcher {
    /// A fetcher asking `resolver`, verifying policy hosts with `tls`, giving up after
    /// `timeout` (address lookup, connection, handshake and response together), refusing
    /// bodies over `max_size`, connecting to `port` (443 outside tests).
    pub fn new(
        resolver: TokioResolver,
        tls: tokio_rustls::TlsConnector,
        timeout: Duration,
        max_size: usize,
        port: u16,
    ) -> PolicyFetcher {
        PolicyFetcher {
            resolver,
            tls,
            timeout,
            max_size,
            port,
        }
    }

    /// The `_mta-sts.<domain>` record (records not starting with `v=STSv1` are ignored).
    pub async fn record(&self, domain: &str) -> Result<RecordLookup, FetchError> {
        let records = self.txt(&format!("_mta-sts.{domain}."), "v=STSv1").await?;
        match records.as_slice() {
            [one] => parse_record(one).map(RecordLookup::Id).map_err(FetchError::Record),
            _ => Ok(RecordLookup::Absent),
        }
    }

    /// The report addresses (`rua`) of the `_smtp._tls.<domain>` record (RFC 8460 §3); empty
    /// when there is no valid record.
    pub async fn tls_rpt_rua(&self, domain: &str) -> Result<Vec<String>, FetchError> {
        let records = self.txt(&format!("_smtp._tls.{domain}."), "v=TLSRPTv1").await?;
        Ok(match records.as_slice() {
            [one] => parse_tlsrpt_record(one).unwrap_or_default(),
            _ => Vec::new(),
        })
    }

    /// The TXT records of `name` that start with `version` (each record's strings joined,
    /// RFC 8461 §3.1); none for NXDOMAIN or NODATA.
    async fn txt(&self, name: &str, version: &str) -> Result<Vec<String>, FetchError> {
        let answer = classify(self.resolver.txt_lookup(name).await, |l| l.valid_until());
        let txt = match answer {
            DnsAnswer::Records(l, _) => l,
            DnsAnswer::NoData | DnsAnswer::NxDomain => return Ok(Vec::new()),
            DnsAnswer::Failed(reason) => {
                return Err(FetchError::Dns {
                    name: name.to_string(),
                    reason,
                })
            }
        };
        Ok(txt
            .as_lookup()
            .record_iter()
            .filter_map(|r| match r.data() {
                RData::TXT(t) => Some(t.txt_data().iter().map(|s| String::from_utf8_lossy(s)).collect()),
                _ => None,
            })
            .filter(|r: &String| r.starts_with(version))
            .collect())
    }

    /// Fetches and parses the policy of `domain`: its body and the text as served.
    pub async fn fetch(&self, domain: &str) -> Result<(PolicyBody, String), FetchError> {
        let host = format!("mta-sts.{domain}");
        let fetch = async {
            let addr = self.address(&host).await?;
            http::get(&self.tls, addr, &host, POLICY_PATH, self.max_size)
                .await
                .map_err(|error| FetchError::Http {
                    host: host.clone(),
                    error,
                })
        };
        let body = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| FetchError::Timeout {
                host: host.clone(),
                after: self.timeout,
            })??;
        let text = String::from_utf8(body).map_err(|_| FetchError::Http {
            host: host.clone(),
            error: HttpError::NotUtf8,
        })?;
        let policy = parse_policy(&text).map_err(|error| FetchError::Policy {
            domain: domain.to_string(),
            error,
        })?;
        Ok((policy, text))
    }

    /// POSTs `body` (`content_type`) to the `https:` `uri`, the host's certificate verified
    /// like a policy host's, within the fetch timeout; the port is the URI's, else the
    /// policy port (443 outside tests).
    pub async fn post(&self, uri: &str, content_type: &str, body: &[u8]) -> Result<(), PostError> {
        let (host, port, path) = split_https_uri(uri, self.port).ok_or_else(|| PostError::Uri(uri.to_string()))?;
        let post = async {
            let addr = self.address(&host).await.map_err(PostError::Address)?;
            let addr = SocketAddr::new(addr.ip(), port);
            http::post(&self.tls, addr, &host, &path, content_type, body)
                .await
                .map_err(PostError::Http)
        };
        tokio::time::timeout(self.timeout, post)
            .await
            .map_err(|_| PostError::Timeout(self.timeout))??;
        Ok(())
    }

    async fn address(&self, host: &str) -> Result<SocketAddr, FetchError> {
        let fqdn = format!("{host}.");
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => ips
                .iter()
                .next()
                .map(|ip| SocketAddr::new(ip, self.port))
                .ok_or_else(|| FetchError::NoAddress(host.to_string())),
            Err(e) => match classify(Err::<(), _>(e), |_| std::time::Instant::now()) {
                DnsAnswer::Failed(reason) => Err(FetchError::Dns {
                    name: host.to_string(),
                    reason,
                }),
                _ => Err(FetchError::NoAddress(host.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_uris_split_into_host_port_and_path() {
        assert_eq!(
            split_https_uri("https://Reports.Example:8443/tlsrpt?x=1", 443),
            Some(("reports.example".into(), 8443, "/tlsrpt?x=1".into()))
        );
        assert_eq!(
            split_https_uri("https://reports.example", 443),
            Some(("reports.example".into(), 443, "/".into()))
        );
        for bad in [
            "http://a.example/",
            "https://",
            "https://a.example:x/",
            "https://u@a.example/",
            "https://a.example/a b",
        ] {
            assert_eq!(split_https_uri(bad, 443), None, "{bad}");
        }
    }
}
