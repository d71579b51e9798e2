//! Bounce classification with the shipped rules file and with operator rules.

use std::path::Path;
use std::sync::Arc;

use volley_engine::smtp::reply::{parse_reply, EnhancedCode, ReplyParse};
use volley_engine::{Disposition, Phase, RecipientStatus};
use volley_scheduler::bounces::{Action, BounceRules, DEFAULT_RULES};
use volley_scheduler::outcome::Outcome;

fn reply(phase: Phase, text: &str) -> RecipientStatus {
    let wire = format!("{text}\r\n");
    match parse_reply(wire.as_bytes(), 4096) {
        Ok(ReplyParse::Complete { reply, .. }) => RecipientStatus::from_reply(phase, &reply),
        other => panic!("{text}: {other:?}"),
    }
}

fn local(disposition: Disposition, e: (u8, u16, u16), text: &str) -> RecipientStatus {
    RecipientStatus {
        disposition,
        phase: Phase::Connect,
        code: None,
        enhanced: Some(EnhancedCode {
            class: e.0,
            subject: e.1,
            detail: e.2,
        }),
        text: Arc::from(text),
        maybe_delivered: false,
        sender_fault: false,
    }
}

#[test]
fn shipped_rules_parse() {
    let rules = BounceRules::parse(DEFAULT_RULES, Path::new("config/bounce-rules.toml"));
    assert!(rules.as_ref().is_ok_and(|r| r.len() > 10), "{:?}", rules.err());
    assert_eq!(BounceRules::shipped().len(), rules.map(|r| r.len()).unwrap_or(0));
}

#[test]
fn shipped_rules_classify_real_replies() {
    let rules = BounceRules::shipped();
    let cases: &[(Phase, &str, &str, Action)] = &[
        (
            Phase::RcptTo,
            "550 5.1.1 The email account that you tried to reach does not exist.",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::RcptTo,
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::RcptTo,
            "550 Requested action not taken: mailbox unavailable",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::RcptTo,
            "554 delivery error: dd This user doesn't have a yahoo.com account",
            "bad-mailbox",
            Action::Suppress,
        ),
        (Phase::RcptTo, "550 5.1.2 Host unknown", "bad-domain", Action::Suppress),
        (
            Phase::RcptTo,
            "550 5.2.1 The email account that you tried to reach is disabled.",
            "inactive-mailbox",
            Action::Suppress,
        ),
        (
            Phase::RcptTo,
            "552 5.2.2 The recipient's inbox is out of storage space.",
            "quota-issues",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "452 4.2.2 The email account that you tried to reach is over quota.",
            "quota-issues",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus.",
            "spam-related",
            Action::None,
        ),
        (
            Phase::DataEnd,
            "550 5.7.1 Our system has detected that this message is likely unsolicited mail (spam).",
            "spam-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. S3150",
            "spam-related",
            Action::None,
        ),
        (
            Phase::MailFrom,
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints",
            "policy-related",
            Action::None,
        ),
        (
            Phase::DataEnd,
            "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy.",
            "policy-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "554 5.7.1 <x@example.com>: Relay access denied",
            "policy-related",
            Action::None,
        ),
        (
            Phase::DataEnd,
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "message-size",
            Action::None,
        ),
        (
            Phase::DataEnd,
            "554 5.6.0 Message content rejected",
            "content-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "451 4.4.1 No answer from host",
            "routing-errors",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "503 5.5.1 Bad sequence of commands",
            "protocol-errors",
            Action::None,
        ),
        (Phase::RcptTo, "554 Transaction failed", "other", Action::Soft),
        (Phase::RcptTo, "451 Temporary local problem", "other", Action::Soft),
    ];
    for (phase, text, category, action) in cases {
        let c = rules.classify(&reply(*phase, text));
        assert_eq!((c.category, c.action), (*category, *action), "{text}");
    }
}

