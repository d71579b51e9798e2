//! VERP return paths: `bounces+<token>@<bounce domain>` as the envelope sender (RFC 5321
//! `MAIL FROM`), so that a bounce's envelope recipient says which message bounced.
//!
//! Parsing is lenient about what relays do to an address on the way back: any case, angle
//! brackets, and `-` or `=` in place of `+` (qmail and some list managers use `-`; Exim's
//! `local_part_suffix` setups `=`).

use crate::key::Keyring;
use crate::token::{Token, TokenError};

/// The local-part prefix of return paths.
pub const BOUNCE_PREFIX: &str = "bounces";
/// The local-part prefix of unsubscribe addresses (`mailto:` in `List-Unsubscribe`).
pub const UNSUBSCRIBE_PREFIX: &str = "unsubscribe";

/// The envelope sender for a message with `token`: `bounces+<token>@<domain>`.
pub fn return_path(token: &Token, keys: &Keyring, domain: &str) -> String {
    format!("{BOUNCE_PREFIX}+{}@{domain}", token.encode(keys))
}

/// The unsubscribe address for `token`: `unsubscribe+<token>@<domain>`.
pub fn unsubscribe_address(token: &Token, keys: &Keyring, domain: &str) -> String {
    format!("{UNSUBSCRIBE_PREFIX}+{}@{domain}", token.encode(keys))
}

/// What an address says about feedback tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressToken {
    /// Not one of ours (no `bounces+`/`unsubscribe+` local part at the domain).
    NotOurs,
    /// One of ours, with a valid token.
    Valid(Token),
    /// One of ours, but the token is refused.
    Refused(TokenError),
}

/// Reads the token from `address` (`<bounces+TOKEN@domain>`, any case) when its domain is one
/// of `domains` (compared case-insensitively; empty: any domain).
pub fn token_in_address(address: &str, keys: &Keyring, domains: &[String]) -> AddressToken {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((local, domain)) = address.rsplit_once('@') else {
        return AddressToken::NotOurs;
    };
    if !domains.is_empty() && !domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return AddressToken::NotOurs;
    }
    let Some(text) = [BOUNCE_PREFIX, UNSUBSCRIBE_PREFIX]
        .iter()
        .find_map(|prefix| strip_prefix_ignore_case(local, prefix))
        .and_then(|rest| rest.strip_prefix(['+', '-', '=']))
    else {
        return AddressToken::NotOurs;
    };
    match Token::decode(text, keys) {
        Ok(token) => AddressToken::Valid(token),
        Err(e) => AddressToken::Refused(e),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::single(0, b"a test secret of more than thirty-two bytes")
    }

    #[test]
    fn return_paths_round_trip_through_case_changes_and_separators() {
        let token = Token::bounce("spring", 42, "127.0.0.3".parse().unwrap());
        let address = return_path(&token, &keys(), "bounce.sender.test");
        assert!(address.starts_with("bounces+") && address.ends_with("@bounce.sender.test"));
        assert!(address.split('@').next().unwrap().len() <= 64, "{address}");
        let domains = vec!["Bounce.Sender.Test".to_string()];
        for variant in [
            address.clone(),
            format!("<{}>", address.to_uppercase()),
            address.replacen('+', "-", 1),
            address.replacen('+', "=", 1),
        ] {
            assert_eq!(
                token_in_address(&variant, &keys(), &domains),
                AddressToken::Valid(token.clone()),
                "{variant}"
            );
        }
        assert_eq!(
            token_in_address(&address.replace("bounce.sender.test", "other.test"), &keys(), &domains),
            AddressToken::NotOurs
        );
        assert_eq!(
            token_in_address("postmaster@bounce.sender.test", &keys(), &domains),
            AddressToken::NotOurs
        );
        assert!(matches!(
            token_in_address(
                "bounces+0000000000000000000000000000000000000@bounce.sender.test",
                &keys(),
                &domains
            ),
            AddressToken::Refused(_)
        ));
    }
}
