//! Builds one recipient's RFC 5322 message from a compiled campaign (mail-builder).
//!
//! The headers are `From`, `To`, `Subject`, `Date`, `Message-ID`, optional `Reply-To`, the
//! campaign's custom headers, then `MIME-Version`; the body is text/plain, text/html or
//! multipart/alternative of both. mail-builder picks 7bit, quoted-printable or base64 per part,
//! so no body line exceeds 78 octets, and RFC 2047-encodes non-ASCII or long subjects.
//!
//! Header injection: a rendered header value carrying CR, LF or any other control character
//! (TAB excepted) is refused with [`RenderError::HeaderInjection`], naming the header and the
//! recipient column that brought it; the caller rejects that recipient and carries on.
//! Rendered header values are trimmed of leading and trailing blanks.
//! Body values may contain line breaks: CRLF, CR and LF are all normalised to CRLF.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::headers::HeaderType;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;

use crate::address::Mailbox;
use crate::campaign::{CompiledCampaign, CompiledListUnsubscribe};
use crate::recipients::{RecipientRow, RejectedRow, WHOLE_ROW};
use crate::template::Template;
use crate::unsubscribe::UnsubscribeLinks;

/// Why one recipient's message could not be built. The recipient is rejected; the campaign
/// goes on.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A header value would contain a line break or another control character.
    #[error("header `{field}`: value of column `{column}` contains a control character: {value:?}")]
    HeaderInjection {
        /// The header, e.g. `Subject` or `X-Tag`.
        field: String,
        /// The recipient column whose value brought the character.
        column: String,
        /// That column's value.
        value: String,
    },
    /// A body value contains NUL, which no MIME transfer encoding used here may carry as text.
    #[error("{part} body: value of column `{column}` contains a NUL character")]
    NulInBody {
        /// `text` or `html`.
        part: &'static str,
        /// The recipient column whose value brought the character.
        column: String,
    },
    /// mail-builder failed to serialise (not expected when writing to memory).
    #[error("cannot serialise the message: {0}")]
    Encode(#[from] io::Error),
}

impl RenderError {
    /// The rejects-file line for the recipient `recipient` whose row starts at `line`:
    /// `field` is the offending column, `value` its value, and the reason names the header
    /// (or body part) and the recipient.
    pub fn to_rejected(&self, line: u64, recipient: &str) -> RejectedRow {
        match self {
            RenderError::HeaderInjection { field, column, value } => RejectedRow::new(
                line,
                column,
                value,
                format!("control character would be injected into header `{field}` (recipient {recipient})"),
            ),
            RenderError::NulInBody { part, column } => RejectedRow::new(
                line,
                column,
                "\\0",
                format!("NUL character in the {part} body (recipient {recipient})"),
            ),
            RenderError::Encode(e) => {
                RejectedRow::new(line, WHOLE_ROW, recipient, format!("cannot serialise the message: {e}"))
            }
        }
    }
}

/// A built message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltMessage {
    /// The Message-ID, without `<>`.
    pub message_id: String,
    /// The message: CRLF line endings, no line over 998 octets.
    pub bytes: Vec<u8>,
    /// The envelope sender the message came with (injected messages); `None`: the
    /// campaign's return path.
    pub sender: Option<String>,
    /// The domain to DKIM-sign for (injected messages: their own From domain); `None`: the
    /// campaign's From domain.
    pub sign_domain: Option<String>,
}

/// Builds messages for one compiled campaign; cheap to share between worker threads.
#[derive(Debug, Clone)]
pub struct MessageFactory {
    campaign_id: String,
    columns: Vec<String>,
    from: String,
    reply_to: Option<String>,
    subject: Template,
    text: Option<Template>,
    html: Option<Template>,
    headers: Vec<(String, Template)>,
    list_unsubscribe: Option<CompiledListUnsubscribe>,
    /// The token-bearing values of `volley = true` (set by the run from volley.toml).
    unsubscribe_links: Option<Arc<UnsubscribeLinks>>,
    id_domain: String,
    /// Random per factory, so Message-IDs differ across runs even when `seq` restarts.
    id_nonce: String,
    size_hint: usize,
    /// Rows are spooled messages ([`crate::recipients::spooled`]): sent as they are.
    spooled: bool,
}

