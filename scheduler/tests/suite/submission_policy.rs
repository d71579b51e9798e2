//! The submission listener's policy over raw SMTP: AUTH refused before TLS (538) and MAIL
//! before AUTH (530, nothing queued); a client of `relay_networks` submits without AUTH under
//! the relay user (and one outside them cannot); SIZE and content over the limit (552), a
//! malformed message (550 5.6.0), a From domain not allowed (550 5.7.1), the injector full
//! (452), a message by BDAT (CHUNKING), the user's rate (451 4.7.1 at MAIL); the per-address
//! connection cap (421); a start that cannot bind or lacks its relay user; Postfix's
//! `smtp-source` (neither AUTH nor TLS) injecting from a relay network.

use std::time::{Duration, Instant};

use volley_scheduler::inject::InjectError;
use volley_scheduler::submission::{RelayNetwork, SubmissionError, SubmissionService};

use super::submission_setup::{blocking, prepare, setup, strings, swaks, Raw, Recorder, RELAY_USER, SLOW_USER};

fn relay_from_loopback(c: &mut volley_scheduler::submission::SubmissionConfig) {
    c.relay_networks = vec!["127.0.0.1/32".parse::<RelayNetwork>().expect("network")];
    c.relay_user = Some(RELAY_USER.to_string());
}

