//! `volley serve` over real HTTP: the bearer token is required (401), malformed bodies name
//! their field (400), and an operator launches campaigns (from a file and inline), watches
//! them, pauses, resumes and cancels them, lists the IPs and edits the suppression list —
//! against a running service delivering to a `volley sink` process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::api::{start_serve, Api};
use common::{free_port, start_sink, volley, wait_listening, write};

const TOKEN: &str = "test-token-0123456789abcdef";

fn delivered(view: &Value) -> u64 {
    view["progress"]["delivered"].as_u64().unwrap_or(0)
}

fn recipients(dir: &Path, id: &str, n: usize) {
    let rows: String = (0..n).map(|i| format!("u{i}@{id}{}.test\n", i % 5)).collect();
    write(dir, &format!("{id}.csv"), &format!("email\n{rows}"));
}

fn campaign_toml(id: &str) -> String {
    format!(
        "id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n"
    )
}

#[test]
fn an_operator_launches_watches_pauses_resumes_and_cancels_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sink, sink_addr) = start_sink(&["--latency", "20ms"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
             warmup = \"standard\"\nwarmup_start = \"2026-11-20\"\n\
             [routes]\n\"*\" = \"{sink_addr}\"\n\
             [smtp]\nmax_connections_per_host = 2\nqueue_per_host = 4\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n"
        ),
    );
    // Campaigns launch from `[api] campaigns_dir`, by default `campaigns` beside volley.toml.
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).expect("campaigns folder");
    recipients(&campaigns, "a", 600);
    recipients(&campaigns, "b", 40);
    recipients(&campaigns, "c", 2000);
    write(&campaigns, "a.toml", &campaign_toml("a"));
    // Campaign files reachable only by leaving campaigns_dir.
    write(dir.path(), "outside.toml", &campaign_toml("a"));
    std::os::unix::fs::symlink(dir.path().join("outside.toml"), campaigns.join("link.toml")).expect("symlink");
    let server = start_serve(&config, &listen);
    let api = Api::new(listen, TOKEN);

    // No token, a wrong token: 401 on every endpoint.
    for (method, path) in [
        ("GET", "/campaigns"),
        ("POST", "/campaigns"),
        ("GET", "/ips"),
        ("GET", "/metrics"),
    ] {
        assert_eq!(api.call(method, path, None, Some("{}")).0, 401, "{method} {path}");
        assert_eq!(
            api.call(method, path, Some("wrong-token-0123456789"), Some("{}")).0,
            401
        );
    }
    // Malformed bodies: 400 naming the field.
    for (body, field) in [
        ("not json", "(body)"),
        ("[1, 2]", "(body)"),
        (r#"{"path": 3}"#, "path"),
        (r#"{"pth": "a.toml"}"#, "pth"),
        (r#"{}"#, "path"),
        (r#"{"path": "missing.toml"}"#, "path"),
        (r#"{"toml": "id = 3"}"#, "toml"),
        // Only files inside [api] campaigns_dir launch by path: never a device, a file up the
        // tree, or one a symbolic link leads to.
        (r#"{"path": "/dev/zero"}"#, "path"),
        (r#"{"path": "../outside.toml"}"#, "path"),
        (r#"{"path": "link.toml"}"#, "path"),
        (r#"{"path": "."}"#, "path"),
    ] {
        let (status, answer) = api.ok("POST", "/campaigns", Some(body));
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
    }

    // An inline campaign may not mail a file from elsewhere on the server.
    for body_file in ["text_file = \"/etc/hostname\"", "html_file = \"/dev/zero\""] {
        let toml = campaign_toml("x").replace("text = \"Hello\"", body_file);
        let (status, answer) = api.ok("POST", "/campaigns", Some(&json!({ "toml": toml }).to_string()));
        assert_eq!((status, answer["field"].as_str()), (400, Some("toml")), "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("outside the campaign's folder")),
            "{answer}"
        );
    }

    // Launch from the campaign file; watch it deliver.
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "a.toml"}"#));
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["state"], "running");
    assert_eq!(
        api.ok("POST", "/campaigns", Some(r#"{"path": "a.toml"}"#)).0,
        409,
        "a runs already"
    );
    api.wait_for("a", "deliveries", |v| delivered(v) > 20);
    // Regression (issue 17): `warmup` was always `[]`. 127.0.0.3 warms up.
    let view = api.wait_for("a", "warm-up use", |v| {
        v["progress"]["warmup"].as_array().is_some_and(|w| !w.is_empty())
    });
    assert_eq!(view["progress"]["warmup"][0]["ip"], "127.0.0.3", "{view}");

    // Pause: what is queued at a connection lands, then nothing more.
    let (status, view) = api.ok("POST", "/campaigns/a/pause", None);
    assert_eq!((status, view["state"].as_str()), (200, Some("paused")), "{view}");
    let mut settled = delivered(&api.campaign("a"));
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = delivered(&api.campaign("a"));
        if now == settled {
            break;
        }
        settled = now;
    }
    std::thread::sleep(Duration::from_millis(500));
    let view = api.campaign("a");
    assert_eq!(delivered(&view), settled, "nothing sent while paused");
    assert!(settled < 600);
    // Regression (issue 17): a paused campaign kept a decaying rate and an ETA.
    assert_eq!(view["progress"]["msgs_per_s"], 0.0, "{view}");
    assert!(view["progress"]["eta_s"].is_null(), "{view}");
    assert_eq!(view["progress"]["paused"], true, "{view}");

    // A second campaign, inline, joins the running service and finishes while a is paused.
    let inline = json!({ "toml": campaign_toml("b") }).to_string();
    let (status, view) = api.ok("POST", "/campaigns", Some(&inline));
    assert_eq!(status, 201, "{view}");
    let b = api.wait_for("b", "b to finish", |v| v["state"] == "finished");
    assert_eq!(b["summary"]["delivered"], 40, "{b}");
    let (_, all) = api.ok("GET", "/campaigns", None);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");

    // Resume: a finishes with every recipient delivered once.
    let (status, view) = api.ok("POST", "/campaigns/a/resume", None);
    assert_eq!((status, view["state"].as_str()), (200, Some("running")), "{view}");
    let a = api.wait_for("a", "a to finish", |v| v["state"] == "finished");
    assert_eq!(a["summary"]["delivered"], 600, "{a}");
    assert_eq!(
        api.ok("POST", "/campaigns/a/pause", None).0,
        409,
        "a finished campaign cannot pause"
    );

    // Cancel: c stops early.
    write(&campaigns, "c.toml", &campaign_toml("c"));
    assert_eq!(api.ok("POST", "/campaigns", Some(r#"{"path": "c.toml"}"#)).0, 201);
    api.wait_for("c", "deliveries", |v| delivered(v) > 20);
    assert_eq!(api.ok("POST", "/campaigns/c/cancel", None).0, 200);
    let c = api.wait_for("c", "c to stop", |v| v["state"] == "cancelled");
    assert_eq!(c["summary"]["complete"], false, "{c}");
    assert!(delivered(&c) < 2000, "{c}");
    // Regression (issue 17): a cancelled campaign kept a decaying rate and an ETA; its time
    // stops at its end.
    assert_eq!(c["progress"]["msgs_per_s"], 0.0, "{c}");
    assert!(c["progress"]["eta_s"].is_null(), "{c}");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(api.campaign("c")["progress"]["elapsed_s"], c["progress"]["elapsed_s"]);
    // Regression (issue 17): after a relaunch `delivered` counted only the new launch while
    // the summary counted the campaign. Both count the campaign; `this_run` the launch.
    let before = delivered(&c);
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "c.toml"}"#));
    assert_eq!(status, 201, "{view}");
    assert!(delivered(&view) >= before, "{view}");
    let c = api.wait_for("c", "c to finish", |v| v["state"] == "finished");
    assert_eq!((delivered(&c), &c["summary"]["delivered"]), (2000, &json!(2000)), "{c}");
    assert_eq!(c["progress"]["this_run"]["delivered"], 2000 - before, "{c}");
    assert_eq!(c["summary"]["this_run"]["delivered"], 2000 - before, "{c}");
    assert_eq!(api.ok("GET", "/campaigns/nope", None).0, 404);

    // IPs and their warm-up state.
    let (status, ips) = api.ok("GET", "/ips", None);
    assert_eq!(status, 200);
    assert_eq!(ips[0]["warmup"], "warm", "{ips}");
    assert_eq!(ips[1]["warmup"]["curve"], "standard", "{ips}");
    assert!(ips[1]["warmup"]["day"].as_u64().is_some_and(|d| d >= 1), "{ips}");
    let other = |ip: &Value| -> Value {
        ip["usage"]
            .as_array()
            .and_then(|u| u.iter().find(|p| p["provider"] == "other").cloned())
            .unwrap_or(Value::Null)
    };
    assert!(other(&ips[0])["daily_cap"].is_null(), "a warm IP has no cap: {ips}");
    let warming = other(&ips[1]);
    assert!(warming["daily_cap"].as_u64().is_some_and(|c| c > 0), "{ips}");
    assert!(
        warming["sent_today"].as_u64().is_some_and(|n| n >= 1),
        "the warming IP carried some of today's mail: {ips}"
    );

    // The suppression list.
    let add = r#"{"address": "Gone@Example.test", "reason": "complaint"}"#;
    assert_eq!(api.ok("POST", "/suppression", Some(add)).0, 201);
    let (_, hit) = api.ok("GET", "/suppression/gone@example.test", None);
    assert_eq!(
        (hit["suppressed"].as_bool(), hit["entry"]["reason"].as_str()),
        (Some(true), Some("complaint")),
        "{hit}"
    );
    assert_eq!(api.ok("DELETE", "/suppression/gone@example.test", None).0, 200);
    assert_eq!(
        api.ok("GET", "/suppression/gone@example.test", None).1["suppressed"],
        false
    );
    assert_eq!(api.ok("DELETE", "/suppression/gone@example.test", None).0, 404);
    let (status, answer) = api.ok("POST", "/suppression", Some(r#"{"address": "no-at-sign"}"#));
    assert_eq!((status, answer["field"].as_str()), (400, Some("address")), "{answer}");
    let (status, answer) = api.ok("GET", "/suppression/a@b.test?list=bad%20list", None);
    assert_eq!((status, answer["field"].as_str()), (400, Some("list")), "{answer}");
    // `scope` is accepted for `list`; a hit has both names and RFC 3339 times, as the CLI's.
    let add = r#"{"address": "x@example.test", "scope": "news"}"#;
    let (status, answer) = api.ok("POST", "/suppression", Some(add));
    assert_eq!((status, answer["list"].as_str()), (201, Some("news")), "{answer}");
    let (_, hit) = api.ok("GET", "/suppression/x@example.test?scope=news", None);
    assert_eq!((&hit["list"], &hit["scope"]), (&json!("news"), &json!("news")), "{hit}");
    let first_at = hit["entry"]["first_at"].as_str().map(humantime::parse_rfc3339);
    assert!(matches!(first_at, Some(Ok(_))), "{hit}");
    let (status, answer) = api.ok("GET", "/suppression/x@example.test?list=news&scope=other", None);
    assert_eq!((status, answer["field"].as_str()), (400, Some("scope")), "{answer}");

    // Metrics of the service, behind the same token.
    let (status, metrics) = api.ok("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("volley_outcomes_total{campaign=\"a\",outcome=\"delivered\"} 600")),
        "{metrics}"
    );
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("volley_warmup_daily_cap{source_ip=\"127.0.0.3\",provider=\"other\"}")),
        "the warming IP's cap: {metrics}"
    );

    // SIGTERM: a clean stop.
    let pid = server.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut server = server;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "volley serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_refuses_to_start_without_a_usable_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    for api in ["", "[api]\ntoken = \"short\"\n"] {
        let config = write(
            dir.path(),
            "volley.toml",
            &format!("[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"m.test\"\n{api}"),
        );
        let o = volley()
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .output()
            .expect("volley serve");
        let out = common::text(&o);
        assert!(!o.status.success(), "{out}");
        assert!(out.contains("api.token"), "{out}");
        assert!(!out.contains("\"short\""), "{out}");
    }
}

#[test]
fn serve_marks_a_source_ip_it_cannot_bind_unusable_and_lists_it() {
    // 192.0.2.1 (RFC 5737) is on no interface: binding it fails locally, nothing is sent.
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"192.0.2.1\"\nehlo_name = \"mta9.volley.test\"\n\
             [routes]\n\"*\" = \"127.0.0.1:9\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n"
        ),
    );
    let _server = start_serve(&config, &listen);
    let api = Api::new(listen, TOKEN);
    let (status, ips) = api.ok("GET", "/ips", None);
    assert_eq!(status, 200, "{ips}");
    let ip = |a: &str| {
        ips.as_array()
            .and_then(|l| l.iter().find(|i| i["address"] == a))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(ip("127.0.0.2")["usable"], true, "{ips}");
    let missing = ip("192.0.2.1");
    assert_eq!(missing["usable"], false, "{ips}");
    assert!(
        missing["unusable_reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot be bound")),
        "{missing}"
    );
}

/// `request` over TLS to `addr`, trusting only `ca`; the raw response.
fn https(addr: &str, ca: &rustls::pki_types::CertificateDer<'static>, request: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("trust the test certificate");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(request.as_bytes()).expect("send over TLS");
    let mut response = String::new();
    // A peer closing without close_notify is an error to rustls; what arrived is kept.
    let _ = tls.read_to_string(&mut response);
    response
}

/// A self-signed certificate for `localhost`, written to `<name>.crt` and `<name>.key` in `dir`.
fn certificate(dir: &Path, name: &str) -> rustls::pki_types::CertificateDer<'static> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    write(dir, &format!("{name}.crt"), &cert.pem());
    write(dir, &format!("{name}.key"), &key_pair.serialize_pem());
    cert.der().clone()
}

#[test]
fn with_a_certificate_the_api_speaks_https_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = certificate(dir.path(), "api");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\ntls_cert = \"api.crt\"\ntls_key = \"api.key\"\n"
        ),
    );
    let _server = start_serve(&config, &listen);
    let get = |auth: &str| format!("GET /ips HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    let answer = https(&listen, &cert, &get(&format!("Authorization: Bearer {TOKEN}\r\n")));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"127.0.0.2\""), "{answer}");
    let answer = https(&listen, &cert, &get(""));
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "the token is still required: {answer}"
    );

    // Plain HTTP to the same port gets no HTTP answer: nothing is served in clear.
    let mut plain = TcpStream::connect(&listen).expect("connect");
    plain.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    plain
        .write_all(get(&format!("Authorization: Bearer {TOKEN}\r\n")).as_bytes())
        .expect("send");
    let mut bytes = Vec::new();
    let _ = plain.read_to_end(&mut bytes);
    assert!(!bytes.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&bytes));
}

