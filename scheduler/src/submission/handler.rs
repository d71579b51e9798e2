//! The SMTP policy of one submission connection: AUTH against the users (failures slowed and
//! counted, the connection closed after too many), who may send at MAIL (530 without AUTH
//! outside `relay_networks`, the envelope sender's domain, the user's rate), and at the end of
//! the message [`inspect`], the header From domain and the injector's answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use volley_smtp_server::command::{MailParams, Path, RcptParams};
use volley_smtp_server::driver::{Decision, Handler};
use volley_smtp_server::reply::{self, EnhancedCode, Reply};
use volley_smtp_server::Credentials;

use super::accounts::{describe, Accounts};
use super::users::UserRecord;
use super::SubmissionStats;
use crate::inject::{inspect, Injected, Injector};

/// What every connection of one listener shares.
pub(super) struct Shared<I> {
    pub accounts: Accounts,
    pub injector: Arc<I>,
    pub stats: Arc<SubmissionStats>,
    pub relay_user: Option<String>,
    pub max_auth_failures: u32,
    pub auth_failure_delay: Duration,
    pub auth_failure_max_delay: Duration,
}

const AUTH_REQUIRED: Reply = Reply::new(530, EnhancedCode::new(5, 7, 0), "Authentication required");
const TOO_MANY_FAILURES: Reply = Reply::new(
    421,
    EnhancedCode::new(4, 7, 0),
    "Too many failed authentication attempts, closing connection",
);

/// One connection's state.
pub(super) struct SubmissionHandler<I> {
    shared: Arc<Shared<I>>,
    peer: SocketAddr,
    /// The client is in `relay_networks`.
    relay: bool,
    /// The user AUTH authenticated.
    authenticated: Option<Arc<UserRecord>>,
    auth_failures: u32,
    /// The user of the transaction in progress (set at MAIL).
    user: Option<Arc<UserRecord>>,
    mail_from: String,
    recipients: Vec<String>,
}

impl<I: Injector> SubmissionHandler<I> {
    pub(super) fn new(shared: Arc<Shared<I>>, peer: SocketAddr, relay: bool) -> Self {
        SubmissionHandler {
            shared,
            peer,
            relay,
            authenticated: None,
            auth_failures: 0,
            user: None,
            mail_from: String::new(),
            recipients: Vec::new(),
        }
    }

    /// Refuses (and counts) a transaction or message.
    fn refuse(&self, code: u16, enhanced: (u8, u16, u16), text: String) -> Decision {
        SubmissionStats::bump(&self.shared.stats.refused);
        let (class, subject, detail) = enhanced;
        Decision::Reply(Reply::owned(
            code,
            Some(EnhancedCode::new(class, subject, detail)),
            text,
        ))
    }

    /// Who sends this transaction: the authenticated user, or the relay user for a client of
    /// `relay_networks` (read now, so a removed relay user stops at once).
    fn sender(&self) -> Option<Arc<UserRecord>> {
        if let Some(user) = &self.authenticated {
            return Some(user.clone());
        }
        if !self.relay {
            return None;
        }
        let name = self.shared.relay_user.as_deref()?;
        let user = self.shared.accounts.current().get(name).cloned();
        if user.is_none() {
            tracing::error!(
                "submission: relay_user {name:?} is not in the users file: relay client {} refused",
                self.peer
            );
        }
        user
    }
}

