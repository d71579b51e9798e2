//! Feedback tokens: which message (campaign, recipient line, source IP) a bounce, complaint or
//! unsubscribe is about, HMAC-signed so that nobody else can make one.
//!
//! # Format
//! Lower-case base32 (RFC 4648 §7 "extended hex" alphabet, no padding) of these bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | bits 7-6 kind (`00` bounce, `01` unsubscribe), bit 5 IPv6, bit 4 reserved (0), bits 3-0 key id |
//! | 5 | campaign tag: the first 40 bits of SHA-256 of the campaign id ([`CampaignTag`]) |
//! | 1-10 | recipient line, LEB128 |
//! | 4 or 16 | source IP |
//! | 1-10 | unsubscribe only: issue time in hours since 1970, LEB128 |
//! | 10 | the first 80 bits of HMAC-SHA256(key, `"volley-feedback-token\0"` ‖ the bytes above) |
//!
//! Why these choices:
//! - **Case-insensitive alphabet**: the token travels in an SMTP local part, which relays may
//!   case-fold (RFC 5321 §2.4 lets them only at the destination, but some do it anyway); base32
//!   decodes upper case too.
//! - **Length**: a bounce token for an IPv4 source is 37 characters for a recipient line below
//!   2 million (45 with `bounces+`), 56 for IPv6 (64 with `bounces+`: RFC 5321 §4.5.3.1.1's
//!   local-part limit). The campaign id (up to 64 characters) does not fit, so the token carries
//!   a 40-bit tag of it: the reader matches it against the campaigns it knows
//!   ([`CampaignTag::of`]); two of 1,000 campaigns share a tag with probability ~5·10⁻⁷.
//! - **80-bit MAC**: a forger must guess a tag for each message; each guess costs an SMTP
//!   transaction, so 2⁸⁰ guesses are out of reach, while the token stays short. RFC 2104 §5
//!   allows truncation to no less than half the hash length or 80 bits, whichever is larger;
//!   NIST SP 800-107 §5.3.3 also accepts 64 bits and more. The MAC is checked in constant time
//!   before any other field is read.
//! - **Key id** (4 bits): a rotated key keeps verifying the tokens already out (see [`crate::key`]).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use data_encoding::BASE32_DNSSEC;
use ring::digest;

use crate::key::{Keyring, MAX_KEY_ID};

/// The longest token text accepted: a maximal unsubscribe token for IPv6 is 80 characters;
/// anything longer is refused before it is decoded.
pub const MAX_TOKEN_CHARS: usize = 96;
/// Length of the truncated HMAC, in bytes (80 bits).
pub const MAC_LEN: usize = 10;
/// Length of the campaign tag, in bytes (40 bits).
pub const CAMPAIGN_TAG_LEN: usize = 5;
/// Unsubscribe tokens older than this are refused unless the reader says otherwise.
pub const DEFAULT_UNSUBSCRIBE_MAX_AGE: Duration = Duration::from_secs(60 * 24 * 3600);

const MAC_CONTEXT: &[u8] = b"volley-feedback-token\0";
const KIND_BOUNCE: u8 = 0b00;
const KIND_UNSUBSCRIBE: u8 = 0b01;
const FLAG_V6: u8 = 0b0010_0000;
const RESERVED: u8 = 0b0001_0000;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// In the envelope sender (VERP): bounces and feedback-loop reports come back with it.
    Bounce,
    /// In an unsubscribe link or address; carries its issue time so that it can expire.
    Unsubscribe,
}

/// The first 40 bits of SHA-256 of a campaign id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CampaignTag(pub [u8; CAMPAIGN_TAG_LEN]);

impl CampaignTag {
    /// The tag of campaign `id`.
    pub fn of(id: &str) -> CampaignTag {
        let hash = digest::digest(&digest::SHA256, id.as_bytes());
        let mut tag = [0; CAMPAIGN_TAG_LEN];
        tag.copy_from_slice(&hash.as_ref()[..CAMPAIGN_TAG_LEN]);
        CampaignTag(tag)
    }

