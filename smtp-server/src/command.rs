//! Sans-IO parsing of one SMTP command line (RFC 5321 §4.1) into a borrowed [`Command`].
//! Errors are typed ([`CommandError`]) and map to the 500/501/504/555 reply the server sends.

use std::fmt;

use crate::reply::{EnhancedCode, Reply};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;
/// RFC 4954 §4: a line of an AUTH exchange (and the AUTH command with an initial response)
/// may be up to 12288 octets.
pub const MAX_AUTH_LINE: usize = 12288;

/// The verb of a command, for errors and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// `EHLO`.
    Ehlo,
    /// `HELO`.
    Helo,
    /// `MAIL`.
    Mail,
    /// `RCPT`.
    Rcpt,
    /// `DATA`.
    Data,
    /// `BDAT` (RFC 3030).
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY`.
    Vrfy,
    /// `HELP`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH` (RFC 4954).
    Auth,
}

impl Verb {
    const NAMES: [(&'static str, Verb); 13] = [
        ("MAIL", Verb::Mail),
        ("RCPT", Verb::Rcpt),
        ("DATA", Verb::Data),
        ("BDAT", Verb::Bdat),
        ("EHLO", Verb::Ehlo),
        ("HELO", Verb::Helo),
        ("RSET", Verb::Rset),
        ("NOOP", Verb::Noop),
        ("QUIT", Verb::Quit),
        ("VRFY", Verb::Vrfy),
        ("HELP", Verb::Help),
        ("STARTTLS", Verb::StartTls),
        ("AUTH", Verb::Auth),
    ];

    /// The verb as sent on the wire, upper case.
    pub fn as_str(self) -> &'static str {
        Verb::NAMES.iter().find(|(_, v)| *v == self).map_or("?", |(n, _)| n)
    }

    fn parse(word: &[u8]) -> Option<Verb> {
        Verb::NAMES
            .iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed command; strings borrow from the input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `EHLO <domain>` (RFC 5321 §4.1.1.1).
    Ehlo {
        /// The client's name or address literal.
        domain: &'a str,
    },
    /// `HELO <domain>`.
    Helo {
        /// The client's name.
        domain: &'a str,
    },
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse-path.
        sender: Path<'a>,
        /// Its parameters.
        params: MailParams<'a>,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward-path.
        recipient: Path<'a>,
        /// Its parameters.
        params: RcptParams<'a>,
    },
    /// `DATA`.
    Data,
    /// `BDAT <size> [LAST]` (RFC 3030 §2): `size` octets of content follow the line.
    Bdat {
        /// Octets of the chunk.
        size: u64,
        /// The last chunk of the message.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY <string>`.
    Vrfy {
        /// What to verify.
        argument: &'a str,
    },
    /// `HELP [string]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH <mechanism> [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism name as sent.
        mechanism: &'a str,
        /// The initial response (base64, or `=` for an empty one).
        initial: Option<&'a str>,
    },
}

/// A reverse- or forward-path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path<'a> {
    /// `<>`: the null reverse-path of bounces.
    Null,
    /// `local@domain` (`address`); `domain` is empty for the bare `<Postmaster>` recipient.
    Mailbox {
        /// The whole address (source route removed).
        address: &'a str,
        /// The local part, as sent (quotes kept).
        local: &'a str,
        /// The domain, as sent (case kept).
        domain: &'a str,
    },
}

impl Path<'_> {
    /// The whole address, empty for `<>`.
    pub fn address(&self) -> &str {
        match self {
            Path::Null => "",
            Path::Mailbox { address, .. } => address,
        }
    }
}

/// RFC 6152 / RFC 3030 `BODY=` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BINARYMIME` (RFC 3030 §3; only with BDAT).
    BinaryMime,
}

/// RFC 3461 §4.3 `RET=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// Return the full message in a DSN.
    Full,
    /// Return the headers only.
    Headers,
}

/// RFC 3461 §4.1 `NOTIFY=`: `NEVER`, or any of the three conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notify {
    /// `NEVER`.
    pub never: bool,
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

/// Parameters of MAIL FROM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailParams<'a> {
    /// RFC 1870 `SIZE=`: the declared message size.
    pub size: Option<u64>,
    /// RFC 6152 `BODY=`.
    pub body: Option<Body>,
    /// RFC 6531 `SMTPUTF8`.
    pub smtputf8: bool,
    /// RFC 3461 `RET=`.
    pub ret: Option<Ret>,
    /// RFC 3461 `ENVID=` (xtext, as sent).
    pub envid: Option<&'a str>,
}

