//! `mailto:` delivery of a TLS report (RFC 8460 §5.3): a `multipart/report;
//! report-type="tlsrpt"` message with a short text part and the gzip-compressed report as an
//! `application/tlsrpt+gzip` attachment, sent over SMTP (the engine's session) to the MX of
//! the address's domain from the first usable source IP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use volley_engine::dkim::DkimSigners;
use volley_engine::mx::{MxAnswer, MxResolver};
use volley_engine::smtp::session::{SessionParams, SmtpSession};
use volley_engine::smtp::transaction::Envelope;
use volley_engine::{Disposition, MxHost, SourceIp};

use super::outbox::MEDIA_TYPE;
use super::Report;

/// How reports are mailed.
#[derive(Debug)]
pub struct MailRoute {
    /// Finds the MX of the `rua` address's domain (`[dns]`).
    pub resolver: MxResolver,
    /// The port MX hosts listen on (25 outside tests).
    pub mx_port: u16,
    /// The address connected from, and its EHLO name.
    pub source: SourceIp,
    /// Timeouts and TLS of the session.
    pub params: SessionParams,
    /// `From` and the envelope sender (`[mta_sts] report_from`).
    pub from: String,
    /// The `[[dkim]]` keys: a report is signed with those of `from`'s domain (RFC 8460 §3
    /// expects mailed reports to carry the reporting domain's DKIM signature).
    pub signers: Option<Arc<DkimSigners>>,
}

/// The default `From` of mailed reports: `tlsrpt-noreply@` the domain of `ehlo_name` (the
/// name without its first label, when what is left still has a dot).
pub fn default_from(ehlo_name: &str) -> String {
    let domain = match ehlo_name.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest,
        _ => ehlo_name,
    };
    format!("tlsrpt-noreply@{domain}")
}

/// The domain part of an address.
fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Seconds since the epoch of an RFC 3339 time of the report (0 when it does not parse).
fn unix_of(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// The attachment's name (§5.3): `<submitter>!<policy-domain>!<begin>!<end>.json.gz`, the
/// times in seconds since the epoch.
pub fn attachment_name(submitter: &str, domain: &str, report: &Report) -> String {
    format!(
        "{submitter}!{domain}!{}!{}.json.gz",
        unix_of(&report.date_range.start_datetime),
        unix_of(&report.date_range.end_datetime)
    )
}

/// The Subject (§5.3).
pub fn subject(submitter: &str, domain: &str, report: &Report) -> String {
    format!(
        "Report Domain: {domain} Submitter: {submitter} Report-ID: <{}>",
        report.report_id
    )
}

/// The message for `to`, from `from`.
pub fn message(from: &str, to: &str, domain: &str, report: &Report, gz: &[u8]) -> std::io::Result<Vec<u8>> {
    let submitter = domain_of(from);
    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {submitter} for {domain}, covering {} to {}.\r\n",
        report.date_range.start_datetime, report.date_range.end_datetime
    );
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new(MEDIA_TYPE, gz.to_vec()).attachment(attachment_name(submitter, domain, report)),
        ],
    );
    MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(subject(submitter, domain, report))
        .header("TLS-Report-Domain", Raw::new(domain.to_string()))
        .header("TLS-Report-Submitter", Raw::new(submitter.to_string()))
        .body(body)
        .write_to_vec()
}

/// Mails the report of `domain` to `to` (a `mailto:` URI's address part): through the MX
/// hosts of its domain in order until one accepts or refuses it; why it was not delivered.
pub async fn send(route: &MailRoute, to: &str, domain: &str, report: &Report, gz: &[u8]) -> Result<(), String> {
    // `mailto:` may carry `?headers`; the address is what comes before.
    let to = to.split('?').next().unwrap_or_default();
    let rcpt_domain = domain_of(to);
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !b"<>,;\"\\".contains(&b));
    if rcpt_domain.is_empty() || !valid(to) {
        return Err(format!("not an address: {to:?}"));
    }
    let mut message =
        message(&route.from, to, domain, report, gz).map_err(|e| format!("cannot write the message: {e}"))?;
    if let Some(signers) = &route.signers {
        message = signers
            .sign_message(domain_of(&route.from), message)
            .map_err(|e| format!("cannot DKIM-sign the message: {e}"))?;
    }
    let payload = volley_engine::smtp::dot::prepare(&message).map_err(|e| e.to_string())?;
    let answer = route.resolver.resolve(rcpt_domain).await.map_err(|e| e.to_string())?;
    let MxAnswer::Hosts { hosts, .. } = answer.as_ref() else {
        return Err(format!("{rcpt_domain} accepts no mail (null MX)"));
    };
    let envelope = Envelope {
        mail_from: route.from.clone(),
        recipients: vec![to.to_string()],
    };
    let mut why = format!("{rcpt_domain} has no MX host");
    for record in hosts {
        for ip in &record.addrs {
            let mx = MxHost {
                name: record.host.clone(),
                addr: SocketAddr::new(*ip, route.mx_port),
            };
            let session = match SmtpSession::connect(&route.source, &mx, &route.params, false).await {
                Ok(session) => session,
                Err(e) => {
                    why = format!("{}: {e}", mx.name);
                    continue;
                }
            };
            let mut session = session;
            let result = session.send_message(&envelope, &payload).await;
            if result.connection_error.is_none() {
                session.quit().await;
            }
            match result.statuses.into_iter().next() {
                Some(status) if status.disposition == Disposition::Delivered => return Ok(()),
                Some(status) if status.disposition == Disposition::Bounced => {
                    return Err(format!("{} refused it: {}", mx.name, status.text))
                }
                Some(status) => why = format!("{}: {}", mx.name, status.text),
                None => why = format!("{}: no status for the recipient", mx.name),
            }
        }
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::super::{DateRange, Report};
    use super::*;

    fn report() -> Report {
        Report {
            organization_name: "Org".into(),
            date_range: DateRange {
                start_datetime: "2026-12-03T00:00:00Z".into(),
                end_datetime: "2026-12-03T23:59:59Z".into(),
            },
            contact_info: "tls@org.test".into(),
            report_id: "2026-12-03_a.test@Org".into(),
            policies: Vec::new(),
        }
    }

    #[test]
    fn the_attachment_and_subject_are_named_as_rfc_8460_says() {
        assert_eq!(
            attachment_name("volley.test", "a.test", &report()),
            "volley.test!a.test!1796256000!1796342399.json.gz"
        );
        assert_eq!(
            subject("volley.test", "a.test", &report()),
            "Report Domain: a.test Submitter: volley.test Report-ID: <2026-12-03_a.test@Org>"
        );
    }

    #[test]
    fn the_default_sender_is_at_the_ehlo_names_domain() {
        assert_eq!(default_from("mta2.volley.test"), "tlsrpt-noreply@volley.test");
        assert_eq!(default_from("volley.test"), "tlsrpt-noreply@volley.test");
    }

    #[test]
    fn the_message_is_a_tlsrpt_multipart_report() {
        let bytes = message("tlsrpt@volley.test", "tls@a.test", "a.test", &report(), b"gz").expect("message");
        let text = String::from_utf8_lossy(&bytes);
        for needle in [
            "TLS-Report-Domain: a.test\r\n",
            "TLS-Report-Submitter: volley.test\r\n",
            "multipart/report; report-type=\"tlsrpt\"",
            "application/tlsrpt+gzip",
            "filename=\"volley.test!a.test!1796256000!1796342399.json.gz\"",
        ] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }
}