/// Real texts from Gmail, Microsoft, Yahoo and common MTAs (Postfix, Exim, Dovecot), one
/// line each. Regression (issue 17): a generic "451 4.3.0 Temporary failure, please try again
/// later" was `policy-related` for its "try again later", so every deferral of a run against a
/// tempfailing receiver was labelled a policy problem.
#[test]
fn shipped_rules_classify_provider_replies() {
    let rules = BounceRules::shipped();
    let cases: &[(Phase, &str, &str, Action)] = &[
        // Generic receiver failures (RFC 3463 X.3.X: the mail system, not the sender's policy).
        (
            Phase::RcptTo,
            "451 4.3.0 Temporary failure, please try again later",
            "mail-system-errors",
            Action::Soft,
        ),
        (
            Phase::DataEnd,
            "451 4.3.0 Error: queue file write error",
            "mail-system-errors",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "452 4.3.1 Insufficient system storage",
            "mail-system-errors",
            Action::Soft,
        ),
        (
            Phase::MailFrom,
            "421 4.3.2 Service shutting down, closing transmission channel",
            "mail-system-errors",
            Action::Soft,
        ),
        (Phase::RcptTo, "451 Temporary failure", "mail-system-errors", Action::Soft),
        (
            Phase::DataEnd,
            "451 4.7.0 Temporary server error. Please try again later. PRX4",
            "mail-system-errors",
            Action::Soft,
        ),
        // Network and routing (X.4.X).
        (
            Phase::RcptTo,
            "421 4.4.2 mx.example.com Error: timeout exceeded",
            "routing-errors",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "451 4.4.0 Temporary failure in name resolution",
            "routing-errors",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "421 4.4.5 Server busy, try again later",
            "routing-errors",
            Action::Soft,
        ),
        // Mailbox full.
        (Phase::RcptTo, "452 4.2.2 Mailbox full", "quota-issues", Action::Soft),
        (
            Phase::DataEnd,
            "552 5.2.2 <x@example.com> Quota exceeded (mailbox for user is full)",
            "quota-issues",
            Action::Soft,
        ),
        (
            Phase::RcptTo,
            "452 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.",
            "quota-issues",
            Action::Soft,
        ),
        // Greylisting: the receiver's policy, retried, never the address's fault.
        (
            Phase::RcptTo,
            "450 4.2.0 <x@example.com>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
            "policy-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "451 4.7.1 Greylisted, please try again later",
            "policy-related",
            Action::None,
        ),
        // Gmail.
        (
            Phase::DataEnd,
            "421 4.7.28 Gmail has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.",
            "policy-related",
            Action::None,
        ),
        (
            Phase::DataEnd,
            "550 5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail requires all senders to authenticate with either SPF or DKIM.",
            "policy-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces.",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::DataEnd,
            "550 5.7.1 [192.0.2.1] Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.",
            "spam-related",
            Action::None,
        ),
        (
            Phase::MailFrom,
            "550 5.7.25 The IP address sending this message does not have a PTR record setup.",
            "policy-related",
            Action::None,
        ),
        (
            Phase::MailFrom,
            "550 5.4.5 Daily user sending quota exceeded.",
            "policy-related",
            Action::None,
        ),
        // Microsoft.
        (
            Phase::Banner,
            "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).",
            "spam-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
            "policy-related",
            Action::None,
        ),
        (
            Phase::MailFrom,
            "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)",
            "policy-related",
            Action::None,
        ),
        (
            Phase::Banner,
            "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S775)",
            "policy-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "550 5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this list please visit https://sender.office.com/",
            "spam-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "550 5.5.0 Requested action not taken: mailbox unavailable (S2017)",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::RcptTo,
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::DataEnd,
            "550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject.",
            "policy-related",
            Action::None,
        ),
        // Yahoo.
        (
            Phase::Banner,
            "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
            "policy-related",
            Action::None,
        ),
        (
            Phase::Banner,
            "421 4.7.0 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes",
            "policy-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "554 5.7.9 Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
            "policy-related",
            Action::None,
        ),
        (
            Phase::Banner,
            "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
            "spam-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "554 delivery error: dd Sorry your message to x@yahoo.com cannot be delivered. This mailbox is disabled (554.30).",
            "inactive-mailbox",
            Action::Suppress,
        ),
        // Postfix and other MTAs.
        (
            Phase::RcptTo,
            "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
            "bad-mailbox",
            Action::Suppress,
        ),
        (
            Phase::RcptTo,
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "spam-related",
            Action::None,
        ),
        (
            Phase::RcptTo,
            "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.1]",
            "policy-related",
            Action::None,
        ),
        (
            Phase::Banner,
            "421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later.",
            "policy-related",
            Action::None,
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(phase, text, category, action)| {
            let c = rules.classify(&reply(*phase, text));
            ((c.category, c.action) != (*category, *action))
                .then(|| format!("{text}: {} {:?}, want {category} {action:?}", c.category, c.action))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn local_decisions_and_expiry() {
    let rules = BounceRules::shipped();
    // RFC 7505 null MX and NXDOMAIN are decided locally and suppress the domain's address.
    let null_mx = local(Disposition::Bounced, (5, 1, 10), "null MX: domain accepts no mail");
    assert_eq!(rules.classify(&null_mx).category, "bad-domain");
    assert_eq!(rules.classify(&null_mx).action, Action::Suppress);
    let nxdomain = local(Disposition::Bounced, (5, 1, 2), "NXDOMAIN");
    assert_eq!(rules.classify(&nxdomain).action, Action::Suppress);
    // DNS trouble and dead hosts: routing errors, a soft bounce only when they expire.
    let servfail = local(Disposition::Deferred, (4, 4, 3), "SERVFAIL");
    assert_eq!(rules.classify(&servfail).category, "routing-errors");
    let expired = rules.classify_final(Outcome::Expired, &servfail);
    assert_eq!((expired.category, expired.action), ("message-expired", Action::Soft));
    // An expiry after policy deferrals never suppresses.
    let tss = reply(Phase::MailFrom, "421 4.7.0 [TSS04] temporarily deferred");
    assert_eq!(rules.classify_final(Outcome::Expired, &tss).action, Action::None);
    // Even a hard-looking last reply only counts as soft on expiry.
    let odd = reply(Phase::RcptTo, "450 4.1.1 user unknown (try later)");
    assert_eq!(rules.classify_final(Outcome::Expired, &odd).action, Action::Soft);
    let delivered = reply(Phase::DataEnd, "250 2.0.0 OK");
    assert_eq!(rules.classify(&delivered).category, "delivered");
}

#[test]
fn operator_rules_come_first_and_errors_name_rule_field_and_value() {
    let mine = r#"
[[rule]]
category = "bad-mailbox"
code = ["55x"]
text = ["gone fishing"]
action = "suppress"

[[rule]]
category = "other"
action = "none"
"#;
    let rules = BounceRules::parse(mine, Path::new("mine.toml")).map_err(|e| e.to_string());
    let Ok(rules) = rules else { panic!("{rules:?}") };
    let c = rules.classify(&reply(Phase::RcptTo, "554 Gone Fishing"));
    assert_eq!((c.category, c.action), ("bad-mailbox", Action::Suppress));
    let c = rules.classify(&reply(Phase::RcptTo, "454 Gone fishing"));
    assert_eq!((c.category, c.action), ("other", Action::None));

    let bad = [
        (
            "[[rule]]\ncategory = \"x\"\naction = \"suppress\"\nenhanced = [\"5.1\"]\n",
            "rule 1 (x): enhanced = \"5.1\"",
        ),
        (
            "[[rule]]\ncategory = \"x\"\naction = \"suppress\"\ncode = [\"650\"]\n",
            "code = \"650\"",
        ),
        ("[[rule]]\ncategory = \"x\"\naction = \"bounce\"\n", "line 3"),
        (
            "[[rule]]\ncategory = \"Bad Category\"\naction = \"none\"\n",
            "category = \"Bad Category\"",
        ),
        ("[[rule]]\ncategory = \"x\"\naction = \"none\"\ntxt = [\"a\"]\n", "txt"),
        (
            "[[rule]]\ncategory = \"x\"\naction = \"none\"\ntext = [\" \"]\n",
            "text = \" \"",
        ),
    ];
    for (text, want) in bad {
        let e = BounceRules::parse(text, Path::new("mine.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("mine.toml") && e.contains(want), "{e}");
    }
}

#[test]
fn config_with_a_bad_rules_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\ncategory = \"x\"\naction = \"maybe\"\n",
    )
    .unwrap();
    let config = dir.path().join("volley.toml");
    std::fs::write(
        &config,
        "[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"a.test\"\n[bounces]\nrules = \"rules.toml\"\n",
    )
    .unwrap();
    let e = volley_scheduler::config::SendConfig::load(&config)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("bounces.rules") && e.contains("rules.toml") && e.contains("maybe"),
        "{e}"
    );

    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rule]]\ncategory = \"x\"\naction = \"none\"\n",
    )
    .unwrap();
    let c = volley_scheduler::config::SendConfig::load(&config).map_err(|e| e.to_string());
    let rules = c.map(|c| c.bounces.load().map(|r| r.len()).map_err(|e| e.to_string()));
    assert_eq!(rules, Ok(Ok(1)));
}
