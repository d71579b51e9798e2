//! `volley check-config`: every check Volley makes before it sends, each reported on its own
//! line with the field path it concerns, so one run lists every problem — not only the first.
//! Nothing is sent; the only sockets opened are test binds of the source IPs and connections
//! to the configured Redis.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use clap::Args;
use volley_scheduler::campaign::Campaign;
use volley_scheduler::config::SendConfig;
use volley_scheduler::recipients::RecipientReader;

/// `volley check-config` arguments.
#[derive(Args)]
pub struct CheckArgs {
    /// The operator configuration.
    #[arg(long, default_value = "volley.toml")]
    pub config: PathBuf,
    /// Campaigns to check against it (file, recipients header, templates, pool).
    pub campaigns: Vec<PathBuf>,
    /// Also check the sender's DNS, as `volley check-dns` does (SPF, DKIM, DMARC, PTR).
    #[arg(long)]
    pub dns: bool,
    /// Show which `[[destination]]` blocks apply to this recipient domain or MX host name
    /// (repeatable), and each effective setting with where it comes from. No DNS lookup: the
    /// name is matched as a domain and as an MX host. Only the file's own values are checked.
    #[arg(long, value_name = "DOMAIN|MX_HOST")]
    pub destination: Vec<String>,
}

/// One check's verdict: what was checked (a field path), and `Ok(detail)` or `Err(problem)`.
struct Verdict {
    what: String,
    result: Result<String, String>,
}

fn verdict(what: impl Into<String>, result: Result<String, String>) -> Verdict {
    Verdict {
        what: what.into(),
        result,
    }
}

/// Runs every check, prints one line each, and returns whether all passed.
pub fn run(args: &CheckArgs) -> anyhow::Result<bool> {
    if !args.destination.is_empty() {
        return Ok(crate::check_destination::run(&args.config, &args.destination));
    }
    let verdicts = check(&args.config, &args.campaigns);
    let mut problems = 0;
    for v in &verdicts {
        match &v.result {
            Ok(detail) => println!("ok     {}: {detail}", v.what),
            Err(problem) => {
                problems += 1;
                println!("ERROR  {}: {problem}", v.what);
            }
        }
    }
    if args.dns {
        problems += crate::check_dns::section(&args.config, &args.campaigns);
    }
    if problems == 0 {
        println!(
            "{}: every check passed ({} checks)",
            args.config.display(),
            verdicts.len()
        );
    } else {
        println!(
            "{}: {problems} problem(s) in {} checks",
            args.config.display(),
            verdicts.len()
        );
    }
    Ok(problems == 0)
}

fn check(config_path: &Path, campaigns: &[PathBuf]) -> Vec<Verdict> {
    let (config, problems) = match SendConfig::load_collecting(config_path) {
        Ok(loaded) => loaded,
        // Without a readable TOML file there is nothing further to check.
        Err(e) => return vec![verdict("config", Err(e.to_string()))],
    };
    // Every bad value of the file, each under its field path.
    let mut out: Vec<Verdict> = problems
        .iter()
        .map(|p| verdict(p.field.clone(), Err(format!("{}, {p}", config_path.display()))))
        .collect();
    let Some(config) = config else {
        // A required field is missing or unreadable: the rest cannot be checked.
        out.push(verdict(
            "config",
            Err(format!(
                "{}: the other checks need a complete file",
                config_path.display()
            )),
        ));
        return out;
    };
    out.push(verdict(
        "config",
        Ok(format!(
            "{} read: {} source IP(s), {} route(s)",
            config_path.display(),
            config.source_ips.len(),
            config.routes.len()
        )),
    ));
    out.push(verdict("state_dir", state_dir_writable(&config.state_dir)));
    for (i, ip) in config.source_ips.iter().enumerate() {
        out.push(verdict(format!("source_ips[{i}].address"), bindable(ip.address)));
    }
    out.push(verdict(
        "warmup",
        config
            .warmup_policy(config_path)
            .map(|p| {
                let warming = p
                    .states
                    .iter()
                    .filter(|(_, s)| matches!(s, volley_warmup::WarmupState::Warming { .. }))
                    .count();
                format!(
                    "{} curve(s), {} backoff rule(s), {warming} warming IP(s)",
                    p.curves.iter().count(),
                    p.rules.rules.len()
                )
            })
            .map_err(|e| e.to_string()),
    ));
    for (i, key) in config.dkim.iter().enumerate() {
        let result = config
            .check_dkim(config_path, std::slice::from_ref(key))
            .map(|warnings| {
                let mut detail = format!(
                    "{} key for {} (s={}) signs and verifies",
                    key.key.display(),
                    key.domain,
                    key.selector
                );
                for w in warnings {
                    detail.push_str(&format!("; warning: {w}"));
                }
                detail
            })
            .map_err(|e| e.to_string());
        out.push(verdict(format!("dkim[{i}]"), result));
    }
    out.push(verdict(
        "bounces.rules",
        config
            .check_bounces(config_path)
            .map(|()| "bounce classification rules load".into())
            .map_err(|e| e.to_string()),
    ));
    if let Some(feedback) = &config.feedback {
        let result = config
            .check_feedback(config_path)
            .map(|keys| {
                let ids = keys.map(|k| k.signing_id()).unwrap_or_default();
                format!(
                    "token keys load (signing key id {ids}); return paths bounces+<token>@{}{}",
                    feedback.bounce_domain,
                    if feedback.verp { "" } else { " (verp off by default)" }
                )
            })
            .map_err(|e| e.to_string());
        out.push(verdict(
            if feedback.key_env.is_some() {
                "feedback.key_env"
            } else {
                "feedback.key_file"
            },
            result,
        ));
    }
    if let Some(ca_file) = &config.smtp.ca_file {
        let result = config
            .check_tls(config_path)
            .map(|()| format!("{} holds trust anchors", ca_file.display()))
            .map_err(|e| e.to_string());
        out.push(verdict("smtp.ca_file", result));
    }
    if let Some(ca_file) = &config.mta_sts.ca_file {
        let result = config
            .check_mta_sts_ca(config_path)
            .map(|()| format!("{} holds trust anchors", ca_file.display()))
            .map_err(|e| e.to_string());
        out.push(verdict("mta_sts.ca_file", result));
    }
    if let Some(submission) = &config.submission {
        let users = volley_scheduler::submission::users_path(&config);
        let result = volley_scheduler::submission::check(submission, &users).map_err(|e| e.to_string());
        out.push(verdict("submission", result));
    }
    out.push(verdict("suppression", suppression_reachable(&config)));
    if config.warmup.counters == volley_warmup::CounterBackend::Redis {
        out.push(verdict("warmup.redis", counters_reachable(&config)));
    }
    for (i, path) in campaigns.iter().enumerate() {
        out.push(verdict(
            format!("campaign[{i}] {}", path.display()),
            campaign(&config, path),
        ));
    }
    out
}

