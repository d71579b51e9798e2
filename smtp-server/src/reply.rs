//! Replies (RFC 5321 §4.2) with RFC 3463 enhanced status codes (RFC 2034), and the standard
//! replies the session sends on its own.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject, e.g. 1 for addressing, 5 for protocol.
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedCode {
    /// `class.subject.detail`.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode { class, subject, detail }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One reply: a three-digit code, an optional enhanced code and one or more lines of text
/// (separated by `\n` in `text`). Written with `-` continuations on every line but the last
/// (RFC 5321 §4.2.1), the enhanced code on every line when the session advertises
/// ENHANCEDSTATUSCODES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    text: Cow<'static, str>,
}

impl Reply {
    /// A reply with an enhanced code, usable in `const` items.
    pub const fn new(code: u16, enhanced: EnhancedCode, text: &'static str) -> Self {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Borrowed(text),
        }
    }

    /// A reply without an enhanced code (RFC 2034 §3: 354 and the greeting carry none).
    pub const fn plain(code: u16, text: &'static str) -> Self {
        Reply {
            code,
            enhanced: None,
            text: Cow::Borrowed(text),
        }
    }

    /// A reply with runtime text. `code` is clamped to 200..=599; CR and control characters
    /// in `text` other than `\n` (the line separator) become spaces, so a reply can never
    /// smuggle protocol lines.
    pub fn owned(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Self {
        let mut text: String = text.into();
        if text.chars().any(|c| c.is_control() && c != '\n') {
            text = text
                .chars()
                .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
                .collect();
        }
        Reply {
            code: code.clamp(200, 599),
            enhanced,
            text: Cow::Owned(text),
        }
    }

    /// The three-digit code.
    pub const fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced code, if any.
    pub const fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The text, lines separated by `\n`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// 2xx: the command succeeded.
    pub const fn is_success(&self) -> bool {
        is_success(self.code)
    }

    /// Appends the reply and its final CRLF to `out`; `enhanced` says whether the session
    /// advertises ENHANCEDSTATUSCODES (RFC 2034).
    pub fn write_to(&self, out: &mut Vec<u8>, enhanced: bool) {
        let enhanced = self.enhanced.filter(|_| enhanced);
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { b'-' } else { b' ' };
            push_code(out, self.code);
            out.push(sep);
            if let Some(e) = enhanced {
                push_enhanced(out, e);
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// 2xx.
pub(crate) const fn is_success(code: u16) -> bool {
    code >= 200 && code < 300
}

fn push_code(out: &mut Vec<u8>, code: u16) {
    let code = code.clamp(200, 599);
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
}

fn push_enhanced(out: &mut Vec<u8>, e: EnhancedCode) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{e}");
}

const fn e(class: u8, subject: u16, detail: u16) -> EnhancedCode {
    EnhancedCode::new(class, subject, detail)
}

/// `250 2.0.0 Ok`: RSET, NOOP, the default final reply.
pub const OK: Reply = Reply::new(250, e(2, 0, 0), "Ok");
/// `250 2.1.0 Ok`: MAIL accepted.
pub const SENDER_OK: Reply = Reply::new(250, e(2, 1, 0), "Ok");
/// `250 2.1.5 Ok`: RCPT accepted.
pub const RECIPIENT_OK: Reply = Reply::new(250, e(2, 1, 5), "Ok");
/// `354`: go ahead with the content.
pub const START_DATA: Reply = Reply::plain(354, "End data with <CR><LF>.<CR><LF>");
/// A BDAT chunk that is not the last was received.
pub const CHUNK_OK: Reply = Reply::new(250, e(2, 0, 0), "Chunk received");
/// QUIT.
pub const BYE: Reply = Reply::new(221, e(2, 0, 0), "Bye");
/// STARTTLS accepted (RFC 3207 §4).
pub const READY_FOR_TLS: Reply = Reply::new(220, e(2, 0, 0), "Ready to start TLS");
/// RFC 4954 §6: authentication succeeded.
pub const AUTH_OK: Reply = Reply::new(235, e(2, 7, 0), "Authentication successful");
/// RFC 4954 §6: wrong credentials.
pub const AUTH_FAILED: Reply = Reply::new(535, e(5, 7, 8), "Authentication credentials invalid");
/// VRFY (RFC 5321 §3.5.3: 252 when the server does not verify).
pub const VRFY: Reply = Reply::new(252, e(2, 5, 0), "Cannot VRFY user, but will accept message");
/// HELP.
pub const HELP: Reply = Reply::new(
    214,
    e(2, 0, 0),
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
);
/// RFC 5321 §3.8: the server is closing the channel.
pub const SHUTTING_DOWN: Reply = Reply::new(421, e(4, 3, 2), "Service shutting down, closing channel");
/// RFC 5321 §4.5.3.2: the client was idle too long.
pub const TIMEOUT: Reply = Reply::new(421, e(4, 4, 2), "Timeout exceeded, closing channel");
/// A local failure while deciding (the driver's handler failed).
pub const LOCAL_ERROR: Reply = Reply::new(451, e(4, 3, 0), "Local error in processing, please try again later");

#[cfg(test)]
mod tests {
    use super::*;

    fn render(reply: &Reply, enhanced: bool) -> String {
        let mut out = Vec::new();
        reply.write_to(&mut out, enhanced);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn single_line_with_and_without_enhanced_code() {
        assert_eq!(render(&SENDER_OK, true), "250 2.1.0 Ok\r\n");
        assert_eq!(render(&SENDER_OK, false), "250 Ok\r\n");
        assert_eq!(render(&START_DATA, true), "354 End data with <CR><LF>.<CR><LF>\r\n");
    }

    #[test]
    fn multi_line_uses_continuations_and_repeats_the_enhanced_code() {
        let reply = Reply::owned(550, Some(EnhancedCode::new(5, 7, 1)), "first\nsecond\nthird");
        assert_eq!(
            render(&reply, true),
            "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
        );
        assert_eq!(render(&reply, false), "550-first\r\n550-second\r\n550 third\r\n");
    }

    #[test]
    fn owned_text_cannot_smuggle_lines_and_codes_are_clamped() {
        let reply = Reply::owned(99, None, "a\r\nb\x00c");
        assert_eq!(reply.code(), 200);
        assert_eq!(render(&reply, true), "200-a \r\n200 b c\r\n");
        assert_eq!(Reply::owned(9999, None, "x").code(), 599);
    }
}