impl MessageFactory {
    /// Prepares the static parts (From/Reply-To header values, Message-ID domain and nonce).
    pub fn new(campaign: &CompiledCampaign) -> MessageFactory {
        let c = campaign.campaign();
        let literal = |t: Option<&Template>| t.map_or(0, Template::literal_len);
        MessageFactory {
            campaign_id: c.id().to_owned(),
            columns: campaign.columns().to_vec(),
            from: mailbox_header(c.from()),
            reply_to: c.reply_to().map(mailbox_header),
            subject: campaign.subject().clone(),
            text: campaign.text().cloned(),
            html: campaign.html().cloned(),
            headers: campaign.headers().to_vec(),
            list_unsubscribe: campaign.list_unsubscribe().cloned(),
            unsubscribe_links: None,
            id_domain: c.from().address.domain().to_owned(),
            id_nonce: format!("{:016x}", fastrand::u64(..)),
            // QP/base64 grow bodies by about a third; headers are under 1 KB.
            size_hint: 1024 + (literal(campaign.text()) + literal(campaign.html())) * 4 / 3,
            spooled: false,
        }
    }

    /// The factory of an injection campaign: each row carries its message (see
    /// [`crate::recipients::spooled`]), which goes out as it was spooled.
    pub fn spooled(campaign_id: &str) -> MessageFactory {
        let empty = || Template::parse("text", "", &[]).unwrap_or_else(|_| unreachable!("an empty template parses"));
        MessageFactory {
            campaign_id: campaign_id.to_owned(),
            columns: crate::recipients::spooled::SPOOL_COLUMNS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            from: String::new(),
            reply_to: None,
            subject: empty(),
            text: None,
            html: None,
            headers: Vec::new(),
            list_unsubscribe: None,
            unsubscribe_links: None,
            id_domain: String::new(),
            id_nonce: String::new(),
            size_hint: 0,
            spooled: true,
        }
    }

