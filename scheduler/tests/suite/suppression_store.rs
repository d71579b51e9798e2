//! The suppression store's semantics, run against both backends: a spawned `redis-server` and
//! the embedded redb store — opened directly, and reached through the control socket of the
//! process holding it. Each case is a function over a factory of empty stores.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use volley_bench::RedisServer;
use volley_scheduler::suppression::{
    export_csv, import_csv, import_csv_reader, open_shared, open_store, Entry, ImportOptions, RedisStore, SoftPolicy,
    SuppressionConfig, SuppressionError, SuppressionStore, Update, GLOBAL,
};

const DAY: u64 = 86_400;
const T0: u64 = 1_700_000_000;

type Fresh<'a> = &'a dyn Fn() -> Arc<dyn SuppressionStore>;

/// Runs `case` against Redis (one server, a new prefix per store), embedded (a new directory
/// per store), and embedded through its holder's control socket.
macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn redis() {
                super::with_redis(super::$case);
            }
            #[test]
            fn embedded() {
                super::with_embedded(super::$case);
            }
            #[test]
            fn embedded_through_holder() {
                super::with_embedded_through_holder(super::$case);
            }
        }
    )*};
}

both_backends!(
    suppress_and_check_batch,
    merge_bumps_count_keeps_first,
    a_replayed_bounce_of_the_same_campaign_counts_once,
    remove_clears_entry_and_soft_count,
    soft_bounces_below_limit_are_counted,
    soft_bounces_at_limit_suppress,
    soft_bounces_outside_window_do_not_count,
    soft_bounce_of_suppressed_address_is_ignored,
    a_delivery_forgets_soft_bounces_also_within_a_batch,
    export_import_round_trip,
    import_reports_bad_rows_with_line_numbers,
    check_100k_batch,
);

fn with_redis(case: fn(Fresh)) {
    let server = RedisServer::start();
    let n = AtomicUsize::new(0);
    let fresh = || -> Arc<dyn SuppressionStore> {
        let config = SuppressionConfig {
            redis: Some(server.url()),
            prefix: format!("t{}", n.fetch_add(1, Ordering::Relaxed)),
            ..SuppressionConfig::default()
        };
        open_store(&config, Path::new("/nonexistent")).unwrap()
    };
    case(&fresh);
}

fn with_embedded(case: fn(Fresh)) {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let fresh = || -> Arc<dyn SuppressionStore> {
        let state = dir.path().join(format!("s{}", n.fetch_add(1, Ordering::Relaxed)));
        open_store(&SuppressionConfig::default(), &state).unwrap()
    };
    case(&fresh);
}

/// Each store is a [`open_shared`] client of a store this test holds open (as a running send
/// would), so every operation crosses the control socket.
fn with_embedded_through_holder(case: fn(Fresh)) {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let holders = Mutex::new(Vec::new());
    let fresh = || -> Arc<dyn SuppressionStore> {
        let state = dir.path().join(format!("s{}", n.fetch_add(1, Ordering::Relaxed)));
        let holder = open_store(&SuppressionConfig::default(), &state).unwrap();
        let client = open_shared(&SuppressionConfig::default(), &state).unwrap();
        assert!(
            client.describe().contains("through the volley process"),
            "{}",
            client.describe()
        );
        holders.lock().unwrap().push(holder);
        client
    };
    case(&fresh);
}

fn hard(scope: &str, address: &str, at: u64) -> Update {
    let entry = Entry::new("550 5.1.1 user unknown", "bounce:c1", at)
        .with_codes(Some(550), Some("5.1.1".into()))
        .with_category("bad-mailbox");
    Update::suppress(scope, address, entry)
}

fn soft(address: &str, at: u64) -> Update {
    Update::SoftBounce {
        scope: GLOBAL.into(),
        address: address.into(),
        code: Some(452),
        enhanced: Some("4.2.2".into()),
        reason: "mailbox full".into(),
        at,
    }
}

fn scopes_of(hits: &[Option<(String, Entry)>]) -> Vec<Option<&str>> {
    hits.iter().map(|h| h.as_ref().map(|(s, _)| s.as_str())).collect()
}

