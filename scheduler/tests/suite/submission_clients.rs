//! The submission listener with real clients over real sockets: swaks (STARTTLS with AUTH
//! PLAIN and LOGIN, implicit TLS), Python's smtplib (STARTTLS, login, several messages on one
//! connection; failed logins slowed, counted, and the connection closed after too many), and
//! a user removed while the listener runs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use volley_scheduler::submission::users;

use super::submission_setup::{blocking, python, setup, strings, swaks, PASSWORD, USER};

fn swaks_auth(addr: std::net::SocketAddr, tls: &str, mechanism: &str, password: &str, to: &str) -> Vec<String> {
    strings(&[
        "--server",
        &addr.to_string(),
        tls,
        "--auth",
        mechanism,
        "--auth-user",
        USER,
        "--auth-password",
        password,
        "--from",
        "sender@app.example",
        "--to",
        to,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_injects_over_starttls_with_plain_and_login_and_over_implicit_tls() {
    let s = setup(|_| {}).await;
    let plain = swaks_auth(s.starttls(), "--tls", "PLAIN", PASSWORD, "r1@dest.test,r2@dest.test");
    let (ok, out) = blocking(move || swaks(&plain)).await;
    assert!(ok, "{out}");
    assert!(out.contains("<~  250 2.0.0 Ok: queued as m0r0 (+1 more)"), "{out}");
    let login = swaks_auth(s.starttls(), "--tls", "LOGIN", PASSWORD, "r3@dest.test");
    let (ok, out) = blocking(move || swaks(&login)).await;
    assert!(ok, "{out}");
    assert!(out.contains("<~  334 VXNlcm5hbWU6"), "LOGIN prompts: {out}");
    let implicit = swaks_auth(s.tls(), "--tlsc", "LOGIN", PASSWORD, "r4@dest.test");
    let (ok, out) = blocking(move || swaks(&implicit)).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("<~  220 submit.volley.test ESMTP"),
        "greeting under TLS: {out}"
    );
    assert!(!out.contains("STARTTLS"), "no STARTTLS on the implicit-TLS port: {out}");

    let recorded = s.recorder.recorded();
    assert_eq!(recorded.len(), 3);
    let envelopes: Vec<_> = recorded
        .iter()
        .map(|m| (m.user.as_str(), m.mail_from.as_str(), m.recipients.join(",")))
        .collect();
    assert_eq!(
        envelopes,
        [
            (USER, "sender@app.example", "r1@dest.test,r2@dest.test".to_string()),
            (USER, "sender@app.example", "r3@dest.test".to_string()),
            (USER, "sender@app.example", "r4@dest.test".to_string()),
        ]
    );
    let raw = String::from_utf8_lossy(&recorded[0].raw);
    assert!(
        raw.contains("From: sender@app.example\r\n") && raw.contains("Subject: test"),
        "{raw}"
    );
    assert!(recorded[0].peer.starts_with("127.0.0.1:"));
    assert_eq!(s.service.stats().accepted.load(Ordering::Relaxed), 3);
    assert_eq!(s.service.stats().auth_successes.load(Ordering::Relaxed), 3);
}

const SMTPLIB_SEND: &str = r#"
import smtplib, ssl, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.ehlo()
print("plaintext auth:", s.has_extn("auth"), "starttls:", s.has_extn("starttls"))
s.starttls(context=ctx)
s.ehlo()
print("tls auth:", s.esmtp_features.get("auth", "").strip())
print("tls extensions:", " ".join(sorted(k for k in s.esmtp_features)))
s.login(user, password)
for i in range(3):
    msg = f"From: Shop <noreply@app.example>\r\nTo: r{i}@dest.test\r\nSubject: order {i}\r\n\r\nbody {i}\r\n"
    print("refused:", s.sendmail("bounces@app.example", [f"r{i}@dest.test"], msg))
s.quit()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtplib_sends_several_messages_on_one_starttls_connection() {
    let s = setup(|_| {}).await;
    let dir = s.dir.path().to_path_buf();
    let args = strings(&[&s.starttls().port().to_string(), USER, PASSWORD]);
    let (ok, out) = blocking(move || python(&dir, SMTPLIB_SEND, &args)).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("plaintext auth: False starttls: True"),
        "AUTH only over TLS: {out}"
    );
    assert!(out.contains("tls auth: PLAIN LOGIN"), "{out}");
    assert!(
        out.contains("tls extensions: 8bitmime auth chunking enhancedstatuscodes pipelining size smtputf8"),
        "{out}"
    );
    assert_eq!(out.matches("refused: {}").count(), 3, "{out}");
    let recorded = s.recorder.recorded();
    let subjects: Vec<_> = recorded
        .iter()
        .map(|m| {
            assert_eq!((m.user.as_str(), m.mail_from.as_str()), (USER, "bounces@app.example"));
            String::from_utf8_lossy(&m.raw)
                .lines()
                .nth(2)
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(subjects, ["Subject: order 0", "Subject: order 1", "Subject: order 2"]);
}

const SMTPLIB_WRONG: &str = r#"
import smtplib, ssl, sys, time
port, user = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.starttls(context=ctx)
s.ehlo()
s.user, s.password = user, "wrong password"
for i in range(3):
    start = time.monotonic()
    try:
        code, _ = s.auth("PLAIN", s.auth_plain)
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    print(f"attempt {i}: {code} after {time.monotonic() - start:.2f}")
try:
    s.noop()
    print("still open")
except smtplib.SMTPServerDisconnected:
    print("closed")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_slowed_counted_and_close_the_connection_after_three() {
    let s = setup(|c| c.auth_failure_delay = Duration::from_millis(300)).await;
    let dir = s.dir.path().to_path_buf();
    let args = strings(&[&s.starttls().port().to_string(), USER]);
    let (ok, out) = blocking(move || python(&dir, SMTPLIB_WRONG, &args)).await;
    assert!(ok, "{out}");
    let attempts: Vec<(u16, f64)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("attempt "))
        .map(|l| {
            let (_, rest) = l.split_once(": ").expect("attempt line");
            let (code, secs) = rest.split_once(" after ").expect("timing");
            (code.parse().expect("code"), secs.parse().expect("seconds"))
        })
        .collect();
    assert_eq!(
        attempts.iter().map(|a| a.0).collect::<Vec<_>>(),
        [535, 535, 421],
        "{out}"
    );
    // 300 ms times the failures from this address: 0.3 s, 0.6 s, 0.9 s.
    for (i, (_, secs)) in attempts.iter().enumerate() {
        assert!(
            *secs >= 0.3 * (i + 1) as f64 - 0.01,
            "attempt {i} answered too soon: {out}"
        );
    }
    assert!(out.contains("closed"), "{out}");
    assert_eq!(s.service.stats().auth_failures.load(Ordering::Relaxed), 3);
    assert!(s.recorder.recorded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_removed_while_the_listener_runs_cannot_authenticate_any_more() {
    let s = setup(|_| {}).await;
    let args = swaks_auth(s.starttls(), "--tls", "PLAIN", PASSWORD, "r@dest.test");
    let again = args.clone();
    let (ok, out) = blocking(move || swaks(&args)).await;
    assert!(ok, "{out}");
    users::remove(&s.users, USER).expect("remove");
    // The file is looked at once a second at most.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (ok, out) = blocking(move || swaks(&again)).await;
    assert!(!ok, "{out}");
    assert!(out.contains("<~* 535 5.7.8"), "{out}");
    assert_eq!(s.recorder.recorded().len(), 1);
}
