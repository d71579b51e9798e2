//! Sans-IO parsing of one SMTP command line (RFC 5321 §4.1) into a borrowed [`Command`].
//! Errors carry the exact reply line the server sends back.

/// A parsed command; strings borrow from the input line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    /// `EHLO <domain>` (RFC 5321 §4.1.1.1).
    Ehlo,
    /// `HELO <domain>`.
    Helo,
    /// `MAIL FROM:<path> [params]`; `size` is the RFC 1870 `SIZE=` declaration.
    Mail { sender: Path<'a>, size: Option<u64> },
    /// `RCPT TO:<path> [params]`.
    Rcpt { recipient: Path<'a> },
    /// `DATA`.
    Data,
    /// `BDAT <size> [LAST]` (RFC 3030 §2): `size` octets of content follow the line.
    Bdat { size: u64, last: bool },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `VRFY <string>`.
    Vrfy,
    /// `HELP [string]`.
    Help,
}

/// A reverse- or forward-path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Path<'a> {
    /// `<>`: the null reverse-path of bounces.
    Null,
    /// `local@domain` (`address`); `domain` is empty for the bare `<Postmaster>` recipient.
    Mailbox {
        address: &'a str,
        local: &'a str,
        domain: &'a str,
    },
}

impl Path<'_> {
    /// The whole address, empty for `<>`.
    pub(crate) fn address(&self) -> &str {
        match self {
            Path::Null => "",
            Path::Mailbox { address, .. } => address,
        }
    }
}

/// Why a line is not a valid command: the complete reply line, without CRLF.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rejection(pub(crate) &'static str);

const UNRECOGNIZED: Rejection = Rejection("500 5.5.2 Syntax error, command unrecognized");
const NO_PARAMETERS: Rejection = Rejection("501 5.5.4 Syntax error, no parameters allowed");
const EHLO_SYNTAX: Rejection = Rejection("501 5.5.4 Syntax: EHLO hostname");
const HELO_SYNTAX: Rejection = Rejection("501 5.5.4 Syntax: HELO hostname");
const MAIL_SYNTAX: Rejection = Rejection("501 5.5.4 Syntax: MAIL FROM:<address>");
const RCPT_SYNTAX: Rejection = Rejection("501 5.5.4 Syntax: RCPT TO:<address>");
const BAD_SENDER: Rejection = Rejection("501 5.1.7 Bad sender address syntax");
const BAD_RECIPIENT: Rejection = Rejection("501 5.1.3 Bad recipient address syntax");
const BAD_SIZE: Rejection = Rejection("501 5.5.4 Bad SIZE parameter");
const BDAT_SYNTAX: Rejection = Rejection("501 5.5.4 Syntax: BDAT chunk-size [LAST]");

/// Parses one command line, without its CRLF. Verbs are case-insensitive.
pub(crate) fn parse(line: &[u8]) -> Result<Command<'_>, Rejection> {
    let (verb, args) = match memchr::memchr(b' ', line) {
        Some(space) => (&line[..space], line[space + 1..].trim_ascii()),
        None => (line, &[][..]),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    let no_args = |command: Command<'static>| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(NO_PARAMETERS)
        }
    };
    if is("MAIL") {
        parse_mail(args)
    } else if is("RCPT") {
        parse_rcpt(args)
    } else if is("DATA") {
        no_args(Command::Data)
    } else if is("BDAT") {
        parse_bdat(args)
    } else if is("EHLO") {
        greeting_arg(args, Command::Ehlo, EHLO_SYNTAX)
    } else if is("HELO") {
        greeting_arg(args, Command::Helo, HELO_SYNTAX)
    } else if is("RSET") {
        no_args(Command::Rset)
    } else if is("NOOP") {
        Ok(Command::Noop)
    } else if is("QUIT") {
        no_args(Command::Quit)
    } else if is("STARTTLS") {
        no_args(Command::StartTls)
    } else if is("VRFY") {
        Ok(Command::Vrfy)
    } else if is("HELP") {
        Ok(Command::Help)
    } else {
        Err(UNRECOGNIZED)
    }
}