fn suppress_and_check_batch(fresh: Fresh) {
    let store = fresh();
    store
        .apply(&[
            hard(GLOBAL, "a@x.test", T0),
            hard("newsletter", "b@x.test", T0),
            hard("tenant-a", "c@x.test", T0),
            hard("newsletter", "a@x.test", T0),
        ])
        .unwrap();
    let hits = store
        .check(
            &[GLOBAL, "newsletter"],
            &["A@X.test", "b@x.test", "c@x.test", "d@x.test", " B@x.TEST "],
        )
        .unwrap();
    assert_eq!(
        scopes_of(&hits),
        [Some(GLOBAL), Some("newsletter"), None, None, Some("newsletter")]
    );
    let (_, entry) = hits[0].as_ref().unwrap();
    assert_eq!(entry.code, Some(550));
    assert_eq!(entry.enhanced.as_deref(), Some("5.1.1"));
    assert_eq!(entry.category.as_deref(), Some("bad-mailbox"));
    assert_eq!((entry.first, entry.last, entry.count), (T0, T0, 1));
    assert_eq!(entry.source, "bounce:c1");
    // Only global: the list entries are invisible.
    let hits = store.check(&[GLOBAL], &["b@x.test", "a@x.test"]).unwrap();
    assert_eq!(scopes_of(&hits), [None, Some(GLOBAL)]);
    assert_eq!(store.len(GLOBAL).unwrap(), 1);
    assert_eq!(store.len("newsletter").unwrap(), 2);
    assert_eq!(store.len("nobody").unwrap(), 0);
    assert!(store.get("tenant-a", "c@x.test").unwrap().is_some());
    assert!(store.check(&[GLOBAL], &[]).unwrap().is_empty());
}

fn merge_bumps_count_keeps_first(fresh: Fresh) {
    let store = fresh();
    store.apply(&[hard(GLOBAL, "a@x.test", T0)]).unwrap();
    let manual = Entry::new("complained by phone", "manual", T0 + 50);
    store.apply(&[Update::suppress(GLOBAL, "A@x.test", manual)]).unwrap();
    let e = store.get(GLOBAL, "a@x.test").unwrap().unwrap();
    assert_eq!((e.first, e.last, e.count), (T0, T0 + 50, 2));
    assert_eq!(
        (e.reason.as_str(), e.source.as_str(), e.code),
        ("complained by phone", "manual", None)
    );
    assert_eq!(store.len(GLOBAL).unwrap(), 1);
}

/// A campaign gives each recipient one final outcome, so a second `bounce:<campaign>` update
/// for an address is the same event replayed (a run killed after its batch reached the store
/// but before its mark was saved): it must not count twice.
fn a_replayed_bounce_of_the_same_campaign_counts_once(fresh: Fresh) {
    let store = fresh();
    store.apply(&[hard(GLOBAL, "a@x.test", T0)]).unwrap();
    store.apply(&[hard(GLOBAL, "a@x.test", T0 + 1)]).unwrap();
    let e = store.get(GLOBAL, "a@x.test").unwrap().unwrap();
    assert_eq!((e.first, e.last, e.count), (T0, T0, 1), "{e:?}");
    // Another campaign's bounce is another event.
    let other = Entry::new("550 5.1.1 user unknown", "bounce:c2", T0 + 60);
    store.apply(&[Update::suppress(GLOBAL, "a@x.test", other)]).unwrap();
    let e = store.get(GLOBAL, "a@x.test").unwrap().unwrap();
    assert_eq!(
        (e.first, e.last, e.count, e.source.as_str()),
        (T0, T0 + 60, 2, "bounce:c2")
    );
}

fn remove_clears_entry_and_soft_count(fresh: Fresh) {
    let store = fresh();
    store
        .apply(&[hard(GLOBAL, "a@x.test", T0), soft("b@x.test", T0)])
        .unwrap();
    assert!(store.soft(GLOBAL, "b@x.test").unwrap().is_some());
    store
        .apply(&[Update::remove(GLOBAL, "A@x.test"), Update::remove(GLOBAL, "b@x.test")])
        .unwrap();
    assert_eq!(store.get(GLOBAL, "a@x.test").unwrap(), None);
    assert_eq!(store.soft(GLOBAL, "b@x.test").unwrap(), None);
    assert_eq!(store.len(GLOBAL).unwrap(), 0);
    // Removing what is not there is fine.
    store.apply(&[Update::remove(GLOBAL, "nobody@x.test")]).unwrap();
}

