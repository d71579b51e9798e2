use super::*;

fn mailbox<'a>(address: &'a str, local: &'a str, domain: &'a str) -> Path<'a> {
    Path::Mailbox { address, local, domain }
}

#[test]
fn verbs_are_case_insensitive() {
    assert_eq!(parse(b"ehlo client.test"), Ok(Command::Ehlo { domain: "client.test" }));
    assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
    assert_eq!(parse(b"starttls"), Ok(Command::StartTls));
    assert_eq!(parse(b"NOOP anything"), Ok(Command::Noop));
    assert_eq!(parse(b"help me"), Ok(Command::Help));
    assert_eq!(parse(b"VRFY postmaster"), Ok(Command::Vrfy { argument: "postmaster" }));
}

#[test]
fn mail_parameters() {
    assert_eq!(
        parse(b"MAIL FROM:<a@b.test> SIZE=4096 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2Bx"),
        Ok(Command::Mail {
            sender: mailbox("a@b.test", "a", "b.test"),
            params: MailParams {
                size: Some(4096),
                body: Some(Body::EightBitMime),
                smtputf8: true,
                ret: Some(Ret::Headers),
                envid: Some("QQ+2Bx"),
            }
        })
    );
    assert_eq!(
        parse(b"mail from: <>"),
        Ok(Command::Mail {
            sender: Path::Null,
            params: MailParams::default()
        })
    );
    let bad = |name| Err(CommandError::BadParameter { verb: Verb::Mail, name });
    assert_eq!(parse(b"MAIL FROM:<a@b> SIZE=x"), bad("SIZE"));
    assert_eq!(parse(b"MAIL FROM:<a@b> SIZE="), bad("SIZE"));
    assert_eq!(parse(b"MAIL FROM:<a@b> SIZE=-1"), bad("SIZE"));
    assert_eq!(parse(b"MAIL FROM:<a@b> BODY=9BIT"), bad("BODY"));
    assert_eq!(parse(b"MAIL FROM:<a@b> RET=ALL"), bad("RET"));
    assert_eq!(parse(b"MAIL FROM:<a@b> ENVID="), bad("ENVID"));
    assert_eq!(parse(b"MAIL FROM:<a@b> SMTPUTF8=yes"), bad("SMTPUTF8"));
    assert_eq!(
        parse(b"MAIL FROM:<a@b> XFOO=1"),
        Err(CommandError::UnknownParameter { verb: Verb::Mail })
    );
    assert_eq!(parse(b"MAIL TO:<a@b>"), Err(CommandError::Syntax { verb: Verb::Mail }));
    assert_eq!(parse(b"MAIL FROM:a@b"), Err(CommandError::BadSender));
}

#[test]
fn rcpt_paths_and_dsn_parameters() {
    assert_eq!(
        parse(b"RCPT TO:<@relay.test:User@Example.TEST> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u@x"),
        Ok(Command::Rcpt {
            recipient: mailbox("User@Example.TEST", "User", "Example.TEST"),
            params: RcptParams {
                notify: Some(Notify {
                    success: true,
                    failure: true,
                    ..Notify::default()
                }),
                orcpt: Some("rfc822;u@x"),
            }
        })
    );
    assert!(matches!(
        parse(b"RCPT TO:<\"odd>name\"@x.test>"),
        Ok(Command::Rcpt {
            recipient: Path::Mailbox {
                local: "\"odd>name\"",
                ..
            },
            ..
        })
    ));
    assert!(matches!(
        parse(b"RCPT TO:<Postmaster>"),
        Ok(Command::Rcpt {
            recipient: Path::Mailbox { domain: "", .. },
            ..
        })
    ));
    assert!(matches!(
        parse("RCPT TO:<j\u{f6}rg@b\u{fc}cher.test>".as_bytes()),
        Ok(Command::Rcpt {
            recipient: Path::Mailbox { local: "j\u{f6}rg", .. },
            ..
        })
    ));
    let bad = |name| Err(CommandError::BadParameter { verb: Verb::Rcpt, name });
    assert_eq!(parse(b"RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS"), bad("NOTIFY"));
    assert_eq!(parse(b"RCPT TO:<a@b> NOTIFY=DELAY,DELAY"), bad("NOTIFY"));
    assert_eq!(parse(b"RCPT TO:<a@b> NOTIFY="), bad("NOTIFY"));
    assert_eq!(parse(b"RCPT TO:<a@b> ORCPT=nosemicolon"), bad("ORCPT"));
    assert_eq!(parse(b"RCPT TO:<>"), Err(CommandError::BadRecipient));
    assert_eq!(parse(b"RCPT TO:<nobody>"), Err(CommandError::BadRecipient));
    assert_eq!(parse(b"RCPT TO:<a@b>junk"), Err(CommandError::BadRecipient));
    assert_eq!(parse(b"RCPT TO:<a@b"), Err(CommandError::BadRecipient));
    assert_eq!(parse(b"RCPT <a@b>"), Err(CommandError::Syntax { verb: Verb::Rcpt }));
}

