//! Non-standard bounces: plain-text notices from MTAs that do not send RFC 3464 DSNs (qmail's
//! "Hi. This is the qmail-send program", Exim's "This message was created automatically by
//! mail delivery software", Gmail's "Delivery Status Notification (Failure)", Postfix and
//! Sendmail without DSN support…). Recognised by their wording; the reply quoted in the text
//! gives the status; the bounce rules classify the explanation.

use mail_parser::Message;
use volley_engine::smtp::reply::EnhancedCode;

use crate::event::ReportedStatus;
use crate::returned::{returned_headers, ReturnedHeaders};

/// Wording (lower case) that makes a message a bounce notice.
const SIGNATURES: &[&str] = &[
    "this is the qmail-send program",
    "this message was created automatically by mail delivery software",
    "delivery status notification",
    "undelivered mail returned to sender",
    "mail delivery failed",
    "returned mail:",
    "undeliverable:",
    "failure notice",
    "delivery has failed",
    "could not be delivered to",
    "i'm sorry to have to inform you that your message could not",
    "message not delivered",
];

/// Wording of a delay warning (delivery still being tried).
const DELAY: &[&str] = &[
    "has not yet been delivered",
    "delivery status notification (delay)",
    "will continue trying",
    "will keep trying",
    "will retry",
    "delivery delayed",
];

/// Lines that start the copy of the returned message (everything after is not explanation).
const RETURNED_MARKERS: &[&str] = &[
    "--- below this line is a copy of the message",
    "------ this is a copy of the message",
    "----- original message -----",
    "----- the header of the original message",
    "------ original message ------",
    "original message follows",
    "--- the original message",
];

/// The most explanation text looked at, in bytes.
const MAX_EXPLANATION: usize = 16 * 1024;

/// A plain-text bounce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainBounce {
    /// The failed recipient, when the text names one.
    pub recipient: Option<String>,
    /// The quoted reply (or the explanation's first lines).
    pub status: ReportedStatus,
    /// The text the bounce rules classify: the explanation before the returned message.
    pub explanation: String,
    /// A delay warning rather than a failure.
    pub delayed: bool,
    /// The returned message's headers, when attached as a MIME part.
    pub returned: ReturnedHeaders,
}

/// The bounce in `message`, if its wording is a bounce's. `ours` are addresses never taken as
/// the failed recipient (the envelope recipients: our own return path).
pub fn detect(message: &Message<'_>, raw: &[u8], ours: &[String]) -> Option<PlainBounce> {
    let subject = message.subject().unwrap_or_default().to_lowercase();
    let body = message.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
    let explanation = explanation(&body);
    let lower = explanation.to_lowercase();
    if !SIGNATURES.iter().any(|s| subject.contains(s) || lower.contains(s)) {
        return None;
    }
    let failed_header = message
        .header_raw("X-Failed-Recipients")
        .map(|v| v.split(',').next().unwrap_or_default().trim().to_lowercase());
    let recipient = failed_header
        .filter(|r| r.contains('@'))
        .or_else(|| find_address(&explanation, ours));
    let (code, status, line) = find_reply(&explanation);
    let delayed = code.is_none_or(|c| c < 500) && DELAY.iter().any(|d| subject.contains(d) || lower.contains(d));
    let diagnostic = line.unwrap_or_else(|| first_lines(&explanation));
    Some(PlainBounce {
        recipient,
        status: ReportedStatus {
            status,
            code,
            diagnostic,
        },
        explanation,
        delayed,
        returned: returned_headers(message, raw),
    })
}