fn soft_bounces_below_limit_are_counted(fresh: Fresh) {
    let store = fresh();
    store
        .apply(&[soft("a@x.test", T0), soft("a@x.test", T0 + DAY)])
        .unwrap();
    assert_eq!(store.get(GLOBAL, "a@x.test").unwrap(), None);
    let record = store.soft(GLOBAL, "a@x.test").unwrap().unwrap();
    assert_eq!(record.at, [T0, T0 + DAY]);
    assert_eq!((record.code, record.reason.as_str()), (Some(452), "mailbox full"));
}

fn a_delivery_forgets_soft_bounces_also_within_a_batch(fresh: Fresh) {
    let store = fresh();
    store.apply(&[soft("a@x.test", T0)]).unwrap();
    // Forgotten under another spelling; one bounced and forgotten in the same batch; one never
    // bounced (nothing to forget); one bounced after it was forgotten (counted again).
    store
        .apply(&[
            Update::forget_soft(GLOBAL, "A@X.test"),
            soft("b@x.test", T0),
            Update::forget_soft(GLOBAL, "b@x.test"),
            Update::forget_soft(GLOBAL, "c@x.test"),
            Update::forget_soft(GLOBAL, "d@x.test"),
            soft("d@x.test", T0 + DAY),
        ])
        .unwrap();
    assert_eq!(store.soft(GLOBAL, "a@x.test").unwrap(), None);
    assert_eq!(store.soft(GLOBAL, "b@x.test").unwrap(), None);
    assert_eq!(store.soft(GLOBAL, "c@x.test").unwrap(), None);
    assert_eq!(store.soft(GLOBAL, "d@x.test").unwrap().unwrap().at, [T0 + DAY]);
    // Only forgets, nothing to forget: fine.
    store.apply(&[Update::forget_soft(GLOBAL, "e@x.test")]).unwrap();
    assert_eq!(store.soft(GLOBAL, "d@x.test").unwrap().unwrap().at, [T0 + DAY]);
}

fn soft_bounces_at_limit_suppress(fresh: Fresh) {
    let store = fresh();
    // Separate calls: counting must work across batches (and, for Redis, processes).
    for at in [T0, T0 + DAY, T0 + 2 * DAY] {
        store.apply(&[soft("a@x.test", at)]).unwrap();
    }
    let e = store.get(GLOBAL, "a@x.test").unwrap().unwrap();
    assert_eq!(e.reason, "soft bounces: 3 within 7 days (last: 452 4.2.2 mailbox full)");
    assert_eq!((e.first, e.last, e.count), (T0, T0 + 2 * DAY, 3));
    assert_eq!((e.code, e.enhanced.as_deref()), (Some(452), Some("4.2.2")));
    assert_eq!(e.source, "soft-bounces");
    assert_eq!(store.soft(GLOBAL, "a@x.test").unwrap(), None);
}

fn soft_bounces_outside_window_do_not_count(fresh: Fresh) {
    let store = fresh();
    store
        .apply(&[
            soft("a@x.test", T0),
            soft("a@x.test", T0 + DAY),
            soft("a@x.test", T0 + 10 * DAY),
        ])
        .unwrap();
    assert_eq!(store.get(GLOBAL, "a@x.test").unwrap(), None);
    assert_eq!(store.soft(GLOBAL, "a@x.test").unwrap().unwrap().at, [T0 + 10 * DAY]);
}

fn soft_bounce_of_suppressed_address_is_ignored(fresh: Fresh) {
    let store = fresh();
    store.apply(&[hard(GLOBAL, "a@x.test", T0)]).unwrap();
    store.apply(&[soft("a@x.test", T0 + 1)]).unwrap();
    assert_eq!(store.soft(GLOBAL, "a@x.test").unwrap(), None);
    assert_eq!(store.get(GLOBAL, "a@x.test").unwrap().unwrap().count, 1);
}

