//! The reports a receiving provider sends after it accepted a message: a feedback-loop
//! complaint (RFC 5965 ARF, built by mail-auth, as Yahoo's and Microsoft's loops send them)
//! and a late bounce (an RFC 3464 DSN, shaped like Postfix's). Both quote the accepted
//! message's headers as the receiving MTA stored them (with `Return-Path`, RFC 5321 §4.4).

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use mail_auth::report::{Feedback, FeedbackType};

use super::{FeedbackKind, Job};

/// `User-Agent` of the complaints (RFC 5965 §3.1).
const USER_AGENT: &str = "volley-sink-fbl/1.0";

/// The `Status` of a late bounce (RFC 3463: bad destination mailbox address).
pub(crate) const LATE_BOUNCE_STATUS: &str = "5.1.1";

/// One report, ready to send: its envelope sender and the message.
#[derive(Debug)]
pub(crate) struct Report {
    /// `MAIL FROM`: the feedback loop's address for a complaint, the null sender for a DSN
    /// (RFC 5321 §4.5.5).
    pub(crate) mail_from: String,
    /// The whole message, CRLF line ends.
    pub(crate) message: Vec<u8>,
}

/// The diagnostic of a late bounce for `recipient` (the `Diagnostic-Code` after `smtp; `),
/// worded as Postfix's virtual delivery agent does.
pub fn late_bounce_diagnostic(recipient: &str) -> String {
    format!("550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in virtual mailbox table")
}

/// Renders `job`'s report as the sink named `hostname` sends it.
pub(crate) fn render(job: &Job, hostname: &str) -> std::io::Result<Report> {
    match job.kind {
        FeedbackKind::Complaint => complaint(job, hostname),
        FeedbackKind::LateBounce => Ok(late_bounce(job, hostname)),
    }
}

/// The accepted message's headers as the final MTA stored them: `Return-Path` first.
fn stored_headers(job: &Job) -> String {
    format!(
        "Return-Path: <{}>\r\n{}",
        job.return_path,
        String::from_utf8_lossy(&job.headers)
    )
}

