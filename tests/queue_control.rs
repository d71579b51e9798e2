//! Queue control as an operator uses it (issue 18, part 4), over real sockets: `volley serve`
//! sends one campaign to four domains, each received by its own `volley sink` process (so each
//! sink's count is one domain's deliveries). Mid-run three domains are suspended (over HTTP and
//! with `volley queue`): their sinks receive nothing more while the fourth domain keeps
//! delivering to its end. A restart of `volley serve` keeps the suspensions. Resuming one
//! domain drains it; purging and bouncing the other two give each of their waiting recipients
//! exactly one final accounting line with the operator's reason (none delivered afterwards,
//! none suppressed for the bounce), and a relaunch sends nobody again.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::api::{start_serve, Api};
use common::{free_port, text, volley, wait_listening, write, Killed};

const TOKEN: &str = "queue-control-token-0123456789";
const PER_DOMAIN: usize = 60;
const DOMAINS: [&str; 4] = ["a.test", "b.test", "c.test", "d.test"];

/// A `volley sink` whose accepted-recipient count is read from its stats lines.
struct CountingSink {
    _child: Killed,
    addr: String,
    count: Arc<AtomicU64>,
}

impl CountingSink {
    fn start() -> CountingSink {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = volley()
            .args(["sink", "--listen", &addr, "--latency", "5ms", "--stats-every", "50ms"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sink");
        let stdout = child.stdout.take().expect("sink stdout");
        let count = Arc::new(AtomicU64::new(0));
        let c = count.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["recipients"].as_u64())
                {
                    c.store(n, Ordering::Relaxed);
                }
            }
        });
        let sink = CountingSink {
            _child: Killed(child),
            addr,
            count,
        };
        wait_listening(&sink.addr, "sink");
        sink
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// `volley.toml` in `dir`: state in `state/`, source IP 127.0.0.2 (and 127.0.0.3 with
/// `two_ips`), the `extra` tables, and the API on `listen` (when given).
fn write_config(dir: &Path, two_ips: bool, extra: &str, listen: Option<&str>) -> std::path::PathBuf {
    let mut toml = String::from(
        "state_dir = \"state\"\n[[source_ips]]\naddress = \"127.0.0.2\"\nehlo_name = \"mta2.volley.test\"\n",
    );
    if two_ips {
        toml.push_str("[[source_ips]]\naddress = \"127.0.0.3\"\nehlo_name = \"mta3.volley.test\"\n");
    }
    toml.push_str(extra);
    if let Some(listen) = listen {
        toml.push_str(&format!("[api]\nlisten = \"{listen}\"\ntoken = \"{TOKEN}\"\n"));
    }
    write(dir, "volley.toml", &toml)
}

/// Campaign `id` in `folder`: `{id}.csv` with `rows`, `{id}.toml` over it.
fn write_campaign(folder: &Path, id: &str, rows: &[String]) -> std::path::PathBuf {
    write(folder, &format!("{id}.csv"), &format!("email\n{}\n", rows.join("\n")));
    write(
        folder,
        &format!("{id}.toml"),
        &format!("id = \"{id}\"\nfrom = \"news@sender.test\"\nsubject = \"Hi\"\ntext = \"Hello\"\nrecipients = \"{id}.csv\"\n"),
    )
}

/// The `campaigns` folder `volley serve` launches from.
fn campaigns_dir(dir: &Path) -> std::path::PathBuf {
    let campaigns = dir.join("campaigns");
    std::fs::create_dir(&campaigns).expect("campaigns folder");
    campaigns
}

/// Waits until `f` holds (30 s at most; `what` names it).
fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sinks' counts once they stopped moving (what was on the wire has landed).
fn settled(sinks: &[CountingSink]) -> Vec<u64> {
    let mut last: Vec<u64> = sinks.iter().map(CountingSink::count).collect();
    loop {
        std::thread::sleep(Duration::from_millis(400));
        let now: Vec<u64> = sinks.iter().map(CountingSink::count).collect();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Every accounting line of the campaign, per recipient.
fn outcomes(state: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let log = std::fs::read_to_string(state.join("q/accounting.jsonl")).unwrap_or_default();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).expect("accounting line");
        out.entry(v["recipient"].as_str().expect("recipient").to_string())
            .or_default()
            .push(v);
    }
    out
}

