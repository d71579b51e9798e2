//! The signing pool: many messages through a small pool, results forwarded into a tokio channel
//! the way the scheduler will, back-pressure and draining on close.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use volley_engine::dkim::{DkimError, SignPool};

use super::{ed25519_key, message, rsa_key, signers, Dns};

const DOMAIN: &str = "news.volley.test";
const MESSAGES: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_thousand_messages_through_two_threads_come_back_signed() {
    let dir = tempfile::tempdir().unwrap();
    let signers = Arc::new(signers(
        dir.path(),
        &[
            ("domain = \"news.volley.test\"\nselector = \"rsa1\"", rsa_key()),
            ("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key()),
        ],
    ));
    let dns = Dns::publish(signers.public_keys()).await;

    // `done` runs on a signing thread and forwards into tokio, as the scheduler's will.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<Vec<u8>, DkimError>)>();
    let pool = SignPool::start(Arc::clone(&signers), 2, 64, move |id, result| {
        let _ = tx.send((id, result));
    })
    .unwrap();
    assert_eq!(pool.threads(), 2);

    // The producer is a plain thread: submit blocks while the queue is full.
    let producer = std::thread::spawn(move || {
        for id in 0..MESSAGES {
            // Every tenth message is from a domain without a key and passes through unsigned.
            let domain = if id % 10 == 9 { "other.test" } else { DOMAIN };
            let body = format!("Message {id}.\r\n");
            pool.submit(id, Arc::from(domain), message(domain, "", &body)).unwrap();
        }
        pool.close().unwrap();
    });

    let mut seen = vec![false; MESSAGES];
    let mut received = 0;
    while let Some((id, result)) = rx.recv().await {
        let signed = result.unwrap();
        assert!(!seen[id], "message {id} came back twice");
        seen[id] = true;
        received += 1;
        let body = format!("Message {id}.\r\n");
        assert!(signed.ends_with(body.as_bytes()), "message {id} keeps its bytes");
        if id % 10 == 9 {
            assert!(signed.starts_with(b"From: "), "message {id} passes unsigned");
        } else {
            assert!(signed.starts_with(b"DKIM-Signature: "), "message {id} is signed");
            if id % 50 == 0 {
                dns.assert_passes(&signed, 2).await;
            }
        }
    }
    // The channel closes when the pool's workers (holding `done`) are gone: close() joined them.
    producer.join().unwrap();
    assert_eq!(received, MESSAGES);
    dns.server.shutdown().await;
}

#[test]
fn close_drains_the_queue_and_submit_blocks_when_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let signers = Arc::new(signers(
        dir.path(),
        &[("domain = \"news.volley.test\"\nselector = \"ed1\"", ed25519_key())],
    ));
    let done = Arc::new(AtomicUsize::new(0));
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let counter = Arc::clone(&done);
    // One worker that waits for the gate before finishing each message.
    let pool = SignPool::start(signers, 1, 4, move |_id: usize, result| {
        assert!(result.is_ok());
        let _ = gate_rx.recv_timeout(Duration::from_secs(5));
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    for id in 0..5 {
        // The worker holds one, the queue takes four.
        pool.submit(id, Arc::from(DOMAIN), message(DOMAIN, "", "x\r\n"))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool.queued(), 4);
    let blocked = std::thread::spawn(move || {
        pool.submit(5, Arc::from(DOMAIN), message(DOMAIN, "", "x\r\n")).unwrap();
        pool
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!blocked.is_finished(), "submit waits while the queue is full");
    gate_tx.send(()).unwrap();
    let pool = blocked.join().unwrap();
    // Let the rest through, then close: every queued message is signed before close returns.
    let opener = std::thread::spawn(move || while gate_tx.send(()).is_ok() {});
    pool.close().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 6);
    opener.join().unwrap();
}
