//! Command-line arguments of `volley sink`, turned into a [`SinkConfig`] in a second stage.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::canned::CannedReply;
use super::config::{is_percentage, SinkConfig, DEFAULT_FEEDBACK_ATTEMPTS, DEFAULT_HOSTNAME, DEFAULT_MAX_MESSAGE_SIZE};
use super::error::SinkError;
use super::stats::SinkStats;
use super::Sink;

/// Flags of the `volley sink` subcommand.
#[derive(Clone, Debug, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on, e.g. 127.0.0.1:2525.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Name used in the banner, the EHLO reply and the self-signed certificate.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HOSTNAME)]
    pub hostname: String,
    /// Do not offer STARTTLS.
    #[arg(long)]
    pub no_starttls: bool,
    /// Do not advertise PIPELINING.
    #[arg(long)]
    pub no_pipelining: bool,
    /// Advertise CHUNKING (RFC 3030) and accept BDAT.
    #[arg(long)]
    pub chunking: bool,
    /// Answer EHLO with 502 so that clients must fall back to HELO.
    #[arg(long)]
    pub refuse_ehlo: bool,
    /// Advertised SIZE limit in bytes; larger messages get 552 5.3.4.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,
    /// Percentage of RCPT commands answered 451 4.3.0.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true)]
    pub tempfail: f64,
    /// Percentage of RCPT commands answered 550 5.1.1.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true)]
    pub permfail: f64,
    /// Delay added once per reply batch: milliseconds ("20") or a duration ("20ms", "1s").
    #[arg(long, value_name = "DURATION", value_parser = parse_millis)]
    pub latency: Option<Duration>,
    /// Percentage of transactions whose connection is dropped without a reply.
    #[arg(
        long = "drop",
        value_name = "PCT",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub drop_pct: f64,
    /// Percentage of recipients greylisted: 451 4.7.1 on their first RCPT from a client /24,
    /// accepted on any later attempt.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true)]
    pub greylist: f64,
    /// Percentage of accepted recipients that complain: after the 250, an ARF report
    /// (Feedback-Type: abuse) goes to the message's MAIL FROM at --feedback-to. Chosen by a
    /// hash of the address, like --greylist.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true)]
    pub complain: f64,
    /// Percentage of accepted recipients that bounce after the 250: a DSN (failed, 5.1.1)
    /// goes to the message's MAIL FROM at --feedback-to. Never the complaining ones.
    #[arg(long, value_name = "PCT", default_value_t = 0.0, allow_negative_numbers = true)]
    pub bounce_later: f64,
    /// Where complaints and late bounces are delivered over SMTP (a loopback address: the
    /// inbound listener), e.g. 127.0.0.1:2526.
    #[arg(long, value_name = "HOST:PORT")]
    pub feedback_to: Option<SocketAddr>,
    /// Connections served at once; more get 421 4.7.0 and are closed.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Connections served at once per client address (like Postfix's
    /// smtpd_client_connection_count_limit); more from that address get 421 4.7.0.
    #[arg(long, value_name = "N")]
    pub max_connections_per_client: Option<usize>,
    /// How long a closed connection still counts against --max-connections-per-client (a
    /// receiver that learns of disconnects late): milliseconds ("200") or a duration ("200ms").
    #[arg(long, value_name = "DURATION", value_parser = parse_millis)]
    pub client_close_lag: Option<Duration>,
    /// TOML file of canned replies: reply tables with domain, stage, text, percent.
    #[arg(long, value_name = "FILE")]
    pub canned: Option<PathBuf>,
    /// Spoil replies: STAGE:KIND[:ARG][@PCT][#COUNT], repeatable. Stages: greeting, ehlo,
    /// mail, rcpt, data, data-end, any. Kinds: delay:DURATION, close, garbage,
    /// long-line[:BYTES], long-reply[:LINES], truncated, stop-reading. E.g. `rcpt:close@5`,
    /// `data-end:delay:10s#1`.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
    /// Spoil STARTTLS handshakes: KIND[:ARG][@PCT][#COUNT], repeatable. Kinds: garbage,
    /// close, stall:DURATION, wrong-name.
    #[arg(long = "tls-fault", value_name = "SPEC")]
    pub tls_faults: Vec<String>,
    /// Print a JSON stats line to stdout this often: seconds ("5") or a duration ("500ms").
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub stats_every: Option<Duration>,
}

