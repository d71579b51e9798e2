//! TLS reports (RFC 8460): per policy domain and UTC day, the sessions that met the domain's
//! MTA-STS policy and those that failed, by result type, sending IP and MX host; written as the
//! RFC's JSON to `<state_dir>/tls-rpt/<YYYY-MM-DD>/<domain>.json` (the day's file rewritten as
//! counts grow, read back at start so a restart keeps counting). The `rua` addresses of the
//! domain's `_smtp._tls` record go next to it, one per line, in `<domain>.rua`; once the day
//! is over, [`outbox`] sends the report there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::mpsc;

pub mod mail;
pub mod outbox;
use volley_engine::mta_sts::{FetchError, MtaSts, SessionCheck};

/// The report of one policy domain for one day (RFC 8460 §4.3), as written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    /// The reporting organisation.
    pub organization_name: String,
    /// The day covered.
    pub date_range: DateRange,
    /// How to reach the reporter.
    pub contact_info: String,
    /// Unique per report.
    pub report_id: String,
    /// One entry: the domain's policy.
    pub policies: Vec<PolicyReport>,
}

/// `date-range`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    /// RFC 3339 start.
    pub start_datetime: String,
    /// RFC 3339 end.
    pub end_datetime: String,
}

/// One policy's results.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    /// The policy.
    pub policy: PolicyDetails,
    /// The counts.
    pub summary: SessionSummary,
    /// The failures, grouped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetails>,
}

/// `policy`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyDetails {
    /// `sts`.
    pub policy_type: String,
    /// The policy file, one line per string.
    pub policy_string: Vec<String>,
    /// The recipient domain.
    pub policy_domain: String,
    /// The policy's `mx` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

/// `summary`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionSummary {
    /// Sessions that met the policy.
    #[serde(rename = "total-successful-session-count")]
    pub success: u64,
    /// Sessions (and policy fetches) that failed.
    #[serde(rename = "total-failure-session-count")]
    pub failure: u64,
}

/// One group of failures.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetails {
    /// RFC 8460 §4.3.2 result type.
    pub result_type: String,
    /// Our source IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<IpAddr>,
    /// The MX host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    /// Its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<IpAddr>,
    /// Sessions that failed this way.
    pub failed_session_count: u64,
    /// What happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
}

/// Who the reports say they are from.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info`.
    pub contact: String,
}