/// The text before the copy of the returned message, at most [`MAX_EXPLANATION`] bytes.
fn explanation(body: &str) -> String {
    let mut out = String::new();
    for line in body.lines() {
        let lower = line.trim().to_lowercase();
        if RETURNED_MARKERS.iter().any(|m| lower.contains(m)) {
            break;
        }
        if out.len() + line.len() + 1 > MAX_EXPLANATION {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn first_lines(text: &str) -> String {
    let joined: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).take(6).collect();
    let mut s = joined.join(" ");
    if s.len() > 500 {
        let mut end = 500;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The first quoted SMTP reply: `(code, enhanced status, the line from the code on)`. A
/// reply line is a 4xx/5xx code followed by a blank or `-`; qmail's `(#5.1.1)` gives a status
/// without a code.
fn find_reply(text: &str) -> (Option<u16>, Option<String>, Option<String>) {
    let mut bare_status = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let (digits, after) = match w.split_once('-') {
                Some((d, a)) if d.len() == 3 => (d, Some(a)),
                _ => (*w, None),
            };
            if digits.len() == 3
                && matches!(digits.as_bytes()[0], b'4' | b'5')
                && digits.bytes().all(|b| b.is_ascii_digit())
            {
                let code = digits.parse().ok();
                let next = match after {
                    Some(a) if !a.is_empty() => a,
                    _ => words.get(i + 1).copied().unwrap_or(""),
                };
                let status = EnhancedCode::parse_prefix(next.trim_end_matches([',', ';', ')']))
                    .filter(|(e, _)| e.class == digits.as_bytes()[0] - b'0')
                    .map(|(e, _)| e.to_string());
                return (code, status, Some(words[i..].join(" ")));
            }
            if bare_status.is_none() {
                let candidate = w.trim_start_matches("(#").trim_start_matches('#').trim_end_matches(')');
                if candidate.len() < w.len() {
                    if let Some((e, _)) = EnhancedCode::parse_prefix(candidate) {
                        if e.class != 2 {
                            bare_status = Some((e.to_string(), line.trim().to_owned()));
                        }
                    }
                }
            }
        }
    }
    match bare_status {
        Some((status, line)) => (None, Some(status), Some(line)),
        None => (None, None, None),
    }
}

/// The first address in `text` that is not one of `ours`: `<a@b>` or a bare `a@b.c`.
fn find_address(text: &str, ours: &[String]) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | ',' | ';' | '"' | '\''))
        .map(|w| w.trim_end_matches([':', '.']).trim_start_matches("rfc822:"))
        .filter(|w| {
            let Some((local, domain)) = w.split_once('@') else {
                return false;
            };
            !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.')
        })
        .map(str::to_lowercase)
        .find(|w| !ours.iter().any(|o| o.eq_ignore_ascii_case(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_found_in_text() {
        let (code, status, line) = find_reply("x\nRemote host said: 550 5.1.1 <a@b.test>... User unknown\n");
        assert_eq!(code, Some(550));
        assert_eq!(status.as_deref(), Some("5.1.1"));
        assert_eq!(line.as_deref(), Some("550 5.1.1 <a@b.test>... User unknown"));
        let (code, status, _) = find_reply("Sorry, no mailbox here by that name. (#5.1.1)\n");
        assert_eq!((code, status.as_deref()), (None, Some("5.1.1")));
        let (code, status, _) = find_reply("550-5.7.1 blocked\n");
        assert_eq!((code, status.as_deref()), (Some(550), Some("5.7.1")));
        assert_eq!(find_reply("no numbers 2026 here 200\n"), (None, None, None));
    }

    #[test]
    fn explanation_stops_at_the_copy_of_the_returned_message() {
        // Sendmail's marker (indented) and Exim's: what follows is our own message.
        let body = "550 5.1.1 User unknown\n   ----- Original message follows -----\nSubject: spam offers\n";
        assert_eq!(explanation(body), "550 5.1.1 User unknown\n");
        let exim = "failed:\n\n------ This is a copy of the message, including all the headers. ------\nspam\n";
        assert_eq!(explanation(exim), "failed:\n\n");
    }

    #[test]
    fn addresses_skip_our_own() {
        let ours = vec!["bounces+abc@b.test".to_string()];
        assert_eq!(
            find_address("to <bounces+abc@b.test> about <User@Example.NET>:", &ours).as_deref(),
            Some("user@example.net")
        );
        assert_eq!(find_address("nothing here@ at all", &ours), None);
    }
}
