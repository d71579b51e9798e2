//! Injection: single messages handed to Volley by an application (the SMTP submission
//! listener, `POST /messages`) instead of read from a campaign's recipient file.
//!
//! A listener checks who is sending, then calls an [`Injector`] (the durable spool) with an
//! [`Injected`] message; the injector answers only once the message is durable, with one id
//! per recipient. [`inspect`] is the check every injected message passes first: one header
//! section that parses, exactly one `From` with an address, no NUL, no line over 998 octets
//! (RFC 5322 §2.1.1), and the optional `X-Volley-Campaign` header that names the campaign.

pub mod template;

use std::future::Future;

/// The header that names an injected message's campaign; removed before the message is
/// spooled (receivers never see it).
pub const CAMPAIGN_HEADER: &str = "X-Volley-Campaign";

/// RFC 5322 §2.1.1: at most 998 octets per line, without the CRLF.
const MAX_LINE: usize = 998;

/// One message to inject.
#[derive(Clone, Debug)]
pub struct Injected {
    /// Who injects it: the authenticated SMTP user or the API's caller. It is the campaign
    /// unless the message names one in [`CAMPAIGN_HEADER`].
    pub user: String,
    /// The envelope sender (MAIL FROM); empty for the null sender.
    pub mail_from: String,
    /// The envelope recipients, at least one.
    pub recipients: Vec<String>,
    /// The message as received: RFC 5322 with CRLF line ends, dot-unstuffed.
    pub raw: Vec<u8>,
    /// The client's address, for the log.
    pub peer: String,
}

/// A message made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The campaign it was filed under (its accounting log).
    pub campaign: String,
    /// One id per envelope recipient, in the order given: where to look the recipient up.
    pub ids: Vec<String>,
}

/// Why an injection was not accepted. Nothing of a refused message is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The message itself cannot be sent as it is (a permanent refusal).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// No room to store it now (disk full, spool over its size limit): try again later.
    #[error("insufficient storage: {0}")]
    Full(String),
    /// The spool cannot take messages now (an I/O error, shutting down): try again later.
    #[error("spool unavailable: {0}")]
    Unavailable(String),
}

impl InjectError {
    /// The SMTP reply code and enhanced status code (RFC 3463) of the refusal.
    pub fn smtp_code(&self) -> (u16, (u8, u16, u16)) {
        match self {
            InjectError::Malformed(_) => (550, (5, 6, 0)),
            InjectError::Full(_) => (452, (4, 3, 1)),
            InjectError::Unavailable(_) => (451, (4, 3, 0)),
        }
    }

    /// The HTTP status of the refusal: 400, 507 or 503.
    pub fn http_status(&self) -> u16 {
        match self {
            InjectError::Malformed(_) => 400,
            InjectError::Full(_) => 507,
            InjectError::Unavailable(_) => 503,
        }
    }

    /// A temporary refusal (the client should try again).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, InjectError::Malformed(_))
    }
}

/// Takes messages and makes them durable before answering.
pub trait Injector: Send + Sync + 'static {
    /// Stores `message` durably (synced) and answers with its ids, or refuses it whole.
    fn inject(&self, message: Injected) -> impl Future<Output = Result<Accepted, InjectError>> + Send;
}

/// Checks a campaign name given with an injection (letters, digits, `.`, `_`, `-`; it names
/// a folder): the reason when it cannot be one.
pub fn check_campaign(name: &str) -> Result<(), String> {
    crate::campaign::check_id(name).map_err(|why| format!("campaign {name:?}: {why}"))
}

/// What [`inspect`] found in a message's header section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// The address of the `From` header.
    pub from: String,
    /// Its domain, lower-cased.
    pub from_domain: String,
    /// The value of [`CAMPAIGN_HEADER`], if present (trimmed; checked like a campaign id).
    pub campaign: Option<String>,
    /// The message has a `Date` header.
    pub has_date: bool,
    /// The `Message-ID` (without angle brackets), if the message has one.
    pub message_id: Option<String>,
    /// Byte length of the header section (up to and including the empty line, or the whole
    /// message when there is no body).
    pub header_len: usize,
}