#[test]
fn bdat_size_and_last() {
    assert_eq!(parse(b"BDAT 4096 LAST"), Ok(Command::Bdat { size: 4096, last: true }));
    assert_eq!(parse(b"bdat 10 last"), Ok(Command::Bdat { size: 10, last: true }));
    assert_eq!(parse(b"BDAT 0"), Ok(Command::Bdat { size: 0, last: false }));
    let syntax = Err(CommandError::Syntax { verb: Verb::Bdat });
    for bad in [
        "BDAT",
        "BDAT -1 LAST",
        "BDAT 10 FIRST",
        "BDAT 10 LAST x",
        "BDAT 99999999999999999999999",
    ] {
        assert_eq!(parse(bad.as_bytes()), syntax, "{bad}");
    }
    assert_eq!(parse_if_bdat(b"BDAT 3"), Some(Ok((3, false))));
    assert_eq!(parse_if_bdat(b"BDATX 3"), None);
    assert_eq!(parse_if_bdat(b"NOOP"), None);
    assert_eq!(
        parse_if_bdat(b"bdat"),
        Some(Err(CommandError::Syntax { verb: Verb::Bdat }))
    );
}

#[test]
fn auth_mechanism_and_initial_response() {
    assert_eq!(
        parse(b"AUTH PLAIN AGEAYg=="),
        Ok(Command::Auth {
            mechanism: "PLAIN",
            initial: Some("AGEAYg==")
        })
    );
    assert_eq!(
        parse(b"auth login"),
        Ok(Command::Auth {
            mechanism: "login",
            initial: None
        })
    );
    assert_eq!(parse(b"AUTH"), Err(CommandError::Syntax { verb: Verb::Auth }));
    assert_eq!(parse(b"AUTH PLAIN a b"), Err(CommandError::Syntax { verb: Verb::Auth }));
}

#[test]
fn junk_and_stray_arguments() {
    assert_eq!(parse(b"FOO bar"), Err(CommandError::Unrecognized));
    assert_eq!(parse(b""), Err(CommandError::Unrecognized));
    assert_eq!(parse(b"DATA now"), Err(CommandError::NoParameters { verb: Verb::Data }));
    assert_eq!(parse(b"EHLO"), Err(CommandError::Syntax { verb: Verb::Ehlo }));
    assert_eq!(parse(b"HELO "), Err(CommandError::Syntax { verb: Verb::Helo }));
    assert_eq!(parse(b"EHLO a\x01b"), Err(CommandError::Syntax { verb: Verb::Ehlo }));
    assert_eq!(parse(b"VRFY"), Err(CommandError::Syntax { verb: Verb::Vrfy }));
}

#[test]
fn errors_map_to_their_reply_codes() {
    let code = |e: CommandError| e.reply().code();
    assert_eq!(code(CommandError::Unrecognized), 500);
    assert_eq!(code(CommandError::LineTooLong), 500);
    assert_eq!(code(CommandError::NoParameters { verb: Verb::Quit }), 501);
    assert_eq!(code(CommandError::Syntax { verb: Verb::Mail }), 501);
    assert_eq!(code(CommandError::BadSender), 501);
    assert_eq!(code(CommandError::BadRecipient), 501);
    assert_eq!(
        code(CommandError::BadParameter {
            verb: Verb::Mail,
            name: "SIZE"
        }),
        501
    );
    assert_eq!(code(CommandError::UnknownParameter { verb: Verb::Rcpt }), 555);
    assert_eq!(CommandError::BadRecipient.verb(), Some(Verb::Rcpt));
    assert_eq!(CommandError::Unrecognized.verb(), None);
}
