//! The intake on real reports: genuine Postfix DSNs (tests/fixtures/postfix, made by make.sh
//! with a private Postfix), RFC 3464 and RFC 5965 examples, plain-text bounces of qmail, Exim
//! and Gmail, ARF reports from mail-auth's generator; forged tokens and broken messages are
//! quarantined; a report received twice gives the same event id. The bounce rules are the
//! scheduler's shipped rules (one classifier for replies and reports).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use mail_auth::report::{Feedback as ArfFeedback, FeedbackType};
use volley_feedback::{
    CampaignTag, EventKind, InboundEnvelope, Intake, Keyring, QuarantineReason, SuppressAction, Token, TokenKind,
};
use volley_scheduler::bounces::BounceRules;

/// The key postfix/token.py signs with.
const SECRET: &[u8] = b"volley feedback fixtures: not a production secret";
const BOUNCE_DOMAIN: &str = "bounce.volley.test";

fn keys() -> Arc<Keyring> {
    Arc::new(Keyring::single(1, SECRET))
}

fn intake() -> Intake {
    Intake::new(keys(), Arc::new(BounceRules::shipped())).with_domains(vec![BOUNCE_DOMAIN.to_string()])
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A plain-text fixture with `@RCPT@` replaced by `rcpt`.
fn plain(name: &str, rcpt: &str) -> Vec<u8> {
    String::from_utf8(fixture(name))
        .unwrap()
        .replace("@RCPT@", rcpt)
        .into_bytes()
}

fn envelope(rcpt: &str) -> InboundEnvelope {
    InboundEnvelope {
        mail_from: String::new(),
        rcpt_to: vec![rcpt.to_string()],
    }
}

/// The `To:` address of a fixture: where Postfix sent the DSN (our VERP address).
fn to_header(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().find(|l| l.starts_with("To: ")).expect("To header");
    line[4..]
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

fn verp(campaign: &str, line: u64, ip: &str) -> String {
    volley_feedback::verp::return_path(
        &Token::bounce(campaign, line, ip.parse().unwrap()),
        &keys(),
        BOUNCE_DOMAIN,
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn postfix_dsn_for_an_unknown_local_user_is_a_hard_bounce_of_the_tokens_message() {
    let raw = fixture("postfix/local-unknown-user.eml");
    let rcpt = to_header(&raw);
    let feedback = intake().process(&raw, &envelope(&rcpt));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    let token = event.origin.token.as_ref().expect("token");
    assert_eq!(token.kind, TokenKind::Bounce);
    assert_eq!(token.campaign, CampaignTag::of("postfix-fixtures"));
    assert_eq!((token.line, token.source_ip), (7, ip("127.0.0.2")));
    assert_eq!(event.origin.recipient.as_deref(), Some("nosuchuser@rcpt.volley.test"));
    assert_eq!(
        event.origin.message_id.as_deref(),
        Some("postfix-fixtures.7.0123456789abcdef@sender.volley.test")
    );
    let EventKind::Bounce {
        status,
        class,
        asynchronous,
        mta,
    } = &event.kind
    else {
        panic!("{event:?}")
    };
    assert!(asynchronous);
    assert_eq!(mta.as_deref(), Some("mx.rcpt.volley.test"));
    assert_eq!(status.status.as_deref(), Some("5.1.1"));
    assert_eq!(status.diagnostic, "unknown user: \"nosuchuser\"");
    assert_eq!(status.code, None, "an X-Postfix diagnostic quotes no SMTP reply");
    assert_eq!(
        (class.category.as_str(), class.action),
        ("bad-mailbox", SuppressAction::Suppress)
    );

    // Relays may upper-case the local part on the way back.
    let upper = intake().process(&raw, &envelope(&rcpt.to_uppercase()));
    assert_eq!(upper.events()[0].origin.token, Some(token.clone()));
    // Sent to a plain bounce address, the returned message's Return-Path still names it.
    let plain = intake().process(&raw, &envelope("postmaster@bounce.volley.test"));
    assert_eq!(plain.events()[0].origin.token, Some(token.clone()));
    // The same DSN twice: the same event id.
    assert_eq!(intake().process(&raw, &envelope(&rcpt)).events()[0].id, event.id);
}

#[test]
fn postfix_dsn_for_a_remote_550_carries_the_reply_and_the_remote_mta() {
    let raw = fixture("postfix/remote-550.eml");
    let feedback = intake().process(&raw, &envelope(&to_header(&raw)));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    assert_eq!(event.origin.token.as_ref().map(|t| t.line), Some(8));
    assert_eq!(event.origin.recipient.as_deref(), Some("gone@remote.volley.test"));
    let EventKind::Bounce { status, class, mta, .. } = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(status.code, Some(550));
    assert_eq!(status.diagnostic, "550 5.1.1 Recipient address rejected: User unknown");
    assert_eq!(mta.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        (class.category.as_str(), class.action),
        ("bad-mailbox", SuppressAction::Suppress)
    );
}

#[test]
fn postfix_delay_warning_is_recorded_not_bounced() {
    let raw = fixture("postfix/delayed-451.eml");
    let feedback = intake().process(&raw, &envelope(&to_header(&raw)));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    assert_eq!(event.origin.token.as_ref().map(|t| t.line), Some(9));
    let EventKind::Delayed { status } = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(status.status.as_deref(), Some("4.3.0"));
    assert_eq!(status.code, Some(451));
}

#[test]
fn rfc3464_examples() {
    let feedback = intake().process(
        &fixture("rfc/rfc3464-timed-out.eml"),
        &envelope("postmaster@bounce.volley.test"),
    );
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    assert_eq!(event.origin.token, None);
    assert_eq!(event.origin.recipient.as_deref(), Some("louisl@larry.slip.umd.edu"));
    let EventKind::Bounce { status, class, .. } = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!((status.status.as_deref(), status.code), (Some("4.0.0"), Some(426)));
    // A transient status given up: counted as a soft bounce, never an immediate suppression.
    assert_eq!(class.action, SuppressAction::Soft);

    let feedback = intake().process(
        &fixture("rfc/rfc3464-multiple-recipients.eml"),
        &envelope("postmaster@bounce.volley.test"),
    );
    let events = feedback.events();
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.name(), e.origin.recipient.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        summary,
        [
            ("bounce", "arathib@vnet.ibm.com"),
            ("delayed", "johnh@hpnjld.njd.hp.com"),
            ("bounce", "wsnell@sdcc13.ucsd.edu"),
        ]
    );
    let EventKind::Bounce { status, class, mta, .. } = &events[0].kind else {
        panic!()
    };
    assert_eq!(status.status.as_deref(), Some("5.0.0"));
    assert_eq!(
        status.diagnostic, "550 'arathib@vnet.IBM.COM' is not a registered gateway user",
        "folded Diagnostic-Code unfolded"
    );
    assert_eq!(mta.as_deref(), Some("vnet.ibm.com"));
    assert_eq!(class.category, "other");
    let EventKind::Bounce { class, .. } = &events[2].kind else {
        panic!()
    };
    assert_eq!(
        (class.category.as_str(), class.action),
        ("bad-mailbox", SuppressAction::Suppress)
    );
    assert_ne!(events[0].id, events[2].id);
}

#[test]
fn rfc5965_example_is_a_complaint_about_the_original_recipient() {
    let feedback = intake().process(&fixture("rfc/rfc5965-abuse.eml"), &envelope("fbl@bounce.volley.test"));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    assert_eq!(event.origin.token, None);
    assert_eq!(event.origin.recipient.as_deref(), Some("user@example.com"));
    assert_eq!(
        event.origin.message_id.as_deref(),
        Some("8787KJKJ3K4J3K4J3K4J3.mail@example.net")
    );
    assert_eq!(
        event.kind,
        EventKind::Complaint {
            feedback_type: "abuse".into(),
            user_agent: Some("SomeGenerator/1.0".into())
        }
    );
}

/// An ARF report made by mail-auth's generator about the message sent to `rcpt` from `sender`.
fn generated_arf(kind: FeedbackType, sender: &str, rcpt: &str) -> Vec<u8> {
    let original = format!(
        "Return-Path: <{sender}>\r\nFrom: Volley News <news@sender.volley.test>\r\nTo: <{rcpt}>\r\n\
         Subject: Spring sale\r\nMessage-ID: <spring.4.abc@sender.volley.test>\r\n\r\nHello.\r\n"
    );
    ArfFeedback::new(kind)
        .with_user_agent("ExampleFBL/2.0")
        .with_version(1)
        .with_original_mail_from(sender.to_string())
        .with_original_rcpt_to(rcpt.to_string())
        .with_source_ip(ip("127.0.0.3"))
        .with_reporting_mta("fbl.mailbox.test")
        .with_message(original)
        .to_rfc5322("fbl@mailbox.test", "fbl@bounce.volley.test", "Complaint")
        .expect("mail-auth writes the report")
        .into_bytes()
}

#[test]
fn mail_auth_generated_reports_round_trip_and_a_duplicate_has_the_same_id() {
    let sender = verp("spring", 4, "127.0.0.3");
    let raw = generated_arf(FeedbackType::Abuse, &sender, "reader@dest.test");
    let feedback = intake().process(&raw, &envelope("fbl@bounce.volley.test"));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    let token = event.origin.token.as_ref().expect("token from Original-Mail-From");
    assert_eq!(token.campaign, CampaignTag::of("spring"));
    assert_eq!((token.line, token.source_ip), (4, ip("127.0.0.3")));
    assert_eq!(event.origin.recipient.as_deref(), Some("reader@dest.test"));
    assert_eq!(
        event.origin.message_id.as_deref(),
        Some("spring.4.abc@sender.volley.test")
    );
    assert!(matches!(&event.kind, EventKind::Complaint { feedback_type, .. } if feedback_type == "abuse"));

    // The same complaint again (a new report message, new Message-ID and boundary): same id.
    let again = intake().process(
        &generated_arf(FeedbackType::Abuse, &sender, "reader@dest.test"),
        &envelope("fbl@x"),
    );
    assert_eq!(again.events()[0].id, event.id);

    // fraud is a complaint too; not-spam and virus are recorded, and are other events.
    let fraud = intake().process(
        &generated_arf(FeedbackType::Fraud, &sender, "reader@dest.test"),
        &envelope("f@x"),
    );
    assert!(matches!(&fraud.events()[0].kind, EventKind::Complaint { feedback_type, .. } if feedback_type == "fraud"));
    for (kind, name) in [(FeedbackType::NotSpam, "not-spam"), (FeedbackType::Virus, "virus")] {
        let f = intake().process(&generated_arf(kind, &sender, "reader@dest.test"), &envelope("f@x"));
        let [e] = f.events() else { panic!("{f:?}") };
        assert_eq!(
            e.kind,
            EventKind::Report {
                feedback_type: name.into()
            }
        );
        assert_ne!(e.id, event.id);
    }
}

#[test]
fn forged_tokens_are_quarantined_and_never_acted_on() {
    let forger = Keyring::single(1, b"someone else's secret, also 32+ bytes long");
    let forged =
        volley_feedback::verp::return_path(&Token::bounce("spring", 4, ip("127.0.0.3")), &forger, BOUNCE_DOMAIN);
    let raw = fixture("postfix/local-unknown-user.eml");
    let feedback = intake().process(&raw, &envelope(&forged));
    assert!(
        matches!(
            feedback.quarantine_reason(),
            Some(QuarantineReason::BadToken { place: "envelope recipient", error }) if error.contains("forged")
        ),
        "{feedback:?}"
    );
    let arf = generated_arf(FeedbackType::Abuse, &forged, "reader@dest.test");
    let feedback = intake().process(&arf, &envelope("fbl@bounce.volley.test"));
    assert!(
        matches!(
            feedback.quarantine_reason(),
            Some(QuarantineReason::BadToken {
                place: "reported Original-Mail-From",
                ..
            })
        ),
        "{feedback:?}"
    );
    // A corrupted one (a character lost in transit) is refused the same way.
    let good = verp("spring", 4, "127.0.0.3");
    let corrupted = good.replacen("+", "+0", 1);
    let feedback = intake().process(&raw, &envelope(&corrupted));
    assert!(
        matches!(feedback.quarantine_reason(), Some(QuarantineReason::BadToken { .. })),
        "{feedback:?}"
    );
}

#[test]
fn plain_text_bounces_of_qmail_exim_and_gmail() {
    let cases = [
        ("plain/qmail.eml", 11, "nobody@qmail.test", "5.1.1", None),
        ("plain/exim.eml", 12, "missing@exim.test", "5.1.1", Some(550)),
        ("plain/gmail.eml", 13, "someone@gmail.test", "5.1.1", Some(550)),
    ];
    for (name, line, recipient, expected_status, code) in cases {
        let rcpt = verp("legacy", line, "127.0.0.2");
        let feedback = intake().process(&plain(name, &rcpt), &envelope(&rcpt));
        let [event] = feedback.events() else {
            panic!("{name}: {feedback:?}")
        };
        assert_eq!(event.origin.token.as_ref().map(|t| t.line), Some(line), "{name}");
        assert_eq!(event.origin.recipient.as_deref(), Some(recipient), "{name}");
        let EventKind::Bounce { status, class, .. } = &event.kind else {
            panic!("{name}: {event:?}")
        };
        assert_eq!(status.status.as_deref(), Some(expected_status), "{name}");
        assert_eq!(status.code, code, "{name}");
        // qmail's copy of the message talks of spam and a blocklist: only the explanation
        // before the copy is classified, so this stays an unknown-user hard bounce.
        assert_eq!(
            (class.category.as_str(), class.action),
            ("bad-mailbox", SuppressAction::Suppress),
            "{name}: {status:?}"
        );
    }
    let rcpt = verp("legacy", 14, "127.0.0.2");
    let feedback = intake().process(&plain("plain/exim-delay.eml", &rcpt), &envelope(&rcpt));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    let EventKind::Delayed { status } = &event.kind else {
        panic!("{event:?}")
    };
    assert_eq!((status.code, status.status.as_deref()), (Some(451), Some("4.3.0")));
    assert_eq!(event.origin.recipient.as_deref(), Some("slow@exim.test"));
}

#[test]
fn mail_to_an_unsubscribe_address_is_an_unsubscribe() {
    let token = Token::unsubscribe("spring", 21, ip("127.0.0.2"), SystemTime::now());
    let address = volley_feedback::verp::unsubscribe_address(&token, &keys(), BOUNCE_DOMAIN);
    let raw = b"From: reader@dest.test\r\nTo: list\r\nSubject: unsubscribe\r\n\r\n\r\n";
    let feedback = intake().process(raw, &envelope(&address));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    assert_eq!(
        event.kind,
        EventKind::Unsubscribe {
            via: volley_feedback::UnsubscribeVia::Mail
        }
    );
    assert_eq!(event.origin.token, Some(token));
}

#[test]
fn mail_to_an_expired_unsubscribe_address_is_quarantined() {
    let issued = SystemTime::now() - std::time::Duration::from_secs(3 * 86_400);
    let token = Token::unsubscribe("spring", 21, ip("127.0.0.2"), issued);
    let address = volley_feedback::verp::unsubscribe_address(&token, &keys(), BOUNCE_DOMAIN);
    let raw = b"From: reader@dest.test\r\nTo: list\r\nSubject: unsubscribe\r\n\r\n\r\n";
    let intake = intake().with_unsubscribe_max_age(std::time::Duration::from_secs(2 * 86_400));
    let feedback = intake.process(raw, &envelope(&address));
    assert!(
        matches!(
            feedback.quarantine_reason(),
            Some(QuarantineReason::BadToken { error, .. }) if error.contains("72 hours ago")
        ),
        "{feedback:?}"
    );
}

#[test]
fn unusable_messages_are_quarantined_with_their_reason() {
    let small = intake().with_max_bytes(1000);
    let raw = fixture("postfix/local-unknown-user.eml");
    assert_eq!(
        small.process(&raw, &envelope("x@y")).quarantine_reason(),
        Some(&QuarantineReason::TooLarge {
            size: raw.len(),
            max: 1000
        })
    );
    let human = b"From: reader@dest.test\r\nSubject: Re: Spring sale\r\n\r\nPlease call me.\r\n";
    assert_eq!(
        intake()
            .process(human, &envelope("bounces@bounce.volley.test"))
            .quarantine_reason(),
        Some(&QuarantineReason::Unrecognised)
    );
    let dsn = String::from_utf8(raw.clone()).unwrap();
    for (broken, detail) in [
        (
            dsn.replace("Final-Recipient: rfc822; nosuchuser", "Final-Rcpt: x"),
            "no final-recipient field",
        ),
        (dsn.replace("Action: failed", "Action: exploded"), "unknown Action"),
        (
            dsn.replace("Status: 5.1.1\n", "this is not a field\n"),
            "neither `Name: value`",
        ),
    ] {
        let feedback = intake().process(broken.as_bytes(), &envelope(&to_header(&raw)));
        match feedback.quarantine_reason() {
            Some(QuarantineReason::Malformed { report, detail: got }) => {
                assert_eq!(*report, "delivery-status report");
                assert!(got.contains(detail), "{got}");
            }
            other => panic!("{other:?}"),
        }
    }
    // A plain bounce that names neither a token nor a recipient.
    let anonymous = b"From: MAILER-DAEMON@x.test\r\nSubject: failure notice\r\n\r\nHi. This is the qmail-send program at x.test.\r\nSorry.\r\n";
    assert_eq!(
        intake()
            .process(anonymous, &envelope("bounces@bounce.volley.test"))
            .quarantine_reason(),
        Some(&QuarantineReason::Unidentified {
            report: "plain-text bounce"
        })
    );
}

#[test]
fn rfc6533_global_delivery_status_with_a_utf8_recipient() {
    let raw = String::from_utf8(fixture("postfix/remote-550.eml")).unwrap();
    let global = raw
        .replace(
            "Content-Type: message/delivery-status",
            "Content-Type: message/global-delivery-status",
        )
        .replace(
            "Original-Recipient: rfc822;gone@remote.volley.test",
            "Original-Recipient: utf-8; Jürgen@remote.volley.test",
        );
    assert_ne!(global, raw);
    let feedback = intake().process(global.as_bytes(), &envelope(&to_header(raw.as_bytes())));
    let [event] = feedback.events() else {
        panic!("{feedback:?}")
    };
    assert_eq!(event.origin.recipient.as_deref(), Some("jürgen@remote.volley.test"));
    assert_eq!(event.kind.name(), "bounce");
}
