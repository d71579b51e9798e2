//! The original message as a report returns it (`message/rfc822`, `message/global`,
//! `text/rfc822-headers`, `message/global-headers`): the headers that identify it.

use mail_parser::{Message, MimeHeaders, PartType};

use crate::fields::parse_blocks;

/// Identifying headers of a returned message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReturnedHeaders {
    /// `Message-ID`, without `<>`.
    pub message_id: Option<String>,
    /// `Return-Path` (the envelope sender, set by the delivering MTA), without `<>`.
    pub return_path: Option<String>,
    /// `To` as written.
    pub to: Option<String>,
}

/// The most header bytes of a returned message looked at.
const MAX_HEADER_BYTES: usize = 256 * 1024;

impl ReturnedHeaders {
    /// Reads the header section at the start of `text` (up to the first blank line).
    pub fn from_text(text: &str) -> ReturnedHeaders {
        let mut end = text.len().min(MAX_HEADER_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let text = &text[..end];
        let head = ["\r\n\r\n", "\n\n"]
            .iter()
            .filter_map(|sep| text.find(sep))
            .min()
            .map_or(text, |i| &text[..i]);
        // Lines that are not fields (an mbox `From ` line, garbage) are skipped, not fatal:
        // the headers are a hint, the report is elsewhere.
        let cleaned: String = head
            .split('\n')
            .filter(|l| l.starts_with([' ', '\t']) || l.contains(':'))
            .flat_map(|l| [l, "\n"])
            .collect();
        let Ok(blocks) = parse_blocks(&cleaned) else {
            return ReturnedHeaders::default();
        };
        let Some(block) = blocks.first() else {
            return ReturnedHeaders::default();
        };
        let bare = |v: &str| v.trim().trim_start_matches('<').trim_end_matches('>').trim().to_owned();
        ReturnedHeaders {
            message_id: block.get("message-id").map(bare).filter(|v| !v.is_empty()),
            return_path: block.get("return-path").map(bare).filter(|v| !v.is_empty()),
            to: block.get("to").map(str::to_owned),
        }
    }
}

/// The identifying headers of the message returned in `message` (raw bytes `raw`), if any.
pub fn returned_headers(message: &Message<'_>, raw: &[u8]) -> ReturnedHeaders {
    for part in message.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else { continue };
        let (ctype, sub) = (ct.ctype(), ct.subtype().unwrap_or(""));
        let whole = ctype.eq_ignore_ascii_case("message")
            && (sub.eq_ignore_ascii_case("rfc822") || sub.eq_ignore_ascii_case("global"));
        let headers = (ctype.eq_ignore_ascii_case("text") && sub.eq_ignore_ascii_case("rfc822-headers"))
            || (ctype.eq_ignore_ascii_case("message") && sub.eq_ignore_ascii_case("global-headers"));
        if whole {
            let body = raw
                .get(part.offset_body as usize..part.offset_end as usize)
                .unwrap_or_default();
            return ReturnedHeaders::from_text(&String::from_utf8_lossy(body));
        }
        if headers {
            let text = match &part.body {
                PartType::Text(t) | PartType::Html(t) => t.to_string(),
                PartType::Binary(b) | PartType::InlineBinary(b) => String::from_utf8_lossy(b).into_owned(),
                _ => continue,
            };
            return ReturnedHeaders::from_text(&text);
        }
    }
    ReturnedHeaders::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_up_to_the_blank_line() {
        let h = ReturnedHeaders::from_text(
            "From nobody Mon\nReturn-Path: <bounces+abc@b.test>\r\nMessage-ID:\r\n <x.1@s.test>\r\nTo: a@b.test\r\n\r\nMessage-ID: <body@x>\r\n",
        );
        assert_eq!(h.message_id.as_deref(), Some("x.1@s.test"));
        assert_eq!(h.return_path.as_deref(), Some("bounces+abc@b.test"));
        assert_eq!(h.to.as_deref(), Some("a@b.test"));
    }
}