/// Parameters of RCPT TO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RcptParams<'a> {
    /// RFC 3461 `NOTIFY=`.
    pub notify: Option<Notify>,
    /// RFC 3461 `ORCPT=` (`addr-type;xtext`, as sent).
    pub orcpt: Option<&'a str>,
}

/// Why a line is not a valid command. [`CommandError::reply`] is what the server answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a known verb (500 5.5.2).
    #[error("command unrecognized")]
    Unrecognized,
    /// Longer than the limit (RFC 5321 §4.5.3.1.4; 500 5.5.2).
    #[error("command line too long")]
    LineTooLong,
    /// Arguments after a verb that takes none (501 5.5.4).
    #[error("{verb} takes no parameters")]
    NoParameters {
        /// The command.
        verb: Verb,
    },
    /// The arguments do not follow the command's syntax (501 5.5.4).
    #[error("syntax error in {verb}")]
    Syntax {
        /// The command.
        verb: Verb,
    },
    /// A malformed reverse-path (501 5.1.7).
    #[error("bad sender address syntax")]
    BadSender,
    /// A malformed or null forward-path (501 5.1.3).
    #[error("bad recipient address syntax")]
    BadRecipient,
    /// A known parameter with a bad value (501 5.5.4).
    #[error("bad {name} parameter in {verb}")]
    BadParameter {
        /// The command.
        verb: Verb,
        /// The parameter's keyword.
        name: &'static str,
    },
    /// A parameter this server does not know or did not advertise (RFC 5321 §4.1.1.11;
    /// 555 5.5.4).
    #[error("{verb} parameter not recognized or not implemented")]
    UnknownParameter {
        /// The command.
        verb: Verb,
    },
}

impl CommandError {
    /// The command the error is about, when the verb was recognised.
    pub fn verb(&self) -> Option<Verb> {
        match self {
            CommandError::Unrecognized | CommandError::LineTooLong => None,
            CommandError::BadSender => Some(Verb::Mail),
            CommandError::BadRecipient => Some(Verb::Rcpt),
            CommandError::NoParameters { verb }
            | CommandError::Syntax { verb }
            | CommandError::BadParameter { verb, .. }
            | CommandError::UnknownParameter { verb } => Some(*verb),
        }
    }

    /// The reply the server sends.
    pub fn reply(&self) -> Reply {
        let syntax = |text: &'static str| Reply::new(501, EnhancedCode::new(5, 5, 4), text);
        match self {
            CommandError::Unrecognized => {
                Reply::new(500, EnhancedCode::new(5, 5, 2), "Syntax error, command unrecognized")
            }
            CommandError::LineTooLong => {
                Reply::new(500, EnhancedCode::new(5, 5, 2), "Syntax error, command line too long")
            }
            CommandError::NoParameters { .. } => syntax("Syntax error, no parameters allowed"),
            CommandError::Syntax { verb } => syntax(match verb {
                Verb::Ehlo => "Syntax: EHLO hostname",
                Verb::Helo => "Syntax: HELO hostname",
                Verb::Mail => "Syntax: MAIL FROM:<address>",
                Verb::Rcpt => "Syntax: RCPT TO:<address>",
                Verb::Bdat => "Syntax: BDAT chunk-size [LAST]",
                Verb::Auth => "Syntax: AUTH mechanism [initial-response]",
                Verb::Vrfy => "Syntax: VRFY address",
                _ => "Syntax error in parameters or arguments",
            }),
            CommandError::BadSender => Reply::new(501, EnhancedCode::new(5, 1, 7), "Bad sender address syntax"),
            CommandError::BadRecipient => Reply::new(501, EnhancedCode::new(5, 1, 3), "Bad recipient address syntax"),
            CommandError::BadParameter { name, .. } => {
                Reply::owned(501, Some(EnhancedCode::new(5, 5, 4)), format!("Bad {name} parameter"))
            }
            CommandError::UnknownParameter { verb } => Reply::owned(
                555,
                Some(EnhancedCode::new(5, 5, 4)),
                format!("{verb} parameters not recognized or not implemented"),
            ),
        }
    }
}