impl SinkArgs {
    /// Resolves the flags into a configuration: checks percentages and loads the canned-reply
    /// file. Errors name the flag and the value.
    pub fn into_config(self) -> Result<SinkConfig, SinkError> {
        for (flag, pct) in [
            ("--tempfail", self.tempfail),
            ("--permfail", self.permfail),
            ("--drop", self.drop_pct),
            ("--greylist", self.greylist),
            ("--complain", self.complain),
            ("--bounce-later", self.bounce_later),
        ] {
            if !is_percentage(pct) {
                return Err(SinkError::InvalidArgument {
                    flag,
                    value: pct.to_string(),
                    reason: "must be a percentage between 0 and 100",
                });
            }
        }
        if self.max_connections == Some(0) {
            return Err(SinkError::InvalidArgument {
                flag: "--max-connections",
                value: "0".to_owned(),
                reason: "must be at least 1",
            });
        }
        let canned = match &self.canned {
            Some(path) => CannedReply::load_file(path)?,
            None => Vec::new(),
        };
        let faults = self
            .faults
            .iter()
            .map(|spec| spec.parse().map_err(|reason| bad_fault("--fault", spec, reason)))
            .collect::<Result<_, _>>()?;
        let tls_faults = self
            .tls_faults
            .iter()
            .map(|spec| spec.parse().map_err(|reason| bad_fault("--tls-fault", spec, reason)))
            .collect::<Result<_, _>>()?;
        let config = SinkConfig {
            listen: self.listen,
            hostname: self.hostname,
            starttls: !self.no_starttls,
            pipelining: !self.no_pipelining,
            chunking: self.chunking,
            refuse_ehlo: self.refuse_ehlo,
            max_message_size: self.max_message_size,
            tempfail_pct: self.tempfail,
            permfail_pct: self.permfail,
            latency: self.latency.unwrap_or(Duration::ZERO),
            drop_pct: self.drop_pct,
            greylist_pct: self.greylist,
            complain_pct: self.complain,
            bounce_later_pct: self.bounce_later,
            feedback_to: self.feedback_to,
            feedback_attempts: DEFAULT_FEEDBACK_ATTEMPTS,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            client_close_lag: self.client_close_lag.unwrap_or(Duration::ZERO),
            canned,
            count_addresses: true,
            faults,
            tls_faults,
        };
        config.validate()?;
        Ok(config)
    }

    /// Runs `volley sink`: starts the sink, reports `listening on <addr>` on stderr, prints a
    /// JSON [`SinkStats`] line to stdout every `--stats-every`, and on `shutdown` stops the
    /// sink, prints a last line and returns the final stats.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<SinkStats, SinkError> {
        let every = self.stats_every;
        let handle = Sink::start(self.into_config()?).await?;
        eprintln!("volley sink listening on {}", handle.local_addr());
        tokio::pin!(shutdown);
        if let Some(every) = every {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = ticker.tick() => print_stats(&handle.stats()),
                }
            }
        } else {
            shutdown.await;
        }
        let stats = handle.stats();
        handle.shutdown().await;
        if every.is_some() {
            print_stats(&stats);
        }
        Ok(stats)
    }
}

fn bad_fault(flag: &'static str, spec: &str, reason: String) -> SinkError {
    SinkError::InvalidFault {
        flag,
        value: spec.to_owned(),
        reason,
    }
}

fn print_stats(stats: &SinkStats) {
    if let Ok(line) = serde_json::to_string(stats) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    }
}

/// A bare number in `unit`, or a humantime duration ("20ms", "1s").
fn parse_duration(value: &str, unit: fn(u64) -> Duration) -> Result<Duration, String> {
    let value = value.trim();
    if let Ok(n) = value.parse::<u64>() {
        return Ok(unit(n));
    }
    humantime::parse_duration(value).map_err(|e| format!("expected a number or a duration like \"20ms\": {e}"))
}

