//! Sending finished TLS reports (RFC 8460 §5): once a UTC day is over, each
//! `<state_dir>/tls-rpt/<day>/<domain>.json` that has a `<domain>.rua` goes, gzip-compressed,
//! to every `rua` URI: `https:` by POST (§5.4), `mailto:` as a `multipart/report` message over
//! SMTP to the address's MX (§5.3). What happened to each URI is kept in `<domain>.sent`
//! (rewritten atomically) so that a restart sends nothing twice; a failed URI is tried again
//! every [`RETRY_PAUSE`] and given up [`GIVE_UP_AFTER`] after its first failure.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use volley_engine::mta_sts::MtaSts;

use super::mail::{self, MailRoute};
use super::{day_of, Report};

/// Pause before a failed URI is tried again.
pub const RETRY_PAUSE: Duration = Duration::from_secs(30 * 60);
/// A URI still failing this long after its first failure is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(2 * 86_400);
/// A day's reports go out this long after its end: the last counts of the day are flushed
/// (every minute) before.
pub const SETTLE: Duration = Duration::from_secs(5 * 60);
/// The media type of a compressed report (RFC 8460 §5.4, §6.4).
pub const MEDIA_TYPE: &str = "application/tlsrpt+gzip";

/// What became of one `rua` URI, as kept in `<domain>.sent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriState {
    /// Delivered (2xx, or accepted by the MX).
    Sent,
    /// Failed since `first` (unix seconds); next try at `next`.
    Failing {
        /// First failure.
        first: u64,
        /// Not tried again before this.
        next: u64,
    },
    /// Failed for longer than [`GIVE_UP_AFTER`]; not tried again.
    Abandoned,
}

/// The `<domain>.sent` file: URI -> state, one `sent <uri>`, `failing <first> <next> <uri>` or
/// `abandoned <uri>` line each. Lines that do not parse are skipped (their URI is tried again).
pub fn parse_marker(text: &str) -> BTreeMap<String, UriState> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        let state = match words.next() {
            Some("sent") => Some(UriState::Sent),
            Some("abandoned") => Some(UriState::Abandoned),
            Some("failing") => match (words.next().map(str::parse), words.next().map(str::parse)) {
                (Some(Ok(first)), Some(Ok(next))) => Some(UriState::Failing { first, next }),
                _ => None,
            },
            _ => None,
        };
        if let (Some(state), Some(uri)) = (state, words.next().filter(|u| !u.is_empty())) {
            states.insert(uri.to_string(), state);
        }
    }
    states
}

/// The text of a `<domain>.sent` file.
pub fn format_marker(states: &BTreeMap<String, UriState>) -> String {
    states
        .iter()
        .map(|(uri, state)| match state {
            UriState::Sent => format!("sent {uri}\n"),
            UriState::Abandoned => format!("abandoned {uri}\n"),
            UriState::Failing { first, next } => format!("failing {first} {next} {uri}\n"),
        })
        .collect()
}

/// Written in a day's directory once every report of the day is sent or given up: later passes
/// skip the day.
pub const DAY_DONE: &str = "done";

/// The day directories (`YYYY-MM-DD`) under `tls_dir` whose reports are due at `now`: the
/// day ended at least [`SETTLE`] ago, and its reports are not all done ([`DAY_DONE`]). Oldest
/// first.
pub fn due_days(tls_dir: &Path, now: SystemTime) -> std::io::Result<Vec<String>> {
    let settled = day_of(now.checked_sub(SETTLE).unwrap_or(SystemTime::UNIX_EPOCH));
    let entries = match std::fs::read_dir(tls_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut days = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if is_day(&name) && name < settled && !tls_dir.join(&name).join(DAY_DONE).exists() {
            days.push(name);
        }
    }
    days.sort();
    Ok(days)
}

