//! SMTP reply parsing (RFC 5321 §4.2) with RFC 3463 enhanced status codes.
//!
//! The parser is sans-IO: it looks at the bytes received so far and either returns a complete
//! reply together with the number of bytes it used, or says that more bytes are needed. Bytes
//! after the reply are left alone, so with PIPELINING (RFC 2920) the next reply's bytes survive.

use std::fmt;

/// Default cap on the size of one reply (all of its lines), in octets.
pub const DEFAULT_MAX_REPLY_SIZE: usize = 64 * 1024;
/// Cap on one reply line, in octets. RFC 5321 §4.5.3.1.5 sets 512; real servers exceed it, so
/// we allow more but still bound memory per connection.
pub const MAX_REPLY_LINE: usize = 4096;

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.1.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// The subject sub-code (0-999).
    pub subject: u16,
    /// The detail sub-code (0-999).
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl EnhancedCode {
    /// Parses `X.Y.Z` at the start of `text`, followed by a space or the end of the text.
    /// Returns the code and the rest of the text after the separating space.
    pub fn parse_prefix(text: &str) -> Option<(EnhancedCode, &str)> {
        let end = text.find(' ').unwrap_or(text.len());
        let mut parts = text[..end].split('.');
        let class = parts.next()?;
        let subject = parts.next()?;
        let detail = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let class: u8 = match class {
            "2" => 2,
            "4" => 4,
            "5" => 5,
            _ => return None,
        };
        let subject = parse_subcode(subject)?;
        let detail = parse_subcode(detail)?;
        let rest = text.get(end + 1..).unwrap_or("");
        Some((EnhancedCode { class, subject, detail }, rest))
    }
}

fn parse_subcode(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One complete SMTP reply: a three-digit code, an optional enhanced code and the text of all
/// its lines (without the codes), joined by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (200-599).
    pub code: u16,
    /// The enhanced status code of the first line, when the server sent one.
    pub enhanced: Option<EnhancedCode>,
    /// The text of every line, codes removed, joined by `\n`.
    pub text: String,
}

impl Reply {
    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 3xx: intermediate (354 after DATA).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    /// 4xx: transient negative completion; try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
    /// The reply as one line for logs: `550 5.1.1 text text`.
    pub fn one_line(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = self.enhanced {
            s.push(' ');
            s.push_str(&e.to_string());
        }
        for line in self.text.split('\n') {
            if !line.is_empty() {
                s.push(' ');
                s.push_str(line);
            }
        }
        s
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyParse {
    /// No complete reply yet: read more bytes and call again with all of them.
    Incomplete,
    /// A complete reply that used the first `consumed` bytes of the buffer.
    Complete {
        /// The parsed reply.
        reply: Reply,
        /// Bytes used; everything after them belongs to the next reply.
        consumed: usize,
    },
}

/// A reply the server should not have sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code in 200-599 followed by ' ', '-' or CRLF.
    #[error("malformed reply line {line:?}")]
    Malformed {
        /// The offending line, lossily decoded and truncated to 200 characters.
        line: String,
    },
    /// A continuation line carries a different code than the first (RFC 5321 §4.2.1).
    #[error("reply code changed from {first} to {then} within one multi-line reply")]
    CodeMismatch {
        /// Code of the first line.
        first: u16,
        /// Code of the offending line.
        then: u16,
    },
    /// The reply (or one line) is larger than the configured cap.
    #[error("reply exceeds {limit} octets")]
    TooLong {
        /// The cap that was exceeded.
        limit: usize,
    },
}

fn excerpt(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    s.chars().take(200).collect()
}

/// Parses one reply from the start of `buf`.
///
/// `max_size` caps the whole reply: a reply that is still incomplete past that size is an error,
/// so a misbehaving server cannot make us buffer without bound. Lines end in CRLF; a bare LF is
/// accepted too (robustness principle, RFC 5321 §4.1.1.4 notwithstanding).
pub fn parse_reply(buf: &[u8], max_size: usize) -> Result<ReplyParse, ReplyError> {
    let mut pos = 0;
    let mut code = 0u16;
    let mut enhanced = None;
    let mut text = String::new();
    loop {
        let rest = &buf[pos..];
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if rest.len() > MAX_REPLY_LINE {
                return Err(ReplyError::TooLong { limit: MAX_REPLY_LINE });
            }
            if buf.len() > max_size {
                return Err(ReplyError::TooLong { limit: max_size });
            }
            return Ok(ReplyParse::Incomplete);
        };
        if nl > MAX_REPLY_LINE {
            return Err(ReplyError::TooLong { limit: MAX_REPLY_LINE });
        }
        if pos + nl + 1 > max_size {
            return Err(ReplyError::TooLong { limit: max_size });
        }
        let mut line = &rest[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        let (line_code, last, line_text) = split_line(line)?;
        if pos == 0 {
            code = line_code;
        } else if line_code != code {
            return Err(ReplyError::CodeMismatch {
                first: code,
                then: line_code,
            });
        }
        let line_text = String::from_utf8_lossy(line_text);
        let line_text = match EnhancedCode::parse_prefix(&line_text) {
            Some((e, rest)) if e.class as u16 == code / 100 => {
                if pos == 0 {
                    enhanced = Some(e);
                }
                rest
            }
            _ => &line_text,
        };
        if pos != 0 {
            text.push('\n');
        }
        text.push_str(line_text);
        pos += nl + 1;
        if last {
            return Ok(ReplyParse::Complete {
                reply: Reply { code, enhanced, text },
                consumed: pos,
            });
        }
    }
}

/// Splits `NNN-text` / `NNN text` / `NNN` into (code, is-last-line, text).
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let malformed = || ReplyError::Malformed { line: excerpt(line) };
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    let code = (line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16;
    if !(200..600).contains(&code) {
        return Err(malformed());
    }
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Reply, usize) {
        match parse_reply(buf, DEFAULT_MAX_REPLY_SIZE) {
            Ok(ReplyParse::Complete { reply, consumed }) => (reply, consumed),
            other => panic!("expected a complete reply, got {other:?}"),
        }
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let (r, n) = complete(b"250 2.1.0 Sender ok\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(
            r.enhanced,
            Some(EnhancedCode {
                class: 2,
                subject: 1,
                detail: 0
            })
        );
        assert_eq!(r.text, "Sender ok");
        assert_eq!(n, 21);
    }