/// Parses one command line, without its CRLF. Verbs are case-insensitive. Parameters are
/// parsed whatever the server advertises; the session refuses those it did not advertise.
pub fn parse(line: &[u8]) -> Result<Command<'_>, CommandError> {
    let (word, args) = match memchr::memchr(b' ', line) {
        Some(space) => (&line[..space], line[space + 1..].trim_ascii()),
        None => (line, &[][..]),
    };
    let verb = Verb::parse(word).ok_or(CommandError::Unrecognized)?;
    let no_args = |command: Command<'static>| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(CommandError::NoParameters { verb })
        }
    };
    match verb {
        Verb::Mail => parse_mail(args),
        Verb::Rcpt => parse_rcpt(args),
        Verb::Data => no_args(Command::Data),
        Verb::Bdat => parse_bdat(args),
        Verb::Ehlo => greeting_arg(args, verb).map(|domain| Command::Ehlo { domain }),
        Verb::Helo => greeting_arg(args, verb).map(|domain| Command::Helo { domain }),
        Verb::Rset => no_args(Command::Rset),
        Verb::Noop => Ok(Command::Noop),
        Verb::Quit => no_args(Command::Quit),
        Verb::StartTls => no_args(Command::StartTls),
        Verb::Help => Ok(Command::Help),
        Verb::Vrfy => {
            let argument = text(args)
                .filter(|a| !a.is_empty())
                .ok_or(CommandError::Syntax { verb })?;
            Ok(Command::Vrfy { argument })
        }
        Verb::Auth => parse_auth(args),
    }
}

/// `Some` with BDAT's arguments when `line` is a BDAT command, `None` for any other line.
pub fn parse_if_bdat(line: &[u8]) -> Option<Result<(u64, bool), CommandError>> {
    let is_bdat = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"BDAT") && line.get(4).is_none_or(|&b| b == b' ');
    if !is_bdat {
        return None;
    }
    Some(match parse(line) {
        Ok(Command::Bdat { size, last }) => Ok((size, last)),
        Ok(_) => Err(CommandError::Syntax { verb: Verb::Bdat }),
        Err(error) => Err(error),
    })
}

/// Printable UTF-8 without control characters.
fn text(bytes: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(bytes).ok()?;
    (!s.chars().any(char::is_control)).then_some(s)
}

fn greeting_arg(args: &[u8], verb: Verb) -> Result<&str, CommandError> {
    match text(args) {
        Some(domain) if !domain.is_empty() => Ok(domain),
        _ => Err(CommandError::Syntax { verb }),
    }
}

/// RFC 4954 §4: `AUTH mechanism [initial-response]`.
fn parse_auth(args: &[u8]) -> Result<Command<'_>, CommandError> {
    let syntax = CommandError::Syntax { verb: Verb::Auth };
    let args = text(args).ok_or(syntax.clone())?;
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(syntax.clone())?;
    let initial = words.next();
    if words.next().is_some() {
        return Err(syntax);
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Strips a case-insensitive `FROM:`/`TO:` prefix; tolerates spaces after the colon.
fn strip_keyword<'a>(args: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    let keyword = keyword.as_bytes();
    if args.len() < keyword.len() || !args[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(args[keyword.len()..].trim_ascii_start())
}

/// Splits `KEYWORD[=value]` parameters (RFC 5321 §4.1.2 `esmtp-param`).
fn params(bytes: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    bytes
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .map(|p| match memchr::memchr(b'=', p) {
            Some(eq) => (&p[..eq], Some(&p[eq + 1..])),
            None => (p, None),
        })
}

/// RFC 3461 §4: xtext (printable ASCII but `+` and `=`, and `+XX` hex escapes), kept as sent.
fn xtext(value: Option<&[u8]>) -> Option<&str> {
    let value = value.filter(|v| !v.is_empty() && v.len() <= 100)?;
    let ok = value.iter().all(|&b| (b'!'..=b'~').contains(&b) && b != b'=');
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}

fn parse_mail(args: &[u8]) -> Result<Command<'_>, CommandError> {
    let verb = Verb::Mail;
    let rest = strip_keyword(args, "FROM:").ok_or(CommandError::Syntax { verb })?;
    let (sender, rest) = parse_path(rest).ok_or(CommandError::BadSender)?;
    let mut p = MailParams::default();
    for (key, value) in params(rest) {
        let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
        let bad = |name| CommandError::BadParameter { verb, name };
        if is("SIZE") {
            let value = value.filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit));
            let size = value.and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
            p.size = Some(size.ok_or(bad("SIZE"))?);
        } else if is("BODY") {
            let value = value.ok_or(bad("BODY"))?;
            p.body = Some(if value.eq_ignore_ascii_case(b"7BIT") {
                Body::SevenBit
            } else if value.eq_ignore_ascii_case(b"8BITMIME") {
                Body::EightBitMime
            } else if value.eq_ignore_ascii_case(b"BINARYMIME") {
                Body::BinaryMime
            } else {
                return Err(bad("BODY"));
            });
        } else if is("SMTPUTF8") {
            if value.is_some() {
                return Err(bad("SMTPUTF8"));
            }
            p.smtputf8 = true;
        } else if is("RET") {
            let value = value.ok_or(bad("RET"))?;
            p.ret = Some(if value.eq_ignore_ascii_case(b"FULL") {
                Ret::Full
            } else if value.eq_ignore_ascii_case(b"HDRS") {
                Ret::Headers
            } else {
                return Err(bad("RET"));
            });
        } else if is("ENVID") {
            p.envid = Some(xtext(value).ok_or(bad("ENVID"))?);
        } else {
            return Err(CommandError::UnknownParameter { verb });
        }
    }
    Ok(Command::Mail { sender, params: p })
}

