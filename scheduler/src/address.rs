//! Recipient and sender address validation and normalisation.
//!
//! [`EmailAddress`] is the conservative subset of an RFC 5321 `Mailbox` that a bulk sender can
//! deliver without SMTPUTF8: a dot-atom local part and an LDH domain (or an address literal).
//! Quoted local parts (`"john doe"@example.com`) and non-ASCII addresses are refused with a
//! reason rather than half-supported. [`Mailbox`] adds the optional display name used by the
//! `From:` and `Reply-To:` headers.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

mod mailbox;
pub use mailbox::Mailbox;

/// RFC 5321 §4.5.3.1.1: the local part is at most 64 octets.
pub const MAX_LOCAL_LEN: usize = 64;
/// RFC 5321 §4.5.3.1.3 (path of 256 octets including `<>`), as corrected by RFC 3696 errata.
pub const MAX_ADDRESS_LEN: usize = 254;
/// RFC 1035 §2.3.4: a domain label is at most 63 octets.
pub const MAX_LABEL_LEN: usize = 63;
/// Display names longer than this are refused so that the `From:` line can always be folded.
pub const MAX_DISPLAY_NAME_LEN: usize = 256;

/// An address refused by [`EmailAddress::parse`] or [`Mailbox::parse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {value:?}: {problem}")]
pub struct AddressError {
    /// The input as given (untrimmed).
    pub value: String,
    /// What is wrong with it.
    pub problem: AddressProblem,
}

/// Why an address was refused; see [`AddressError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressProblem {
    /// Nothing but whitespace.
    #[error("empty")]
    Empty,
    /// No `@` at all.
    #[error("missing '@'")]
    MissingAt,
    /// More than one `@` (quoted local parts are not supported, so this is never valid).
    #[error("more than one '@'")]
    MultipleAt,
    /// `"quoted local"@domain` forms are refused outright (rare in practice, easy to abuse).
    #[error("quoted local parts are not supported")]
    QuotedLocalPart,
    /// Nothing before the `@`.
    #[error("empty local part")]
    EmptyLocal,
    /// Nothing after the `@`.
    #[error("empty domain")]
    EmptyDomain,
    /// Local part longer than [`MAX_LOCAL_LEN`] octets.
    #[error("local part is {0} octets (max 64)")]
    LocalTooLong(usize),
    /// Whole address longer than [`MAX_ADDRESS_LEN`] octets.
    #[error("address is {0} octets (max 254)")]
    TooLong(usize),
    /// A control character, space, `<`, `>` or `,` anywhere in the address.
    #[error("forbidden character {0:?}")]
    ForbiddenChar(char),
    /// Non-ASCII local part (needs SMTPUTF8, not supported yet).
    #[error("non-ASCII local part (SMTPUTF8 is not supported)")]
    NonAsciiLocal,
    /// Non-ASCII domain (IDNA/SMTPUTF8 are not supported yet; use the xn-- form).
    #[error("non-ASCII domain (use the punycode xn-- form; SMTPUTF8 is not supported)")]
    NonAsciiDomain,
    /// The local part is not an RFC 5322 §3.2.3 dot-atom.
    #[error("local part: {0}")]
    InvalidLocal(&'static str),
    /// The domain has a single label.
    #[error("domain has no dot")]
    DomainWithoutDot,
    /// A domain label breaks the RFC 1035 LDH rules.
    #[error("domain label {label:?}: {reason}")]
    InvalidLabel {
        /// The offending label.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `[...]` that is neither an IPv4 nor an `IPv6:` literal (RFC 5321 §4.1.3).
    #[error("invalid address literal")]
    InvalidLiteral,
    /// `Name <addr` without the closing bracket, or text after `>`.
    #[error("malformed \"Name <address>\" form")]
    MalformedMailbox,
    /// A display name that cannot be put in a header.
    #[error("display name: {0}")]
    InvalidDisplayName(&'static str),
}

/// A validated address: dot-atom local part, lowercase LDH domain or address literal.
///
/// Stored as one string plus the position of the `@`, so clones are a single allocation.
/// Equality is exact on the stored form (the domain is already lowercase; the local part keeps
/// its case, as RFC 5321 §2.4 requires).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    text: Box<str>,
    at: usize,
}

impl EmailAddress {
    /// Validates `input` (surrounding whitespace is ignored) and lowercases its domain.
    pub fn parse(input: &str) -> Result<EmailAddress, AddressError> {
        let err = |problem| AddressError {
            value: input.to_owned(),
            problem,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err(AddressProblem::Empty));
        }
        if s.starts_with('"') {
            return Err(err(AddressProblem::QuotedLocalPart));
        }
        // ASCII controls, DEL, space and the list/angle delimiters; non-ASCII bytes are
        // judged per part below.
        for &b in s.as_bytes() {
            if b < 0x20 || matches!(b, 0x7f | b' ' | b'<' | b'>' | b',') {
                return Err(err(AddressProblem::ForbiddenChar(char::from(b))));
            }
        }
        let at = memchr::memchr(b'@', s.as_bytes()).ok_or_else(|| err(AddressProblem::MissingAt))?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if memchr::memchr(b'@', domain.as_bytes()).is_some() {
            return Err(err(AddressProblem::MultipleAt));
        }
        if local.is_empty() {
            return Err(err(AddressProblem::EmptyLocal));
        }
        if domain.is_empty() {
            return Err(err(AddressProblem::EmptyDomain));
        }
        if s.len() > MAX_ADDRESS_LEN {
            return Err(err(AddressProblem::TooLong(s.len())));
        }
        if local.len() > MAX_LOCAL_LEN {
            return Err(err(AddressProblem::LocalTooLong(local.len())));
        }
        check_local(local).map_err(err)?;
        let domain = normalise_domain(domain).map_err(err)?;
        let mut text = String::with_capacity(s.len());
        text.push_str(local);
        text.push('@');
        text.push_str(&domain);
        Ok(EmailAddress {
            text: text.into_boxed_str(),
            at,
        })
    }

    /// The whole address, `local@domain`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The local part, as given.
    pub fn local(&self) -> &str {
        &self.text[..self.at]
    }

    /// The domain, lowercased (or an address literal such as `[127.0.0.1]`).
    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }
}