fn greeting_arg(args: &[u8], command: Command<'static>, syntax: Rejection) -> Result<Command<'static>, Rejection> {
    if args.is_empty() || args.iter().any(|b| b.is_ascii_control()) {
        Err(syntax)
    } else {
        Ok(command)
    }
}

/// Strips a case-insensitive `FROM:`/`TO:` prefix; tolerates spaces after the colon.
fn strip_keyword<'a>(args: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    let keyword = keyword.as_bytes();
    if args.len() < keyword.len() || !args[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(args[keyword.len()..].trim_ascii_start())
}

fn parse_mail(args: &[u8]) -> Result<Command<'_>, Rejection> {
    let rest = strip_keyword(args, "FROM:").ok_or(MAIL_SYNTAX)?;
    let (sender, params) = parse_path(rest).ok_or(BAD_SENDER)?;
    let mut size = None;
    for param in params.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
        if param.len() > 5 && param[..5].eq_ignore_ascii_case(b"SIZE=") {
            let value = std::str::from_utf8(&param[5..]).map_err(|_| BAD_SIZE)?;
            size = Some(value.parse::<u64>().map_err(|_| BAD_SIZE)?);
        }
        // Other parameters (BODY=, SMTPUTF8, RET=, ENVID=) are accepted and ignored.
    }
    Ok(Command::Mail { sender, size })
}

/// RFC 3030 §2: `bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF`, chunk-size
/// one or more digits, end-marker `LAST` (case-insensitive).
fn parse_bdat(args: &[u8]) -> Result<Command<'static>, Rejection> {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(BDAT_SYNTAX)?;
    if !size.iter().all(u8::is_ascii_digit) {
        return Err(BDAT_SYNTAX);
    }
    let size = std::str::from_utf8(size)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(BDAT_SYNTAX)?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(BDAT_SYNTAX),
    };
    if words.next().is_some() {
        return Err(BDAT_SYNTAX);
    }
    Ok(Command::Bdat { size, last })
}

fn parse_rcpt(args: &[u8]) -> Result<Command<'_>, Rejection> {
    let rest = strip_keyword(args, "TO:").ok_or(RCPT_SYNTAX)?;
    match parse_path(rest) {
        Some((Path::Null, _)) | None => Err(BAD_RECIPIENT),
        Some((recipient, _params)) => Ok(Command::Rcpt { recipient }),
    }
}