fn parse_rcpt(args: &[u8]) -> Result<Command<'_>, CommandError> {
    let verb = Verb::Rcpt;
    let rest = strip_keyword(args, "TO:").ok_or(CommandError::Syntax { verb })?;
    let (recipient, rest) = match parse_path(rest) {
        Some((Path::Null, _)) | None => return Err(CommandError::BadRecipient),
        Some(parsed) => parsed,
    };
    let mut p = RcptParams::default();
    for (key, value) in params(rest) {
        let bad = |name| CommandError::BadParameter { verb, name };
        if key.eq_ignore_ascii_case(b"NOTIFY") {
            p.notify = Some(parse_notify(value).ok_or(bad("NOTIFY"))?);
        } else if key.eq_ignore_ascii_case(b"ORCPT") {
            // RFC 3461 §4.2: `addr-type ";" xtext`.
            let value = xtext(value).filter(|v| v.split_once(';').is_some_and(|(t, a)| !t.is_empty() && !a.is_empty()));
            p.orcpt = Some(value.ok_or(bad("ORCPT"))?);
        } else {
            return Err(CommandError::UnknownParameter { verb });
        }
    }
    Ok(Command::Rcpt { recipient, params: p })
}

/// RFC 3461 §4.1: `NEVER` alone, or a comma-separated list of SUCCESS, FAILURE, DELAY.
fn parse_notify(value: Option<&[u8]>) -> Option<Notify> {
    let mut notify = Notify::default();
    for word in value?.split(|&b| b == b',') {
        let flag = if word.eq_ignore_ascii_case(b"NEVER") {
            &mut notify.never
        } else if word.eq_ignore_ascii_case(b"SUCCESS") {
            &mut notify.success
        } else if word.eq_ignore_ascii_case(b"FAILURE") {
            &mut notify.failure
        } else if word.eq_ignore_ascii_case(b"DELAY") {
            &mut notify.delay
        } else {
            return None;
        };
        if *flag {
            return None;
        }
        *flag = true;
    }
    let conditions = notify.success || notify.failure || notify.delay;
    (notify.never != conditions).then_some(notify)
}

/// RFC 3030 §2: `bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF`, chunk-size
/// one or more digits, end-marker `LAST` (case-insensitive).
fn parse_bdat(args: &[u8]) -> Result<Command<'static>, CommandError> {
    let syntax = CommandError::Syntax { verb: Verb::Bdat };
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(syntax.clone())?;
    if !size.iter().all(u8::is_ascii_digit) {
        return Err(syntax);
    }
    let size = std::str::from_utf8(size)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(syntax.clone())?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(syntax),
    };
    if words.next().is_some() {
        return Err(syntax);
    }
    Ok(Command::Bdat { size, last })
}

/// Parses `<path>` and returns it with the bytes after `>` (the parameters). Accepts and
/// ignores an RFC 5321 §4.1.2 source route (`<@a,@b:user@d>`), quoted local parts, UTF-8
/// addresses (RFC 6531), and the bare `<Postmaster>` (§4.5.1).
fn parse_path(input: &[u8]) -> Option<(Path<'_>, &[u8])> {
    if input.first() != Some(&b'<') {
        return None;
    }
    let mut in_quotes = false;
    let mut escaped = false;
    let mut close = None;
    for (i, &b) in input.iter().enumerate().skip(1) {
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
    let mut inner = &input[1..close];
    if inner.first() == Some(&b'@') {
        let colon = memchr::memchr(b':', inner)?;
        inner = &inner[colon + 1..];
    }
    if inner.is_empty() {
        return Some((Path::Null, params));
    }
    let inner = text(inner)?;
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
mod tests;
