//! Harnesses for the feedback intake (`volley-feedback`): DSN and ARF parsing through the whole
//! intake, and the token decoder.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use mail_parser::MessageParser;
use volley_feedback::{arf, dsn, EventKind, Feedback, InboundEnvelope, Intake, Keyring, Token, TokenKind};
use volley_scheduler::bounces::BounceRules;

/// The key of the Postfix fixtures (feedback/tests/fixtures/postfix/token.py), so that their
/// tokens seed the `token` target.
const SECRET: &[u8] = b"volley feedback fixtures: not a production secret";
/// Inputs above this are quarantined unparsed (keeps each execution short).
const MAX_BYTES: usize = 64 * 1024;

fn keys() -> Arc<Keyring> {
    static KEYS: OnceLock<Arc<Keyring>> = OnceLock::new();
    KEYS.get_or_init(|| Arc::new(Keyring::single(1, SECRET))).clone()
}

fn intake() -> &'static Intake {
    static INTAKE: OnceLock<Intake> = OnceLock::new();
    INTAKE.get_or_init(|| {
        Intake::new(keys(), Arc::new(BounceRules::shipped()))
            .with_domains(vec!["bounce.fuzz.test".into()])
            .with_max_bytes(MAX_BYTES)
    })
}

/// The whole intake on `data`: deterministic, at least one event or a reason, event ids of 32
/// hex digits, bounces asynchronous, a too-large verdict only above the cap.
fn check_intake(data: &[u8]) {
    let envelope = InboundEnvelope {
        mail_from: String::new(),
        rcpt_to: vec!["bounces@bounce.fuzz.test".into()],
    };
    let feedback = intake().process(data, &envelope);
    assert_eq!(feedback, intake().process(data, &envelope), "deterministic");
    match &feedback {
        Feedback::Events { events } => {
            assert!(!events.is_empty(), "Events without an event");
            for e in events {
                assert_eq!(e.id.0.len(), 32);
                assert!(e.id.0.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(
                    e.origin.token.is_some() || e.origin.recipient.is_some(),
                    "an event names its message: {e:?}"
                );
                if let EventKind::Bounce { asynchronous, .. } = &e.kind {
                    assert!(asynchronous);
                }
            }
        }
        Feedback::Quarantine { reason } => {
            assert!(!reason.to_string().is_empty());
            if let volley_feedback::QuarantineReason::TooLarge { size, max } = reason {
                assert!(size > max && *max == MAX_BYTES);
            }
        }
    }
}

/// DSN parsing (RFC 3464/6533) of any MIME message, then the intake.
pub fn dsn_intake(data: &[u8]) {
    if data.len() <= MAX_BYTES {
        if let Some(message) = MessageParser::new().parse(data) {
            if let Ok(report) = dsn::parse(&message, data) {
                assert!(!report.recipients.is_empty());
                for r in &report.recipients {
                    assert!(matches!(
                        r.action.as_str(),
                        "failed" | "delayed" | "delivered" | "relayed" | "expanded"
                    ));
                    assert_eq!(r.final_recipient, r.final_recipient.to_lowercase());
                    if let Some(code) = r.reply_code() {
                        assert!((200..600).contains(&code));
                    }
                }
            }
        }
    }
    check_intake(data);
}

/// ARF parsing (RFC 5965, mail-auth's parser), then the intake.
pub fn arf_intake(data: &[u8]) {
    if data.len() <= MAX_BYTES {
        if let Ok(report) = arf::parse(data) {
            assert!(matches!(
                report.feedback_type,
                "abuse" | "fraud" | "virus" | "other" | "not-spam" | "auth-failure"
            ));
            assert_eq!(report.is_complaint(), matches!(report.feedback_type, "abuse" | "fraud"));
        }
    }
    check_intake(data);
}

/// The token decoder: arbitrary text never panics and a token it accepts re-encodes to the same
/// text (one encoding per token); a token built from the input's bytes round-trips, and any
/// one character changed is refused.
pub fn token(data: &[u8]) {
    let keys = keys();
    let text = String::from_utf8_lossy(data);
    if let Ok(token) = Token::decode(&text, &keys) {
        assert_eq!(token.encode(&keys), text.to_ascii_lowercase(), "canonical encoding");
    }
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let line = u64::from_le_bytes(std::array::from_fn(byte));
    let ip = if byte(8) & 1 == 1 {
        IpAddr::from(std::array::from_fn::<u8, 16, _>(|i| byte(9 + i)))
    } else {
        IpAddr::from([byte(9), byte(10), byte(11), byte(12)])
    };
    let mut token = Token::bounce(&text, line, ip);
    if byte(25) & 1 == 1 {
        let issued = UNIX_EPOCH
            + Duration::from_secs(u64::from(u32::from_le_bytes([byte(26), byte(27), byte(28), byte(29)])) * 3600);
        token = Token::unsubscribe(&text, line, ip, issued);
        assert_eq!(token.kind, TokenKind::Unsubscribe);
    }
    let encoded = token.encode(&keys);
    assert_eq!(Token::decode(&encoded, &keys).as_ref(), Ok(&token));
    assert_eq!(Token::decode(&encoded.to_uppercase(), &keys).as_ref(), Ok(&token));
    let at = usize::from(byte(30)) % encoded.len();
    let alphabet = b"0123456789abcdefghijklmnopqrstuv";
    let original = encoded.as_bytes()[at];
    let replacement =
        alphabet[(alphabet.iter().position(|&c| c == original).unwrap_or(0) + 1 + usize::from(byte(31)) % 31) % 32];
    let mut altered = encoded.clone().into_bytes();
    altered[at] = replacement;
    let altered = String::from_utf8(altered).expect("ASCII");
    assert!(
        Token::decode(&altered, &keys).is_err(),
        "{encoded} altered at {at} still decodes"
    );
}