    /// A spooled row's message.
    fn build_spooled(&self, row: &RecipientRow) -> Result<BuiltMessage, RenderError> {
        use crate::recipients::spooled::column;
        let value = |i: usize| row.values.get(i).map_or("", String::as_str);
        let bytes = crate::recipients::spooled::raw_bytes(value(column::RAW))
            .map_err(|e| RenderError::Encode(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let domain = value(column::FROM_DOMAIN);
        Ok(BuiltMessage {
            message_id: value(column::MESSAGE_ID).to_owned(),
            bytes,
            sender: Some(value(column::MAIL_FROM).to_owned()),
            sign_domain: (!domain.is_empty()).then(|| domain.to_owned()),
        })
    }

    /// Gives each message of a `[list_unsubscribe] volley = true` campaign its own signed
    /// `List-Unsubscribe` link and address. Without it such a campaign's messages carry no
    /// `List-Unsubscribe` (a run always sets it, or refuses to start).
    pub fn with_unsubscribe_links(mut self, links: Option<Arc<UnsubscribeLinks>>) -> MessageFactory {
        self.unsubscribe_links = links;
        self
    }

    /// Renders subject, headers and bodies for `row` and builds the message. `seq` must be
    /// unique per message of this factory (it goes into the Message-ID).
    pub fn build(&self, seq: u64, row: &RecipientRow) -> Result<BuiltMessage, RenderError> {
        if self.spooled {
            return self.build_spooled(row);
        }
        let subject = self.header_value("Subject", &self.subject, &row.values)?;
        let mut custom = Vec::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            custom.push((name.as_str(), self.header_value(name, template, &row.values)?));
        }
        let text = self.body("text", self.text.as_ref(), &row.values)?;
        let html = self.body("html", self.html.as_ref(), &row.values)?;
        let message_id = format!("{}.{seq}.{}@{}", self.campaign_id, self.id_nonce, self.id_domain);

        let mut builder = MessageBuilder::new()
            .header("From", Raw::new(self.from.as_str()))
            .to(Address::new_address(None::<&str>, row.email.as_str()))
            .subject(Text::new(subject))
            .date(Date::now())
            .message_id(message_id.as_str());
        if let Some(reply_to) = &self.reply_to {
            builder = builder.header("Reply-To", Raw::new(reply_to.as_str()));
        }
        for (name, value) in custom {
            builder = builder.header(name, custom_header(value));
        }
        let list_unsubscribe = self.list_unsubscribe.as_ref().and_then(|l| {
            let value = match (&self.unsubscribe_links, l.volley) {
                (Some(links), true) => links.header_value(row.line, std::time::SystemTime::now()),
                (None, true) => return None,
                (_, false) => list_unsubscribe_value(l, &row.values),
            };
            Some((l, value))
        });
        if let Some((l, value)) = list_unsubscribe {
            builder = builder.header("List-Unsubscribe", Raw::new(value));
            if l.one_click {
                builder = builder.header("List-Unsubscribe-Post", Raw::new("List-Unsubscribe=One-Click"));
            }
        }
        if let Some(text) = text {
            builder.text_body = Some(text_part("text/plain", text));
        }
        if let Some(html) = html {
            builder.html_body = Some(text_part("text/html", html));
        }
        let mut bytes = Vec::with_capacity(self.size_hint);
        builder.write_to(&mut bytes)?;
        Ok(BuiltMessage {
            message_id,
            bytes,
            sender: None,
            sign_domain: None,
        })
    }

    fn header_value(&self, field: &str, template: &Template, values: &[String]) -> Result<String, RenderError> {
        let rendered = template.render(values);
        if !rendered.chars().any(is_header_control) {
            // Leading/trailing blanks are not significant in a header and trailing ones get
            // mangled in transit (and by DKIM relaxed canonicalisation): drop them.
            let trimmed = rendered.trim_matches([' ', '\t']);
            return Ok(if trimmed.len() == rendered.len() {
                rendered
            } else {
                trimmed.to_owned()
            });
        }
        // The literal text was checked at campaign load, so a column brought the character.
        let column = template
            .columns_used()
            .find(|&i| values.get(i).is_some_and(|v| v.chars().any(is_header_control)));
        Err(RenderError::HeaderInjection {
            field: field.to_owned(),
            column: column.map_or("(template)", |i| &self.columns[i]).to_owned(),
            value: column.map_or(rendered.clone(), |i| values[i].clone()),
        })
    }

    fn body(
        &self,
        part: &'static str,
        template: Option<&Template>,
        values: &[String],
    ) -> Result<Option<String>, RenderError> {
        let Some(template) = template else { return Ok(None) };
        let rendered = template.render(values);
        // memchr's vectorised search: the body is scanned once per recipient.
        if memchr::memchr(0, rendered.as_bytes()).is_some() {
            let column = template
                .columns_used()
                .find(|&i| values.get(i).is_some_and(|v| v.contains('\0')));
            return Err(RenderError::NulInBody {
                part,
                column: column.map_or("(template)", |i| &self.columns[i]).to_owned(),
            });
        }
        Ok(Some(normalise_newlines(rendered)))
    }
}

/// `<https://…>, <mailto:…?subject=unsubscribe>` (RFC 2369 §3.2; URL values percent-encoded, so
/// no recipient value can inject into the header).
fn list_unsubscribe_value(l: &CompiledListUnsubscribe, values: &[String]) -> String {
    let mut out = String::with_capacity(128);
    if let Some(url) = &l.url {
        out.push('<');
        url.render_into(values, &mut out);
        out.push('>');
    }
    if let Some(mailto) = &l.mailto {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str("<mailto:");
        out.push_str(mailto.as_str());
        out.push_str("?subject=unsubscribe>");
    }
    out
}

/// A body part. A body that needs no transfer encoding goes out as `7bit` with CRLF line ends
/// prepared here in one pass; anything else is left to mail-builder's detection (quoted-printable
/// or base64). The output is the same either way (tested); the fast path avoids mail-builder's
/// per-byte scan and per-byte writes, which were the largest cost of building a message.
fn text_part(content_type: &'static str, body: String) -> MimePart<'static> {
    match seven_bit_crlf(&body) {
        Some(crlf) => MimePart::new(content_type, crlf).transfer_encoding("7bit"),
        None => MimePart::new(content_type, body),
    }
}

/// `body` with LF turned into CRLF, if it can be sent as `7bit` (RFC 2045 §2.7) under the rule
/// mail-builder applies: ASCII only, lines of at most 76 octets, no space or tab before a line
/// end. Newlines are already normalised to LF (see [`normalise_newlines`]).
fn seven_bit_crlf(body: &str) -> Option<String> {
    const MAX_7BIT_LINE: usize = 76;
    let bytes = body.as_bytes();
    if !bytes.is_ascii() || memchr::memchr(b'\r', bytes).is_some() {
        return None;
    }
    let plain = |line: &[u8]| line.len() <= MAX_7BIT_LINE && !matches!(line.last(), Some(b' ' | b'\t'));
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', bytes) {
        let line = &body[start..end];
        if !plain(line.as_bytes()) {
            return None;
        }
        out.push_str(line);
        out.push_str("\r\n");
        start = end + 1;
    }
    let last = &body[start..];
    if !plain(last.as_bytes()) {
        return None;
    }
    out.push_str(last);
    Some(out)
}

fn is_header_control(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// CRLF and lone CR become LF; mail-builder turns every LF into CRLF (a bare CR would
/// otherwise reach the wire).
fn normalise_newlines(text: String) -> String {
    if memchr::memchr(b'\r', text.as_bytes()).is_none() {
        return text;
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// A custom header value: as-is when it is printable ASCII that folds under 998 octets
/// (structured headers such as List-Unsubscribe must not be encoded), otherwise RFC 2047
/// encoded words.
fn custom_header<'x>(value: String) -> HeaderType<'x> {
    let printable = value.bytes().all(|b| b == b'\t' || (32..127).contains(&b));
    let longest_word = value.split([' ', '\t']).map(str::len).max().unwrap_or(0);
    if printable && longest_word <= 900 {
        Raw::new(Cow::Owned(value)).into()
    } else {
        Text::new(Cow::Owned(value)).into()
    }
}

/// `"Name" <addr>` (ASCII name, RFC 5322 §3.2.4 quoted-string), `=?utf-8?B?…?= <addr>`
/// (non-ASCII name, RFC 2047 §5(3), each word ≤ 75 octets) or `<addr>`.
fn mailbox_header(mailbox: &Mailbox) -> String {
    let mut out = String::new();
    match &mailbox.name {
        Some(name) if name.is_ascii() => {
            out.push('"');
            for c in name.chars() {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push_str("\" ");
        }
        Some(name) => {
            let mut rest = name.as_str();
            while !rest.is_empty() {
                // 45 octets -> 60 base64 chars -> a 72-octet encoded word.
                let mut end = rest.len().min(45);
                while !rest.is_char_boundary(end) {
                    end -= 1;
                }
                out.push_str("=?utf-8?B?");
                base64(&rest.as_bytes()[..end], &mut out);
                out.push_str("?= ");
                rest = &rest[end..];
            }
        }
        None => {}
    }
    out.push('<');
    out.push_str(mailbox.address.as_str());
    out.push('>');
    out
}

fn base64(input: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::EmailAddress;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64(input.as_bytes(), &mut out);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn mailbox_headers() {
        let address = EmailAddress::parse("n@s.test").unwrap();
        let m = |name: Option<&str>| Mailbox {
            name: name.map(String::from),
            address: address.clone(),
        };
        assert_eq!(mailbox_header(&m(None)), "<n@s.test>");
        assert_eq!(
            mailbox_header(&m(Some(r#"Volley "Q" \ News"#))),
            r#""Volley \"Q\" \\ News" <n@s.test>"#
        );
        assert_eq!(mailbox_header(&m(Some("Zoë"))), "=?utf-8?B?Wm/Dqw==?= <n@s.test>");
        let long = mailbox_header(&m(Some(&"é".repeat(40))));
        assert_eq!(long.matches("=?utf-8?B?").count(), 2);
        assert!(long.split(' ').all(|w| w.len() <= 75), "{long}");
    }

    #[test]
    fn newlines_normalised() {
        assert_eq!(normalise_newlines("a\r\nb\rc\nd".into()), "a\nb\nc\nd");
    }
}

#[cfg(test)]
mod seven_bit_tests {
    use super::*;

    fn written(part: MimePart<'static>) -> Vec<u8> {
        let mut out = Vec::new();
        part.write_part(&mut out).expect("write to a Vec");
        out
    }

    #[test]
    fn fast_path_writes_exactly_what_mail_builder_would() {
        let bodies = [
            "Hi Ada,\n\nWelcome aboard.\n-- The team\n",
            "no newline at the end",
            "a = b; 100% ok\n.leading dot\n\n\n",
            "",
            &"x".repeat(76),
        ];
        for body in bodies {
            let fast = seven_bit_crlf(body).expect("7bit body");
            assert_eq!(
                written(MimePart::new("text/plain", fast).transfer_encoding("7bit")),
                written(MimePart::new("text/plain", body.to_string())),
                "{body:?}"
            );
        }
    }

    #[test]
    fn bodies_that_need_encoding_are_left_to_mail_builder() {
        for body in [
            "caf\u{e9}\n",
            "trailing space \nx",
            "tab\t",
            &"y".repeat(77),
            "bare\rcr",
        ] {
            assert_eq!(seven_bit_crlf(body), None, "{body:?}");
        }
        let long = "z".repeat(200);
        let part = written(text_part("text/plain", long));
        assert!(String::from_utf8_lossy(&part).contains("quoted-printable"));
    }
}
