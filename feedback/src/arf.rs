//! Feedback-loop reports: RFC 5965 ARF (`multipart/report; report-type=feedback-report`),
//! parsed by mail-auth ([`mail_auth::report::Feedback`]).

use mail_auth::report::{Feedback, FeedbackType};
use mail_parser::{Message, MimeHeaders};

use crate::returned::ReturnedHeaders;

/// What an ARF report says about the reported message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArfReport {
    /// `Feedback-Type` (RFC 5965 §7.3): abuse, fraud, virus, other, not-spam, auth-failure.
    pub feedback_type: &'static str,
    /// `User-Agent`: who generated the report.
    pub user_agent: Option<String>,
    /// `Original-Mail-From`: the reported message's envelope sender (our return path).
    pub original_mail_from: Option<String>,
    /// `Original-Rcpt-To`: the reported message's envelope recipient.
    pub original_rcpt_to: Option<String>,
    /// The reported message's identifying headers (its Return-Path carries our token).
    pub reported: ReturnedHeaders,
}

impl ArfReport {
    /// Whether the report is a complaint about the message (RFC 5965 §7.3 `abuse`, `fraud`).
    pub fn is_complaint(&self) -> bool {
        matches!(self.feedback_type, "abuse" | "fraud")
    }
}

/// Whether `message` holds a `message/feedback-report` part.
pub fn is_arf(message: &Message<'_>) -> bool {
    message.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("feedback-report"))
        })
    })
}

/// Parses the ARF report in `raw`. `Err` says what is malformed.
pub fn parse(raw: &[u8]) -> Result<ArfReport, String> {
    let feedback = Feedback::parse_rfc5322(raw).map_err(|e| match e {
        mail_auth::report::Error::NoReportsFound => {
            "no parseable message/feedback-report part (Feedback-Type missing?)".to_owned()
        }
        other => format!("{other:?}"),
    })?;
    let reported = feedback
        .message()
        .or(feedback.headers())
        .map(ReturnedHeaders::from_text)
        .unwrap_or_default();
    let bare = |v: &str| v.trim().trim_start_matches('<').trim_end_matches('>').trim().to_owned();
    Ok(ArfReport {
        feedback_type: match feedback.feedback_type() {
            FeedbackType::Abuse => "abuse",
            FeedbackType::AuthFailure => "auth-failure",
            FeedbackType::Fraud => "fraud",
            FeedbackType::NotSpam => "not-spam",
            FeedbackType::Other => "other",
            FeedbackType::Virus => "virus",
        },
        user_agent: feedback.user_agent().map(str::to_owned),
        original_mail_from: feedback.original_mail_from().map(bare).filter(|v| !v.is_empty()),
        original_rcpt_to: feedback
            .original_rcpt_to()
            .map(|v| bare(v).to_lowercase())
            .filter(|v| !v.is_empty()),
        reported,
    })
}
