//! `POST /messages` of `volley serve` over real HTTP: a whole message with its envelope and a
//! template with per-recipient substitutions are spooled (202, an id per recipient), bad
//! recipients and header injection are refused per recipient, malformed requests name the
//! field, `GET /messages/{id}` follows each recipient to `delivered`, every accepted recipient
//! reaches the sink exactly once, and a serve killed with SIGKILL and started again sends
//! nothing twice and goes on with new injections.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volley_bench::{Sink, SinkConfig};

mod common;

use common::api::{start_serve, Api};
use common::{free_port, write};

const TOKEN: &str = "inject-token-0123456789abcdef";

fn wait_state(api: &Api, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, view) = api.ok("GET", &format!("/messages/{id}"), None);
        assert_eq!(status, 200, "{view}");
        if view["state"] == state {
            return view;
        }
        assert!(Instant::now() < deadline, "{id} never became {state}: {view}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_injected_over_http_are_delivered_once_across_a_kill() {
    let sink = Sink::start(SinkConfig {
        count_addresses: true,
        ..SinkConfig::default()
    })
    .await
    .expect("sink");
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write(
        dir.path(),
        "volley.toml",
        &format!(
            "state_dir = \"state\"\n\
             [[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n\
             [routes]\n\"*\" = \"{}\"\n\
             [api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n\
             [injection]\nmax_batch = 50\n",
            sink.local_addr()
        ),
    );
    let server = start_serve(&config, &listen);
    let api = Api::new(listen.clone(), TOKEN);

    // A whole message to two good recipients and one that is not an address.
    let raw = json!({
        "envelope_from": "bounces@app.volley.test",
        "recipients": ["a1@x.test", "a2@y.test", "bad address"],
        "message": "From: App <app@app.volley.test>\nSubject: reset\n\nyour code is 1234\n",
    });
    let (status, answer) = api.ok("POST", "/messages", Some(&raw.to_string()));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (
            answer["campaign"].as_str(),
            answer["accepted"].as_u64(),
            answer["refused"].as_u64()
        ),
        (Some("api"), Some(2), Some(1))
    );
    let raw_ids = ids(&answer);
    assert_eq!(raw_ids, ["api:1", "api:2"]);

    // A template: one recipient tries to inject a header through a substitution.
    let templated = json!({
        "campaign": "shop",
        "from": "Shop <shop@shop.volley.test>",
        "subject": "Order {{order}}",
        "text": "Hello {{name}}, order {{order}} has shipped.",
        "recipients": [
            {"email": "t1@x.test", "substitutions": {"name": "Ann", "order": 17}},
            {"email": "t2@y.test", "substitutions": {"name": "Bob", "order": "18"}},
            {"email": "t3@x.test", "substitutions": {"name": "Eve", "order": "19\r\nBcc: victim@z.test"}},
        ],
    });
    let (status, answer) = api.ok("POST", "/messages", Some(&templated.to_string()));
    assert_eq!(status, 202, "{answer}");
    let shop_ids = ids(&answer);
    assert_eq!(shop_ids, ["shop:1", "shop:2"]);
    let refused = &answer["results"][2];
    assert_eq!(refused["email"], "t3@x.test");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("control character")),
        "{refused}"
    );

    // Malformed requests name the field; nothing is spooled.
    for (body, field) in [
        (
            json!({"recipients": ["a@x.test"], "message": "no header here\n\nbody"}),
            "message",
        ),
        (
            json!({"recipients": [], "message": "From: a@x.test\n\nx"}),
            "recipients",
        ),
        (json!({"recipients": ["a@x.test"], "subject": "x", "text": "y"}), "from"),
        (
            json!({"recipients": ["a@x.test"], "from": "a@x.test", "subject": "{{nope}}", "text": "y"}),
            "template",
        ),
        (
            json!({"recipients": ["a@x.test"], "message": "From: a@x.test\n\nx", "subject": "x"}),
            "subject",
        ),
        (
            json!({"recipients": (0..51).map(|i| format!("u{i}@x.test")).collect::<Vec<_>>(), "message": "From: a@x.test\n\nx"}),
            "recipients",
        ),
        (
            json!({"recipients": ["a@x.test"], "message": "From: a@x.test\n\nx", "campaign": "../etc"}),
            "campaign",
        ),
    ] {
        let (status, answer) = api.ok("POST", "/messages", Some(&body.to_string()));
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    assert_eq!(api.ok("GET", "/messages/api:99", None).0, 404);
    assert_eq!(api.ok("GET", "/messages/nope", None).0, 400);

    for id in raw_ids.iter().chain(&shop_ids) {
        let view = wait_state(&api, id, "delivered");
        assert_eq!(view["attempts"][0]["source_ip"], "127.0.0.2", "{view}");
    }
    for address in ["a1@x.test", "a2@y.test", "t1@x.test", "t2@y.test"] {
        assert_eq!(sink.accepted_for(address), 1, "{address}");
    }
    assert_eq!(sink.accepted_for("t3@x.test"), 0);
    let (_, campaigns) = api.ok("GET", "/campaigns", None);
    let states: Vec<(String, String)> = campaigns
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_owned(),
                c["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(states.contains(&("api".into(), "running".into())), "{states:?}");
    assert!(states.contains(&("shop".into(), "running".into())), "{states:?}");

    // SIGKILL, then start again: the spool's campaigns come back, nothing is sent twice.
    drop(server);
    let server = start_serve(&config, &listen);
    let one = json!({"recipients": ["after@x.test"], "message": "From: app@app.volley.test\n\nagain\n"});
    let (status, answer) = api.ok("POST", "/messages", Some(&one.to_string()));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ids(&answer), ["api:3"], "ids go on after a restart");
    wait_state(&api, "api:3", "delivered");
    std::thread::sleep(Duration::from_millis(300));
    for address in ["a1@x.test", "a2@y.test", "t1@x.test", "t2@y.test", "after@x.test"] {
        assert_eq!(sink.accepted_for(address), 1, "{address} once");
    }
    drop(server);
}