fn export_import_round_trip(fresh: Fresh) {
    let a = fresh();
    a.apply(&[
        hard(GLOBAL, "a@x.test", T0),
        hard(GLOBAL, "b@x.test", T0 + 1),
        Update::suppress(
            "newsletter",
            "c@x.test",
            Entry::new("unsubscribed, \"via\" link", "manual", T0),
        ),
    ])
    .unwrap();
    let mut csv = Vec::new();
    let rows = export_csv(&*a, &[GLOBAL, "newsletter"], &mut csv, Path::new("out.csv")).unwrap();
    assert_eq!(rows, 3);
    let text = String::from_utf8(csv.clone()).unwrap();
    // The export's columns, extended with the times as RFC 3339 (not read back).
    assert!(
        text.starts_with("address,scope,reason,code,enhanced,category,first,last,count,source,first_at,last_at\n"),
        "{text}"
    );
    let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(T0));
    assert!(text.contains(&format!(",{at},{at}\n")), "{text}");

    let b = fresh();
    let report = import_csv_reader(
        &*b,
        csv.as_slice(),
        Path::new("out.csv"),
        &ImportOptions::new(GLOBAL, "x"),
    )
    .unwrap();
    assert_eq!((report.imported, report.invalid.len()), (3, 0));
    for scope in [GLOBAL, "newsletter"] {
        assert_eq!(dump(&*a, scope), dump(&*b, scope), "scope {scope}");
    }
}

fn dump(store: &dyn SuppressionStore, scope: &str) -> Vec<(String, Entry)> {
    let mut rows = Vec::new();
    store
        .export(scope, &mut |a, e| rows.push((a.to_owned(), e.clone())))
        .unwrap();
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    rows
}

fn import_reports_bad_rows_with_line_numbers(fresh: Fresh) {
    let store = fresh();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unsubscribes.csv");
    std::fs::write(
        &path,
        "Email,reason\n\
         ok1@x.test,\n\
         not-an-address,\n\
         Ok2@X.Test,complaint\n\
         ,\n\
         two@@x.test,\n\
         ok3@x.test,\n",
    )
    .unwrap();
    let mut options = ImportOptions::new("newsletter", "unsubscribed");
    options.batch = 2;
    options.at = T0;
    let report = import_csv(&*store, &path, &options).unwrap();
    assert_eq!(report.imported, 3);
    let lines: Vec<u64> = report.invalid.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 5, 6]);
    assert_eq!(report.invalid[0].value, "not-an-address");
    assert_eq!(report.invalid[0].reason, "missing '@'");
    let e = store.get("newsletter", "ok2@x.test").unwrap().unwrap();
    assert_eq!(
        (e.reason.as_str(), e.source.as_str(), e.first),
        ("complaint", "import:unsubscribes.csv", T0)
    );
    assert_eq!(
        store.get("newsletter", "ok1@x.test").unwrap().unwrap().reason,
        "unsubscribed"
    );
    assert_eq!(store.len("newsletter").unwrap(), 3);

    std::fs::write(&path, "name,reason\nbob,x\n").unwrap();
    let err = import_csv(&*store, &path, &options).unwrap_err();
    assert!(matches!(err, SuppressionError::BadFile { line: 1, .. }), "{err}");
    assert!(
        err.to_string()
            .contains("unsubscribes.csv:1: no `address` or `email` column"),
        "{err}"
    );
}

fn check_100k_batch(fresh: Fresh) {
    let store = fresh();
    let addresses: Vec<String> = (0..100_000).map(|i| format!("user{i}@domain{}.test", i % 97)).collect();
    let updates: Vec<Update> = addresses.iter().step_by(10).map(|a| hard(GLOBAL, a, T0)).collect();
    for chunk in updates.chunks(2_000) {
        store.apply(chunk).unwrap();
    }
    let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let hits = store.check(&[GLOBAL, "newsletter"], &refs).unwrap();
    assert_eq!(hits.len(), 100_000);
    assert_eq!(hits.iter().filter(|h| h.is_some()).count(), 10_000);
    assert!(hits[0].is_some() && hits[1].is_none() && hits[99_990].is_some());
}

/// Regression (a send's profile): every delivery forgets its address's soft bounces, and the
/// embedded store committed (and fsynced) a write transaction for each batch of those, ~1,000
/// per 300,000 messages, though almost no address had any to forget.
#[test]
fn forgetting_soft_bounces_nobody_has_writes_nothing_to_the_embedded_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&SuppressionConfig::default(), dir.path()).unwrap();
    store.apply(&[soft("kept@x.test", T0)]).unwrap();
    let file = dir.path().join("suppression.redb");
    let before = std::fs::read(&file).unwrap();
    let forgets: Vec<Update> = (0..500)
        .map(|i| Update::forget_soft(GLOBAL, format!("u{i}@x.test")))
        .collect();
    store.apply(&forgets).unwrap();
    assert!(
        std::fs::read(&file).unwrap() == before,
        "a write transaction was committed"
    );
    // One with something to forget is written.
    store.apply(&[Update::forget_soft(GLOBAL, "kept@x.test")]).unwrap();
    assert!(std::fs::read(&file).unwrap() != before);
    assert_eq!(store.soft(GLOBAL, "kept@x.test").unwrap(), None);
}

