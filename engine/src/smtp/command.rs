//! SMTP command encoding (RFC 5321 §4.1.1). Commands are appended to a caller's buffer so a
//! pipelined group (RFC 2920) goes out in one write with no allocation per command.

/// A command argument that would break the protocol if sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An address (reverse-path or forward-path) containing CR, LF, `<`, `>`, space or a
    /// control character, or longer than RFC 5321 §4.5.3.1.3 allows (256 octets).
    #[error("address {address:?} cannot be sent in an SMTP command: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A HELO/EHLO name that is empty or contains space or control characters.
    #[error("EHLO name {name:?} is not a valid domain or address literal")]
    InvalidHeloName {
        /// The name as given.
        name: String,
    },
}

/// Options of MAIL FROM (RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8).
#[derive(Clone, Copy, Debug, Default)]
pub struct MailParams {
    /// Message size to declare (sent only when the server advertised SIZE).
    pub size: Option<u64>,
    /// Declare `BODY=8BITMIME`.
    pub eight_bit: bool,
    /// Declare `SMTPUTF8`.
    pub smtputf8: bool,
}

/// Checks an address for use inside `<...>`; the empty reverse-path `<>` is allowed.
pub fn check_path(address: &str) -> Result<(), CommandError> {
    let bad = |reason| {
        Err(CommandError::InvalidAddress {
            address: address.to_string(),
            reason,
        })
    };
    if address.len() > 254 {
        return bad("longer than 254 octets");
    }
    if address.bytes().any(|b| b < 0x21 || b == 0x7f || b == b'<' || b == b'>') {
        return bad("contains a space, control character or angle bracket");
    }
    Ok(())
}

/// Checks a HELO/EHLO name.
pub fn check_helo_name(name: &str) -> Result<(), CommandError> {
    if name.is_empty() || name.len() > 255 || name.bytes().any(|b| b < 0x21 || b == 0x7f) {
        return Err(CommandError::InvalidHeloName { name: name.to_string() });
    }
    Ok(())
}

/// `EHLO name`.
pub fn ehlo(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"EHLO ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `HELO name`.
pub fn helo(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b"HELO ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `MAIL FROM:<path> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8]`. The path must have passed [`check_path`].
pub fn mail_from(out: &mut Vec<u8>, path: &str, params: MailParams) {
    out.extend_from_slice(b"MAIL FROM:<");
    out.extend_from_slice(path.as_bytes());
    out.push(b'>');
    if let Some(size) = params.size {
        out.extend_from_slice(b" SIZE=");
        out.extend_from_slice(size.to_string().as_bytes());
    }
    if params.eight_bit {
        out.extend_from_slice(b" BODY=8BITMIME");
    }
    if params.smtputf8 {
        out.extend_from_slice(b" SMTPUTF8");
    }
    out.extend_from_slice(b"\r\n");
}

/// `RCPT TO:<path>`. The path must have passed [`check_path`].
pub fn rcpt_to(out: &mut Vec<u8>, path: &str) {
    out.extend_from_slice(b"RCPT TO:<");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b">\r\n");
}

/// `DATA`.
pub fn data(out: &mut Vec<u8>) {
    out.extend_from_slice(b"DATA\r\n");
}

/// `BDAT <size> LAST` (RFC 3030 §2): the whole message as one chunk, whose `size` octets
/// follow the command line unstuffed.
pub fn bdat_last(out: &mut Vec<u8>, size: u64) {
    out.extend_from_slice(b"BDAT ");
    out.extend_from_slice(size.to_string().as_bytes());
    out.extend_from_slice(b" LAST\r\n");
}

/// `RSET`.
pub fn rset(out: &mut Vec<u8>) {
    out.extend_from_slice(b"RSET\r\n");
}

/// `QUIT`.
pub fn quit(out: &mut Vec<u8>) {
    out.extend_from_slice(b"QUIT\r\n");
}

/// `STARTTLS`.
pub fn starttls(out: &mut Vec<u8>) {
    out.extend_from_slice(b"STARTTLS\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_group_encodes_in_one_buffer() {
        let mut out = Vec::new();
        mail_from(
            &mut out,
            "bounce@a.test",
            MailParams {
                size: Some(4096),
                eight_bit: true,
                smtputf8: false,
            },
        );
        rcpt_to(&mut out, "x@b.test");
        rcpt_to(&mut out, "y@b.test");
        data(&mut out);
        assert_eq!(
            out,
            b"MAIL FROM:<bounce@a.test> SIZE=4096 BODY=8BITMIME\r\nRCPT TO:<x@b.test>\r\nRCPT TO:<y@b.test>\r\nDATA\r\n"
        );
    }

    #[test]
    fn null_reverse_path_and_simple_commands() {
        let mut out = Vec::new();
        mail_from(&mut out, "", MailParams::default());
        ehlo(&mut out, "mta1.example");
        rset(&mut out);
        quit(&mut out);
        starttls(&mut out);
        bdat_last(&mut out, 4096);
        assert_eq!(
            out,
            b"MAIL FROM:<>\r\nEHLO mta1.example\r\nRSET\r\nQUIT\r\nSTARTTLS\r\nBDAT 4096 LAST\r\n"
        );
    }

    #[test]
    fn injection_is_refused() {
        assert!(check_path("a@b.test").is_ok());
        assert!(check_path("").is_ok());
        assert!(check_path("a@b.test>\r\nRCPT TO:<evil@x").is_err());
        assert!(check_path("a b@c.test").is_err());
        assert!(check_path(&"a".repeat(300)).is_err());
        assert!(check_helo_name("mta.example").is_ok());
        assert!(check_helo_name("[127.0.0.2]").is_ok());
        assert!(check_helo_name("bad name").is_err());
        assert!(check_helo_name("").is_err());
    }
}
