//! Queue control: the queues of every campaign running in the process, seen by MX site,
//! destination domain, source IP or provider group, and steered by an operator.
//!
//! - Suspending a scope (a domain, an MX site, a source IP, a (source IP, provider group)
//!   pair) stops new sends there; what is on the wire completes. Recipients of a suspended
//!   domain or site wait as compact rows (line and offset, like parked rows, counted against
//!   `max_parked`); a suspended IP simply takes no mail (the campaign's other IPs carry it).
//!   Suspensions persist in `<state_dir>/queue-controls.json` ([`controls`]) and survive a
//!   restart; resuming drains the scope. A waiting recipient's retry age keeps counting (as
//!   during warm-up holds): one past `[retry] max_age` gets one more attempt after the resume
//!   and expires if that is deferred.
//! - Retry now makes the scope's retries due at once (and forgets its MX hosts' down marks).
//! - Bounce and purge give each recipient queued in the scope (not on the wire) one final
//!   accounting line (`bounced`, category `operator`, never suppressed; or `expired`) with the
//!   operator's reason, so a rerun does not send them again.
//!
//! Each dispatcher answers requests on its own channel ([`QueueControl::join`]); nothing is
//! published while no one asks, so a run pays nothing for the view.
//!
//! - `queues/scope.rs` — [`QueueScope`] and its parsing;
//! - `queues/controls.rs` — the suspensions on disk;
//! - `queues/view.rs` — a queue's counts, and merging the campaigns' answers.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

pub mod controls;
pub mod scope;
pub mod view;

pub use controls::{ControlsError, Suspension, CONTROLS_FILE};
pub use scope::{reason, QueueScope, ScopeError, SCOPE_FIELDS};
pub use view::{Affected, GroupBy, QueueView, Tally};

/// How long a request waits for a campaign's answer (a dispatcher answers between two events;
/// one that does not within this is left out of the answer).
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// What an operator does to the queued recipients of a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Retries due now.
    Retry,
    /// A final `bounced` line (category `operator`) with the reason; not suppressed.
    Bounce(String),
    /// A final `expired` line with the reason.
    Purge(String),
    /// Nothing: counts what the scope holds (the answer to a suspend or a resume).
    Count,
}

/// A request to one campaign's dispatcher.
#[derive(Debug)]
pub(crate) enum Request {
    /// Its queues grouped by `by`.
    Show {
        by: GroupBy,
        reply: oneshot::Sender<Vec<(String, Tally)>>,
    },
    /// Act on the recipients of `scope`.
    Act {
        action: Action,
        scope: QueueScope,
        reply: oneshot::Sender<Affected>,
    },
    /// A suspension was lifted: look at the waiting recipients again.
    Resumed,
}

/// Suspensions and the dispatchers of the running campaigns, one for the process.
pub struct QueueControl {
    state_dir: PathBuf,
    suspended: RwLock<Vec<Suspension>>,
    /// Taken by a change while it writes the file (the dispatchers' checks are not held up
    /// by the fsync).
    writing: Mutex<()>,
    /// Fast path of the per-message checks: whether anything is suspended.
    active: AtomicBool,
    /// Bumped on every change of the suspensions.
    generation: AtomicU64,
    /// Whether a run whose only recipients left wait for a resume keeps waiting.
    runs_wait: AtomicBool,
    dispatchers: Mutex<Vec<(String, mpsc::UnboundedSender<Request>)>>,
}

