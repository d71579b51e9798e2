//! Building one personalised message per recipient, as the producer's reading threads do:
//!
//! - `message_build/factory_build`: [`MessageFactory::build`] for one recipient row of the
//!   `benches/peers` campaign (`Hello {{first_name}}` subject, ~4 KB text body from
//!   `benches/peers/body.txt`): template render of subject and body, header-injection and NUL
//!   checks, and the mail-builder serialisation (headers, Message-ID, Date, 7bit/QP body).
//! - `message_build/factory_build_then_prepare`: the same followed by `smtp::dot::prepare`, i.e.
//!   everything an unsigned job costs before it reaches the engine (`send::job::Built::finish`).
//!
//! Why it matters: this runs once per recipient on the reading threads; together with DKIM
//! signing (`dkim_sign`) it is the CPU cost per message that the SMTP side does not control.
//!
//! `cargo bench -p volley-bench --bench message_build`

use std::path::Path;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use volley_engine::smtp::dot::prepare;
use volley_scheduler::address::EmailAddress;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::message::MessageFactory;
use volley_scheduler::recipients::RecipientRow;

fn factory() -> MessageFactory {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/campaign.toml");
    let campaign = Campaign::load(&path).expect("load benches/peers/campaign.toml");
    let columns = vec!["email".to_string(), "first_name".to_string()];
    MessageFactory::new(&campaign.compile(&columns).expect("compile the campaign"))
}

fn row(n: u64) -> RecipientRow {
    let email = format!("reader{n}@d{}.example.net", n % 1_000);
    RecipientRow {
        line: n + 2,
        offset: n * 40,
        email: EmailAddress::parse(&email).expect("address"),
        values: vec![email, format!("Reader{n}")],
    }
}

fn build(c: &mut Criterion) {
    let factory = factory();
    let rows: Vec<RecipientRow> = (0..1_000).map(row).collect();
    let sample = factory.build(1, &rows[7]).expect("build");
    let text = String::from_utf8_lossy(&sample.bytes);
    assert!(text.contains("Subject: Hello Reader7\r\n"), "{text}");
    assert!(text.contains("To: <reader7@d7.example.net>\r\n"), "{text}");
    assert!(sample.bytes.len() > 4_000, "{} bytes", sample.bytes.len());

    let mut group = c.benchmark_group("message_build");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0u64;
    group.bench_function("factory_build", |b| {
        b.iter(|| {
            seq += 1;
            let row = &rows[(seq % 1_000) as usize];
            factory.build(seq, black_box(row)).expect("build")
        })
    });
    group.bench_function("factory_build_then_prepare", |b| {
        b.iter(|| {
            seq += 1;
            let row = &rows[(seq % 1_000) as usize];
            let built = factory.build(seq, black_box(row)).expect("build");
            prepare(&built.bytes).expect("prepare")
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = build
}
criterion_main!(benches);