/// Parses `<path>` and returns it with the bytes after `>` (the parameters). Accepts and
/// ignores an RFC 5321 §4.1.2 source route (`<@a,@b:user@d>`), quoted local parts, UTF-8
/// addresses (RFC 6531), and the bare `<Postmaster>` (§4.5.1).
fn parse_path(input: &[u8]) -> Option<(Path<'_>, &[u8])> {
    let inner_start = 1;
    if input.first() != Some(&b'<') {
        return None;
    }
    let mut in_quotes = false;
    let mut escaped = false;
    let mut close = None;
    for (i, &b) in input.iter().enumerate().skip(inner_start) {
        if escaped {
            escaped = false;
        } else if in_quotes && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quotes = !in_quotes;
        } else if b == b'>' && !in_quotes {
            close = Some(i);
            break;
        }
    }
    let close = close?;
    let params = &input[close + 1..];
    if !params.is_empty() && params[0] != b' ' {
        return None;
    }
    let mut inner = &input[inner_start..close];
    if inner.first() == Some(&b'@') {
        let colon = memchr::memchr(b':', inner)?;
        inner = &inner[colon + 1..];
    }
    if inner.is_empty() {
        return Some((Path::Null, params));
    }
    let inner = std::str::from_utf8(inner).ok()?;
    if inner.chars().any(char::is_control) {
        return None;
    }
    let path = match inner.rfind('@') {
        Some(at) => {
            let (local, domain) = (&inner[..at], &inner[at + 1..]);
            let bad_domain = domain.is_empty() || domain.contains(' ');
            if local.is_empty() || bad_domain || (local.contains(' ') && !local.starts_with('"')) {
                return None;
            }
            Path::Mailbox {
                address: inner,
                local,
                domain,
            }
        }
        None if inner.eq_ignore_ascii_case("postmaster") => Path::Mailbox {
            address: inner,
            local: inner,
            domain: "",
        },
        None => return None,
    };
    Some((path, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox<'a>(local: &'a str, domain: &'a str) -> Path<'a> {
        let address: &'a str = if domain.is_empty() {
            local
        } else {
            Box::leak(format!("{local}@{domain}").into_boxed_str())
        };
        Path::Mailbox { address, local, domain }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse(b"ehlo client.test"), Ok(Command::Ehlo));
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
        assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
        assert_eq!(parse(b"NOOP anything"), Ok(Command::Noop));
    }

    #[test]
    fn mail_with_params_and_null_sender() {
        assert_eq!(
            parse(b"MAIL FROM:<a@b.test> SIZE=4096 BODY=8BITMIME"),
            Ok(Command::Mail {
                sender: mailbox("a", "b.test"),
                size: Some(4096)
            })
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail {
                sender: Path::Null,
                size: None
            })
        );
        assert_eq!(parse(b"MAIL FROM:<a@b> SIZE=x"), Err(BAD_SIZE));
        assert_eq!(parse(b"MAIL TO:<a@b>"), Err(MAIL_SYNTAX));
        assert_eq!(parse(b"MAIL FROM:a@b"), Err(BAD_SENDER));
    }

    #[test]
    fn rcpt_paths() {
        assert_eq!(
            parse(b"RCPT TO:<@relay.test:User@Example.TEST>"),
            Ok(Command::Rcpt {
                recipient: mailbox("User", "Example.TEST")
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<\"odd>name\"@x.test>"),
            Ok(Command::Rcpt {
                recipient: mailbox("\"odd>name\"", "x.test")
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt {
                recipient: mailbox("Postmaster", "")
            })
        );
        assert_eq!(
            parse("RCPT TO:<j\u{f6}rg@b\u{fc}cher.test>".as_bytes()),
            Ok(Command::Rcpt {
                recipient: mailbox("j\u{f6}rg", "b\u{fc}cher.test")
            })
        );
        assert_eq!(parse(b"RCPT TO:<>"), Err(BAD_RECIPIENT));
        assert_eq!(parse(b"RCPT TO:<nobody>"), Err(BAD_RECIPIENT));
        assert_eq!(parse(b"RCPT TO:<a@b>junk"), Err(BAD_RECIPIENT));
        assert_eq!(parse(b"RCPT TO:<a@b"), Err(BAD_RECIPIENT));
        assert_eq!(parse(b"RCPT <a@b>"), Err(RCPT_SYNTAX));
    }

    #[test]
    fn bdat_size_and_last() {
        assert_eq!(parse(b"BDAT 4096 LAST"), Ok(Command::Bdat { size: 4096, last: true }));
        assert_eq!(parse(b"bdat 10 last"), Ok(Command::Bdat { size: 10, last: true }));
        assert_eq!(parse(b"BDAT 0"), Ok(Command::Bdat { size: 0, last: false }));
        assert_eq!(parse(b"BDAT"), Err(BDAT_SYNTAX));
        assert_eq!(parse(b"BDAT -1 LAST"), Err(BDAT_SYNTAX));
        assert_eq!(parse(b"BDAT 10 FIRST"), Err(BDAT_SYNTAX));
        assert_eq!(parse(b"BDAT 10 LAST x"), Err(BDAT_SYNTAX));
        assert_eq!(parse(b"BDAT 99999999999999999999999"), Err(BDAT_SYNTAX));
    }

    #[test]
    fn junk_and_stray_arguments() {
        assert_eq!(parse(b"FOO bar"), Err(UNRECOGNIZED));
        assert_eq!(parse(b""), Err(UNRECOGNIZED));
        assert_eq!(parse(b"DATA now"), Err(NO_PARAMETERS));
        assert_eq!(parse(b"EHLO"), Err(EHLO_SYNTAX));
        assert_eq!(parse(b"HELO "), Err(HELO_SYNTAX));
    }
}