fn allowed(user: &UserRecord, domain: &str) -> bool {
    user.from_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

impl<I: Injector> Handler for SubmissionHandler<I> {
    async fn auth(&mut self, credentials: &Credentials) -> Decision {
        let shared = self.shared.clone();
        let name = credentials.username.as_str();
        // RFC 4616 §2: acting as another user (an authzid other than the user) is not offered.
        let as_self = credentials.authzid.is_empty() || credentials.authzid == credentials.username;
        let user = if as_self {
            shared.accounts.verify(name, &credentials.password).await
        } else {
            None
        };
        if let Some(user) = user {
            SubmissionStats::bump(&shared.stats.auth_successes);
            tracing::debug!("submission: {} authenticated as {name:?}", self.peer);
            // The user as read now: a later change of the file applies from its next AUTH.
            self.authenticated = Some(user);
            return Decision::Accept;
        }
        SubmissionStats::bump(&shared.stats.auth_failures);
        self.auth_failures += 1;
        let (recent, pause) =
            shared
                .accounts
                .failed(self.peer.ip(), shared.auth_failure_delay, shared.auth_failure_max_delay);
        tracing::warn!(
            "submission: AUTH failed for user {name:?} from {} ({recent} recent failures from this address, answered after {pause:?})",
            self.peer.ip()
        );
        tokio::time::sleep(pause).await;
        if self.auth_failures >= shared.max_auth_failures {
            return Decision::Reply(TOO_MANY_FAILURES);
        }
        Decision::Reply(reply::AUTH_FAILED)
    }

    async fn mail(&mut self, sender: Path<'_>, _params: MailParams<'_>) -> Decision {
        self.recipients.clear();
        self.user = None;
        let Some(user) = self.sender() else {
            SubmissionStats::bump(&self.shared.stats.refused);
            return Decision::Reply(AUTH_REQUIRED);
        };
        if let Path::Mailbox { domain, .. } = sender {
            if !allowed(&user, domain) {
                return self.refuse(
                    550,
                    (5, 7, 1),
                    format!(
                        "sender domain {domain} is not allowed for user {} (allowed: {})",
                        user.name,
                        user.from_domains.join(", ")
                    ),
                );
            }
        }
        if let Err(wait) = self.shared.accounts.take_rate(&user) {
            return self.refuse(
                451,
                (4, 7, 1),
                format!(
                    "rate limit of user {} ({}) reached, try again in {} s",
                    user.name,
                    describe(user.rate),
                    wait.as_secs().max(1)
                ),
            );
        }
        self.mail_from = sender.address().to_string();
        self.user = Some(user);
        Decision::Accept
    }

    async fn rcpt(&mut self, recipient: Path<'_>, _params: RcptParams<'_>) -> Decision {
        self.recipients.push(recipient.address().to_string());
        Decision::Accept
    }

    async fn message(&mut self, content: &[u8], _chunked: bool) -> Decision {
        let recipients = std::mem::take(&mut self.recipients);
        let Some(user) = self.user.take() else {
            return Decision::Reply(AUTH_REQUIRED);
        };
        let inspected = match inspect(content) {
            Ok(inspected) => inspected,
            Err(e) => return self.refuse(550, (5, 6, 0), e.to_string()),
        };
        if !allowed(&user, &inspected.from_domain) {
            return self.refuse(
                550,
                (5, 7, 1),
                format!(
                    "From domain {} is not allowed for user {} (allowed: {})",
                    inspected.from_domain,
                    user.name,
                    user.from_domains.join(", ")
                ),
            );
        }
        let message = Injected {
            user: user.name.clone(),
            mail_from: std::mem::take(&mut self.mail_from),
            recipients,
            raw: content.to_vec(),
            peer: self.peer.to_string(),
        };
        let stats = &self.shared.stats;
        match self.shared.injector.inject(message).await {
            Ok(accepted) => {
                SubmissionStats::bump(&stats.accepted);
                let first = accepted.ids.first().map_or("", String::as_str);
                let text = match accepted.ids.len() {
                    0 | 1 => format!("Ok: queued as {first}"),
                    n => format!("Ok: queued as {first} (+{} more)", n - 1),
                };
                Decision::Reply(Reply::owned(250, Some(EnhancedCode::new(2, 0, 0)), text))
            }
            Err(e) => {
                let (code, (class, subject, detail)) = e.smtp_code();
                if e.is_temporary() {
                    SubmissionStats::bump(&stats.inject_failures);
                    tracing::warn!(
                        "submission: a message of {} from {} was not taken: {e}",
                        user.name,
                        self.peer
                    );
                } else {
                    SubmissionStats::bump(&stats.refused);
                }
                Decision::Reply(Reply::owned(
                    code,
                    Some(EnhancedCode::new(class, subject, detail)),
                    e.to_string(),
                ))
            }
        }
    }
}