/// The state directory is writable, or would be created in a writable folder (a check
/// creates nothing).
fn state_dir_writable(dir: &Path) -> Result<String, String> {
    let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(Path::new("."));
    let probe = tempfile::tempfile_in(existing);
    match probe {
        Ok(_) if existing == dir => Ok(format!("{} is writable", dir.display())),
        Ok(_) => Ok(format!("{} will be created in {}", dir.display(), existing.display())),
        Err(e) => Err(format!(
            "{}: {} is not writable: {e}",
            dir.display(),
            existing.display()
        )),
    }
}

fn bindable(ip: std::net::IpAddr) -> Result<String, String> {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .map(|_| format!("{ip} can be bound"))
        .map_err(|e| format!("{ip} cannot be bound on this host: {e}"))
}

fn suppression_reachable(config: &SendConfig) -> Result<String, String> {
    let embedded = config.state_dir.join(volley_scheduler::suppression::EMBEDDED_FILE);
    if config.suppression.redis.is_none() && !embedded.exists() {
        return Ok(format!("embedded store {} will be created", embedded.display()));
    }
    let store =
        volley_scheduler::suppression::open_store(&config.suppression, &config.state_dir).map_err(|e| e.to_string())?;
    let n = store
        .len(volley_scheduler::suppression::GLOBAL)
        .map_err(|e| e.to_string())?;
    Ok(format!("{} answers ({n} globally suppressed)", store.describe()))
}

fn counters_reachable(config: &SendConfig) -> Result<String, String> {
    let mut store =
        volley_scheduler::warmup_counters::open(&config.warmup, config.suppression.redis.as_deref(), &config.state_dir)
            .map_err(|e| e.to_string())?;
    let Some(ip) = config.source_ips.first() else {
        return Ok("no source IP to read counters of".into());
    };
    let window = volley_warmup::Window::of(SystemTime::now());
    store
        .load(ip.address, volley_warmup::provider::OTHER, window)
        .map(|_| "warm-up counters in Redis answer".to_string())
        .map_err(|e| e.to_string())
}

fn campaign(config: &SendConfig, path: &Path) -> Result<String, String> {
    let campaign = Campaign::load_with(path, &config.template_dirs).map_err(|e| e.to_string())?;
    let pool = config.pool(campaign.pool())?;
    let reader = RecipientReader::open(campaign.recipients(), campaign.email_column()).map_err(|e| e.to_string())?;
    campaign.compile(reader.columns()).map_err(|e| e.to_string())?;
    let from_domain = campaign.from().address.domain();
    let signed = config.dkim.iter().any(|k| k.domain.eq_ignore_ascii_case(from_domain));
    Ok(format!(
        "id {}: {} column(s) in {}, templates compile, pool {:?} has {} IP(s){}",
        campaign.id(),
        reader.columns().len(),
        campaign.recipients().display(),
        campaign.pool(),
        pool.len(),
        if signed {
            ", DKIM-signed"
        } else {
            "; warning: no [[dkim]] key for the From domain, mail goes out unsigned"
        }
    ))
}