/// `[unsubscribe]` in `volley serve`: the public endpoint on its own address, over HTTPS with
/// its certificate, without the bearer token; a damaged link gets the 400 page, other paths
/// 404, and the API's `/metrics` counts the answers.
#[test]
fn the_unsubscribe_endpoint_runs_beside_the_api_over_https_without_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = certificate(dir.path(), "unsub");
    write(
        dir.path(),
        "feedback.key",
        "1 a-serve-unsubscribe-test-secret-of-32+-chars\n",
    );
    let (listen, public) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n\
             [feedback]\nbounce_domain = \"bounce.volley.test\"\nkey_file = \"feedback.key\"\n\
             unsubscribe_url = \"https://localhost/u\"\n\
             [unsubscribe]\nlisten = \"{public}\"\ntls_cert = \"unsub.crt\"\ntls_key = \"unsub.key\"\n"
        ),
    );
    let _server = start_serve(&config, &listen);
    wait_listening(&public, "the unsubscribe endpoint");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let damaged = https(&public, &cert, &get("/u/not-a-token"));
    assert!(damaged.starts_with("HTTP/1.1 400"), "{damaged}");
    assert!(damaged.contains("This unsubscribe link is damaged."), "{damaged}");
    let elsewhere = https(&public, &cert, &get("/campaigns"));
    assert!(
        elsewhere.starts_with("HTTP/1.1 404"),
        "the API is not here: {elsewhere}"
    );
    let api = Api {
        addr: listen,
        token: TOKEN.to_string(),
    };
    let (status, metrics) = api.ok("GET", "/metrics", None);
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("volley_unsubscribe_requests_total{answer=\"bad_request\"} 1")
            && metrics.contains("volley_unsubscribe_requests_total{answer=\"not_found\"} 1"),
        "{metrics}"
    );
}

