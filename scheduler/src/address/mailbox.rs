//! `Name <address>` mailboxes for the `From:` and `Reply-To:` headers (RFC 5322 §3.4).

use std::fmt;

use super::{AddressError, AddressProblem, EmailAddress, MAX_DISPLAY_NAME_LEN};

/// An address with an optional display name: `Volley News <news@sender.test>`,
/// `"Volley, Inc." <news@sender.test>` or a bare `news@sender.test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, unquoted and unescaped; `None` when absent or empty.
    pub name: Option<String>,
    /// The address.
    pub address: EmailAddress,
}

impl Mailbox {
    /// Parses `Name <addr>`, `"Quoted, Name" <addr>`, `<addr>` or a bare address.
    ///
    /// The name may contain any printable character (non-ASCII included; it is RFC 2047
    /// encoded when written) but no control characters, and at most
    /// [`MAX_DISPLAY_NAME_LEN`] octets.
    pub fn parse(input: &str) -> Result<Mailbox, AddressError> {
        let err = |problem| AddressError {
            value: input.to_owned(),
            problem,
        };
        let s = input.trim();
        let Some(open) = s.rfind('<') else {
            if s.ends_with('>') {
                return Err(err(AddressProblem::MalformedMailbox));
            }
            return Ok(Mailbox {
                name: None,
                address: EmailAddress::parse(s).map_err(|e| err(e.problem))?,
            });
        };
        let inner = s[open + 1..]
            .strip_suffix('>')
            .ok_or_else(|| err(AddressProblem::MalformedMailbox))?;
        let address = EmailAddress::parse(inner).map_err(|e| err(e.problem))?;
        let name = parse_display_name(s[..open].trim()).map_err(err)?;
        Ok(Mailbox { name, address })
    }
}

/// Unquotes a display name (RFC 5322 §3.2.4 quoted-string) and checks it can be written back.
fn parse_display_name(raw: &str) -> Result<Option<String>, AddressProblem> {
    let name = match raw.strip_prefix('"') {
        Some(rest) => {
            let body = rest
                .strip_suffix('"')
                .ok_or(AddressProblem::InvalidDisplayName("unterminated quote"))?;
            let mut out = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(
                        chars
                            .next()
                            .ok_or(AddressProblem::InvalidDisplayName("dangling backslash"))?,
                    ),
                    '"' => return Err(AddressProblem::InvalidDisplayName("unescaped quote")),
                    c => out.push(c),
                }
            }
            out
        }
        None if raw.contains('"') => {
            return Err(AddressProblem::InvalidDisplayName("stray quote"));
        }
        None => raw.to_owned(),
    };
    if name.chars().any(char::is_control) {
        return Err(AddressProblem::InvalidDisplayName("control character"));
    }
    if name.len() > MAX_DISPLAY_NAME_LEN {
        return Err(AddressProblem::InvalidDisplayName("longer than 256 octets"));
    }
    Ok((!name.trim().is_empty()).then(|| name.trim().to_owned()))
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => {
                f.write_str("\"")?;
                for c in name.chars() {
                    if matches!(c, '"' | '\\') {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                write!(f, "\" <{}>", self.address)
            }
            None => write!(f, "{}", self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_forms() {
        let m = Mailbox::parse("Volley News <news@Sender.test>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Volley News"));
        assert_eq!(m.address.as_str(), "news@sender.test");
        let m = Mailbox::parse(r#""Volley, \"Inc\"" <n@s.test>"#).unwrap();
        assert_eq!(m.name.as_deref(), Some(r#"Volley, "Inc""#));
        assert_eq!(m.to_string(), r#""Volley, \"Inc\"" <n@s.test>"#);
        assert_eq!(Mailbox::parse(&m.to_string()).unwrap(), m);
        assert_eq!(Mailbox::parse("<n@s.test>").unwrap().name, None);
        assert_eq!(Mailbox::parse("n@s.test").unwrap().name, None);
        assert_eq!(
            Mailbox::parse("Ünïcode Näme <n@s.test>").unwrap().name.as_deref(),
            Some("Ünïcode Näme")
        );
        for bad in [
            "Name <n@s.test",
            "Name n@s.test>",
            "\"Open <n@s.test>",
            "Na\"me <n@s.test>",
            "Na\nme <n@s.test>",
            "Name <n@>",
        ] {
            let e = Mailbox::parse(bad).expect_err(bad);
            assert_eq!(e.value, bad);
        }
    }
}