fn parse_millis(value: &str) -> Result<Duration, String> {
    parse_duration(value, Duration::from_millis)
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    let every = parse_duration(value, Duration::from_secs)?;
    if every.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(every)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sink: SinkArgs,
    }

    fn parse(args: &[&str]) -> Result<SinkArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("sink").chain(args.iter().copied())).map(|c| c.sink)
    }

    #[test]
    fn flags_map_onto_the_config() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:2525",
            "--no-starttls",
            "--tempfail",
            "5",
            "--drop",
            "0.5",
            "--latency",
            "20",
            "--max-connections",
            "3",
            "--max-connections-per-client",
            "2",
            "--client-close-lag",
            "200ms",
            "--stats-every",
            "500ms",
        ])
        .expect("valid flags");
        assert_eq!(args.stats_every, Some(Duration::from_millis(500)));
        let config = args.into_config().expect("valid config");
        assert!(!config.starttls && config.pipelining);
        assert_eq!(config.tempfail_pct, 5.0);
        assert_eq!(config.drop_pct, 0.5);
        assert_eq!(config.latency, Duration::from_millis(20));
        assert_eq!(config.max_connections, Some(3));
        assert_eq!(config.max_connections_per_client, Some(2));
        assert_eq!(config.client_close_lag, Duration::from_millis(200));
        assert_eq!(config.hostname, DEFAULT_HOSTNAME);
    }

    #[test]
    fn humantime_latency_is_accepted() {
        let args = parse(&["--listen", "127.0.0.1:0", "--latency", "1s"]).expect("valid");
        assert_eq!(args.latency, Some(Duration::from_secs(1)));
        assert!(parse(&["--listen", "127.0.0.1:0", "--latency", "soon"]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:0", "--stats-every", "0"]).is_err());
    }

    #[test]
    fn fault_flags_map_onto_the_config() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--fault",
            "rcpt:close@5",
            "--fault",
            "data-end:delay:2s#1",
            "--tls-fault",
            "wrong-name",
        ])
        .expect("valid flags");
        let config = args.into_config().expect("valid config");
        assert_eq!(config.faults.len(), 2);
        assert_eq!(config.faults[1].kind, crate::FaultKind::Delay(Duration::from_secs(2)));
        assert_eq!(config.tls_faults[0].kind, crate::TlsFaultKind::WrongName);
        let args = parse(&["--listen", "127.0.0.1:0", "--fault", "rcpt:explode"]).expect("parses");
        let err = args.into_config().expect_err("bad kind").to_string();
        assert!(
            err.starts_with("invalid value 'rcpt:explode' for --fault: unknown kind"),
            "{err}"
        );
        let args = parse(&["--listen", "127.0.0.1:0", "--tls-fault", "stall"]).expect("parses");
        let err = args.into_config().expect_err("no duration").to_string();
        assert!(err.contains("for --tls-fault: `stall` needs a duration"), "{err}");
    }

    #[test]
    fn feedback_flags_map_onto_the_config() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--complain",
            "2",
            "--bounce-later",
            "0.5",
            "--feedback-to",
            "127.0.0.1:2526",
        ])
        .expect("valid flags");
        let config = args.into_config().expect("valid config");
        assert_eq!((config.complain_pct, config.bounce_later_pct), (2.0, 0.5));
        assert_eq!(config.feedback_to, Some("127.0.0.1:2526".parse().expect("addr")));
        assert_eq!(config.feedback_attempts, DEFAULT_FEEDBACK_ATTEMPTS);
        let args = parse(&["--listen", "127.0.0.1:0", "--complain", "2"]).expect("parses");
        let err = args.into_config().expect_err("nowhere to send").to_string();
        assert!(err.contains("feedback_to"), "{err}");
        let args = parse(&["--listen", "127.0.0.1:0", "--bounce-later", "101"]).expect("parses");
        let err = args.into_config().expect_err("101 %").to_string();
        assert!(err.contains("'101' for --bounce-later"), "{err}");
    }

    #[test]
    fn bad_percentage_names_flag_and_value() {
        let args = parse(&["--listen", "127.0.0.1:0", "--drop", "-1"]).expect("parses");
        let err = args.into_config().expect_err("-1% is rejected").to_string();
        assert!(err.contains("'-1' for --drop"), "{err}");
        let args = parse(&["--listen", "127.0.0.1:0", "--permfail", "150"]).expect("parses");
        let err = args.into_config().expect_err("150% is rejected").to_string();
        assert_eq!(
            err,
            "invalid value '150' for --permfail: must be a percentage between 0 and 100"
        );
    }
}