impl std::fmt::Debug for QueueControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueControl")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl QueueControl {
    /// The controls of `state_dir`, with the suspensions its controls file holds (an error
    /// naming the file when it is damaged).
    pub fn open(state_dir: &Path) -> Result<QueueControl, ControlsError> {
        let suspended = controls::load(state_dir)?;
        for s in &suspended {
            tracing::warn!("queue control: {} suspended since {}", s.scope, s.since);
        }
        Ok(QueueControl {
            state_dir: state_dir.to_path_buf(),
            active: AtomicBool::new(!suspended.is_empty()),
            suspended: RwLock::new(suspended),
            writing: Mutex::default(),
            generation: AtomicU64::new(0),
            runs_wait: AtomicBool::new(false),
            dispatchers: Mutex::default(),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Suspension>> {
        self.suspended.read().unwrap_or_else(|e| e.into_inner())
    }

    fn dispatchers(&self) -> MutexGuard<'_, Vec<(String, mpsc::UnboundedSender<Request>)>> {
        let mut d = self.dispatchers.lock().unwrap_or_else(|e| e.into_inner());
        d.retain(|(_, tx)| !tx.is_closed());
        d
    }

    /// Changes the suspensions with `change` (which says whether it changed anything) and
    /// writes them; on a write error nothing changes.
    fn change(&self, change: impl FnOnce(&mut Vec<Suspension>) -> bool) -> Result<bool, ControlsError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.suspensions();
        if !change(&mut next) {
            return Ok(false);
        }
        controls::save(&self.state_dir, &next)?;
        self.active.store(!next.is_empty(), Ordering::Relaxed);
        *self.suspended.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.generation.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Suspends `scope` (written to the controls file before it returns). Whether it was not
    /// suspended already.
    pub fn suspend(&self, scope: &QueueScope) -> Result<bool, ControlsError> {
        let changed = self.change(|s| {
            if s.iter().any(|x| &x.scope == scope) {
                return false;
            }
            s.push(Suspension {
                scope: scope.clone(),
                since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            });
            true
        })?;
        if changed {
            tracing::warn!("queue control: {scope} suspended");
        }
        Ok(changed)
    }

    /// Lifts the suspension of `scope`; its waiting recipients go again. Whether it was
    /// suspended.
    pub fn resume(&self, scope: &QueueScope) -> Result<bool, ControlsError> {
        let changed = self.change(|s| {
            let before = s.len();
            s.retain(|x| &x.scope != scope);
            s.len() != before
        })?;
        if changed {
            tracing::info!("queue control: {scope} resumed");
            for (_, tx) in self.dispatchers().iter() {
                let _ = tx.send(Request::Resumed);
            }
        }
        Ok(changed)
    }

    /// Every suspension, oldest first.
    pub fn suspensions(&self) -> Vec<Suspension> {
        self.read().clone()
    }

    /// Whether a campaign whose only recipients left wait for a suspended domain or site keeps
    /// running until they are resumed, bounced or purged (`volley serve`, where an operator
    /// can), rather than ending incomplete (`volley send`: its rerun after the resume sends
    /// them; the default).
    pub fn set_runs_wait(&self, wait: bool) {
        self.runs_wait.store(wait, Ordering::Relaxed);
    }

    /// See [`QueueControl::set_runs_wait`].
    pub fn runs_wait(&self) -> bool {
        self.runs_wait.load(Ordering::Relaxed)
    }

    /// Changes with every suspend and resume.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether recipients of `domain` at `site` wait (their domain or site is suspended).
    pub fn destination_suspended(&self, domain: &str, site: &str) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        self.read()
            .iter()
            .any(|s| s.scope.is_destination() && s.scope.holds(domain, site, "", None))
    }

    /// Whether `ip` takes no mail for `provider` (the IP, or the pair, is suspended).
    pub fn ip_suspended(&self, ip: IpAddr, provider: &str) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        self.read().iter().any(|s| match &s.scope {
            QueueScope::SourceIp { source_ip } => *source_ip == ip,
            QueueScope::Route { source_ip, provider: p } => *source_ip == ip && p == provider,
            _ => false,
        })
    }

    /// Whether `scope` is suspended.
    pub fn is_suspended(&self, scope: &QueueScope) -> bool {
        self.read().iter().any(|s| &s.scope == scope)
    }

    /// Registers campaign `campaign`'s dispatcher: the requests it is to answer.
    pub(crate) fn join(&self, campaign: &str) -> mpsc::UnboundedReceiver<Request> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.dispatchers().push((campaign.to_string(), tx));
        rx
    }

    /// Asks every running campaign; the answers that came within [`ANSWER_WAIT`], by campaign.
    async fn ask<T>(&self, request: impl Fn(oneshot::Sender<T>) -> Request) -> Vec<(String, T)> {
        let mut waiting = Vec::new();
        for (campaign, tx) in self.dispatchers().iter() {
            let (reply, answer) = oneshot::channel();
            if tx.send(request(reply)).is_ok() {
                waiting.push((campaign.clone(), answer));
            }
        }
        let mut answers = Vec::with_capacity(waiting.len());
        for (campaign, answer) in waiting {
            match tokio::time::timeout(ANSWER_WAIT, answer).await {
                Ok(Ok(a)) => answers.push((campaign, a)),
                // The campaign ended meanwhile: nothing of it is queued.
                Ok(Err(_)) => {}
                Err(_) => tracing::warn!("queue control: campaign {campaign} did not answer within {ANSWER_WAIT:?}"),
            }
        }
        answers
    }

    /// The queues of every running campaign grouped by `by`, sorted by key; `limits` are the
    /// pool's connection limits (each queue shows those of its MX hosts or source IP).
    pub async fn show(&self, by: GroupBy, limits: &[volley_engine::pool::RouteConcurrency]) -> Vec<QueueView> {
        let answers = self.ask(|reply| Request::Show { by, reply }).await;
        let suspended = self.suspensions();
        view::merge(by, answers, limits, &suspended)
    }

    /// Acts on `scope` in every running campaign; what each did.
    pub async fn act(&self, action: Action, scope: &QueueScope) -> Vec<(String, Affected)> {
        self.ask(|reply| Request::Act {
            action: action.clone(),
            scope: scope.clone(),
            reply,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspensions_persist_and_reopen_and_checks_follow_them() {
        let dir = tempfile::tempdir().unwrap();
        let q = QueueControl::open(dir.path()).unwrap();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(!q.destination_suspended("b.test", "s"));
        let b = QueueScope::Domain {
            domain: "b.test".into(),
        };
        let route = QueueScope::Route {
            source_ip: ip,
            provider: "gmail".into(),
        };
        assert!(q.suspend(&b).unwrap());
        assert!(!q.suspend(&b).unwrap(), "already suspended");
        assert!(q.suspend(&route).unwrap());
        assert!(q.destination_suspended("b.test", "any-site"));
        assert!(!q.destination_suspended("a.test", "any-site"));
        assert!(q.ip_suspended(ip, "gmail"));
        assert!(!q.ip_suspended(ip, "yahoo"));
        // A restart reads them back.
        let again = QueueControl::open(dir.path()).unwrap();
        assert_eq!(again.suspensions(), q.suspensions());
        assert!(again.destination_suspended("b.test", "s"));
        assert!(again.resume(&b).unwrap());
        assert!(!again.resume(&b).unwrap(), "nothing to resume");
        assert!(!again.destination_suspended("b.test", "s"));
        let third = QueueControl::open(dir.path()).unwrap();
        assert_eq!(third.suspensions().len(), 1);
        assert!(third.is_suspended(&route));
    }

    #[test]
    fn a_damaged_controls_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONTROLS_FILE), "{oops").unwrap();
        let e = QueueControl::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(CONTROLS_FILE) && e.contains("damaged"), "{e}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let q = QueueControl::open(dir.path()).unwrap();
        // A folder where the file goes: the rename fails.
        std::fs::create_dir_all(dir.path().join(CONTROLS_FILE).join("x")).unwrap();
        let b = QueueScope::Domain {
            domain: "b.test".into(),
        };
        assert!(q.suspend(&b).is_err());
        assert!(q.suspensions().is_empty());
        assert!(!q.destination_suspended("b.test", "s"));
    }
}