    #[test]
    fn rfc5321_ehlo_transcript_multiline() {
        // RFC 5321 appendix D.1 style EHLO response.
        let buf = b"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n";
        let (r, n) = complete(buf);
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, "foo.com greets bar.com\n8BITMIME\nSIZE\nDSN\nHELP");
        assert_eq!(n, buf.len());
    }

    #[test]
    fn gmail_multiline_bounce() {
        let buf = b"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550-5.1.1 double-checking the recipient's email address for typos or\r\n550 5.1.1 unnecessary spaces.\r\n";
        let (r, _) = complete(buf);
        assert_eq!(r.code, 550);
        assert_eq!(r.enhanced.map(|e| e.to_string()).as_deref(), Some("5.1.1"));
        assert!(r.text.starts_with("The email account"));
        assert!(!r.text.contains("5.1.1"));
        assert!(r.is_permanent());
    }

    #[test]
    fn incomplete_is_a_value_not_an_error() {
        assert_eq!(parse_reply(b"", 1024), Ok(ReplyParse::Incomplete));
        assert_eq!(parse_reply(b"25", 1024), Ok(ReplyParse::Incomplete));
        assert_eq!(parse_reply(b"250-first\r\n250 sec", 1024), Ok(ReplyParse::Incomplete));
    }

    #[test]
    fn pipelined_replies_leave_following_bytes() {
        let buf = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n";
        let (r1, n1) = complete(buf);
        assert_eq!(r1.code, 250);
        let (r2, n2) = complete(&buf[n1..]);
        assert_eq!(r2.enhanced.map(|e| e.detail), Some(5));
        let (r3, n3) = complete(&buf[n1 + n2..]);
        assert_eq!(r3.code, 354);
        assert_eq!(n1 + n2 + n3, buf.len());
    }

    #[test]
    fn code_without_text_and_bare_lf() {
        let (r, n) = complete(b"220\r\n");
        assert_eq!((r.code, r.text.as_str(), n), (220, "", 5));
        let (r, _) = complete(b"221 bye\n");
        assert_eq!(r.code, 221);
    }

    #[test]
    fn malformed_and_mismatch() {
        assert!(matches!(
            parse_reply(b"hello\r\n", 1024),
            Err(ReplyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_reply(b"250x\r\n", 1024),
            Err(ReplyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_reply(b"099 no\r\n", 1024),
            Err(ReplyError::Malformed { .. })
        ));
        assert_eq!(
            parse_reply(b"250-a\r\n550 b\r\n", 1024),
            Err(ReplyError::CodeMismatch { first: 250, then: 550 })
        );
    }

    #[test]
    fn caps_bound_memory() {
        let long = vec![b'2'; MAX_REPLY_LINE + 10];
        assert!(matches!(
            parse_reply(&long, usize::MAX),
            Err(ReplyError::TooLong { .. })
        ));
        let mut many = Vec::new();
        for _ in 0..100 {
            many.extend_from_slice(b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
        }
        assert!(matches!(
            parse_reply(&many, 1024),
            Err(ReplyError::TooLong { limit: 1024 })
        ));
    }

    #[test]
    fn enhanced_code_class_must_match_reply_class() {
        // "5.1.1" on a 250 line is text, not an enhanced code.
        let (r, _) = complete(b"250 5.1.1 odd\r\n");
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, "5.1.1 odd");
        assert_eq!(
            EnhancedCode::parse_prefix("4.7.28 rate"),
            Some((
                EnhancedCode {
                    class: 4,
                    subject: 7,
                    detail: 28
                },
                "rate"
            ))
        );
        assert_eq!(EnhancedCode::parse_prefix("4.7.2800 x"), None);
        assert_eq!(EnhancedCode::parse_prefix("3.1.1 x"), None);
    }

    #[test]
    fn one_line_rendering() {
        let (r, _) = complete(b"452-4.2.2 The recipient's inbox is out of storage space.\r\n452 4.2.2 Please direct the recipient to review their storage.\r\n");
        assert_eq!(
            r.one_line(),
            "452 4.2.2 The recipient's inbox is out of storage space. Please direct the recipient to review their storage."
        );
    }
}
