//! Bytes in, events and replies out: every state transition and error of the session.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::*;
use crate::auth::SaslError;
use crate::command::MAX_COMMAND_LINE;
use crate::config::AuthMechanism;
use crate::reply::EnhancedCode;

/// What a test saw of one event.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Ehlo(String),
    Mail(String),
    Rcpt(String),
    Data,
    Content(Vec<u8>),
    Chunk(u64),
    End(u64, bool),
    StartTls,
    Auth(String, String),
    Other(&'static str),
    Rejected(SessionError),
    Tls,
    Closed,
}

type Decide = Box<dyn FnMut(&Seen) -> Option<Reply>>;

struct Harness {
    session: Session,
    /// Answers a decision: `None` accepts.
    decide: Decide,
}

impl Harness {
    fn new(config: SessionConfig) -> Self {
        Harness {
            session: Session::new(Arc::new(config), false),
            decide: Box::new(|_| None),
        }
    }

    fn deciding(mut self, decide: impl FnMut(&Seen) -> Option<Reply> + 'static) -> Self {
        self.decide = Box::new(decide);
        self
    }

    /// Feeds `input` as one read; returns the replies written and the events seen (content
    /// pieces joined), up to NeedInput, TlsHandshake or Closed.
    fn feed(&mut self, input: &[u8]) -> (String, Vec<Seen>) {
        self.session.input_mut().extend_from_slice(input);
        let mut seen: Vec<Seen> = Vec::new();
        loop {
            let event = self.session.next_event();
            let needs = event.needs_decision();
            let s = match event {
                Event::NeedInput => break,
                Event::TlsHandshake => {
                    seen.push(Seen::Tls);
                    break;
                }
                Event::Closed => {
                    seen.push(Seen::Closed);
                    break;
                }
                Event::Ehlo { domain, .. } => Seen::Ehlo(domain.to_owned()),
                Event::Mail { sender, .. } => Seen::Mail(sender.address().to_owned()),
                Event::Rcpt { recipient, .. } => Seen::Rcpt(recipient.address().to_owned()),
                Event::Data => Seen::Data,
                Event::Content(bytes) => {
                    if let Some(Seen::Content(previous)) = seen.last_mut() {
                        previous.extend_from_slice(bytes);
                        continue;
                    }
                    Seen::Content(bytes.to_vec())
                }
                Event::BdatChunk { size } => Seen::Chunk(size),
                Event::MessageEnd { size, chunked } => Seen::End(size, chunked),
                Event::StartTls => Seen::StartTls,
                Event::Auth(c) => Seen::Auth(c.username, c.password),
                Event::Bdat { .. } => Seen::Other("BDAT"),
                Event::Rset => Seen::Other("RSET"),
                Event::Noop => Seen::Other("NOOP"),
                Event::Help => Seen::Other("HELP"),
                Event::Vrfy { .. } => Seen::Other("VRFY"),
                Event::Quit => Seen::Other("QUIT"),
                Event::AuthChallenge => Seen::Other("334"),
                Event::Rejected(e) => Seen::Rejected(e),
            };
            if needs {
                match (self.decide)(&s) {
                    None => self.session.accept().expect("pending"),
                    Some(reply) => self.session.reply(&reply).expect("pending"),
                }
            }
            seen.push(s);
        }
        let out = String::from_utf8(self.session.output().to_vec()).expect("replies are UTF-8");
        self.session.clear_output();
        (out, seen)
    }

    /// Reply codes of a batch, one per reply (continuation lines skipped).
    fn codes(&mut self, input: &[u8]) -> Vec<u16> {
        codes(&self.feed(input).0)
    }

    fn greeted(config: SessionConfig) -> Self {
        let mut h = Harness::new(config);
        assert_eq!(h.codes(b"EHLO c.test\r\n"), [250]);
        h
    }
}

fn codes(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter(|line| line.len() >= 4 && line.as_bytes()[3] == b' ' || line.len() == 3)
        .map(|line| line[..3].parse().expect("reply code"))
        .collect()
}

