//! Property tests of the sans-IO reply parser: it never panics, never reads past what it
//! reports consuming, and gives the same result however the bytes are split across reads.

use proptest::prelude::*;
use volley_engine::smtp::reply::{parse_reply, ReplyParse, DEFAULT_MAX_REPLY_SIZE};

fn reply_strategy() -> impl Strategy<Value = (u16, Vec<String>)> {
    (200u16..600, prop::collection::vec("[ -~]{0,80}", 1..6))
}

fn encode(code: u16, lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), cap in 16usize..4096) {
        if let Ok(ReplyParse::Complete { consumed, .. }) = parse_reply(&bytes, cap) {
            prop_assert!(consumed > 0 && consumed <= bytes.len() && consumed <= cap);
        }
    }

    #[test]
    fn valid_replies_parse_whole_and_keep_what_follows((code, lines) in reply_strategy(), trailer in "[ -~]{0,40}") {
        let mut wire = encode(code, &lines);
        let len = wire.len();
        wire.extend_from_slice(trailer.as_bytes());
        match parse_reply(&wire, DEFAULT_MAX_REPLY_SIZE) {
            Ok(ReplyParse::Complete { reply, consumed }) => {
                prop_assert_eq!(consumed, len);
                prop_assert_eq!(reply.code, code);
                prop_assert_eq!(reply.text.split('\n').count(), lines.len());
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn split_anywhere_is_incomplete_then_the_same((code, lines) in reply_strategy(), at in 0usize..1000) {
        let wire = encode(code, &lines);
        let at = at % wire.len();
        prop_assert_eq!(parse_reply(&wire[..at], DEFAULT_MAX_REPLY_SIZE), Ok(ReplyParse::Incomplete));
        let whole = parse_reply(&wire, DEFAULT_MAX_REPLY_SIZE);
        let complete = matches!(whole, Ok(ReplyParse::Complete { .. }));
        prop_assert!(complete);
    }
}