fn delivered_in(state: &Path, domain: &str) -> u64 {
    outcomes(state)
        .iter()
        .filter(|(r, lines)| r.ends_with(domain) && lines.iter().any(|l| l["outcome"] == "delivered"))
        .count() as u64
}

/// The queue of `key` in `GET /queues?by=domain`.
fn queue(api: &Api, key: &str) -> Value {
    let (status, view) = api.ok("GET", "/queues?by=domain", None);
    assert_eq!(status, 200, "{view}");
    view["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["key"] == key).cloned())
        .unwrap_or(Value::Null)
}

fn queue_cmd(config: &Path, args: &[&str]) -> std::process::Output {
    volley()
        .arg("queue")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("volley queue")
}

fn stop(server: Killed) {
    let mut server = server;
    let pid = server.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let status = server.0.wait().expect("volley serve exits");
    assert!(status.success(), "volley serve stopped with {status}");
}

#[test]
fn suspended_destinations_wait_across_a_restart_then_drain_or_get_one_final_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sinks: Vec<CountingSink> = DOMAINS.iter().map(|_| CountingSink::start()).collect();
    let listen = format!("127.0.0.1:{}", free_port());
    let routes: String = DOMAINS
        .iter()
        .zip(&sinks)
        .map(|(d, s)| format!("\"{d}\" = \"{}\"\n", s.addr))
        .collect();
    let smtp = "[smtp]\nmax_connections_per_host = 1\nqueue_per_host = 2\n";
    let config = write_config(dir.path(), false, &format!("[routes]\n{routes}{smtp}"), Some(&listen));
    let rows: Vec<String> = (0..PER_DOMAIN)
        .flat_map(|i| DOMAINS.iter().map(move |d| format!("u{i}@{d}")))
        .collect();
    write_campaign(&campaigns_dir(dir.path()), "q", &rows);
    let state = dir.path().join("state");
    let server = start_serve(&config, &listen);
    let api = Api::new(listen.clone(), TOKEN);

    // Bad input: 400 naming the field (and the value), nothing suspended.
    for (path, body, field) in [
        ("/queues/suspend", r#"{"domian": "b.test"}"#, "domian"),
        ("/queues/suspend", r#"{"source_ip": "127.0.0.300"}"#, "source_ip"),
        ("/queues/suspend", r#"{"provider": "gmail"}"#, "provider"),
        ("/queues/suspend", r#"{}"#, "(body)"),
        ("/queues/purge", r#"{"domain": "b.test"}"#, "reason"),
        ("/queues/bounce", r#"{"domain": "b.test", "reason": " "}"#, "reason"),
    ] {
        let (status, answer) = api.ok("POST", path, Some(body));
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api.ok("POST", "/queues/suspend", Some(r#"{"source_ip": "127.0.0.300"}"#));
    assert!(
        answer["error"].as_str().is_some_and(|e| e.contains("127.0.0.300")),
        "{status} {answer}"
    );
    let (status, answer) = api.ok("GET", "/queues?by=mx", None);
    assert_eq!((status, answer["field"].as_str()), (400, Some("by")), "{answer}");
    let bad = queue_cmd(&config, &["suspend", "--ip", "10.1.2.300"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("--ip: \"10.1.2.300\""), "{}", text(&bad));
    assert!(!state.join("queue-controls.json").exists());

    // The campaign runs; mid-run b, c and d are suspended (d from the command line).
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "q.toml"}"#));
    assert_eq!(status, 201, "{view}");
    wait_until("b.test deliveries", || sinks[1].count() >= 3);
    for domain in ["b.test", "c.test"] {
        let (status, answer) = api.ok(
            "POST",
            "/queues/suspend",
            Some(&json!({ "domain": domain }).to_string()),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["changed"], true, "{answer}");
    }
    let out = queue_cmd(&config, &["suspend", "--domain", "d.test"]);
    assert!(out.status.success(), "{}", text(&out));
    let at_suspend = settled(&sinks[1..]);
    assert!(
        at_suspend.iter().all(|n| *n < PER_DOMAIN as u64),
        "suspended mid-run: {at_suspend:?}"
    );
    // a.test keeps delivering to its end while the others receive nothing more.
    wait_until("a.test to finish", || sinks[0].count() == PER_DOMAIN as u64);
    std::thread::sleep(Duration::from_millis(300));
    let now: Vec<u64> = sinks[1..].iter().map(CountingSink::count).collect();
    assert_eq!(now, at_suspend, "nothing more goes to a suspended domain");
    let b = queue(&api, "b.test");
    assert_eq!(b["suspended"], true, "{b}");
    assert!(b["suspended_recipients"].as_u64().unwrap_or(0) > 0, "{b}");
    assert!(b["oldest"].is_string(), "{b}");
    for by in ["site", "source_ip", "provider"] {
        let (status, view) = api.ok("GET", &format!("/queues?by={by}"), None);
        assert_eq!(status, 200, "{view}");
        assert!(!view["queues"].as_array().expect("queues").is_empty(), "{by}: {view}");
    }
    let shown = queue_cmd(&config, &["show"]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(text(&shown).contains("b.test (suspended)"), "{}", text(&shown));

    // A restart keeps the suspensions: relaunched, the campaign sends nothing to b, c, d.
    stop(server);
    let server = start_serve(&config, &listen);
    assert_eq!(queue(&api, "c.test")["suspended"], true);
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "q.toml"}"#));
    assert_eq!(status, 201, "{view}");
    let waiting = |d: &str| PER_DOMAIN as u64 - delivered_in(&state, d);
    for (i, d) in ["b.test", "c.test", "d.test"].into_iter().enumerate() {
        assert_eq!(
            delivered_in(&state, d),
            at_suspend[i],
            "{d}: the log agrees with the sink"
        );
        wait_until(&format!("{d}'s recipients waiting again"), || {
            queue(&api, d)["suspended_recipients"].as_u64() == Some(waiting(d))
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let now: Vec<u64> = sinks[1..].iter().map(CountingSink::count).collect();
    assert_eq!(now, at_suspend, "still nothing after the restart");

    // Resume b: it drains.
    let (status, answer) = api.ok("POST", "/queues/resume", Some(r#"{"domain": "b.test"}"#));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["affected"], waiting("b.test"), "{answer}");
    assert_eq!(answer["counts"]["suspended"], waiting("b.test"), "{answer}");
    wait_until("b.test to drain", || sinks[1].count() == PER_DOMAIN as u64);
    let (status, _) = api.ok("POST", "/queues/resume", Some(r#"{"domain": "b.test"}"#));
    assert_eq!(status, 404, "b is no longer suspended");

    // Purge c over HTTP, bounce d from the command line.
    let (status, answer) = api.ok(
        "POST",
        "/queues/purge",
        Some(r#"{"domain": "c.test", "reason": "offer withdrawn"}"#),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["affected"], waiting("c.test"), "{answer}");
    let out = queue_cmd(&config, &["bounce", "--domain", "d.test", "--reason", "domain closed"]);
    assert!(out.status.success(), "{}", text(&out));
    let finished = api.wait_for("q", "the campaign to finish", |v| v["state"] == "finished");
    assert_eq!(
        finished["summary"]["delivered"],
        2 * PER_DOMAIN as u64 + at_suspend[1] + at_suspend[2]
    );

    // One final line per recipient; the purged and bounced ones carry the reason; no more
    // deliveries to c and d.
    let all = outcomes(&state);
    assert_eq!(all.len(), DOMAINS.len() * PER_DOMAIN);
    let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (recipient, lines) in &all {
        assert_eq!(lines.len(), 1, "{recipient}: {lines:?}");
        let l = &lines[0];
        let domain = recipient.split('@').nth(1).unwrap_or_default().to_string();
        let outcome = l["outcome"].as_str().unwrap_or_default().to_string();
        match outcome.as_str() {
            "delivered" => {}
            "expired" => {
                assert_eq!((domain.as_str(), &l["category"]), ("c.test", &json!("operator")), "{l}");
                assert!(l["text"].as_str().is_some_and(|t| t.contains("offer withdrawn")), "{l}");
            }
            "bounced" => {
                assert_eq!((domain.as_str(), &l["category"]), ("d.test", &json!("operator")), "{l}");
                assert!(l["text"].as_str().is_some_and(|t| t.contains("domain closed")), "{l}");
            }
            other => panic!("{recipient}: unexpected {other}: {l}"),
        }
        *counted.entry((domain, outcome)).or_default() += 1;
    }
    let n = |d: &str, o: &str| counted.get(&(d.to_string(), o.to_string())).copied().unwrap_or(0);
    assert_eq!(n("c.test", "expired"), PER_DOMAIN as u64 - at_suspend[1]);
    assert_eq!(n("d.test", "bounced"), PER_DOMAIN as u64 - at_suspend[2]);
    assert_eq!([sinks[2].count(), sinks[3].count()], [at_suspend[1], at_suspend[2]]);
    // An operator's bounce is not the recipient's fault: nobody is suppressed.
    for (recipient, lines) in &all {
        if lines[0]["outcome"] == "bounced" {
            let (status, hit) = api.ok("GET", &format!("/suppression/{recipient}"), None);
            assert_eq!((status, &hit["suppressed"]), (200, &json!(false)), "{recipient}: {hit}");
        }
    }
    // A relaunch sends nobody again.
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "q.toml"}"#));
    assert_eq!(status, 201, "{view}");
    api.wait_for("q", "the rerun to finish", |v| v["state"] == "finished");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        sinks.iter().map(CountingSink::count).collect::<Vec<_>>(),
        [PER_DOMAIN as u64, PER_DOMAIN as u64, at_suspend[1], at_suspend[2]]
    );
    assert_eq!(outcomes(&state).values().map(Vec::len).sum::<usize>(), all.len());
    drop(server);
}

/// The campaign's accounting lines for recipients of `domain`.
fn lines_of(state: &Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(state.join(id).join("accounting.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("accounting line"))
        .collect()
}

#[test]
fn retry_now_makes_deferrals_due_and_a_source_ip_purge_ends_them_once_each() {
    const N: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    // The receiver defers everyone; the schedule would wait an hour.
    let (_sink, sink_addr) = common::start_sink(&["--tempfail", "100"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let extra = format!("[routes]\n\"*\" = \"{sink_addr}\"\n[retry]\nschedule = [\"1h\"]\nmax_age = \"1d\"\n");
    let config = write_config(dir.path(), false, &extra, Some(&listen));
    let rows: Vec<String> = (0..N).map(|i| format!("u{i}@r.test")).collect();
    write_campaign(&campaigns_dir(dir.path()), "r", &rows);
    let state = dir.path().join("state");
    let server = start_serve(&config, &listen);
    let api = Api::new(listen, TOKEN);
    let (status, view) = api.ok("POST", "/campaigns", Some(r#"{"path": "r.toml"}"#));
    assert_eq!(status, 201, "{view}");
    wait_until("every recipient deferred once", || {
        queue(&api, "r.test")["retrying"].as_u64() == Some(N as u64)
    });
    let r = queue(&api, "r.test");
    assert!(r["next_attempt"].is_string(), "{r}");
    let (_, by_ip) = api.ok("GET", "/queues?by=source_ip", None);
    let ip = by_ip["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["key"] == "127.0.0.2").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(ip["retrying"], N as u64, "{by_ip}");

    // After a restart the deferrals are found where the accounting log says they were.
    stop(server);
    let _server = start_serve(&config, &api.addr);
    assert_eq!(api.ok("POST", "/campaigns", Some(r#"{"path": "r.toml"}"#)).0, 201);
    wait_until("the deferrals of the earlier run", || {
        queue(&api, "r.test")["retrying"].as_u64() == Some(N as u64)
    });

    // Retry now: the second attempts happen at once, not in an hour.
    let (status, answer) = api.ok("POST", "/queues/retry", Some(r#"{"domain": "r.test"}"#));
    assert_eq!((status, &answer["affected"]), (200, &json!(N)), "{answer}");
    let second = |state: &Path| lines_of(state, "r").iter().filter(|l| l["attempt"] == 2).count();
    wait_until("the second attempts", || second(&state) == N);

    // Purge what the IP tried: each recipient gets one final line, read back from the file.
    wait_until("the retries queued again", || {
        queue(&api, "r.test")["retrying"].as_u64() == Some(N as u64)
    });
    let (status, answer) = api.ok(
        "POST",
        "/queues/purge",
        Some(r#"{"source_ip": "127.0.0.2", "reason": "ip retired"}"#),
    );
    assert_eq!((status, &answer["counts"]["retrying"]), (200, &json!(N)), "{answer}");
    let done = api.wait_for("r", "the campaign to finish", |v| v["state"] == "finished");
    assert_eq!(done["summary"]["delivered"], 0, "{done}");
    let lines = lines_of(&state, "r");
    for row in &rows {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["recipient"] == row.as_str()).collect();
        let finals: Vec<&&Value> = mine.iter().filter(|l| l["outcome"] != "deferred").collect();
        assert_eq!(finals.len(), 1, "{row}: {mine:?}");
        assert_eq!(finals[0]["outcome"], "expired", "{row}: {mine:?}");
        assert_eq!(finals[0]["category"], "operator");
        assert!(finals[0]["text"].as_str().is_some_and(|t| t.contains("ip retired")));
        assert_eq!(mine.len(), 3, "two deferrals and the purge: {mine:?}");
    }
}

#[test]
fn volley_send_leaves_a_suspended_domain_to_a_later_run_and_refuses_a_damaged_controls_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (CountingSink::start(), CountingSink::start());
    let routes = format!("[routes]\n\"a.test\" = \"{}\"\n\"b.test\" = \"{}\"\n", a.addr, b.addr);
    let config = write_config(dir.path(), false, &routes, None);
    let rows: Vec<String> = (0..10)
        .flat_map(|i| [format!("u{i}@a.test"), format!("u{i}@b.test")])
        .collect();
    let campaign = write_campaign(dir.path(), "s", &rows);
    // As `POST /queues/suspend` left it.
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state");
    let controls = state.join("queue-controls.json");
    std::fs::write(
        &controls,
        r#"{"suspended": [{"scope": {"domain": "b.test"}, "since": "2026-12-04T12:00:00Z"}]}"#,
    )
    .expect("controls");
    let send = || {
        volley()
            .arg("send")
            .arg(&campaign)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("volley send")
    };
    let out = send();
    assert!(!out.status.success(), "incomplete: {}", text(&out));
    assert!(text(&out).contains("10 recipients waiting"), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!((a.count(), b.count()), (10, 0));
    // Resumed (the file as `POST /queues/resume` leaves it): the rerun sends b.test only.
    std::fs::write(&controls, r#"{"suspended": []}"#).expect("controls");
    let out = send();
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!((a.count(), b.count()), (10, 10));
    // A damaged file refuses the start, naming it.
    std::fs::write(&controls, "{\"suspended\": [").expect("controls");
    let out = send();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("queue-controls.json") && text(&out).contains("damaged"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_suspended_source_ip_or_ip_provider_pair_sends_nothing_and_the_other_ip_carries_the_mail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_sink, sink_addr) = common::start_sink(&[]);
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_config(
        dir.path(),
        true,
        &format!("[routes]\n\"*\" = \"{sink_addr}\"\n"),
        Some(&listen),
    );
    let campaigns = campaigns_dir(dir.path());
    for id in ["i1", "i2", "i3"] {
        let rows: Vec<String> = (0..40).map(|i| format!("u{i}@{id}.test")).collect();
        write_campaign(&campaigns, id, &rows);
    }
    let state = dir.path().join("state");
    let _server = start_serve(&config, &listen);
    let api = Api::new(listen, TOKEN);
    let sources = |id: &str| -> Vec<String> {
        let mut ips: Vec<String> = lines_of(&state, id)
            .iter()
            .filter_map(|l| l["source_ip"].as_str().map(str::to_string))
            .collect();
        ips.dedup();
        ips
    };

    // The whole IP suspended: the other one sends everything.
    let (status, answer) = api.ok("POST", "/queues/suspend", Some(r#"{"source_ip": "127.0.0.2"}"#));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(api.ok("POST", "/campaigns", Some(r#"{"path": "i1.toml"}"#)).0, 201);
    let done = api.wait_for("i1", "i1 to finish", |v| v["state"] == "finished");
    assert_eq!(done["summary"]["delivered"], 40, "{done}");
    assert_eq!(sources("i1"), ["127.0.0.3"]);

    // Resumed; now 127.0.0.3 is suspended for provider group `other` only (the CLI).
    assert_eq!(
        api.ok("POST", "/queues/resume", Some(r#"{"source_ip": "127.0.0.2"}"#))
            .0,
        200
    );
    let out = queue_cmd(&config, &["suspend", "--ip", "127.0.0.3", "--provider", "other"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(api.ok("POST", "/campaigns", Some(r#"{"path": "i2.toml"}"#)).0, 201);
    let done = api.wait_for("i2", "i2 to finish", |v| v["state"] == "finished");
    assert_eq!(done["summary"]["delivered"], 40, "{done}");
    assert_eq!(sources("i2"), ["127.0.0.2"]);
    let (_, view) = api.ok("GET", "/queues?by=source_ip", None);
    assert_eq!(
        view["suspended"][0]["scope"],
        json!({ "source_ip": "127.0.0.3", "provider": "other" }),
        "{view}"
    );

    // The MX site suspended (as `show --by site` names it): nothing goes; purged, each
    // recipient expires once.
    let site = format!("route:{sink_addr}");
    let (status, answer) = api.ok("POST", "/queues/suspend", Some(&json!({ "site": site }).to_string()));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(api.ok("POST", "/campaigns", Some(r#"{"path": "i3.toml"}"#)).0, 201);
    let site_queue = || {
        let (_, view) = api.ok("GET", "/queues?by=site", None);
        view["queues"]
            .as_array()
            .and_then(|q| q.iter().find(|q| q["key"] == site.as_str()).cloned())
            .unwrap_or(Value::Null)
    };
    wait_until("i3 waiting at its site", || site_queue()["suspended_recipients"] == 40);
    assert_eq!(site_queue()["suspended"], true);
    assert!(lines_of(&state, "i3").is_empty(), "nothing sent to a suspended site");
    let (status, answer) = api.ok(
        "POST",
        "/queues/purge",
        Some(&json!({ "site": site, "reason": "site retired" }).to_string()),
    );
    assert_eq!((status, &answer["affected"]), (200, &json!(40)), "{answer}");
    api.wait_for("i3", "i3 to finish", |v| v["state"] == "finished");
    let lines = lines_of(&state, "i3");
    assert_eq!(lines.len(), 40);
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "expired" && l["site"] == site.as_str()),
        "{lines:?}"
    );
}

#[test]
fn volley_queue_speaks_https_to_an_api_with_a_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    write(dir.path(), "api.crt", &cert.pem());
    write(dir.path(), "api.key", &key_pair.serialize_pem());
    let listen = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), false, "", Some(&listen));
    let mut toml = std::fs::read_to_string(&config).expect("config");
    toml.push_str("tls_cert = \"api.crt\"\ntls_key = \"api.key\"\n");
    std::fs::write(&config, toml).expect("config");
    let _server = start_serve(&config, &listen);
    let out = queue_cmd(&config, &["suspend", "--domain", "x.test"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("suspended {\"domain\":\"x.test\"}: nothing new"),
        "{}",
        text(&out)
    );
    let out = queue_cmd(&config, &["resume", "--domain", "x.test"]);
    assert!(
        text(&out).contains("resumed {\"domain\":\"x.test\"}: 0 waiting"),
        "{}",
        text(&out)
    );
    let out = queue_cmd(&config, &["resume", "--domain", "x.test"]);
    assert!(!out.status.success(), "nothing to resume");
    assert!(text(&out).contains("404"), "{}", text(&out));
    let out = queue_cmd(&config, &["suspend", "--domain", "x.test"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = queue_cmd(&config, &["show", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["queues"][0]["key"], "x.test", "{shown}");
    assert_eq!(shown["queues"][0]["suspended"], true, "{shown}");
    // A name the certificate does not carry is refused by the handshake.
    let out = queue_cmd(&config, &["show", "--server-name", "other.test"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("TLS handshake"), "{}", text(&out));
}
