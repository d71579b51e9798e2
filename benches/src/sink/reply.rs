//! The sink's own reply texts (the protocol session of `volley-smtp-server` writes the
//! standard ones), canned-reply rendering, and the banner.

use std::io::Write;
use std::net::IpAddr;

use volley_smtp_server::{EnhancedCode, Reply};

use super::config::SinkConfig;

/// `refuse_ehlo`: clients must fall back to HELO.
pub(crate) const EHLO_REFUSED: Reply = Reply::new(502, EnhancedCode::new(5, 5, 1), "EHLO not supported, use HELO");
/// The `tempfail_pct` answer to RCPT.
pub(crate) const TEMPFAIL: Reply = Reply::new(
    451,
    EnhancedCode::new(4, 3, 0),
    "Temporary failure, please try again later",
);
/// The `permfail_pct` answer to RCPT.
pub(crate) const PERMFAIL: Reply = Reply::new(
    550,
    EnhancedCode::new(5, 1, 1),
    "Recipient address rejected: User unknown",
);
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] =
    b"421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later.\r\n";
pub(crate) const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Service shutting down, closing channel\r\n";
pub(crate) const TIMEOUT: &[u8] = b"421 4.4.2 Timeout exceeded, closing channel\r\n";

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

/// `220 <hostname> ESMTP volley-sink`.
pub(crate) fn banner(config: &SinkConfig) -> Box<[u8]> {
    format!("220 {} ESMTP volley-sink\r\n", config.hostname)
        .into_bytes()
        .into()
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
}