fn chunking() -> SessionConfig {
    SessionConfig {
        chunking: true,
        ..SessionConfig::default()
    }
}

fn auth_config() -> SessionConfig {
    SessionConfig {
        starttls: true,
        auth: vec![AuthMechanism::Plain, AuthMechanism::Login],
        auth_requires_tls: true,
        require_auth: true,
        ..SessionConfig::default()
    }
}

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

#[test]
fn pipelined_transaction_yields_one_reply_per_command_and_unstuffed_content() {
    let mut h = Harness::greeted(SessionConfig::default());
    let (text, seen) = h.feed(b"MAIL FROM:<s@c.test>\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n");
    assert_eq!(codes(&text), [250, 250, 250, 354]);
    assert_eq!(
        seen,
        [
            Seen::Mail("s@c.test".into()),
            Seen::Rcpt("a@x.test".into()),
            Seen::Rcpt("b@x.test".into()),
            Seen::Data
        ]
    );
    let (text, seen) = h.feed(b"Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    assert_eq!(text, "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n");
    assert_eq!(
        seen,
        [
            Seen::Content(b"Subject: hi\r\n\r\n.dot\r\n".to_vec()),
            Seen::End(21, false),
            Seen::Other("QUIT"),
            Seen::Closed
        ]
    );
}

#[test]
fn commands_after_data_wait_for_the_content() {
    let mut h = Harness::greeted(SessionConfig::default());
    // Everything after DATA is content, however command-like, until the dot.
    let (text, seen) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\nQUIT\r\nRSET\r\n");
    assert_eq!(codes(&text), [250, 250, 354]);
    assert_eq!(seen.last(), Some(&Seen::Content(b"QUIT\r\nRSET\r\n".to_vec())));
    assert_eq!(h.codes(b".\r\nNOOP\r\n"), [250, 250]);
}

#[test]
fn commands_split_across_reads_wait_for_the_line_end() {
    let mut h = Harness::new(SessionConfig::default());
    assert_eq!(h.codes(b"HE"), Vec::<u16>::new());
    assert_eq!(h.codes(b"LO c.test\r"), Vec::<u16>::new());
    assert_eq!(h.codes(b"\nNOOP\n"), [250, 250], "bare LF is tolerated for commands");
}

#[test]
fn sequencing_errors_are_503_and_554() {
    let mut h = Harness::new(SessionConfig::default());
    let (_, seen) = h.feed(b"MAIL FROM:<s@c.test>\r\n");
    assert_eq!(seen, [Seen::Rejected(SessionError::GreetFirst { verb: Verb::Mail })]);
    assert_eq!(
        h.codes(b"EHLO c.test\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"),
        [250, 503, 503]
    );
    assert_eq!(h.codes(b"MAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\n"), [250, 503, 554]);
    assert_eq!(h.codes(b"RSET\r\nRCPT TO:<a@x.test>\r\nBOGUS\r\n"), [250, 503, 500]);
    assert_eq!(h.codes(b"VRFY x\r\nHELP\r\n"), [252, 214]);
}

#[test]
fn ehlo_resets_the_transaction_and_helo_answers_with_the_name() {
    let mut h = Harness::new(SessionConfig {
        hostname: "mx.test".into(),
        ..SessionConfig::default()
    });
    let codes = h.codes(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nEHLO c\r\nDATA\r\n");
    assert_eq!(codes, [250, 250, 250, 250, 503]);
    assert_eq!(h.feed(b"HELO c\r\n").0, "250 mx.test\r\n");
}

#[test]
fn refused_ehlo_leaves_the_client_ungreeted() {
    let refusal = Reply::new(502, EnhancedCode::new(5, 5, 1), "EHLO not supported");
    let mut h = Harness::new(SessionConfig::default()).deciding(move |seen| match seen {
        Seen::Ehlo(name) if name == "refused" => Some(refusal.clone()),
        _ => None,
    });
    assert_eq!(h.codes(b"EHLO refused\r\nMAIL FROM:<>\r\n"), [502, 503]);
    assert!(!h.session.is_greeted());
    assert_eq!(h.codes(b"HELO ok\r\nMAIL FROM:<>\r\n"), [250, 250]);
}

#[test]
fn ehlo_lists_the_configured_extensions() {
    let mut h = Harness::new(SessionConfig {
        hostname: "mx.test".into(),
        chunking: true,
        dsn: true,
        starttls: true,
        auth: vec![AuthMechanism::Plain, AuthMechanism::Login],
        max_message_size: 1000,
        ..SessionConfig::default()
    });
    let (text, _) = h.feed(b"EHLO c\r\n");
    assert_eq!(
        text,
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-DSN\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n"
    );
    let mut bare = Harness::new(SessionConfig {
        pipelining: false,
        eight_bit_mime: false,
        smtputf8: false,
        enhanced_status_codes: false,
        ..SessionConfig::default()
    });
    let (text, _) = bare.feed(b"EHLO c\r\nNOOP\r\n");
    assert_eq!(
        text, "250-localhost\r\n250 SIZE 52428800\r\n250 Ok\r\n",
        "no enhanced codes either"
    );
}

#[test]
fn parameters_of_extensions_not_offered_get_555() {
    let mut h = Harness::greeted(SessionConfig {
        smtputf8: false,
        ..SessionConfig::default()
    });
    let unknown = |verb| Seen::Rejected(SessionError::Command(CommandError::UnknownParameter { verb }));
    for line in [
        "MAIL FROM:<> SMTPUTF8\r\n",
        "MAIL FROM:<> RET=FULL\r\n",
        "MAIL FROM:<> BODY=BINARYMIME\r\n",
    ] {
        assert_eq!(h.feed(line.as_bytes()).1, [unknown(Verb::Mail)], "{line}");
    }
    assert_eq!(h.codes(b"MAIL FROM:<> BODY=8BITMIME\r\n"), [250]);
    assert_eq!(h.feed(b"RCPT TO:<a@x.test> NOTIFY=NEVER\r\n").1, [unknown(Verb::Rcpt)]);
    let mut dsn = Harness::greeted(SessionConfig {
        dsn: true,
        ..SessionConfig::default()
    });
    assert_eq!(
        dsn.codes(b"MAIL FROM:<> RET=HDRS ENVID=x\r\nRCPT TO:<a@x.test> NOTIFY=NEVER ORCPT=rfc822;a@x.test\r\n"),
        [250, 250]
    );
}

#[test]
fn long_line_is_refused_once_and_skipped() {
    let mut h = Harness::new(SessionConfig::default());
    let long = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE));
    assert_eq!(h.codes(long.as_bytes()), [500]);
    // Arriving in pieces: answered once, the rest of the line is skipped.
    assert_eq!(h.codes("y".repeat(MAX_COMMAND_LINE + 10).as_bytes()), [500]);
    assert_eq!(h.codes("y".repeat(2000).as_bytes()), Vec::<u16>::new());
    assert_eq!(h.codes(b"yyy\r\nNOOP\r\n"), [250]);
    // Exactly 512 octets including CRLF is allowed.
    let max = format!("NOOP {}\r\n", "z".repeat(MAX_COMMAND_LINE - 7));
    assert_eq!(max.len(), MAX_COMMAND_LINE);
    assert_eq!(h.codes(max.as_bytes()), [250]);
}

