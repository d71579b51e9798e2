//! EHLO response parsing into typed capabilities (RFC 5321 §4.1.1.1, §2.2.2).

use super::reply::Reply;

/// The service extensions a server advertised in its EHLO reply, parsed once per session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920 command pipelining.
    pub pipelining: bool,
    /// RFC 1870 SIZE: `Some(0)` when advertised without a limit, `Some(n)` for a limit of n octets.
    pub size: Option<u64>,
    /// RFC 6152 8BITMIME.
    pub eight_bit_mime: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3207 STARTTLS.
    pub starttls: bool,
    /// RFC 2034 ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// RFC 3030 CHUNKING (BDAT).
    pub chunking: bool,
    /// RFC 4954 AUTH mechanisms, upper-cased; empty when AUTH is not offered.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Parses the capabilities from a positive EHLO reply. The first line is the server's
    /// greeting, not a keyword; unknown keywords are ignored.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.text.split('\n').skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "CHUNKING" => caps.chunking = true,
                "AUTH" => caps.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
        }
        caps
    }

    /// Whether a message of `size` octets fits the advertised SIZE limit (RFC 1870 §4).
    pub fn accepts_size(&self, size: u64) -> bool {
        match self.size {
            Some(limit) if limit > 0 => size <= limit,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::{parse_reply, ReplyParse};

    fn caps(raw: &[u8]) -> Capabilities {
        match parse_reply(raw, 65536) {
            Ok(ReplyParse::Complete { reply, .. }) => Capabilities::from_ehlo(&reply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn postfix_like_ehlo() {
        let c = caps(b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN login\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && c.smtputf8);
        assert!(c.enhanced_status_codes && c.chunking);
        assert_eq!(c.size, Some(10_240_000));
        assert_eq!(c.auth, vec!["PLAIN", "LOGIN"]);
        assert!(c.accepts_size(10_240_000));
        assert!(!c.accepts_size(10_240_001));
    }

    #[test]
    fn minimal_and_lowercase() {
        let c = caps(b"250 tiny.example\r\n");
        assert_eq!(c, Capabilities::default());
        let c = caps(b"250-x\r\n250-pipelining\r\n250 size\r\n");
        assert!(c.pipelining);
        assert_eq!(c.size, Some(0));
        assert!(c.accepts_size(u64::MAX));
    }

    #[test]
    fn greeting_line_is_not_a_keyword() {
        let c = caps(b"250-PIPELINING\r\n250 8BITMIME\r\n");
        assert!(!c.pipelining);
        assert!(c.eight_bit_mime);
    }
}