/// The day's reports being counted, shared by the routers and the collector.
#[derive(Clone)]
pub struct TlsReports {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TlsReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReports")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    dir: PathBuf,
    reporter: Reporter,
    /// Where `rua` addresses are looked up (none: not looked up).
    mta_sts: Option<Arc<MtaSts>>,
    /// Session verdicts not yet counted.
    checks: Mutex<mpsc::UnboundedReceiver<SessionCheck>>,
    /// (day, domain) -> report; the dirty ones are rewritten by the next flush.
    reports: Mutex<BTreeMap<(String, String), (Report, bool)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The UTC day of `t`, `YYYY-MM-DD`.
fn day_of(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

impl TlsReports {
    /// Reports kept in `<state_dir>/tls-rpt`, counting the verdicts that arrive on `checks`;
    /// `mta_sts` looks up where they would be sent.
    pub fn new(
        state_dir: &Path,
        reporter: Reporter,
        mta_sts: Option<Arc<MtaSts>>,
        checks: mpsc::UnboundedReceiver<SessionCheck>,
    ) -> TlsReports {
        TlsReports {
            inner: Arc::new(Inner {
                dir: state_dir.join("tls-rpt"),
                reporter,
                mta_sts,
                checks: Mutex::new(checks),
                reports: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Counts a session's verdict.
    pub fn record(&self, check: &SessionCheck) {
        let route = &check.route;
        let failure = check.failure.as_ref().map(|f| FailureDetails {
            result_type: f.kind.result_type().to_string(),
            sending_mta_ip: Some(check.source_ip),
            receiving_mx_hostname: Some(check.mx.to_string()),
            receiving_ip: Some(check.mx_ip),
            failed_session_count: 1,
            additional_information: Some(f.detail.clone()),
        });
        let mx: Vec<String> = route.mx.iter().map(|p| p.as_str().to_string()).collect();
        self.count(&route.domain, Some((&route.text, mx)), failure);
    }

    /// Counts a failed policy discovery or fetch of `domain` (RFC 8460 §4.3.2.2).
    pub fn fetch_failed(&self, domain: &str, error: &FetchError) {
        let failure = FailureDetails {
            result_type: error.result_type().to_string(),
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_ip: None,
            failed_session_count: 1,
            additional_information: Some(error.to_string()),
        };
        self.count(domain, None, Some(failure));
    }

    fn count(&self, domain: &str, policy: Option<(&str, Vec<String>)>, failure: Option<FailureDetails>) {
        let day = day_of(SystemTime::now());
        let mut reports = lock(&self.inner.reports);
        let key = (day.clone(), domain.to_string());
        let (report, dirty) = reports.entry(key).or_insert_with(|| {
            let existing = read_report(&self.inner.dir, &day, domain);
            (existing.unwrap_or_else(|| self.empty(&day, domain)), true)
        });
        *dirty = true;
        let Some(entry) = report.policies.first_mut() else {
            return;
        };
        if let Some((text, mx)) = policy {
            entry.policy.policy_string = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
            entry.policy.mx_host = mx;
        }
        match failure {
            None => entry.summary.success += 1,
            Some(failure) => {
                entry.summary.failure += 1;
                let same = entry.failure_details.iter_mut().find(|d| {
                    (
                        &d.result_type,
                        d.sending_mta_ip,
                        &d.receiving_mx_hostname,
                        d.receiving_ip,
                    ) == (
                        &failure.result_type,
                        failure.sending_mta_ip,
                        &failure.receiving_mx_hostname,
                        failure.receiving_ip,
                    )
                });
                match same {
                    Some(d) => {
                        d.failed_session_count += 1;
                        d.additional_information = failure.additional_information;
                    }
                    None => entry.failure_details.push(failure),
                }
            }
        }
    }

    fn empty(&self, day: &str, domain: &str) -> Report {
        Report {
            organization_name: self.inner.reporter.organization.clone(),
            date_range: DateRange {
                start_datetime: format!("{day}T00:00:00Z"),
                end_datetime: format!("{day}T23:59:59Z"),
            },
            contact_info: self.inner.reporter.contact.clone(),
            report_id: format!("{day}_{domain}@{}", self.inner.reporter.organization),
            policies: vec![PolicyReport {
                policy: PolicyDetails {
                    policy_type: "sts".into(),
                    policy_string: Vec::new(),
                    policy_domain: domain.to_string(),
                    mx_host: Vec::new(),
                },
                summary: SessionSummary::default(),
                failure_details: Vec::new(),
            }],
        }
    }

    /// Counts the verdicts that arrived, then rewrites the reports that changed (and looks up
    /// the `rua` of a domain whose report is new today).
    pub async fn flush(&self) -> std::io::Result<()> {
        let checks: Vec<SessionCheck> = {
            let mut rx = lock(&self.inner.checks);
            std::iter::from_fn(|| rx.try_recv().ok()).collect()
        };
        for check in &checks {
            self.record(check);
        }
        let today = day_of(SystemTime::now());
        let dirty: Vec<((String, String), Report)> = {
            let mut reports = lock(&self.inner.reports);
            let dirty = reports
                .iter_mut()
                .filter(|(_, (_, dirty))| *dirty)
                .map(|(k, (r, dirty))| {
                    *dirty = false;
                    (k.clone(), r.clone())
                })
                .collect();
            // Earlier days are complete once written: only their files keep them.
            reports.retain(|(day, _), _| *day == today);
            dirty
        };
        let mut new_domains = BTreeSet::new();
        for ((day, domain), report) in dirty {
            // The domain names a file: only host-name characters (a recipient domain always is).
            if domain.starts_with('.')
                || !domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                tracing::warn!(%domain, "TLS report not written: the domain is not a host name");
                continue;
            }
            let dir = self.inner.dir.join(&day);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{domain}.json"));
            if !path.exists() {
                new_domains.insert((dir.clone(), domain.clone()));
            }
            let json = serde_json::to_vec_pretty(&report).map_err(std::io::Error::other)?;
            let tmp = dir.join(format!("{domain}.json.tmp"));
            std::fs::write(&tmp, json)?;
            std::fs::rename(&tmp, &path)?;
        }
        if let Some(mta_sts) = &self.inner.mta_sts {
            for (dir, domain) in new_domains {
                match mta_sts.tls_rpt_rua(&domain).await {
                    Ok(rua) if !rua.is_empty() => {
                        std::fs::write(dir.join(format!("{domain}.rua")), rua.join("\n") + "\n")?
                    }
                    Ok(_) => {}
                    Err(e) => tracing::info!(%domain, error = %e, "no TLS-RPT address found"),
                }
            }
        }
        Ok(())
    }

    /// Flushes every `every` until the task is aborted (a last [`TlsReports::flush`] at
    /// shutdown catches what came after the last tick).
    pub fn spawn_flusher(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let reports = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = reports.flush().await {
                    tracing::warn!(dir = %reports.inner.dir.display(), error = %e, "TLS reports not written");
                }
            }
        })
    }
}

/// The report written earlier today for `domain`, if any (a restart keeps counting).
fn read_report(dir: &Path, day: &str, domain: &str) -> Option<Report> {
    let path = dir.join(day).join(format!("{domain}.json"));
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<Report>(&text) {
        Ok(r) if !r.policies.is_empty() => Some(r),
        _ => {
            tracing::warn!(path = %path.display(), "unreadable TLS report; today's counts start over");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use volley_engine::mta_sts::{FailureKind, MxPattern, StsFailure, StsMode, StsRoute};

    use super::*;

    fn check(source: [u8; 4], failure: Option<FailureKind>) -> SessionCheck {
        SessionCheck {
            route: Arc::new(StsRoute {
                domain: Arc::from("a.test"),
                mode: StsMode::Testing,
                mx: MxPattern::new("*.a.test").into_iter().collect(),
                text: Arc::from("version: STSv1\r\nmode: testing\r\nmx: *.a.test\r\nmax_age: 60\r\n"),
            }),
            mx: Arc::from("mx.a.test"),
            mx_ip: IpAddr::from([127, 0, 0, 9]),
            source_ip: IpAddr::from(source),
            failure: failure.map(|kind| StsFailure {
                kind,
                detail: "certificate of mx.a.test not valid".into(),
            }),
        }
    }

    fn open(dir: &Path) -> (TlsReports, mpsc::UnboundedSender<SessionCheck>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let reporter = Reporter {
            organization: "Org".into(),
            contact: "tls@org.test".into(),
        };
        (TlsReports::new(dir, reporter, None, rx), tx)
    }

    #[tokio::test]
    async fn sessions_are_counted_per_result_and_route_and_a_restart_keeps_counting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (reports, tx) = open(dir.path());
        for c in [
            check([127, 0, 0, 2], None),
            check([127, 0, 0, 2], Some(FailureKind::CertificateHostMismatch)),
            check([127, 0, 0, 2], Some(FailureKind::CertificateHostMismatch)),
            check([127, 0, 0, 3], Some(FailureKind::CertificateHostMismatch)),
        ] {
            assert!(tx.send(c).is_ok());
        }
        assert!(reports.flush().await.is_ok());
        let day = day_of(SystemTime::now());
        let path = dir.path().join("tls-rpt").join(&day).join("a.test.json");
        let read = |path: &Path| -> Report {
            serde_json::from_str(&std::fs::read_to_string(path).expect("report")).expect("json")
        };
        let report = read(&path);
        let policy = &report.policies[0];
        assert_eq!((policy.summary.success, policy.summary.failure), (1, 3));
        let counts: Vec<(Option<IpAddr>, u64)> = policy
            .failure_details
            .iter()
            .map(|d| (d.sending_mta_ip, d.failed_session_count))
            .collect();
        assert_eq!(
            counts,
            [
                (Some(IpAddr::from([127, 0, 0, 2])), 2),
                (Some(IpAddr::from([127, 0, 0, 3])), 1)
            ]
        );
        assert_eq!(policy.failure_details[0].result_type, "certificate-host-mismatch");
        assert_eq!(policy.policy.policy_string[1], "mode: testing");
        assert_eq!(report.date_range.start_datetime, format!("{day}T00:00:00Z"));
        let json = std::fs::read_to_string(&path).expect("text");
        assert!(!json.contains("null"), "absent fields are left out, not null: {json}");

        // A new process continues the day's counts from the file.
        let (again, tx) = open(dir.path());
        assert!(tx.send(check([127, 0, 0, 2], None)).is_ok());
        again.fetch_failed("a.test", &FetchError::NoAddress("mta-sts.a.test".into()));
        assert!(again.flush().await.is_ok());
        let policy = &read(&path).policies[0];
        assert_eq!((policy.summary.success, policy.summary.failure), (2, 4));
        assert_eq!(
            policy.failure_details.last().map(|d| d.result_type.as_str()),
            Some("sts-policy-fetch-error")
        );
    }
}
