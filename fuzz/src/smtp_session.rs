//! The server-side SMTP session under arbitrary client bytes.

use std::sync::Arc;

use volley_engine::smtp::reply::{parse_reply, ReplyParse, DEFAULT_MAX_REPLY_SIZE};
use volley_smtp_server::command::MAX_COMMAND_LINE;
use volley_smtp_server::reply::AUTH_FAILED;
use volley_smtp_server::{AuthMechanism, Event, EnhancedCode, Reply, Session, SessionConfig, SessionError};

/// Byte 0 picks the configuration and the driver's policy, byte 1 the read size; the rest is
/// what the client sends. Invariants: never panics; the output is a sequence of complete,
/// well-formed replies (the engine's parser reads all of it); there is exactly one reply per
/// answered event, and no more answered events than line feeds received plus over-long
/// lines refused before their end; content events add up to the size of `MessageEnd`.
pub fn smtp_session(data: &[u8]) {
    let (Some(&flags), Some(&step)) = (data.first(), data.get(1)) else {
        return;
    };
    let input = &data[2..];
    let config = SessionConfig {
        chunking: flags & 1 != 0,
        starttls: flags & 2 != 0,
        auth: if flags & 4 != 0 {
            vec![AuthMechanism::Plain, AuthMechanism::Login]
        } else {
            Vec::new()
        },
        require_auth: false,
        dsn: flags & 8 != 0,
        max_message_size: if flags & 16 != 0 { 64 } else { 1 << 20 },
        max_recipients: if flags & 32 != 0 { 2 } else { 100 },
        enhanced_status_codes: flags & 128 == 0,
        ..SessionConfig::default()
    };
    let refuse_some = flags & 64 != 0;
    let mut session = Session::new(Arc::new(config), false);
    let step = usize::from(step).max(1);
    let mut answered = 0usize;
    let mut early_long_lines = 0usize;
    let mut decisions = 0usize;
    let mut content = 0u64;
    let mut closed = false;
    let mut output = Vec::new();
    for piece in input.chunks(step) {
        session.input_mut().extend_from_slice(piece);
        loop {
            let event = session.next_event();
            match &event {
                Event::NeedInput => break,
                Event::Closed => {
                    closed = true;
                    break;
                }
                Event::TlsHandshake => {
                    session.tls_established();
                    continue;
                }
                Event::Content(bytes) => {
                    content += bytes.len() as u64;
                    continue;
                }
                Event::Bdat { .. } => continue,
                Event::Mail { .. } | Event::Data => content = 0,
                Event::MessageEnd { size, .. } => {
                    assert_eq!(*size, content, "content events add up to the message size");
                    content = 0;
                }
                Event::Rejected(SessionError::Command(volley_smtp_server::command::CommandError::LineTooLong)) => {
                    early_long_lines += 1;
                }
                _ => {}
            }
            answered += 1;
            let (needs_decision, is_auth) = (event.needs_decision(), matches!(event, Event::Auth(_)));
            if needs_decision {
                decisions += 1;
                let result = if refuse_some && decisions % 3 == 0 {
                    let reply = if decisions % 9 == 0 {
                        Reply::new(421, EnhancedCode::new(4, 7, 0), "closing")
                    } else {
                        Reply::new(550, EnhancedCode::new(5, 7, 1), "refused")
                    };
                    session.reply(&reply)
                } else if is_auth && decisions % 2 == 0 {
                    session.reply(&AUTH_FAILED)
                } else {
                    session.accept()
                };
                assert!(result.is_ok(), "a decision was pending");
            } else {
                assert!(session.accept().is_err(), "an answered event takes no decision");
            }
        }
        output.extend_from_slice(session.output());
        session.clear_output();
        if closed {
            break;
        }
    }
    if closed {
        session.input_mut().extend_from_slice(b"NOOP\r\n");
        assert!(matches!(session.next_event(), Event::Closed));
        assert!(session.output().is_empty(), "nothing is answered after the end");
    }
    // Every reply is complete and well formed.
    let mut replies = 0;
    let mut rest = &output[..];
    while !rest.is_empty() {
        match parse_reply(rest, DEFAULT_MAX_REPLY_SIZE) {
            Ok(ReplyParse::Complete { consumed, .. }) => {
                rest = &rest[consumed..];
                replies += 1;
            }
            other => panic!("malformed output {:?}: {other:?}", String::from_utf8_lossy(rest)),
        }
    }
    assert_eq!(replies, answered, "one reply per answered event");
    let line_feeds = input.iter().filter(|&&b| b == b'\n').count();
    assert!(
        answered <= line_feeds + early_long_lines,
        "{answered} replies for {line_feeds} lines (+{early_long_lines} over {MAX_COMMAND_LINE} octets)"
    );
}