fn arrival_secs(job: &Job) -> i64 {
    job.arrival
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// RFC 5965 §2: `multipart/report; report-type=feedback-report`, a human part, the
/// `message/feedback-report` part, and the reported message's headers (`text/rfc822-headers`,
/// §2 (d)).
fn complaint(job: &Job, hostname: &str) -> std::io::Result<Report> {
    let fbl = format!("fbl@{hostname}");
    let headers = stored_headers(job);
    let report = Feedback::new(FeedbackType::Abuse)
        .with_version(1)
        .with_user_agent(USER_AGENT)
        .with_arrival_date(arrival_secs(job))
        .with_source_ip(job.client)
        .with_reporting_mta(hostname)
        .with_original_mail_from(format!("<{}>", job.return_path))
        .with_original_rcpt_to(format!("<{}>", job.recipient))
        .with_headers(headers.as_str())
        .to_rfc5322(
            fbl.as_str(),
            job.return_path.as_str(),
            "Complaint about message from your network",
        )?;
    Ok(Report {
        mail_from: fbl,
        message: report.into_bytes(),
    })
}

/// RFC 3464 §2: `multipart/report; report-type=delivery-status`, a human part, the
/// `message/delivery-status` part (per-message fields, then the recipient's), and the
/// returned headers (`text/rfc822-headers`, RFC 6522 §3).
fn late_bounce(job: &Job, hostname: &str) -> Report {
    let date = mail_parser::DateTime::from_timestamp(arrival_secs(job)).to_rfc822();
    let now = mail_parser::DateTime::from_timestamp(
        std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
    )
    .to_rfc822();
    let boundary = format!("{}.{}/{hostname}", arrival_secs(job), fastrand::u64(..));
    let rcpt = &job.recipient;
    let diagnostic = late_bounce_diagnostic(rcpt);
    let mut m = String::with_capacity(2048 + job.headers.len());
    // Writing to a String cannot fail.
    let _ = write!(
        m,
        "Date: {now}\r\n\
         From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         To: <{to}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         Message-ID: <{id:016x}@{hostname}>\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is the mail system at host {hostname}.\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\
         \r\n\
         <{rcpt}>: {diagnostic}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         Arrival-Date: {date}\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Original-Recipient: rfc822;{rcpt}\r\n\
         Action: failed\r\n\
         Status: {LATE_BOUNCE_STATUS}\r\n\
         Remote-MTA: dns; {hostname}\r\n\
         Diagnostic-Code: smtp; {diagnostic}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         {headers}\r\n\
         --{boundary}--\r\n",
        to = job.return_path,
        id = fastrand::u64(..),
        headers = stored_headers(job).trim_end(),
    );
    Report {
        mail_from: String::new(),
        message: m.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use volley_feedback::event::{BounceClass, BounceClassifier, EventKind, SuppressAction};
    use volley_feedback::{CampaignTag, Feedback as Parsed, InboundEnvelope, Intake, Keyring, Token};

    use super::*;

    const BOUNCE_DOMAIN: &str = "bounce.volley.test";

    /// Suppresses every failure (the scheduler's bounce rules do the same for 5.1.1).
    struct SuppressAll;
    impl BounceClassifier for SuppressAll {
        fn classify(&self, _: &volley_engine::RecipientStatus) -> BounceClass {
            BounceClass {
                category: "bad-mailbox".into(),
                action: SuppressAction::Suppress,
            }
        }
    }

    fn job(kind: FeedbackKind, keys: &Keyring) -> Job {
        let token = Token::bounce("spring", 42, [127, 0, 0, 3].into());
        let return_path = volley_feedback::verp::return_path(&token, keys, BOUNCE_DOMAIN);
        Job {
            kind,
            return_path,
            recipient: "reader@dest.test".into(),
            headers: Arc::from(
                &b"From: News <news@sender.test>\r\nTo: <reader@dest.test>\r\nSubject: Sale\r\n\
                   Message-ID: <spring.42@sender.test>\r\n"[..],
            ),
            client: [127, 0, 0, 3].into(),
            arrival: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_360_919),
        }
    }

    /// What the inbound listener's intake makes of a rendered report, sent to the return path.
    fn intake(job: &Job, keys: Keyring) -> (Report, Parsed) {
        let report = render(job, "sink.volley.test").expect("renders");
        let intake = Intake::new(Arc::new(keys), Arc::new(SuppressAll)).with_domains(vec![BOUNCE_DOMAIN.into()]);
        let envelope = InboundEnvelope {
            mail_from: report.mail_from.clone(),
            rcpt_to: vec![job.return_path.clone()],
        };
        let parsed = intake.process(&report.message, &envelope);
        (report, parsed)
    }

    #[test]
    fn a_complaint_is_an_arf_abuse_report_the_intake_ties_to_the_message() {
        let keys = Keyring::single(1, b"sink report test key, not a production secret");
        let job = job(FeedbackKind::Complaint, &keys);
        let (report, parsed) = intake(&job, keys);
        assert_eq!(report.mail_from, "fbl@sink.volley.test");
        let text = String::from_utf8(report.message).expect("ASCII");
        assert!(text.contains("report-type=\"feedback-report\""), "{text}");
        assert!(text.contains("Feedback-Type: abuse\r\n"), "{text}");
        assert!(text.contains("Source-IP: 127.0.0.3\r\n"), "{text}");
        assert!(text.contains("Content-Type: text/rfc822-headers"), "{text}");
        let Parsed::Events { events } = parsed else {
            panic!("not understood: {parsed:?}\n{text}")
        };
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert!(
            matches!(&event.kind, EventKind::Complaint { feedback_type, user_agent }
                if feedback_type == "abuse" && user_agent.as_deref() == Some(USER_AGENT)),
            "{event:?}"
        );
        let token = event.origin.token.as_ref().expect("the token of the return path");
        assert_eq!((token.campaign, token.line), (CampaignTag::of("spring"), 42));
        assert_eq!(event.origin.recipient.as_deref(), Some("reader@dest.test"));
        assert_eq!(event.origin.message_id.as_deref(), Some("spring.42@sender.test"));
    }

    #[test]
    fn a_late_bounce_is_a_dsn_failed_5_1_1_with_the_diagnostic() {
        let keys = Keyring::single(1, b"sink report test key, not a production secret");
        let job = job(FeedbackKind::LateBounce, &keys);
        let (report, parsed) = intake(&job, keys);
        assert_eq!(report.mail_from, "", "a DSN goes out with the null sender");
        let text = String::from_utf8(report.message).expect("ASCII");
        let Parsed::Events { events } = parsed else {
            panic!("not understood: {parsed:?}\n{text}")
        };
        assert_eq!(events.len(), 1, "{text}");
        let event = &events[0];
        let EventKind::Bounce {
            status, asynchronous, ..
        } = &event.kind
        else {
            panic!("not a bounce: {event:?}")
        };
        assert!(*asynchronous);
        assert_eq!(status.status.as_deref(), Some(LATE_BOUNCE_STATUS));
        assert_eq!(status.code, Some(550));
        assert_eq!(status.diagnostic, late_bounce_diagnostic("reader@dest.test"));
        assert_eq!(event.origin.recipient.as_deref(), Some("reader@dest.test"));
        assert_eq!(event.origin.message_id.as_deref(), Some("spring.42@sender.test"));
        assert_eq!(
            event.origin.token.as_ref().map(|t| t.line),
            Some(42),
            "the token of the envelope recipient"
        );
    }
}