/// Byte class tables: `ATEXT` (RFC 5322 §3.2.3) and `LDH` (letters, digits, hyphen).
const fn byte_table(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}
static ATEXT: [bool; 256] = byte_table(b"!#$%&'*+-/=?^_`{|}~");
static LDH: [bool; 256] = byte_table(b"-");

/// RFC 5322 §3.2.3 dot-atom: atext runs separated by single dots.
fn check_local(local: &str) -> Result<(), AddressProblem> {
    let mut prev = 0u8;
    for &b in local.as_bytes() {
        if b >= 0x80 {
            return Err(AddressProblem::NonAsciiLocal);
        }
        if b == b'.' {
            if prev == b'.' {
                return Err(AddressProblem::InvalidLocal("consecutive dots"));
            }
        } else if !ATEXT[usize::from(b)] {
            return Err(AddressProblem::ForbiddenChar(char::from(b)));
        }
        prev = b;
    }
    if local.starts_with('.') || local.ends_with('.') {
        return Err(AddressProblem::InvalidLocal("starts or ends with '.'"));
    }
    Ok(())
}

/// Validates an LDH domain (RFC 1035 §2.3.1, RFC 1123 §2.1) or an address literal and
/// returns it lowercased.
fn normalise_domain(domain: &str) -> Result<String, AddressProblem> {
    if !domain.is_ascii() {
        return Err(AddressProblem::NonAsciiDomain);
    }
    if let Some(inner) = domain.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(AddressProblem::InvalidLiteral)?;
        // RFC 5321 §4.1.3: IPv4-address-literal / "IPv6:" IPv6-addr.
        if inner.parse::<Ipv4Addr>().is_ok() {
            return Ok(format!("[{inner}]"));
        }
        let v6 = inner
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
            .and_then(|_| inner[5..].parse::<Ipv6Addr>().ok())
            .ok_or(AddressProblem::InvalidLiteral)?;
        return Ok(format!("[IPv6:{v6}]"));
    }
    let bytes = domain.as_bytes();
    let (mut start, mut labels) = (0, 0);
    let ends = memchr::memchr_iter(b'.', bytes).chain(std::iter::once(bytes.len()));
    for end in ends {
        let label = &bytes[start..end];
        let bad = |reason| bad_label(domain, start, reason);
        if label.is_empty() {
            return Err(bad("empty label (leading, trailing or double dot)"));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(bad("longer than 63 octets"));
        }
        for &b in label {
            if !LDH[usize::from(b)] {
                return Err(bad("only letters, digits and '-' are allowed"));
            }
        }
        if label[0] == b'-' || label[label.len() - 1] == b'-' {
            return Err(bad("starts or ends with '-'"));
        }
        labels += 1;
        if end < bytes.len() {
            start = end + 1;
        }
    }
    if labels < 2 {
        return Err(AddressProblem::DomainWithoutDot);
    }
    // RFC 3696 §2: a top-level domain is never all-numeric; "a@1.2.3.4" wants brackets.
    if bytes[start..].iter().all(u8::is_ascii_digit) {
        return Err(bad_label(
            domain,
            start,
            "all-numeric top-level label (write an IP address as [1.2.3.4])",
        ));
    }
    Ok(domain.to_ascii_lowercase())
}