#[test]
fn size_limit_at_mail_and_after_the_content() {
    let mut h = Harness::greeted(SessionConfig {
        max_message_size: 10,
        ..SessionConfig::default()
    });
    let (_, seen) = h.feed(b"MAIL FROM:<> SIZE=11\r\n");
    assert_eq!(seen, [Seen::Rejected(SessionError::MessageTooBig { verb: Verb::Mail })]);
    assert_eq!(
        h.codes(b"MAIL FROM:<> SIZE=10\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"),
        [250, 250, 354]
    );
    let (text, seen) = h.feed(b"0123456789ABC\r\n.\r\n");
    assert_eq!(codes(&text), [552]);
    assert_eq!(
        seen.last(),
        Some(&Seen::Rejected(SessionError::MessageTooBig { verb: Verb::Data }))
    );
    // The transaction is over; a new one fits.
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n"),
        [250, 250, 354]
    );
    assert_eq!(h.codes(b"0123456\r\n.\r\n"), [250]);
}

#[test]
fn recipient_limit_is_452() {
    let mut h = Harness::greeted(SessionConfig {
        max_recipients: 2,
        ..SessionConfig::default()
    });
    let (text, seen) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\n");
    assert_eq!(codes(&text), [250, 250, 250, 452]);
    assert!(text.ends_with("452 4.5.3 Error: too many recipients\r\n"), "{text}");
    assert_eq!(seen.last(), Some(&Seen::Rejected(SessionError::TooManyRecipients)));
}