    /// Whether this is the tag of campaign `id`.
    pub fn is_of(&self, id: &str) -> bool {
        *self == CampaignTag::of(id)
    }
}

impl std::fmt::Display for CampaignTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl serde::Serialize for CampaignTag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a token says: the message it was made for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Token {
    /// Bounce (return path) or unsubscribe.
    pub kind: TokenKind,
    /// The campaign's tag.
    pub campaign: CampaignTag,
    /// The recipient's line in the campaign's recipient file.
    pub line: u64,
    /// The source IP the message was sent from.
    pub source_ip: IpAddr,
    /// Unsubscribe tokens: when the token was made, in whole hours since 1970.
    pub issued_hours: Option<u64>,
}

/// Why a token is refused. None of these is ever acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_CHARS`]: not decoded at all.
    #[error("token of {len} characters is longer than the {MAX_TOKEN_CHARS} accepted")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Not base32, too short, or a field does not decode: damaged in transit or made up.
    #[error("corrupted token: {reason}")]
    Corrupted {
        /// What does not decode.
        reason: &'static str,
    },
    /// Signed with a key id this keyring does not hold (retired, or made up).
    #[error("token signed with unknown key id {key_id}")]
    UnknownKey {
        /// The key id in the token.
        key_id: u8,
    },
    /// The MAC does not match: not made by us, or altered.
    #[error("forged token: the signature does not match")]
    Forged,
    /// An unsubscribe token older than allowed.
    #[error("token issued {age_hours} hours ago; at most {max_hours} are accepted")]
    Expired {
        /// Its age.
        age_hours: u64,
        /// The limit.
        max_hours: u64,
    },
}

impl TokenError {
    /// Whether the token was made by someone without our key (forged, or signed with an unknown
    /// key) rather than damaged or old: worth a warning in the log.
    pub fn is_forgery(&self) -> bool {
        matches!(self, TokenError::Forged | TokenError::UnknownKey { .. })
    }
}

impl Token {
    /// A return-path token for recipient `line` of campaign `campaign_id`, sent from `source_ip`.
    pub fn bounce(campaign_id: &str, line: u64, source_ip: IpAddr) -> Token {
        Token {
            kind: TokenKind::Bounce,
            campaign: CampaignTag::of(campaign_id),
            line,
            source_ip,
            issued_hours: None,
        }
    }

    /// An unsubscribe token issued at `now`.
    pub fn unsubscribe(campaign_id: &str, line: u64, source_ip: IpAddr, now: SystemTime) -> Token {
        Token {
            kind: TokenKind::Unsubscribe,
            issued_hours: Some(hours_since_epoch(now)),
            ..Token::bounce(campaign_id, line, source_ip)
        }
    }

    /// The signed token text (lower-case base32), signed with the keyring's first key.
    pub fn encode(&self, keys: &Keyring) -> String {
        let key_id = keys.signing_id();
        let mut bytes = Vec::with_capacity(48);
        let kind = match self.kind {
            TokenKind::Bounce => KIND_BOUNCE,
            TokenKind::Unsubscribe => KIND_UNSUBSCRIBE,
        };
        let v6 = if self.source_ip.is_ipv6() { FLAG_V6 } else { 0 };
        bytes.push(kind << 6 | v6 | (key_id & MAX_KEY_ID));
        bytes.extend_from_slice(&self.campaign.0);
        put_varint(&mut bytes, self.line);
        match self.source_ip {
            IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
        }
        if self.kind == TokenKind::Unsubscribe {
            put_varint(&mut bytes, self.issued_hours.unwrap_or(0));
        }
        let mac = keys.sign(&mac_input(&bytes));
        bytes.extend_from_slice(&mac.as_ref()[..MAC_LEN]);
        BASE32_DNSSEC.encode(&bytes)
    }

