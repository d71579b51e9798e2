//! Reply texts (RFC 5321 §4.2 codes with RFC 3463 enhanced status codes) and how they are
//! appended to a connection's write buffer.

use std::io::Write;
use std::net::IpAddr;

use super::config::SinkConfig;

pub(crate) const OK: &str = "250 2.0.0 Ok";
pub(crate) const SENDER_OK: &str = "250 2.1.0 Ok";
pub(crate) const RECIPIENT_OK: &str = "250 2.1.5 Ok";
pub(crate) const START_DATA: &str = "354 End data with <CR><LF>.<CR><LF>";
pub(crate) const CHUNK_OK: &str = "250 2.0.0 Chunk received";
pub(crate) const BYE: &str = "221 2.0.0 Bye";
pub(crate) const READY_FOR_TLS: &str = "220 2.0.0 Ready to start TLS";
pub(crate) const VRFY: &str = "252 2.5.0 Cannot VRFY user, but will accept message";
pub(crate) const HELP: &str = "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT STARTTLS";
pub(crate) const EHLO_REFUSED: &str = "502 5.5.1 EHLO not supported, use HELO";
pub(crate) const LINE_TOO_LONG: &str = "500 5.5.2 Syntax error, command line too long";
pub(crate) const GREET_FIRST: &str = "503 5.5.1 Error: send HELO/EHLO first";
pub(crate) const NESTED_MAIL: &str = "503 5.5.1 Error: nested MAIL command";
pub(crate) const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command";
pub(crate) const NO_RECIPIENTS: &str = "554 5.5.1 Error: no valid recipients";
pub(crate) const TLS_ACTIVE: &str = "503 5.5.1 Error: TLS already active";
pub(crate) const TLS_IN_TRANSACTION: &str = "503 5.5.1 Error: MAIL transaction in progress";
pub(crate) const TLS_UNAVAILABLE: &str = "502 5.5.1 Error: command not implemented";
pub(crate) const NOT_IMPLEMENTED: &str = "502 5.5.1 Error: command not implemented";
pub(crate) const TOO_MANY_RECIPIENTS: &str = "452 4.5.3 Error: too many recipients";
pub(crate) const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed maximum message size";
pub(crate) const TEMPFAIL: &str = "451 4.3.0 Temporary failure, please try again later";
pub(crate) const PERMFAIL: &str = "550 5.1.1 Recipient address rejected: User unknown";
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] =
    b"421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later.\r\n";
pub(crate) const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Service shutting down, closing channel\r\n";
pub(crate) const TIMEOUT: &[u8] = b"421 4.4.2 Timeout exceeded, closing channel\r\n";

/// Appends one reply (one or more lines without the final CRLF) and its CRLF.
pub(crate) fn push(out: &mut Vec<u8>, reply: &str) {
    out.extend_from_slice(reply.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `250 2.0.0 Ok: queued as <id>`.
pub(crate) fn push_queued(out: &mut Vec<u8>, id: u64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "250 2.0.0 Ok: queued as {id:010X}\r\n");
}

/// Values substituted into canned reply texts.
pub(crate) struct Placeholders<'a> {
    /// `{ip}`: the client's IP address.
    pub(crate) ip: IpAddr,
    /// `{rcpt}`: the recipient (the sender at the mail stage), empty where unknown.
    pub(crate) rcpt: &'a str,
    /// `{domain}`: the domain of `{rcpt}`.
    pub(crate) domain: &'a str,
}

/// Appends a canned reply with its placeholders substituted, and its CRLF. Unknown
/// `{names}` are kept literally.
pub(crate) fn push_canned(out: &mut Vec<u8>, text: &str, vars: &Placeholders<'_>) {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.extend_from_slice(&rest.as_bytes()[..open]);
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("{ip}") {
            let _ = write!(out, "{}", vars.ip);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{rcpt}") {
            out.extend_from_slice(vars.rcpt.as_bytes());
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{domain}") {
            out.extend_from_slice(vars.domain.as_bytes());
            rest = after;
        } else {
            out.push(b'{');
            rest = &rest[1..];
        }
    }
    out.extend_from_slice(rest.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Replies whose text depends on the configuration, built once at start.
#[derive(Debug)]
pub(crate) struct Greetings {
    /// `220 <hostname> ESMTP volley-sink`.
    pub(crate) banner: Box<[u8]>,
    /// The EHLO reply offering STARTTLS (when enabled), for plaintext sessions.
    pub(crate) ehlo_plain: Box<[u8]>,
    /// The EHLO reply without STARTTLS, for sessions already under TLS.
    pub(crate) ehlo_tls: Box<[u8]>,
    /// `250 <hostname>`.
    pub(crate) helo: Box<[u8]>,
}

impl Greetings {
    pub(crate) fn new(config: &SinkConfig) -> Self {
        let host = &config.hostname;
        let ehlo = |offer_tls: bool| {
            let mut lines = vec![host.clone()];
            if config.pipelining {
                lines.push("PIPELINING".to_owned());
            }
            lines.push(format!("SIZE {}", config.max_message_size));
            lines.extend(["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"].map(String::from));
            if config.chunking {
                lines.push("CHUNKING".to_owned());
            }
            if offer_tls {
                lines.push("STARTTLS".to_owned());
            }
            let last = lines.len() - 1;
            let mut reply = String::new();
            for (i, line) in lines.iter().enumerate() {
                // RFC 5321 §4.2.1: "250-" on every line but the last.
                let sep = if i == last { ' ' } else { '-' };
                reply.push_str(&format!("250{sep}{line}\r\n"));
            }
            reply.into_bytes().into_boxed_slice()
        };
        Greetings {
            banner: format!("220 {host} ESMTP volley-sink\r\n").into_bytes().into(),
            ehlo_plain: ehlo(config.starttls),
            ehlo_tls: ehlo(false),
            helo: format!("250 {host}\r\n").into_bytes().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_substituted() {
        let mut out = Vec::new();
        let vars = Placeholders {
            ip: IpAddr::from([127, 0, 0, 9]),
            rcpt: "a@yahoo.test",
            domain: "yahoo.test",
        };
        push_canned(&mut out, "421 4.7.0 {ip} {rcpt} {domain} {other} {", &vars);
        assert_eq!(out, b"421 4.7.0 127.0.0.9 a@yahoo.test yahoo.test {other} {\r\n");
    }

    #[test]
    fn ehlo_reply_lists_extensions_with_continuations() {
        let greetings = Greetings::new(&SinkConfig::default());
        let text = String::from_utf8(greetings.ehlo_plain.to_vec()).expect("ascii");
        assert!(text.starts_with("250-sink.volley.test\r\n250-PIPELINING\r\n"));
        assert!(text.contains("250-SIZE 52428800\r\n"));
        assert!(text.ends_with("250 STARTTLS\r\n"));
        let tls = String::from_utf8(greetings.ehlo_tls.to_vec()).expect("ascii");
        assert!(!tls.contains("STARTTLS"));
        assert!(tls.ends_with("250 ENHANCEDSTATUSCODES\r\n"));
    }
}