#[test]
fn refused_recipients_do_not_count_and_data_without_any_is_554() {
    let mut h = Harness::greeted(SessionConfig::default()).deciding(|seen| match seen {
        Seen::Rcpt(_) => Some(Reply::new(550, EnhancedCode::new(5, 1, 1), "no such user")),
        _ => None,
    });
    assert_eq!(h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nDATA\r\n"), [250, 550, 554]);
}

#[test]
fn a_421_decision_closes_the_session() {
    let mut h = Harness::greeted(SessionConfig::default()).deciding(|seen| match seen {
        Seen::Mail(_) => Some(Reply::new(421, EnhancedCode::new(4, 7, 0), "go away")),
        _ => None,
    });
    let (text, seen) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x>\r\n");
    assert_eq!(text, "421 4.7.0 go away\r\n");
    assert_eq!(seen, [Seen::Mail(String::new()), Seen::Closed]);
}

#[test]
fn a_missing_decision_is_answered_451() {
    let mut session = Session::new(Arc::new(SessionConfig::default()), false);
    session.input_mut().extend_from_slice(b"EHLO c\r\nNOOP\r\n");
    assert!(matches!(session.next_event(), Event::Ehlo { .. }));
    assert_eq!(session.next_event(), Event::Rejected(SessionError::DecisionMissing));
    assert_eq!(session.next_event(), Event::Noop);
    assert_eq!(session.accept(), Err(NoPendingDecision));
    assert_eq!(
        session.output(),
        b"451 4.3.0 Local error in processing, please try again later\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn starttls_stops_processing_and_restart_forgets_everything() {
    let mut h = Harness::new(SessionConfig {
        starttls: true,
        ..SessionConfig::default()
    });
    h.feed(b"EHLO c\r\n");
    let (text, seen) = h.feed(b"STARTTLS\r\nMAIL FROM:<>\r\n");
    assert_eq!(text, "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(seen, [Seen::StartTls, Seen::Tls]);
    // Pipelined plaintext after STARTTLS was discarded (RFC 3207 §5).
    assert!(h.session.input_mut().is_empty());
    assert_eq!(h.feed(b"").1, [Seen::Tls], "waits for the handshake");
    h.session.tls_established();
    assert!(h.session.is_tls());
    assert_eq!(h.codes(b"MAIL FROM:<>\r\n"), [503], "the greeting is forgotten");
    let (ehlo, _) = h.feed(b"EHLO c\r\n");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert_eq!(h.feed(b"STARTTLS\r\n").1, [Seen::Rejected(SessionError::TlsActive)]);
}

#[test]
fn starttls_refusals() {
    let mut off = Harness::greeted(SessionConfig::default());
    assert_eq!(
        off.feed(b"STARTTLS\r\n").1,
        [Seen::Rejected(SessionError::NotOffered { verb: Verb::StartTls })]
    );
    let mut h = Harness::greeted(SessionConfig {
        starttls: true,
        ..SessionConfig::default()
    });
    assert_eq!(h.codes(b"MAIL FROM:<s@c.test>\r\nSTARTTLS\r\n"), [250, 503]);
    let mut refused = Harness::greeted(SessionConfig {
        starttls: true,
        ..SessionConfig::default()
    })
    .deciding(|_| Some(Reply::new(454, EnhancedCode::new(4, 7, 0), "TLS not available")));
    assert_eq!(
        refused.codes(b"STARTTLS\r\nNOOP\r\n"),
        [454, 250],
        "a refused STARTTLS goes on in plaintext"
    );
}

#[test]
fn require_tls_blocks_mail_until_the_handshake() {
    let mut h = Harness::greeted(SessionConfig {
        starttls: true,
        require_tls: true,
        ..SessionConfig::default()
    });
    assert_eq!(
        h.feed(b"MAIL FROM:<>\r\n").1,
        [Seen::Rejected(SessionError::TlsRequired)]
    );
    h.feed(b"STARTTLS\r\n");
    h.session.tls_established();
    assert_eq!(h.codes(b"EHLO c\r\nMAIL FROM:<>\r\n"), [250, 250]);
}

#[test]
fn auth_needs_tls_then_plain_with_initial_response() {
    let mut h = Harness::greeted(auth_config()).deciding(|seen| match seen {
        Seen::Auth(user, password) if user == "alice" && password == "secret" => None,
        Seen::Auth(..) => Some(crate::reply::AUTH_FAILED),
        _ => None,
    });
    let (ehlo, _) = h.feed(b"EHLO c\r\n");
    assert!(!ehlo.contains("AUTH"), "not offered before TLS: {ehlo}");
    assert_eq!(
        h.feed(b"AUTH PLAIN\r\n").1,
        [Seen::Rejected(SessionError::EncryptionRequired)]
    );
    h.feed(b"STARTTLS\r\n");
    h.session.tls_established();
    let (ehlo, _) = h.feed(b"EHLO c\r\n");
    assert!(ehlo.ends_with("250 AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    assert_eq!(
        h.feed(b"MAIL FROM:<>\r\n").1,
        [Seen::Rejected(SessionError::AuthRequired)]
    );
    let wrong = format!("AUTH PLAIN {}\r\n", b64("\0alice\0wrong"));
    assert_eq!(h.codes(wrong.as_bytes()), [535]);
    assert!(!h.session.is_authenticated());
    let right = format!("AUTH PLAIN {}\r\n", b64("\0alice\0secret"));
    let (text, seen) = h.feed(right.as_bytes());
    assert_eq!(text, "235 2.7.0 Authentication successful\r\n");
    assert_eq!(seen, [Seen::Auth("alice".into(), "secret".into())]);
    assert!(h.session.is_authenticated());
    assert_eq!(
        h.feed(right.as_bytes()).1,
        [Seen::Rejected(SessionError::AlreadyAuthenticated)]
    );
    assert_eq!(h.codes(b"MAIL FROM:<a@c.test>\r\n"), [250]);
}

#[test]
fn auth_login_exchange_cancel_and_errors() {
    let mut config = auth_config();
    config.auth_requires_tls = false;
    let mut h = Harness::greeted(config);
    let (text, seen) = h.feed(b"AUTH LOGIN\r\n");
    assert_eq!(text, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(seen, [Seen::Other("334")]);
    let (text, _) = h.feed(format!("{}\r\n", b64("bob")).as_bytes());
    assert_eq!(text, "334 UGFzc3dvcmQ6\r\n");
    let (text, seen) = h.feed(format!("{}\r\n", b64("pw")).as_bytes());
    assert_eq!(seen, [Seen::Auth("bob".into(), "pw".into())]);
    assert_eq!(codes(&text), [235]);

    let mut config = auth_config();
    config.auth_requires_tls = false;
    let mut h = Harness::greeted(config);
    assert_eq!(h.feed(b"AUTH PLAIN\r\n").0, "334 \r\n");
    assert_eq!(
        h.feed(b"*\r\n").1,
        [Seen::Rejected(SessionError::Sasl(SaslError::Cancelled))]
    );
    assert_eq!(h.codes(b"NOOP\r\n"), [250], "back to commands");
    h.feed(b"AUTH PLAIN\r\n");
    assert_eq!(
        h.feed(b"!!!\r\n").1,
        [Seen::Rejected(SessionError::Sasl(SaslError::Malformed))]
    );
    assert_eq!(
        h.feed(b"AUTH CRAM-MD5\r\n").1,
        [Seen::Rejected(SessionError::UnknownMechanism)]
    );
    assert_eq!(h.codes(b"MAIL FROM:<>\r\n"), [530]);
    let mut none = Harness::greeted(SessionConfig::default());
    assert_eq!(
        none.feed(b"AUTH PLAIN\r\n").1,
        [Seen::Rejected(SessionError::NotOffered { verb: Verb::Auth })]
    );
    // An AUTH response line may exceed the command line limit (RFC 4954 §4).
    let mut config = auth_config();
    config.auth_requires_tls = false;
    let mut long = Harness::greeted(config);
    long.feed(b"AUTH PLAIN\r\n");
    let response = b64(&format!("\0{}\0pw", "u".repeat(600)));
    assert_eq!(long.feed(format!("{response}\r\n").as_bytes()).1.len(), 1);
    assert!(long.session.is_greeted());
}

#[test]
fn auth_is_refused_inside_a_transaction_and_before_the_greeting() {
    let mut config = auth_config();
    config.auth_requires_tls = false;
    config.require_auth = false;
    let mut h = Harness::new(config);
    assert_eq!(
        h.feed(b"AUTH PLAIN\r\n").1,
        [Seen::Rejected(SessionError::GreetFirst { verb: Verb::Auth })]
    );
    assert_eq!(
        h.feed(b"EHLO c\r\nMAIL FROM:<>\r\nAUTH PLAIN\r\n").1.last(),
        Some(&Seen::Rejected(SessionError::TransactionInProgress {
            verb: Verb::Auth
        }))
    );
}

#[test]
fn bdat_last_pipelined_with_the_envelope_is_one_batch() {
    let mut h = Harness::greeted(chunking());
    // The chunk holds what would end DATA content and what looks like commands: BDAT reads
    // octets, not lines, and nothing in them is interpreted.
    let body = b"Subject: x\r\n\r\n.\r\nQUIT\r\n";
    let mut group = format!(
        "MAIL FROM:<s@c.test>\r\nRCPT TO:<a@x.test>\r\nBDAT {} LAST\r\n",
        body.len()
    )
    .into_bytes();
    group.extend_from_slice(body);
    group.extend_from_slice(b"NOOP\r\n");
    let (text, seen) = h.feed(&group);
    assert_eq!(codes(&text), [250, 250, 250, 250]);
    assert_eq!(seen[2], Seen::Other("BDAT"));
    assert_eq!(seen[3], Seen::Content(body.to_vec()));
    assert_eq!(seen[4], Seen::End(body.len() as u64, true));
}

#[test]
fn bdat_chunks_split_across_reads_are_read_exactly() {
    let mut h = Harness::greeted(chunking());
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 10\r\n0123"),
        [250, 250]
    );
    assert_eq!(h.codes(b"45678"), Vec::<u16>::new());
    let (text, seen) = h.feed(b"9BDAT 3 LAST\r\nab");
    assert_eq!(codes(&text), [250], "first chunk complete");
    assert_eq!(
        seen,
        [
            Seen::Content(b"9".to_vec()),
            Seen::Chunk(10),
            Seen::Other("BDAT"),
            Seen::Content(b"ab".to_vec())
        ]
    );
    let (text, seen) = h.feed(b"cRSET\r\n");
    assert_eq!(codes(&text), [250, 250], "last chunk, then RSET");
    assert_eq!(seen[1], Seen::End(13, true), "the size counts every chunk");
    // A zero-length last chunk ends a transaction at once (RFC 3030 §2).
    let (_, seen) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 0 LAST\r\n");
    assert_eq!(seen.last(), Some(&Seen::End(0, true)));
}

#[test]
fn failed_bdat_is_read_and_answered_with_an_error() {
    let mut h = Harness::greeted(chunking()).deciding(|seen| match seen {
        Seen::Rcpt(_) => Some(Reply::new(550, EnhancedCode::new(5, 1, 1), "unknown")),
        _ => None,
    });
    // RFC 3030 §2: the chunk's octets are read and discarded even when the transaction failed.
    let (text, seen) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 6 LAST\r\nRSET\r\nNOOP\r\n");
    assert_eq!(codes(&text), [250, 550, 554, 250]);
    assert!(
        !seen.iter().any(|s| matches!(s, Seen::Content(_))),
        "no content delivered: {seen:?}"
    );
    // Without MAIL the chunk is still consumed.
    assert_eq!(h.codes(b"BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n"), [503, 250]);
}

#[test]
fn bdat_over_the_size_limit_without_chunking_and_mixed_with_data() {
    let mut h = Harness::greeted(SessionConfig {
        chunking: true,
        max_message_size: 10,
        ..SessionConfig::default()
    });
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 6\r\n012345BDAT 5 LAST\r\n01234"),
        [250, 250, 250, 552]
    );
    assert_eq!(
        h.feed(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 1\r\nxDATA\r\n")
            .1
            .last(),
        Some(&Seen::Rejected(SessionError::DataAfterBdat))
    );
    assert_eq!(
        h.codes(b"RSET\r\nMAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<a@x>\r\nDATA\r\n"),
        [250, 250, 250, 503]
    );
    let mut plain = Harness::greeted(SessionConfig::default());
    assert_eq!(
        plain.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x.test>\r\nBDAT 0 LAST\r\n"),
        [250, 250, 502]
    );
}

#[test]
fn a_refused_chunk_ends_the_transaction() {
    let mut h = Harness::greeted(chunking()).deciding(|seen| match seen {
        Seen::Chunk(_) => Some(Reply::new(452, EnhancedCode::new(4, 3, 1), "no space")),
        _ => None,
    });
    assert_eq!(
        h.codes(b"MAIL FROM:<>\r\nRCPT TO:<a@x>\r\nBDAT 1\r\nxBDAT 1 LAST\r\ny"),
        [250, 250, 452, 503]
    );
}

#[test]
fn quit_closes_and_later_input_is_ignored() {
    let mut h = Harness::new(SessionConfig::default());
    let (text, seen) = h.feed(b"QUIT\r\nNOOP\r\n");
    assert_eq!(text, "221 2.0.0 Bye\r\n");
    assert_eq!(seen, [Seen::Other("QUIT"), Seen::Closed]);
    assert_eq!(h.feed(b"NOOP\r\n").1, [Seen::Closed]);
}

#[test]
fn greeting_other_than_2xx_closes() {
    let mut session = Session::new(Arc::new(SessionConfig::default()), false);
    session.greet(&Reply::new(554, EnhancedCode::new(5, 7, 1), "no service"));
    assert_eq!(session.output(), b"554 5.7.1 no service\r\n");
    session.input_mut().extend_from_slice(b"EHLO c\r\n");
    assert_eq!(session.next_event(), Event::Closed);
}

/// Found by the `smtp_session` fuzz target: a chunk refused for want of a recipient left the
/// transaction open, so a later RCPT and `BDAT LAST` completed a message whose size counted
/// the refused chunk's octets that no `Content` event had carried.
#[test]
fn a_chunk_refused_for_want_of_recipients_ends_the_transaction() {
    let mut h = Harness::greeted(chunking()).deciding(|seen| match seen {
        Seen::Rcpt(address) if address == "no@x" => Some(Reply::new(550, EnhancedCode::new(5, 1, 1), "unknown")),
        _ => None,
    });
    let (text, seen) = h.feed(b"MAIL FROM:<>\r\nRCPT TO:<no@x>\r\nBDAT 2\r\nabRCPT TO:<yes@x>\r\nBDAT 1 LAST\r\nc");
    assert_eq!(codes(&text), [250, 550, 554, 503, 503], "{text}");
    assert!(!seen.iter().any(|s| matches!(s, Seen::End(..))), "{seen:?}");
}