    /// Decodes and verifies `text` (any case). The MAC is checked before the fields are read.
    pub fn decode(text: &str, keys: &Keyring) -> Result<Token, TokenError> {
        if text.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::TooLong { len: text.len() });
        }
        let bytes = BASE32_DNSSEC
            .decode(text.as_bytes())
            .map_err(|_| TokenError::Corrupted { reason: "not base32" })?;
        // Header, tag, one varint byte, an IPv4 address, the MAC.
        if bytes.len() < 1 + CAMPAIGN_TAG_LEN + 1 + 4 + MAC_LEN {
            return Err(TokenError::Corrupted { reason: "too short" });
        }
        let (signed, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let key_id = signed[0] & MAX_KEY_ID;
        let expected = keys
            .sign_with(key_id, &mac_input(signed))
            .ok_or(TokenError::UnknownKey { key_id })?;
        if !constant_time_eq(&expected.as_ref()[..MAC_LEN], mac) {
            return Err(TokenError::Forged);
        }
        Token::parse_signed(signed)
    }

    /// Decodes `text` and refuses an unsubscribe token older than `max_age` at `now` (bounce
    /// tokens do not expire).
    pub fn decode_fresh(text: &str, keys: &Keyring, now: SystemTime, max_age: Duration) -> Result<Token, TokenError> {
        let token = Token::decode(text, keys)?;
        token.check_age(now, max_age)?;
        Ok(token)
    }

    /// Refuses an unsubscribe token older than `max_age` at `now` (bounce tokens do not
    /// expire).
    pub fn check_age(&self, now: SystemTime, max_age: Duration) -> Result<(), TokenError> {
        if let Some(issued) = self.issued_hours {
            let age_hours = hours_since_epoch(now).saturating_sub(issued);
            let max_hours = max_age.as_secs() / 3600;
            if age_hours > max_hours {
                return Err(TokenError::Expired { age_hours, max_hours });
            }
        }
        Ok(())
    }

    /// The fields of signed bytes (whose MAC matched).
    fn parse_signed(signed: &[u8]) -> Result<Token, TokenError> {
        let corrupted = |reason| TokenError::Corrupted { reason };
        let head = signed[0];
        if head & RESERVED != 0 {
            return Err(corrupted("reserved bit set"));
        }
        let kind = match head >> 6 {
            KIND_BOUNCE => TokenKind::Bounce,
            KIND_UNSUBSCRIBE => TokenKind::Unsubscribe,
            _ => return Err(corrupted("unknown token kind")),
        };
        let mut rest = &signed[1..];
        let mut campaign = [0; CAMPAIGN_TAG_LEN];
        campaign.copy_from_slice(take(&mut rest, CAMPAIGN_TAG_LEN).ok_or(corrupted("truncated campaign tag"))?);
        let line = get_varint(&mut rest).ok_or(corrupted("bad recipient line"))?;
        let source_ip = if head & FLAG_V6 != 0 {
            let b = take(&mut rest, 16).ok_or(corrupted("truncated IPv6 address"))?;
            let mut octets = [0; 16];
            octets.copy_from_slice(b);
            IpAddr::from(octets)
        } else {
            let b = take(&mut rest, 4).ok_or(corrupted("truncated IPv4 address"))?;
            IpAddr::from([b[0], b[1], b[2], b[3]])
        };
        let issued_hours = match kind {
            TokenKind::Unsubscribe => Some(get_varint(&mut rest).ok_or(corrupted("bad issue time"))?),
            TokenKind::Bounce => None,
        };
        if !rest.is_empty() {
            return Err(corrupted("trailing bytes"));
        }
        Ok(Token {
            kind,
            campaign: CampaignTag(campaign),
            line,
            source_ip,
            issued_hours,
        })
    }
}

fn hours_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 3600)
}

fn mac_input(signed: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(MAC_CONTEXT.len() + signed.len());
    input.extend_from_slice(MAC_CONTEXT);
    input.extend_from_slice(signed);
    input
}