const GOOD: &[u8] = b"From: Relay <app@relay.example>\r\nTo: r@dest.test\r\nSubject: hi\r\n\r\nhello\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_before_starttls_is_538_and_mail_before_auth_is_530_with_nothing_queued() {
    let s = setup(|_| {}).await;
    let addr = s.starttls();
    let replies = blocking(move || {
        let (mut c, greeting) = Raw::connect(addr);
        let ehlo = c.cmd("EHLO client.test");
        // "\0app\0app-secret-1" in base64.
        let auth = c.cmd("AUTH PLAIN AGFwcABhcHAtc2VjcmV0LTE=");
        let mail = c.cmd("MAIL FROM:<sender@app.example>");
        let rcpt = c.cmd("RCPT TO:<r@dest.test>");
        [greeting, ehlo, auth, mail, rcpt]
    })
    .await;
    let [greeting, ehlo, auth, mail, rcpt] = replies;
    assert!(greeting.starts_with("220 submit.volley.test ESMTP"), "{greeting}");
    assert!(ehlo.contains("250-STARTTLS") || ehlo.contains("250 STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH offered in plaintext: {ehlo}");
    assert!(auth.starts_with("538 5.7.11"), "{auth}");
    assert!(mail.starts_with("530 5.7.0"), "{mail}");
    assert!(rcpt.starts_with("503"), "{rcpt}");
    assert!(s.recorder.recorded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_network_client_submits_without_auth_as_the_relay_user_and_others_cannot() {
    let s = setup(relay_from_loopback).await;
    let addr = s.starttls().to_string();
    // swaks without AUTH and without TLS, as smtp-source would.
    let relayed = strings(&["--server", &addr, "--from", "app@relay.example", "--to", "r@dest.test"]);
    let (ok, out) = blocking(move || swaks(&relayed)).await;
    assert!(ok, "{out}");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as m0r0"), "{out}");
    let outside = strings(&[
        "--server",
        &addr,
        "--local-interface",
        "127.0.0.2",
        "--from",
        "app@relay.example",
        "--to",
        "r@dest.test",
    ]);
    let (ok, out) = blocking(move || swaks(&outside)).await;
    assert!(!ok, "{out}");
    assert!(out.contains("<** 530 5.7.0"), "{out}");
    let recorded = s.recorder.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].user.as_str(), recorded[0].mail_from.as_str()),
        (RELAY_USER, "app@relay.example")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_malformed_from_domain_and_a_full_injector_are_refused_and_nothing_is_queued() {
    let s = setup(|c| {
        relay_from_loopback(c);
        c.max_message_size = 4096;
    })
    .await;
    let addr = s.starttls();
    let recorder = s.recorder.clone();
    let replies = blocking(move || {
        let (mut c, _) = Raw::connect(addr);
        let mut out = vec![c.cmd("EHLO client.test")];
        out.push(c.cmd("MAIL FROM:<app@relay.example> SIZE=100000"));
        out.push(c.cmd("MAIL FROM:<app@evil.example>"));
        let transaction = |c: &mut Raw, message: &[u8]| {
            assert!(c.cmd("MAIL FROM:<app@relay.example>").starts_with("250"));
            assert!(c.cmd("RCPT TO:<r@dest.test>").starts_with("250"));
            c.data(message)
        };
        let mut big = GOOD.to_vec();
        big.extend(std::iter::repeat_n(b"0123456789abcdef0123456789abcdef\r\n".as_slice(), 200).flatten());
        out.push(transaction(&mut c, &big));
        out.push(transaction(&mut c, b"Subject: no sender\r\n\r\nbody\r\n"));
        out.push(transaction(
            &mut c,
            b"From: Boss <boss@evil.example>\r\nTo: r@dest.test\r\n\r\nbody\r\n",
        ));
        out.push(transaction(&mut c, GOOD));
        assert!(c
            .cmd("MAIL FROM:<app@relay.example> BODY=BINARYMIME")
            .starts_with("250"));
        assert!(c.cmd("RCPT TO:<r2@dest.test>").starts_with("250"));
        out.push(c.bdat_last(GOOD));
        *recorder.fail.lock().expect("lock") = Some(InjectError::Full("spool disk full".into()));
        out.push(transaction(&mut c, GOOD));
        out
    })
    .await;
    let [ehlo, size, sender, content, malformed, from, good, chunked, full] = &replies[..] else {
        panic!("{replies:?}");
    };
    assert!(ehlo.contains("SIZE 4096") && ehlo.contains("CHUNKING"), "{ehlo}");
    assert!(size.starts_with("552 5.3.4"), "SIZE= over the limit: {size}");
    assert!(
        sender.starts_with("550 5.7.1 sender domain evil.example is not allowed for user relay"),
        "{sender}"
    );
    assert!(content.starts_with("552 5.3.4"), "content over the limit: {content}");
    assert!(
        malformed.starts_with("550 5.6.0 malformed message: the message has no From header"),
        "{malformed}"
    );
    assert!(
        from.starts_with("550 5.7.1 From domain evil.example is not allowed for user relay"),
        "{from}"
    );
    assert!(good.starts_with("250 2.0.0 Ok: queued as m0r0"), "{good}");
    assert!(chunked.starts_with("250 2.0.0 Ok: queued as m1r0"), "BDAT: {chunked}");
    assert!(
        full.starts_with("452 4.3.1 insufficient storage: spool disk full"),
        "{full}"
    );
    let recorded = s.recorder.recorded();
    assert_eq!(recorded.len(), 2, "only the good message, by DATA and by BDAT");
    assert!(recorded.iter().all(|m| m.raw == GOOD));
    assert_eq!(recorded[1].recipients, ["r2@dest.test"]);
    let counts = s.service.stats().counts();
    assert_eq!(
        (counts.accepted, counts.inject_failures, counts.refused),
        (2, 1, 3),
        "refused: sender, malformed, From"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_rate_is_refused_at_mail_with_451() {
    let s = setup(|c| {
        relay_from_loopback(c);
        c.relay_user = Some(SLOW_USER.to_string());
    })
    .await;
    let addr = s.starttls();
    let replies = blocking(move || {
        let (mut c, _) = Raw::connect(addr);
        c.cmd("EHLO client.test");
        let first = c.cmd("MAIL FROM:<app@slow.example>");
        c.cmd("RCPT TO:<r@dest.test>");
        let sent = c.data(b"From: app@slow.example\r\n\r\nx\r\n");
        let second = c.cmd("MAIL FROM:<app@slow.example>");
        [first, sent, second]
    })
    .await;
    let [first, sent, second] = replies;
    assert!(first.starts_with("250"), "{first}");
    assert!(sent.starts_with("250 2.0.0"), "{sent}");
    assert!(
        second.starts_with("451 4.7.1 rate limit of user slow (1/h) reached"),
        "{second}"
    );
    assert_eq!(s.recorder.recorded().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_get_421() {
    let s = setup(|c| c.max_connections_per_ip = 1).await;
    let addr = s.starttls();
    let (first, second, third) = blocking(move || {
        let (held, first) = Raw::connect(addr);
        let (_, second) = Raw::connect(addr);
        let (_, other_address) = Raw::connect_from(addr, "127.0.0.2");
        drop(held);
        // The place is given back once the server sees the close.
        let deadline = Instant::now() + Duration::from_secs(5);
        let third = loop {
            let (_, greeting) = Raw::connect(addr);
            if greeting.starts_with("220") || Instant::now() > deadline {
                break greeting;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (first, format!("{second}|{other_address}"), third)
    })
    .await;
    assert!(first.starts_with("220"), "{first}");
    let (second, other_address) = second.split_once('|').expect("two greetings");
    assert!(second.starts_with("421 4.7.0 Too many connections"), "{second}");
    assert!(
        other_address.starts_with("220"),
        "another address has its own cap: {other_address}"
    );
    assert!(third.starts_with("220"), "{third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_or_an_unknown_relay_user_refuses_the_start_and_leaves_nothing_running() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (_dir, config, users) = prepare(|c| {
        c.listen = Some(free);
        c.listen_tls = Some(taken.local_addr().expect("addr"));
    });
    let recorder = std::sync::Arc::new(Recorder::default());
    let e = SubmissionService::start(&config, users.clone(), recorder.clone())
        .await
        .err()
        .expect("the implicit-TLS port is taken");
    assert!(
        matches!(e, SubmissionError::Listen { addr, .. } if addr == taken.local_addr().expect("addr")),
        "{e}"
    );
    assert!(
        std::net::TcpStream::connect(free).is_err(),
        "the STARTTLS port is not left listening"
    );

    let (_dir, config, users) = prepare(|c| {
        relay_from_loopback(c);
        c.relay_user = Some("nobody".into());
    });
    let e = SubmissionService::start(&config, users, recorder)
        .await
        .err()
        .expect("unknown relay user");
    assert!(
        e.to_string().contains("relay_user \"nobody\" is not in the users file"),
        "{e}"
    );
}

/// Postfix's `smtp-source` (no AUTH, no TLS, pipelined) injects from a relay network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_source_injects_from_a_relay_network() {
    let s = setup(relay_from_loopback).await;
    let addr = s.starttls().to_string();
    let program = ["/usr/sbin/smtp-source", "/usr/local/sbin/smtp-source"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("smtp-source");
    let out = blocking(move || {
        std::process::Command::new(program)
            .args([
                "-m",
                "20",
                "-s",
                "2",
                "-r",
                "3",
                "-f",
                "app@relay.example",
                "-t",
                "r@dest.test",
                "-S",
                "hello",
            ])
            .arg(&addr)
            .output()
            .expect("smtp-source runs (Debian package postfix; scripts/test.sh installs it)")
    })
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recorded = s.recorder.recorded();
    assert_eq!(recorded.len(), 20, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(recorded.iter().all(|m| m.user == RELAY_USER && m.recipients.len() == 3));
}