/// A campaign whose receiver bounces 30 % is held by the reputation guard: `state` "held" with
/// the reason, `GET /reputation` and the metrics show the hold, `POST /reputation/resume`
/// refuses bad bodies and unknown holds, and resuming the campaign lifts the hold (it sends
/// again).
#[test]
fn a_campaign_held_by_the_reputation_guard_is_shown_and_resumes_on_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sink, sink_addr) = start_sink(&["--permfail", "30", "--latency", "5ms"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\nmax_in_flight = 8\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [routes]\n\"*\" = \"{sink_addr}\"\n\
             [reputation]\nmin_sample = 50\nroutes = false\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n"
        ),
    );
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).expect("campaigns folder");
    recipients(&campaigns, "g", 3000);
    write(&campaigns, "g.toml", &campaign_toml("g"));
    let _server = start_serve(&config, &listen);
    let api = Api::new(listen, TOKEN);
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "g.toml"}"#));
    assert_eq!(status, 201, "{view}");
    let held = api.wait_for("g", "the hold", |v| v["state"] == "held");
    let reason = held["progress"]["hold"].as_str().unwrap_or_default();
    assert!(reason.starts_with("hard-bounce rate "), "{held}");
    assert!(reason.ends_with("exceeds 5 %"), "{held}");

    let (status, rep) = api.ok("GET", "/reputation", None);
    assert_eq!(status, 200, "{rep}");
    assert_eq!(rep["min_sample"], 50, "{rep}");
    assert_eq!(rep["holds"][0]["scope"], "campaign", "{rep}");
    assert_eq!(rep["holds"][0]["campaign"], "g", "{rep}");
    assert_eq!(rep["holds"][0]["metric"], "hard_bounce_rate", "{rep}");
    // The metrics' copy of the guards' state is refreshed about once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = api.ok("GET", "/metrics", None);
        let metrics = metrics.as_str().unwrap_or_default().to_string();
        if metrics.contains("volley_reputation_held{scope=\"campaign\",campaign=\"g\",source_ip=\"\",provider=\"\"} 1")
        {
            assert!(metrics.contains("volley_reputation_hard_bounce_rate_percent{scope=\"campaign\",campaign=\"g\""));
            break;
        }
        assert!(Instant::now() < deadline, "no held gauge: {metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let (status, answer) = api.ok("POST", "/reputation/resume", Some(r#"{"campaign": "nope"}"#));
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = api.ok(
        "POST",
        "/reputation/resume",
        Some(r#"{"source_ip": "mta", "provider": "gmail"}"#),
    );
    assert_eq!((status, answer["field"].as_str()), (400, Some("source_ip")), "{answer}");
    let (status, answer) = api.ok("POST", "/reputation/resume", Some("{}"));
    assert_eq!(status, 400, "{answer}");

    let at_hold = delivered(&api.campaign("g"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(delivered(&api.campaign("g")), at_hold, "nothing is sent while held");
    let (status, view) = api.ok("POST", "/campaigns/g/resume", None);
    assert_eq!(status, 200, "{view}");
    api.wait_for("g", "deliveries after the resume", |v| delivered(v) > at_hold);
    let (status, view) = api.ok("POST", "/campaigns/g/cancel", None);
    assert_eq!(status, 200, "{view}");
}

/// A DNS blocklist on loopback lists one source IP: `GET /ips` and `GET /reputation` show the
/// listing and the hold, the metric `volley_source_ip_listed` is 1 for it and 0 for the other,
/// `POST /reputation/resume {"source_ip"}` overrides it (404 for an IP that is not listed), and
/// `volley reputation show` lists the override.
#[test]
fn a_blocklisted_source_ip_is_shown_and_can_be_overridden() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dns = rt
        .block_on(volley_bench::dns::DynamicDns::start(
            "127.0.0.1:0".parse().expect("addr"),
        ))
        .expect("dns");
    dns.set_a("2.0.0.127.bl.test", &["127.0.0.2".parse().expect("ip")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n\
             [routes]\n\"*\" = \"127.0.0.1:9\"\n\
             [dns]\nnameservers = [\"{}\"]\n\
             [blocklists]\ninterval = \"1s\"\n[[blocklists.zones]]\nzone = \"bl.test\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n",
            dns.local_addr()
        ),
    );
    let _server = start_serve(&config, &listen);
    let api = Api::new(listen, TOKEN);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ips = loop {
        let (status, ips) = api.ok("GET", "/ips", None);
        assert_eq!(status, 200, "{ips}");
        if ips[0]["blocklists"]["held"] == true {
            break ips;
        }
        assert!(Instant::now() < deadline, "no listing shown: {ips}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ips[0]["blocklists"]["listed"][0]["zone"], "bl.test", "{ips}");
    assert_eq!(ips[0]["blocklists"]["listed"][0]["codes"][0], "127.0.0.2", "{ips}");
    assert_eq!(ips[1]["blocklists"]["listed"], json!([]), "{ips}");
    let (_, rep) = api.ok("GET", "/reputation", None);
    assert_eq!(rep["blocklists"][0]["source_ip"], "127.0.0.2", "{rep}");
    // The metrics' copy is refreshed about once a second; an IP appears there once its
    // first check has answered (the two are checked one after the other).
    loop {
        let (_, metrics) = api.ok("GET", "/metrics", None);
        let metrics = metrics.as_str().unwrap_or_default().to_string();
        let line = |ip: &str| {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "volley_source_ip_listed{{source_ip=\"{ip}\",zone=\"bl.test\"}}"
                    ))
                })
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
        };
        if let (Some(listed), Some(clean)) = (line("127.0.0.2"), line("127.0.0.3")) {
            assert_eq!((listed.as_str(), clean.as_str()), ("1", "0"), "{metrics}");
            break;
        }
        assert!(Instant::now() < deadline, "no listing in the metrics: {metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (status, answer) = api.ok("POST", "/reputation/resume", Some(r#"{"source_ip": "127.0.0.3"}"#));
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = api.ok("POST", "/reputation/resume", Some(r#"{"source_ip": "127.0.0.2"}"#));
    assert_eq!(status, 200, "{answer}");
    let (_, ips) = api.ok("GET", "/ips", None);
    assert_eq!(ips[0]["blocklists"]["held"], false, "{ips}");
    assert_eq!(ips[0]["blocklists"]["overridden"], true, "{ips}");
    let out = volley()
        .args(["reputation", "show", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown.contains("source IP 127.0.0.2: sends although blocklisted"),
        "{shown}"
    );
    drop(rt);
}