/// Compares without stopping at the first difference (no timing oracle on the MAC).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// LEB128; refuses over-long and non-minimal encodings, so one value has one encoding.
fn get_varint(rest: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let (&b, tail) = rest.split_first()?;
        *rest = tail;
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None;
            }
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keyring {
        Keyring::single(3, b"a test secret of more than thirty-two bytes")
    }

    #[test]
    fn round_trip_and_lengths() {
        let v4 = Token::bounce("spring-2026", 1_999_999, "127.0.0.2".parse().unwrap());
        let text = v4.encode(&keys());
        assert_eq!(text.len(), 37, "{text}");
        assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(Token::decode(&text, &keys()), Ok(v4.clone()));
        assert_eq!(Token::decode(&text.to_uppercase(), &keys()), Ok(v4));
        let v6 = Token::bounce("x", 1_999_999, "2001:db8::1".parse().unwrap());
        let text = v6.encode(&keys());
        assert_eq!(text.len(), 56, "{text}");
        assert_eq!(Token::decode(&text, &keys()), Ok(v6));
    }

    #[test]
    fn forged_corrupted_and_unknown_keys_are_refused() {
        let token = Token::bounce("c", 7, "127.0.0.1".parse().unwrap());
        let text = token.encode(&keys());
        let other = Keyring::single(3, b"another secret of more than thirty-two bytes");
        assert_eq!(Token::decode(&text, &other), Err(TokenError::Forged));
        assert_eq!(
            Token::decode(
                &text,
                &Keyring::single(4, b"a test secret of more than thirty-two bytes")
            ),
            Err(TokenError::UnknownKey { key_id: 3 })
        );
        // One character changed anywhere: refused (the MAC covers every bit).
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(bytes).unwrap();
            assert!(Token::decode(&altered, &keys()).is_err(), "position {i}: {altered}");
        }
        assert!(matches!(
            Token::decode("not-base32!", &keys()),
            Err(TokenError::Corrupted { .. })
        ));
        assert!(matches!(
            Token::decode("00", &keys()),
            Err(TokenError::Corrupted { .. })
        ));
        assert_eq!(
            Token::decode(&"0".repeat(97), &keys()),
            Err(TokenError::TooLong { len: 97 })
        );
        assert!(Token::decode(&text[..text.len() - 1], &keys()).is_err());
    }

    #[test]
    fn unsubscribe_tokens_expire() {
        let issued = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = Token::unsubscribe("c", 1, "127.0.0.1".parse().unwrap(), issued);
        let text = token.encode(&keys());
        let day = Duration::from_secs(86_400);
        let fresh = Token::decode_fresh(&text, &keys(), issued + 59 * day, DEFAULT_UNSUBSCRIBE_MAX_AGE);
        assert_eq!(fresh, Ok(token));
        assert_eq!(
            Token::decode_fresh(&text, &keys(), issued + 61 * day, DEFAULT_UNSUBSCRIBE_MAX_AGE),
            Err(TokenError::Expired {
                age_hours: 61 * 24,
                max_hours: 60 * 24
            })
        );
    }

    #[test]
    fn campaign_tags_match_their_campaign_only() {
        let token = Token::bounce("spring-2026", 1, "127.0.0.1".parse().unwrap());
        assert!(token.campaign.is_of("spring-2026"));
        assert!(!token.campaign.is_of("spring-2027"));
        assert_eq!(token.campaign.to_string().len(), 10);
    }

    proptest! {
        #[test]
        fn any_token_round_trips(line: u64, v4: [u8; 4], v6: [u8; 16], six: bool, unsub: bool, hours in 0u64..10_000_000) {
            let ip = if six { IpAddr::from(v6) } else { IpAddr::from(v4) };
            let mut token = Token::bounce("campaign", line, ip);
            if unsub {
                token.kind = TokenKind::Unsubscribe;
                token.issued_hours = Some(hours);
            }
            let text = token.encode(&keys());
            prop_assert!(text.len() <= MAX_TOKEN_CHARS);
            prop_assert_eq!(Token::decode(&text, &keys()), Ok(token));
        }

        #[test]
        fn varints_round_trip(v: u64) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut rest = out.as_slice();
            prop_assert_eq!(get_varint(&mut rest), Some(v));
            prop_assert!(rest.is_empty());
        }
    }
}