#[test]
fn embedded_store_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open_store(&SuppressionConfig::default(), dir.path()).unwrap();
    let err = open_store(&SuppressionConfig::default(), dir.path()).err().unwrap();
    assert!(matches!(err, SuppressionError::Locked { .. }));
    let text = err.to_string();
    assert!(
        text.contains("suppression.redb is in use by another volley process"),
        "{text}"
    );
    assert!(
        text.contains("configure [suppression] redis to share one list"),
        "{text}"
    );
}

#[test]
fn embedded_store_in_use_is_reached_through_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let holder = open_store(&SuppressionConfig::default(), dir.path()).unwrap();
    let client = open_shared(&SuppressionConfig::default(), dir.path()).unwrap();
    client.apply(&[hard(GLOBAL, "Late@Example.test", T0)]).unwrap();
    // The holder (a running send's checker) sees the entry at once.
    let hit = holder.get(GLOBAL, "late@example.test").unwrap().expect("suppressed");
    assert_eq!(hit.code, Some(550));
    drop(client);
    // When the holder closes the store, its socket goes and the next opener takes the file.
    drop(holder);
    assert!(!dir.path().join("suppression.sock").exists());
    let reopened = open_shared(&SuppressionConfig::default(), dir.path()).unwrap();
    assert!(!reopened.describe().contains("through"), "{}", reopened.describe());
    assert!(reopened.get(GLOBAL, "late@example.test").unwrap().is_some());
}

#[test]
fn a_holder_that_does_not_answer_is_named() {
    // The lock is held but nobody listens (an older volley without a control socket).
    let dir = tempfile::tempdir().unwrap();
    let _holder = open_store(&SuppressionConfig::default(), dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("suppression.sock")).unwrap();
    let started = std::time::Instant::now();
    let err = open_shared(&SuppressionConfig::default(), dir.path()).err().unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "retried a while first"
    );
    assert!(matches!(err, SuppressionError::HolderUnreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("in use by another volley process, which does not answer on")
            && text.contains("suppression.sock"),
        "{text}"
    );
}

#[test]
fn redis_errors_name_the_url_without_its_password() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let policy = SoftPolicy {
        limit: 3,
        window: std::time::Duration::from_secs(7 * DAY),
    };
    let store = RedisStore::open("redis://:hunter2@127.0.0.1:1/0", "volley", policy, 500).unwrap();
    let err = store.check(&[GLOBAL], &["a@x.test"]).unwrap_err();
    let text = err.to_string();
    assert!(err.is_unavailable());
    assert!(text.contains("redis://:***@127.0.0.1:1/0"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn redis_soft_bounce_counting_is_atomic_across_clients() {
    // Two stores on one server stand for two volley processes counting the same addresses.
    let server = RedisServer::start();
    let config = SuppressionConfig {
        redis: Some(server.url()),
        ..SuppressionConfig::default()
    };
    let stores = [
        open_store(&config, Path::new("/nonexistent")).unwrap(),
        open_store(&config, Path::new("/nonexistent")).unwrap(),
    ];
    std::thread::scope(|s| {
        for (n, store) in stores.iter().enumerate() {
            s.spawn(move || {
                // Client 0 records two bounces per address, client 1 one: 3 = the limit.
                for round in 0..(2 - n) {
                    for i in 0..300 {
                        let at = T0 + (round * 2 + n) as u64;
                        store.apply(&[soft(&format!("u{i}@x.test"), at)]).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(stores[0].len(GLOBAL).unwrap(), 300);
    for i in [0, 150, 299] {
        let e = stores[1].get(GLOBAL, &format!("u{i}@x.test")).unwrap().unwrap();
        assert_eq!(e.count, 3);
        assert_eq!(stores[1].soft(GLOBAL, &format!("u{i}@x.test")).unwrap(), None);
    }
}