/// The label of `domain` starting at byte `start`, with the reason it is refused.
fn bad_label(domain: &str, start: usize, reason: &'static str) -> AddressProblem {
    let label = domain[start..].split('.').next().unwrap_or_default();
    AddressProblem::InvalidLabel {
        label: label.to_owned(),
        reason,
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EmailAddress::parse(s)
    }
}

impl serde::Serialize for EmailAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EmailAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(s: &str) -> AddressProblem {
        EmailAddress::parse(s).expect_err(s).problem
    }

    #[test]
    fn accepts_and_normalises() {
        let a = EmailAddress::parse("  Bob.Smith+tag@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "Bob.Smith+tag@example.com");
        assert_eq!(a.local(), "Bob.Smith+tag");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(EmailAddress::parse("a@[127.0.0.1]").unwrap().domain(), "[127.0.0.1]");
        assert_eq!(EmailAddress::parse("a@[ipv6:::1]").unwrap().domain(), "[IPv6:::1]");
        assert_eq!(
            EmailAddress::parse("x@xn--bcher-kva.example").unwrap().domain(),
            "xn--bcher-kva.example"
        );
    }

    #[test]
    fn refuses_with_reasons() {
        use AddressProblem as P;
        assert_eq!(problem(" "), P::Empty);
        assert_eq!(problem("foo"), P::MissingAt);
        assert_eq!(problem("a@b@c.d"), P::MultipleAt);
        assert_eq!(problem("\"a b\"@c.d"), P::QuotedLocalPart);
        assert_eq!(problem("@c.d"), P::EmptyLocal);
        assert_eq!(problem("foo@"), P::EmptyDomain);
        assert_eq!(problem(&format!("{}@c.d", "a".repeat(65))), P::LocalTooLong(65));
        assert_eq!(problem(&format!("a@{}com", "b.".repeat(125))), P::TooLong(255));
        assert_eq!(problem("a\r\nb@c.d"), P::ForbiddenChar('\r'));
        assert_eq!(problem("a b@c.d"), P::ForbiddenChar(' '));
        assert_eq!(problem("<a@c.d>"), P::ForbiddenChar('<'));
        assert_eq!(problem("a@c.d,b@c.d"), P::ForbiddenChar(','));
        assert_eq!(problem("a(b)@c.d"), P::ForbiddenChar('('));
        assert_eq!(problem("jöhn@c.d"), P::NonAsciiLocal);
        assert_eq!(problem("a@bücher.de"), P::NonAsciiDomain);
        assert_eq!(problem(".a@c.d"), P::InvalidLocal("starts or ends with '.'"));
        assert_eq!(problem("a..b@c.d"), P::InvalidLocal("consecutive dots"));
        assert_eq!(problem("a@localhost"), P::DomainWithoutDot);
        assert!(matches!(problem("a@-c.d"), P::InvalidLabel { label, .. } if label == "-c"));
        assert!(matches!(problem("a@c..d"), P::InvalidLabel { .. }));
        assert!(matches!(problem("a@c.d."), P::InvalidLabel { .. }));
        assert!(matches!(problem("a@c_d.e"), P::InvalidLabel { .. }));
        assert!(matches!(
            problem(&format!("a@{}.d", "c".repeat(64))),
            P::InvalidLabel { .. }
        ));
        assert!(matches!(problem("a@1.2.3.4"), P::InvalidLabel { .. }));
        assert_eq!(problem("a@[1.2.3]"), P::InvalidLiteral);
        assert_eq!(problem("a@[::1]"), P::InvalidLiteral);
    }

    #[test]
    fn error_names_value_and_reason() {
        let e = EmailAddress::parse("foo@").unwrap_err();
        assert_eq!(e.to_string(), r#"invalid address "foo@": empty domain"#);
    }
}
