//! The start-up round trip: sign a small message with a freshly loaded key and verify it with
//! mail-auth's verifier against the key's own TXT record, served from a one-entry cache (no DNS).
//! A key that cannot produce a verifiable signature refuses to start rather than sending mail
//! that every receiver will fail.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};

use super::record::DkimPublicKey;

/// A TXT cache holding one record: the key under test.
struct OneRecord {
    name: Box<str>,
    value: Txt,
}

impl ResolverCache<Box<str>, Txt> for OneRecord {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        (Borrow::<Q>::borrow(&self.name) == name).then(|| self.value.clone())
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: std::time::Instant) {}
}

/// A verifier with no name servers: the self-check never leaves the process.
pub(crate) fn offline_authenticator() -> Result<MessageAuthenticator, String> {
    MessageAuthenticator::new(
        ResolverConfig::from_parts(None, vec![], vec![]),
        ResolverOpts::default(),
    )
    .map_err(|e| format!("cannot build the verifier: {e}"))
}

/// A small message From `domain`, for the round trip.
pub(crate) fn test_message(domain: &str) -> Vec<u8> {
    format!(
        "From: Volley self-check <selfcheck@{domain}>\r\n\
         To: <postmaster@{domain}>\r\n\
         Subject: DKIM key self-check\r\n\
         Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
         Message-ID: <selfcheck@{domain}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Signed at start-up and verified against the key's own record.\r\n"
    )
    .into_bytes()
}

/// Verifies `signed` (signature headers + message) against `public`'s record; every DKIM
/// signature in it must pass.
pub(crate) fn verify_offline(
    authenticator: &MessageAuthenticator,
    public: &DkimPublicKey,
    signed: &[u8],
) -> Result<(), String> {
    let message = AuthenticatedMessage::parse(signed).ok_or("the signed test message does not parse")?;
    let record = DomainKey::parse(public.txt_record().as_bytes())
        .map_err(|e| format!("the key's own TXT record does not parse: {e}"))?;
    let cache = OneRecord {
        name: format!("{}.", public.dns_name()).into_boxed_str(),
        value: Txt::from(record),
    };
    let verify = authenticator.verify_dkim(Parameters::new(&message).with_txt_cache(&cache));
    // The record is in the cache, so verification completes without waiting on anything.
    let outputs = match pin!(verify).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(outputs) => outputs,
        Poll::Pending => return Err("verification wanted DNS although the record was cached".into()),
    };
    if outputs.is_empty() {
        return Err("the verifier found no DKIM-Signature".into());
    }
    match outputs.iter().find(|o| o.result() != &DkimResult::Pass) {
        Some(failed) => Err(format!("verification result {:?}", failed.result())),
        None => Ok(()),
    }
}