fn malformed(why: impl Into<String>) -> InjectError {
    InjectError::Malformed(why.into())
}

/// One header field of the section: its name and unfolded value, and its byte range.
struct Field<'a> {
    name: &'a str,
    value: String,
    start: usize,
    end: usize,
}

/// Splits the header section into fields; see the module docs for what is refused.
fn fields(raw: &[u8]) -> Result<(Vec<Field<'_>>, usize), InjectError> {
    if raw.contains(&0) {
        return Err(malformed("the message contains a NUL octet"));
    }
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    let mut line_no = 0usize;
    let header_len = loop {
        if pos >= raw.len() {
            break raw.len();
        }
        line_no += 1;
        let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.len() > MAX_LINE {
            return Err(malformed(format!(
                "header line {line_no} is {} octets long (at most {MAX_LINE})",
                text.len()
            )));
        }
        if text.is_empty() {
            break end;
        }
        if text[0] == b' ' || text[0] == b'\t' {
            let Some(last) = fields.last_mut() else {
                return Err(malformed("the message starts with a folded (indented) line"));
            };
            last.value.push_str(&String::from_utf8_lossy(text));
            last.end = end;
        } else {
            let Some(colon) = memchr::memchr(b':', text) else {
                return Err(malformed(format!(
                    "header line {line_no} has no colon: {:?}",
                    String::from_utf8_lossy(&text[..text.len().min(60)])
                )));
            };
            let name = std::str::from_utf8(&text[..colon])
                .ok()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| (33..=126).contains(&b)))
                .ok_or_else(|| {
                    malformed(format!(
                        "header line {line_no} has an invalid field name: {:?}",
                        String::from_utf8_lossy(&text[..colon.min(60)])
                    ))
                })?;
            fields.push(Field {
                name,
                value: String::from_utf8_lossy(&text[colon + 1..]).into_owned(),
                start: pos,
                end,
            });
        }
        pos = end;
    };
    if header_len == raw.len() && !raw.is_empty() {
        // Headers only: the body may be absent (RFC 5322 §3.5), but every body line must
        // still be within the limit, which holds trivially here.
    } else {
        for (i, line) in raw[header_len..].split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_LINE {
                return Err(malformed(format!(
                    "body line {} is {} octets long (at most {MAX_LINE})",
                    i + 1,
                    line.len()
                )));
            }
        }
    }
    Ok((fields, header_len))
}

/// Checks an injected message; see the module docs.
pub fn inspect(raw: &[u8]) -> Result<Inspected, InjectError> {
    let (fields, header_len) = fields(raw)?;
    if fields.is_empty() {
        return Err(malformed("the message has no header section"));
    }
    let named = |name: &'static str| fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(name));
    let froms: Vec<_> = named("From").collect();
    let from_field = match froms.as_slice() {
        [one] => one,
        [] => return Err(malformed("the message has no From header")),
        _ => return Err(malformed("the message has more than one From header")),
    };
    let from = from_address(&from_field.value)
        .ok_or_else(|| malformed(format!("the From header has no address: {:?}", from_field.value.trim())))?;
    let from_domain = from
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| malformed(format!("the From address {from:?} has no domain")))?;
    let campaign = match named(CAMPAIGN_HEADER).collect::<Vec<_>>().as_slice() {
        [] => None,
        [one] => {
            let id = one.value.trim();
            crate::campaign::check_id(id).map_err(|why| malformed(format!("{CAMPAIGN_HEADER} {id:?}: {why}")))?;
            Some(id.to_owned())
        }
        _ => return Err(malformed(format!("more than one {CAMPAIGN_HEADER} header"))),
    };
    Ok(Inspected {
        from,
        from_domain,
        campaign,
        has_date: named("Date").next().is_some(),
        message_id: named("Message-ID")
            .next()
            .map(|f| {
                let id = f.value.trim();
                id.strip_prefix('<')
                    .and_then(|i| i.strip_suffix('>'))
                    .unwrap_or(id)
                    .to_owned()
            })
            .filter(|id| !id.is_empty()),
        header_len,
    })
}

