//! Delivery status notifications: RFC 3464 (`multipart/report; report-type=delivery-status`
//! with a `message/delivery-status` part) and RFC 6533 (`message/global-delivery-status`,
//! UTF-8 fields).
//!
//! The status part is a per-message block (Reporting-MTA, Original-Envelope-Id, Arrival-Date)
//! followed by one block per recipient (Final-Recipient, Original-Recipient, Action, Status,
//! Diagnostic-Code, Remote-MTA) — RFC 3464 §2.2 and §2.3. The returned message, or its headers
//! (`message/rfc822`, `text/rfc822-headers`, `message/global-headers`), gives the original
//! Message-ID.

use mail_parser::{Message, MimeHeaders, PartType};

use crate::fields::{parse_blocks, typed_value, FieldBlock};
use crate::returned::{returned_headers, ReturnedHeaders};

/// A parsed DSN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsnReport {
    /// `Reporting-MTA` (without its `dns;` type).
    pub reporting_mta: Option<String>,
    /// `Original-Envelope-Id` (RFC 3461 ENVID, when the sender gave one).
    pub original_envelope_id: Option<String>,
    /// `Arrival-Date`, as written.
    pub arrival_date: Option<String>,
    /// One entry per recipient block.
    pub recipients: Vec<DsnRecipient>,
    /// What the returned message or headers say.
    pub returned: ReturnedHeaders,
}

/// One per-recipient block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsnRecipient {
    /// `Final-Recipient` address (required by RFC 3464 §2.3.2).
    pub final_recipient: String,
    /// `Original-Recipient` address (the RCPT TO as given, RFC 3461 ORCPT), when present.
    pub original_recipient: Option<String>,
    /// `Action`, lower-cased: failed, delayed, delivered, relayed, expanded.
    pub action: String,
    /// `Status`, e.g. `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code` without its type, e.g. `550 5.1.1 <a@b>: Recipient address rejected`.
    pub diagnostic: Option<String>,
    /// Whether the diagnostic is of type `smtp` (so that its leading number is a reply code).
    pub diagnostic_is_smtp: bool,
    /// `Remote-MTA` without its type.
    pub remote_mta: Option<String>,
}

impl DsnRecipient {
    /// The SMTP reply code the diagnostic quotes, when it is of type `smtp`.
    pub fn reply_code(&self) -> Option<u16> {
        let d = self.diagnostic.as_deref()?;
        if !self.diagnostic_is_smtp {
            return None;
        }
        let code = d.get(..3)?;
        let next = d.as_bytes().get(3);
        (code.bytes().all(|b| b.is_ascii_digit()) && matches!(next, None | Some(b' ' | b'-')))
            .then(|| code.parse().ok())
            .flatten()
            .filter(|c| (200..600).contains(c))
    }
}

/// Whether `message` holds a delivery-status part (the report may be the root or nested in a
/// multipart/mixed, as some MTAs forward them).
pub fn is_dsn(message: &Message<'_>) -> bool {
    status_part(message).is_some()
}

/// The body of the first `message/delivery-status` or `message/global-delivery-status` part.
fn status_part<'a>(message: &'a Message<'_>) -> Option<&'a [u8]> {
    message.parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        let status = ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
            });
        if !status {
            return None;
        }
        match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(b.as_ref()),
            PartType::Text(t) | PartType::Html(t) => Some(t.as_bytes()),
            _ => None,
        }
    })
}

/// Parses the DSN in `message` (whose raw bytes are `raw`). `Err` says what is malformed.
pub fn parse(message: &Message<'_>, raw: &[u8]) -> Result<DsnReport, String> {
    let body = status_part(message).ok_or("no message/delivery-status part")?;
    let text = std::str::from_utf8(body).map_err(|e| format!("status part is not UTF-8 (byte {})", e.valid_up_to()))?;
    let blocks = parse_blocks(text).map_err(|e| format!("status part line {}: {}", e.line, e.reason))?;
    let Some((per_message, per_recipient)) = blocks.split_first() else {
        return Err("empty status part".into());
    };
    if per_recipient.is_empty() {
        return Err("no per-recipient fields".into());
    }
    let recipients = per_recipient
        .iter()
        .enumerate()
        .map(|(i, block)| recipient(block).map_err(|e| format!("recipient block {}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DsnReport {
        reporting_mta: per_message.get("reporting-mta").map(|v| typed_value(v).to_owned()),
        original_envelope_id: per_message.get("original-envelope-id").map(str::to_owned),
        arrival_date: per_message.get("arrival-date").map(str::to_owned),
        recipients,
        returned: returned_headers(message, raw),
    })
}

fn recipient(block: &FieldBlock) -> Result<DsnRecipient, String> {
    let required = |name: &str| block.get(name).ok_or_else(|| format!("no {name} field"));
    let final_recipient = address(required("final-recipient")?);
    let action = required("action")?.to_ascii_lowercase();
    // RFC 3464 §2.3.3: an action may carry a comment in parentheses.
    let action = action.split([' ', '(']).next().unwrap_or_default().to_owned();
    if !matches!(
        action.as_str(),
        "failed" | "delayed" | "delivered" | "relayed" | "expanded"
    ) {
        return Err(format!("unknown Action {action:?}"));
    }
    let status = required("status")?;
    let status = status.split([' ', '(']).next().unwrap_or_default().to_owned();
    let diagnostic = block.get("diagnostic-code");
    Ok(DsnRecipient {
        final_recipient,
        original_recipient: block.get("original-recipient").map(address),
        action,
        status,
        diagnostic: diagnostic.map(|d| typed_value(d).to_owned()),
        diagnostic_is_smtp: diagnostic.is_some_and(|d| {
            d.split_once(';')
                .is_some_and(|(t, _)| t.trim().eq_ignore_ascii_case("smtp"))
        }),
        remote_mta: block.get("remote-mta").map(|v| typed_value(v).to_owned()),
    })
}

/// The address of an `rfc822; addr` / `utf-8; addr` value, without angle brackets, lower-cased.
fn address(value: &str) -> String {
    typed_value(value)
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_come_from_smtp_diagnostics_only() {
        let mut r = DsnRecipient {
            diagnostic: Some("550 5.1.1 user unknown".into()),
            diagnostic_is_smtp: true,
            ..Default::default()
        };
        assert_eq!(r.reply_code(), Some(550));
        r.diagnostic = Some("550-5.1.1 first line".into());
        assert_eq!(r.reply_code(), Some(550));
        r.diagnostic = Some("5501 nope".into());
        assert_eq!(r.reply_code(), None);
        r.diagnostic = Some("550 x".into());
        r.diagnostic_is_smtp = false;
        assert_eq!(r.reply_code(), None);
    }
}