fn is_day(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Where reports go: `https:` through the MTA-STS client, `mailto:` through `mail` (none:
/// `mailto:` URIs fail, and are retried, with the reason logged).
#[derive(Clone)]
pub struct Outbox {
    /// Posts to `https:` URIs (certificates verified like policy hosts').
    pub mta_sts: Arc<MtaSts>,
    /// Mails to `mailto:` URIs.
    pub mail: Option<Arc<MailRoute>>,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// URIs a report was delivered to.
    pub sent: usize,
    /// URIs that failed (tried again later).
    pub failed: usize,
    /// URIs given up.
    pub abandoned: usize,
}

impl Outbox {
    /// Delivers the due reports under `<state_dir>/tls-rpt` to the URIs not yet done.
    pub async fn pass(&self, state_dir: &Path, now: SystemTime) -> std::io::Result<Pass> {
        let tls_dir = state_dir.join("tls-rpt");
        let mut pass = Pass::default();
        for day in due_days(&tls_dir, now)? {
            let dir = tls_dir.join(&day);
            let mut domains: Vec<String> = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rua").map(str::to_string))
                .collect();
            domains.sort();
            let mut done = true;
            for domain in domains {
                // One domain's unreadable files do not hold up the others.
                match self.domain(&dir, &domain, now, &mut pass).await {
                    Ok(finished) => done &= finished,
                    Err(e) => {
                        tracing::warn!(%day, %domain, error = %e, "TLS report not sent");
                        done = false;
                    }
                }
            }
            if done {
                volley_files::write_atomic(&dir.join(DAY_DONE), &[])?;
            }
        }
        Ok(pass)
    }

    /// Sends `domain`'s report to its URIs that are due; whether every URI is now done with
    /// (sent or given up).
    async fn domain(&self, dir: &Path, domain: &str, now: SystemTime, pass: &mut Pass) -> std::io::Result<bool> {
        let rua = std::fs::read_to_string(dir.join(format!("{domain}.rua")))?;
        let marker_path = dir.join(format!("{domain}.sent"));
        let mut states = match std::fs::read_to_string(&marker_path) {
            Ok(text) => parse_marker(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let now_s = unix(now);
        let uris: Vec<&str> = rua.lines().map(str::trim).filter(|uri| !uri.is_empty()).collect();
        let pending: Vec<&str> = uris
            .iter()
            .copied()
            .filter(|uri| match states.get(*uri) {
                None => true,
                Some(UriState::Failing { next, .. }) => *next <= now_s,
                Some(UriState::Sent | UriState::Abandoned) => false,
            })
            .collect();
        let finished = |states: &BTreeMap<String, UriState>| {
            uris.iter()
                .all(|uri| matches!(states.get(*uri), Some(UriState::Sent | UriState::Abandoned)))
        };
        if pending.is_empty() {
            return Ok(finished(&states));
        }
        let report_path = dir.join(format!("{domain}.json"));
        let json = std::fs::read(&report_path)?;
        let report: Report = match serde_json::from_slice(&json) {
            Ok(report) => report,
            // Not going to get better: given up for every URI (logged once).
            Err(e) => {
                tracing::warn!(path = %report_path.display(), error = %e, "not a TLS report; not sent");
                for uri in pending {
                    states.insert(uri.to_string(), UriState::Abandoned);
                    pass.abandoned += 1;
                }
                volley_files::write_atomic(&marker_path, &[format_marker(&states).as_bytes()])?;
                return Ok(true);
            }
        };
        let gz = gzip(&json)?;
        for uri in pending {
            match self.send(uri, domain, &report, &gz).await {
                Ok(()) => {
                    tracing::info!(%domain, %uri, "TLS report sent");
                    states.insert(uri.to_string(), UriState::Sent);
                    pass.sent += 1;
                }
                Err(reason) => {
                    let first = match states.get(uri) {
                        Some(UriState::Failing { first, .. }) => *first,
                        _ => now_s,
                    };
                    if now_s.saturating_sub(first) >= GIVE_UP_AFTER.as_secs() {
                        tracing::warn!(%domain, %uri, %reason, "TLS report given up");
                        states.insert(uri.to_string(), UriState::Abandoned);
                        pass.abandoned += 1;
                    } else {
                        tracing::warn!(%domain, %uri, %reason, "TLS report not delivered; tried again later");
                        let next = now_s + RETRY_PAUSE.as_secs();
                        states.insert(uri.to_string(), UriState::Failing { first, next });
                        pass.failed += 1;
                    }
                }
            }
        }
        volley_files::write_atomic(&marker_path, &[format_marker(&states).as_bytes()])?;
        Ok(finished(&states))
    }

    /// Delivers `report` (`gz` compressed) of `domain` to `uri`; why not.
    async fn send(&self, uri: &str, domain: &str, report: &Report, gz: &[u8]) -> Result<(), String> {
        if uri.starts_with("https://") {
            return self
                .mta_sts
                .post_report(uri, MEDIA_TYPE, gz)
                .await
                .map_err(|e| e.to_string());
        }
        if let Some(to) = uri.strip_prefix("mailto:") {
            let Some(route) = &self.mail else {
                return Err("no mail route for mailto: reports (no usable source IP)".into());
            };
            return mail::send(route, to, domain, report, gz).await;
        }
        Err("unsupported URI scheme (https: and mailto: are)".into())
    }

    /// Runs a pass every `every` until aborted (the first right away: reports of days the
    /// process was down for go out at start).
    pub fn spawn(self, state_dir: std::path::PathBuf, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.pass(&state_dir, SystemTime::now()).await {
                    tracing::warn!(dir = %state_dir.display(), error = %e, "TLS reports not sent");
                }
                tokio::time::sleep(every).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_skips_lines_it_cannot_read() {
        let mut states = BTreeMap::new();
        states.insert("https://r.test/x".to_string(), UriState::Sent);
        states.insert("mailto:a@r.test".to_string(), UriState::Failing { first: 10, next: 20 });
        states.insert("mailto:b@r.test".to_string(), UriState::Abandoned);
        let text = format_marker(&states);
        assert_eq!(parse_marker(&text), states);
        let garbled = format!("{text}failing x 2 mailto:c@r.test\nsent\nwhatever mailto:d@r.test\n");
        assert_eq!(parse_marker(&garbled), states);
    }

    #[tokio::test]
    async fn a_failing_uri_is_retried_after_the_pause_and_given_up_after_two_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = dir.path().join("tls-rpt").join("2026-12-03");
        std::fs::create_dir_all(&day).expect("mkdir");
        let report = r#"{"organization-name":"O","date-range":{"start-datetime":"2026-12-03T00:00:00Z","end-datetime":"2026-12-03T23:59:59Z"},"contact-info":"c@o.test","report-id":"r","policies":[]}"#;
        std::fs::write(day.join("a.test.json"), report).expect("report");
        std::fs::write(day.join("0bad.test.json"), "not json").expect("report");
        // An unsupported scheme fails at once, without a connection.
        std::fs::write(day.join("a.test.rua"), "ftp://r.test/x\n").expect("rua");
        std::fs::write(day.join("0bad.test.rua"), "https://r.test/x\n").expect("rua");
        let dns = volley_engine::mx::DnsConfig {
            nameservers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 9))],
            ..volley_engine::mx::DnsConfig::default()
        };
        let tls = volley_engine::mta_sts::StsTls::new(None).expect("tls");
        let config = volley_engine::mta_sts::MtaStsConfig::default();
        let outbox = Outbox {
            mta_sts: Arc::new(MtaSts::new(&config, &dns, &tls, None).expect("mta-sts")),
            mail: None,
        };
        let start = humantime::parse_rfc3339("2026-12-04T01:00:00Z").expect("time");
        let pass = |at| outbox.pass(dir.path(), at);
        let failed = Pass {
            sent: 0,
            failed: 1,
            abandoned: 0,
        };
        let first_pass = Pass {
            sent: 0,
            failed: 1,
            abandoned: 1,
        };
        assert_eq!(
            pass(start).await.expect("pass"),
            first_pass,
            "a bad report (sorted first) is given up, the pass goes on"
        );
        assert_eq!(pass(start + RETRY_PAUSE / 2).await.expect("pass"), Pass::default());
        assert_eq!(pass(start + RETRY_PAUSE).await.expect("pass"), failed);
        let marker = std::fs::read_to_string(day.join("a.test.sent")).expect("marker");
        let first = unix(start);
        let next = first + 2 * RETRY_PAUSE.as_secs();
        assert_eq!(marker, format!("failing {first} {next} ftp://r.test/x\n"));
        let abandoned = Pass {
            sent: 0,
            failed: 0,
            abandoned: 1,
        };
        assert!(!day.join(DAY_DONE).exists());
        assert_eq!(pass(start + GIVE_UP_AFTER).await.expect("pass"), abandoned);
        assert!(day.join(DAY_DONE).exists(), "every report of the day is done with");
        assert_eq!(pass(start + GIVE_UP_AFTER * 2).await.expect("pass"), Pass::default());
        assert_eq!(
            std::fs::read_to_string(day.join("0bad.test.sent")).expect("marker"),
            "abandoned https://r.test/x\n"
        );
    }

    #[test]
    fn days_are_due_once_over_and_settled() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "2026-12-01",
            "2026-12-02",
            "2026-12-03",
            "2026-12-04",
            "notes",
            "2026-12-3",
        ] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        std::fs::write(dir.path().join("2026-12-01").join(DAY_DONE), "").expect("done");
        let at = |s: &str| humantime::parse_rfc3339(s).expect("time");
        let due = |s| due_days(dir.path(), at(s)).expect("due");
        assert_eq!(due("2026-12-04T00:01:00Z"), vec!["2026-12-02"]);
        assert_eq!(due("2026-12-04T00:06:00Z"), vec!["2026-12-02", "2026-12-03"]);
        assert_eq!(
            due("2026-12-05T12:00:00Z"),
            vec!["2026-12-02", "2026-12-03", "2026-12-04"]
        );
        assert!(due_days(&dir.path().join("missing"), at("2026-12-05T00:00:00Z"))
            .expect("missing dir")
            .is_empty());
    }
}