/// The message without its [`CAMPAIGN_HEADER`] field(s).
pub fn strip_campaign_header(raw: &[u8]) -> Result<Vec<u8>, InjectError> {
    let (fields, _) = fields(raw)?;
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    for f in fields.iter().filter(|f| f.name.eq_ignore_ascii_case(CAMPAIGN_HEADER)) {
        out.extend_from_slice(&raw[pos..f.start]);
        pos = f.end;
    }
    out.extend_from_slice(&raw[pos..]);
    Ok(out)
}

/// The address of a `From` value: the first mailbox, `Name <a@b>` or `a@b`.
fn from_address(value: &str) -> Option<String> {
    let mut line = Vec::with_capacity(value.len() + 2);
    line.extend_from_slice(value.as_bytes());
    line.extend_from_slice(b"\r\n");
    let parsed = mail_parser::parsers::MessageStream::new(&line).parse_address();
    let address = match &parsed {
        mail_parser::HeaderValue::Address(a) => a.first()?.address()?.trim().to_owned(),
        _ => return None,
    };
    (address.contains('@') && !address.contains(char::is_whitespace)).then_some(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: App <app@example.com>\r\nTo: a@dest.test\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn a_plain_message_passes() {
        let i = inspect(MSG).expect("valid");
        assert_eq!(i.from, "app@example.com");
        assert_eq!(i.from_domain, "example.com");
        assert_eq!(i.campaign, None);
        assert!(!i.has_date && i.message_id.is_none());
        let with_id = inspect(b"From: a@x.test\r\nMessage-ID:  <abc@x.test>\r\n\r\n").expect("valid");
        assert_eq!(with_id.message_id.as_deref(), Some("abc@x.test"));
        assert_eq!(&MSG[i.header_len..], b"body\r\n");
    }

    #[test]
    fn the_campaign_header_is_read_checked_and_stripped() {
        let msg = b"X-Volley-Campaign: receipts-2026\r\nFrom: a@Example.COM\r\n\r\nx\r\n";
        let i = inspect(msg).expect("valid");
        assert_eq!(i.campaign.as_deref(), Some("receipts-2026"));
        assert_eq!(i.from_domain, "example.com");
        let stripped = strip_campaign_header(msg).expect("valid");
        assert_eq!(stripped, b"From: a@Example.COM\r\n\r\nx\r\n");
        let bad = b"X-Volley-Campaign: ../etc\r\nFrom: a@example.com\r\n\r\nx\r\n";
        let e = inspect(bad).expect_err("bad id");
        assert!(e.to_string().contains("X-Volley-Campaign \"../etc\""), "{e}");
    }

    #[test]
    fn malformed_messages_are_refused_with_the_reason() {
        let cases: [(&[u8], &str); 7] = [
            (b"Subject: x\r\n\r\nbody\r\n", "no From header"),
            (b"From: a@x.test\r\nFrom: b@x.test\r\n\r\n", "more than one From"),
            (b"From: nobody\r\n\r\nx\r\n", "has no address"),
            (
                b"From: a@x.test\r\nthis is not a header\r\n\r\nx\r\n",
                "line 2 has no colon",
            ),
            (b" folded\r\nFrom: a@x.test\r\n\r\n", "starts with a folded"),
            (b"From: a@x.test\r\n\r\nnul\0here\r\n", "NUL"),
            (b"", "no header section"),
        ];
        for (msg, why) in cases {
            let e = inspect(msg).expect_err(why);
            assert!(matches!(e, InjectError::Malformed(_)));
            assert!(e.to_string().contains(why), "{e} should say {why}");
        }
        let mut long = b"From: a@x.test\r\n\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', 999));
        let e = inspect(&long).expect_err("long line");
        assert!(e.to_string().contains("body line 1 is 999 octets"), "{e}");
    }

    #[test]
    fn errors_map_to_smtp_and_http() {
        assert_eq!(malformed("x").smtp_code().0, 550);
        assert_eq!(InjectError::Full("disk".into()).smtp_code(), (452, (4, 3, 1)));
        assert_eq!(InjectError::Unavailable("x".into()).http_status(), 503);
        assert!(InjectError::Full("x".into()).is_temporary());
    }
}
