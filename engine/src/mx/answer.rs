//! [`DnsAnswer`]: how one hickory query ended, negative answers (NODATA, NXDOMAIN) told apart
//! from failures (SERVFAIL, REFUSED, timeouts). Shared by MX resolution and by the sender's DNS
//! checks (`volley check-dns`), which must not mistake "could not ask" for "not published".

use std::time::Instant;

use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::ResolveError;

/// How a query ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsAnswer<T> {
    /// Records of the type asked for, and until when they may be cached.
    Records(T, Instant),
    /// NOERROR with no records of the type (NODATA).
    NoData,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// SERVFAIL, REFUSED, a timeout or an I/O error: nothing is known.
    Failed(String),
}

/// Classifies a hickory lookup result; `valid_until` reads the expiry of a positive answer.
pub fn classify<T>(result: Result<T, ResolveError>, valid_until: impl FnOnce(&T) -> Instant) -> DnsAnswer<T> {
    match result {
        Ok(found) => {
            let until = valid_until(&found);
            DnsAnswer::Records(found, until)
        }
        Err(e) => match e.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NoError,
                ..
            }) => DnsAnswer::NoData,
            Some(ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain,
                ..
            }) => DnsAnswer::NxDomain,
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => DnsAnswer::Failed(response_code.to_string()),
            Some(_) => DnsAnswer::Failed(e.proto().map_or_else(|| e.to_string(), ToString::to_string)),
            None => DnsAnswer::Failed(e.to_string()),
        },
    }
}
