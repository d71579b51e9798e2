//! What a session advertises (EHLO keywords) and enforces (limits, TLS and AUTH policy).

use std::io::Write;

use crate::command::MAX_COMMAND_LINE;

/// RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients per transaction.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;

/// A SASL mechanism the session decodes (RFC 4954); the credential check is the driver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    /// RFC 4616 `PLAIN`: `authzid NUL authcid NUL passwd` in one response.
    Plain,
    /// `LOGIN` (draft-murchison-sasl-login): user name, then password, each prompted.
    Login,
}

impl AuthMechanism {
    /// The name in the EHLO `AUTH` line and the AUTH command.
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::Plain => "PLAIN",
            AuthMechanism::Login => "LOGIN",
        }
    }
}

/// Configuration of every session of one listener. [`SessionConfig::default`] is a plain
/// ESMTP server: PIPELINING, SIZE 50 MiB, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES; no
/// CHUNKING, STARTTLS, AUTH or DSN.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The name in the EHLO/HELO reply.
    pub hostname: String,
    /// Advertise PIPELINING (RFC 2920). Replies are batched until the input runs dry either
    /// way; this only changes what EHLO lists.
    pub pipelining: bool,
    /// Largest message in octets (after dot-unstuffing), advertised as `SIZE` (RFC 1870):
    /// a larger `SIZE=` declaration gets 552 at MAIL, larger content 552 at its end.
    pub max_message_size: u64,
    /// Advertise 8BITMIME (RFC 6152) and accept `BODY=8BITMIME`.
    pub eight_bit_mime: bool,
    /// Advertise SMTPUTF8 (RFC 6531) and accept the `SMTPUTF8` parameter.
    pub smtputf8: bool,
    /// Advertise ENHANCEDSTATUSCODES (RFC 2034) and put enhanced codes in replies.
    pub enhanced_status_codes: bool,
    /// Advertise CHUNKING (RFC 3030) and accept BDAT (and `BODY=BINARYMIME` with it).
    pub chunking: bool,
    /// Advertise DSN (RFC 3461) and accept `RET`, `ENVID`, `NOTIFY`, `ORCPT`.
    pub dsn: bool,
    /// Offer STARTTLS (RFC 3207) while the session is in plaintext. The driver performs the
    /// handshake.
    pub starttls: bool,
    /// SASL mechanisms advertised with `AUTH` (RFC 4954); empty: no AUTH.
    pub auth: Vec<AuthMechanism>,
    /// AUTH is neither advertised nor accepted before TLS (538 5.7.11), as on a submission
    /// port (RFC 8314 §3.3 recommends it).
    pub auth_requires_tls: bool,
    /// MAIL needs a successful AUTH first (530 5.7.0): a submission listener.
    pub require_auth: bool,
    /// MAIL needs TLS first (530 5.7.0).
    pub require_tls: bool,
    /// Accepted recipients per transaction; the next RCPT gets 452 4.5.3.
    pub max_recipients: usize,
    /// Longest command line including CRLF; at least 512 (RFC 5321 §4.5.3.1.4).
    pub max_command_line: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".to_owned(),
            pipelining: true,
            max_message_size: 50 * 1024 * 1024,
            eight_bit_mime: true,
            smtputf8: true,
            enhanced_status_codes: true,
            chunking: false,
            dsn: false,
            starttls: false,
            auth: Vec::new(),
            auth_requires_tls: false,
            require_auth: false,
            require_tls: false,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_command_line: MAX_COMMAND_LINE,
        }
    }
}

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("session config: {field} = {value}: {reason}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl SessionConfig {
    /// Checks every field; the error names the field and value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value: String, reason| Err(ConfigError { field, value, reason });
        if self.hostname.is_empty()
            || self
                .hostname
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return bad(
                "hostname",
                format!("{:?}", self.hostname),
                "must be a name without spaces or control characters",
            );
        }
        if self.max_message_size == 0 {
            return bad("max_message_size", "0".into(), "must be at least 1");
        }
        if self.max_recipients < 1 {
            return bad(
                "max_recipients",
                "0".into(),
                "must be at least 1 (RFC 5321 asks for 100)",
            );
        }
        if self.max_command_line < MAX_COMMAND_LINE {
            return bad(
                "max_command_line",
                self.max_command_line.to_string(),
                "must be at least 512 (RFC 5321 §4.5.3.1.4)",
            );
        }
        if self.require_auth && self.auth.is_empty() {
            return bad("require_auth", "true".into(), "needs at least one AUTH mechanism");
        }
        if self.require_tls && !self.starttls {
            // An implicit-TLS listener starts its sessions with `tls` set, so this only
            // forbids a plaintext listener that could never accept mail.
            return bad(
                "require_tls",
                "true".into(),
                "needs starttls (or start sessions under TLS)",
            );
        }
        Ok(())
    }

    /// Whether AUTH is offered in a session whose TLS state is `tls`.
    pub(crate) fn offers_auth(&self, tls: bool) -> bool {
        !self.auth.is_empty() && (tls || !self.auth_requires_tls)
    }

    /// Appends the EHLO reply (RFC 5321 §4.1.1.1): the hostname, then one extension per line.
    pub(crate) fn write_ehlo(&self, out: &mut Vec<u8>, tls: bool) {
        let mut lines: Vec<&str> = Vec::with_capacity(12);
        let size = format!("SIZE {}", self.max_message_size);
        let auth = self.auth.iter().fold(String::from("AUTH"), |mut s, m| {
            s.push(' ');
            s.push_str(m.name());
            s
        });
        lines.push(&self.hostname);
        if self.pipelining {
            lines.push("PIPELINING");
        }
        lines.push(&size);
        if self.eight_bit_mime {
            lines.push("8BITMIME");
        }
        if self.smtputf8 {
            lines.push("SMTPUTF8");
        }
        if self.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES");
        }
        if self.chunking {
            lines.push("CHUNKING");
        }
        if self.dsn {
            lines.push("DSN");
        }
        if self.offers_auth(tls) {
            lines.push(&auth);
        }
        if self.starttls && !tls {
            lines.push("STARTTLS");
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            // RFC 5321 §4.2.1: "250-" on every line but the last.
            let sep = if i == last { ' ' } else { '-' };
            let _ = write!(out, "250{sep}{line}\r\n");
        }
    }

    /// Appends the HELO reply: `250 <hostname>`.
    pub(crate) fn write_helo(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "250 {}\r\n", self.hostname);
    }
}
