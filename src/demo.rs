//! `volley demo`: generates a campaign, starts the smart sink in-process on 127.0.0.1, sends
//! every message through real sockets from 127.0.0.2-127.0.0.5 and checks, from the accounting
//! log and the sink's own counts, that every recipient has exactly one final outcome.

use std::collections::HashMap;
use std::io::{BufRead, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use volley_bench::{Sink, SinkConfig};
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::{SendConfig, SourceIpConfig};

/// Arguments of `volley demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Recipients to generate.
    #[arg(long, default_value_t = 50_000)]
    recipients: u64,
    /// Fake destination domains to spread them over.
    #[arg(long, default_value_t = 200)]
    domains: u64,
    /// Source IPs to rotate over (127.0.0.2 upwards).
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// Keep the generated campaign, accounting log and summary in this directory (without it: a
    /// temporary directory that is removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

/// Runs the demo; `Ok(true)` when every recipient ended with exactly one final outcome.
pub async fn run(args: DemoArgs) -> anyhow::Result<bool> {
    if args.recipients == 0 || args.domains == 0 || args.source_ips == 0 || args.source_ips > 250 {
        bail!("--recipients and --domains must be positive and --source-ips in 1..=250");
    }
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let sink = Sink::start(SinkConfig::default())
        .await
        .context("starting the in-process sink")?;
    println!("volley demo: sink listening on {}", sink.local_addr());

    let campaign_path = write_campaign(&dir, args.recipients, args.domains)?;
    let config = SendConfig {
        state_dir: dir.join("state"),
        source_ips: (0..args.source_ips)
            .map(|i| {
                SourceIpConfig::new(
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)),
                    format!("mta{}.volley.test", 2 + i),
                )
            })
            .collect(),
        routes: [("*".to_string(), sink.local_addr().to_string())].into_iter().collect(),
        smtp: Default::default(),
        max_in_flight: 20_000,
        // Loopback answers instantly: retry deferrals after a second, give up after a minute.
        retry: volley_scheduler::config::RetryConfig {
            schedule: vec![std::time::Duration::from_secs(1).into()],
            max_age: std::time::Duration::from_secs(60),
            host_down: std::time::Duration::from_secs(5),
        },
        ..SendConfig::new(Default::default(), Vec::new())
    };
    let campaign = Campaign::load(&campaign_path).context("loading the generated campaign")?;
    println!(
        "volley demo: sending {} messages over {} domains from {} source IPs",
        args.recipients, args.domains, args.source_ips
    );
    let summary = volley_scheduler::send::run(&campaign, &config)
        .await
        .context("running the demo campaign")?;
    crate::report::print(&summary, 10);
    if args.dir.is_some() {
        let caps = crate::report::warmup_caps(&config, std::path::Path::new("(demo configuration)"));
        crate::report::write_html(&summary, caps.as_ref());
    }
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let stats = sink.stats();
    println!(
        "  sink: connections {}  TLS {}  messages {}  recipients {}",
        stats.connections, stats.tls_handshakes, stats.messages, stats.recipients
    );
    let ok = verify(
        &summary.accounting_log,
        args.recipients,
        args.domains,
        summary.delivered,
        &sink,
    )?;
    sink.shutdown().await;
    if ok {
        println!("volley demo: OK — every recipient has exactly one final outcome");
    }
    Ok(ok)
}

/// The generated recipient `i`.
fn address(i: u64, domains: u64) -> String {
    format!("user{i}@d{}.demo.test", i % domains)
}

fn write_campaign(dir: &Path, recipients: u64, domains: u64) -> anyhow::Result<PathBuf> {
    let csv = dir.join("recipients.csv");
    let mut out = BufWriter::new(std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?);
    writeln!(out, "email,first_name")?;
    for i in 0..recipients {
        writeln!(out, "{},Reader{i}", address(i, domains))?;
    }
    out.flush()?;
    let campaign = dir.join("campaign.toml");
    std::fs::write(
        &campaign,
        r#"id = "demo"
from = "Volley Demo <news@sender.volley.test>"
envelope_from = "bounces@sender.volley.test"
subject = "Hello {{first_name}}, your loopback newsletter"
recipients = "recipients.csv"
text = """
Hi {{first_name}},

This message was sent by `volley demo` over real sockets on the loopback interface.
It never left this machine.

-- The Volley team
"""
"#,
    )
    .with_context(|| format!("writing {}", campaign.display()))?;
    Ok(campaign)
}

/// Checks the accounting log: each generated recipient exactly once, and the delivered count
/// equal to what the sink accepted.
fn verify(
    log: &Path,
    recipients: u64,
    domains: u64,
    delivered: u64,
    sink: &volley_bench::SinkHandle,
) -> anyhow::Result<bool> {
    let file = std::fs::File::open(log).with_context(|| format!("opening {}", log.display()))?;
    let mut seen: HashMap<String, u32> = HashMap::with_capacity(recipients as usize);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", log.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{} line {}: not JSON", log.display(), n + 1))?;
        let rcpt = value["recipient"].as_str().unwrap_or_default().to_string();
        *seen.entry(rcpt).or_default() += 1;
    }
    let missing = (0..recipients)
        .filter(|&i| !seen.contains_key(&address(i, domains)))
        .count();
    let repeated = seen.values().filter(|&&c| c != 1).count();
    let mut ok = true;
    if missing > 0 || repeated > 0 || seen.len() as u64 != recipients {
        println!(
            "volley demo: FAILED — {missing} recipients without an outcome, {repeated} with more than one, {} in the log ({recipients} expected)",
            seen.len()
        );
        ok = false;
    }
    let accepted: u64 = sink.address_counts().values().sum();
    if accepted != delivered {
        println!("volley demo: FAILED — sink accepted {accepted} messages, accounting log says {delivered} delivered");
        ok = false;
    }
    Ok(ok)
}
