//! What an inbound report's events do: suppression updates (a failed delivery by the bounce
//! rules, a complaint, an unsubscribe), the reputation guards (complaints, hard bounces), and
//! a line per event in the campaign's `feedback.jsonl` — the accounting lines of what happened
//! after the SMTP conversation (`bounced` with `async: true`, `complained`, `unsubscribed`,
//! `delayed`, `notice`, `reported`), with the campaign, recipient, source IP and provider group
//! of the original message.
//!
//! Each event has a stable id; the ids already in the feedback logs are read at start, and an
//! event seen before is not acted on again (the same complaint twice counts once). The order
//! makes a crash harmless: the suppression update (idempotent) is written first, then the
//! feedback line (synced) — which is the record that the event was handled — and only then is
//! the spool file deleted (or, for the one-click endpoint, the 200 sent).
//!
//! The one-click unsubscribe endpoint (`crate::unsubscribe`) comes through here too
//! ([`Applier::unsubscribe`]), sharing one applier with the listener, so an unsubscribe by
//! link and by mail of the same message is one event.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use volley_feedback::event::{Event, EventKind, Origin, SuppressAction, UnsubscribeVia};
use volley_feedback::{CampaignTag, Token};

use super::InboundError;
use crate::accounting::now_rfc3339;
use crate::reputation::{Guards, Signal};
use crate::suppression::{unix_now, Entry, SuppressionStore, Update, GLOBAL};

/// The feedback log of a campaign, beside its accounting log.
pub const FEEDBACK_LOG: &str = "feedback.jsonl";
/// The file that names a campaign's suppression list (written when the campaign starts).
pub const LIST_FILE: &str = "suppression-list";
/// Where events for messages of no known campaign are logged (`<state_dir>/inbound/`).
const UNKNOWN_CAMPAIGN: &str = "inbound";

/// One line of a feedback log.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FeedbackRecord {
    pub ts: String,
    pub event_id: String,
    pub campaign: Option<String>,
    pub recipient: Option<String>,
    pub domain: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub provider: Option<String>,
    /// `bounced`, `complained`, `unsubscribed`, `delayed`, `notice`, `reported`.
    pub outcome: String,
    /// Always true: after the SMTP conversation.
    #[serde(rename = "async")]
    pub asynchronous: bool,
    pub code: Option<u16>,
    pub enhanced: Option<String>,
    pub category: Option<String>,
    pub text: String,
    /// The recipient's line in the campaign's recipient file.
    pub line: Option<u64>,
    pub message_id: Option<String>,
    /// What was written to the suppression list: `suppress`, `soft` or none.
    pub suppression: Option<String>,
    /// The list it was written to.
    pub list: Option<String>,
}

/// What the original message was, as far as the campaign's logs tell.
#[derive(Clone, Debug, Default)]
struct Original {
    campaign: Option<String>,
    /// The campaign's folder: `<state_dir>/<id>`, or `<state_dir>/cluster/<id>` for a cluster
    /// campaign (its node log holds original lines).
    folder: Option<PathBuf>,
    recipient: Option<String>,
    source_ip: Option<IpAddr>,
    provider: Option<String>,
    line: Option<u64>,
}

/// Applies events; shared by the listener's processing task.
pub struct Applier {
    state_dir: PathBuf,
    store: Arc<dyn SuppressionStore>,
    guards: Option<Arc<Guards>>,
    providers: volley_warmup::Providers,
    /// Campaign ids and folders by tag.
    campaigns: Mutex<HashMap<CampaignTag, (String, PathBuf)>>,
    seen: Mutex<HashSet<String>>,
    /// Held while one event is checked against `seen`, acted on and logged: the inbound
    /// listener and the unsubscribe endpoint apply from different threads, and the same
    /// event arriving twice at once must still count once.
    applying: Mutex<()>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Applier::unsubscribe`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The address is now suppressed in `list` (and the event logged).
    Now {
        /// The recipient the token was issued for.
        recipient: String,
        /// The suppression list written.
        list: String,
    },
    /// The same unsubscribe was handled before: nothing written again.
    Before,
    /// The token's campaign is not in the state directory: nothing written.
    UnknownCampaign,
    /// The campaign's accounting log has no message to the token's recipient line: nothing
    /// written.
    UnknownRecipient,
}

/// What [`Applier::apply`] did with one message's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events acted on and logged.
    pub new: usize,
    /// Events seen before (not acted on again).
    pub duplicates: usize,
    /// Suppression updates written.
    pub suppressed: usize,
}

impl Applier {
    /// An applier over `state_dir`'s campaigns, writing to `store`; `guards` when the
    /// campaigns run in this process (their complaint rates).
    pub fn open(
        state_dir: &Path,
        store: Arc<dyn SuppressionStore>,
        guards: Option<Arc<Guards>>,
        providers: volley_warmup::Providers,
    ) -> Applier {
        let applier = Applier {
            state_dir: state_dir.to_path_buf(),
            store,
            guards,
            providers,
            campaigns: Mutex::default(),
            seen: Mutex::default(),
            applying: Mutex::default(),
        };
        let mut seen = HashSet::new();
        for dir in applier.campaign_dirs() {
            read_ids(&dir.join(FEEDBACK_LOG), &mut seen);
        }
        read_ids(&state_dir.join(UNKNOWN_CAMPAIGN).join(FEEDBACK_LOG), &mut seen);
        *lock(&applier.seen) = seen;
        applier
    }

    /// [`Applier::open`] over `config`'s state directory and provider groups.
    pub fn for_config(
        config: &crate::config::SendConfig,
        store: Arc<dyn SuppressionStore>,
        guards: Option<Arc<Guards>>,
    ) -> Applier {
        let providers = volley_warmup::Providers::new(&config.warmup.provider_config());
        Applier::open(&config.state_dir, store, guards, providers)
    }

    /// The campaign folders: `<state_dir>/<id>` with an accounting log, then cluster
    /// campaigns' `<state_dir>/cluster/<id>` (a campaign sent here counts first).
    fn campaign_dirs(&self) -> Vec<PathBuf> {
        let list = |dir: &Path| -> Vec<PathBuf> {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return Vec::new();
            };
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("accounting.jsonl").is_file())
                .collect()
        };
        let mut dirs = list(&self.state_dir);
        dirs.extend(list(&self.state_dir.join("cluster")));
        dirs
    }

    /// The campaign whose tag is `tag` and its folder (campaign folders are listed again on a
    /// miss).
    fn campaign_of(&self, tag: CampaignTag) -> Option<(String, PathBuf)> {
        if let Some(found) = lock(&self.campaigns).get(&tag) {
            return Some(found.clone());
        }
        let mut map = lock(&self.campaigns);
        for dir in self.campaign_dirs() {
            if let Some(id) = dir.file_name().and_then(|n| n.to_str()) {
                map.entry(CampaignTag::of(id))
                    .or_insert_with(|| (id.to_string(), dir.clone()));
            }
        }
        map.get(&tag).cloned()
    }

    /// Acts on `events` (the ones not seen before) and logs them.
    pub fn apply(&self, events: &[Event]) -> Result<Applied, InboundError> {
        let mut applied = Applied::default();
        for event in events {
            let original = self.original(event);
            match self.apply_one(event, &original)? {
                None => applied.duplicates += 1,
                Some(record) => {
                    applied.new += 1;
                    applied.suppressed += usize::from(record.suppression.is_some());
                }
            }
        }
        Ok(applied)
    }

    /// The unsubscribe of the recipient `token` was issued for (the one-click endpoint): the
    /// same path as a mailed unsubscribe, but only for a campaign and recipient line this
    /// state directory knows; anything else changes nothing. Durable when it returns: the
    /// suppression is written and the feedback line synced.
    pub fn unsubscribe(&self, token: &Token, via: UnsubscribeVia) -> Result<Unsubscribed, InboundError> {
        let origin = Origin {
            token: Some(token.clone()),
            ..Origin::default()
        };
        let event = Event::new(origin, EventKind::Unsubscribe { via });
        let original = self.original(&event);
        if original.campaign.is_none() {
            return Ok(Unsubscribed::UnknownCampaign);
        }
        let Some(recipient) = original.recipient.clone() else {
            return Ok(Unsubscribed::UnknownRecipient);
        };
        Ok(match self.apply_one(&event, &original)? {
            None => Unsubscribed::Before,
            Some(record) => Unsubscribed::Now {
                recipient,
                list: record.list.unwrap_or_else(|| GLOBAL.to_string()),
            },
        })
    }

    /// Acts on one event about `original` unless it was seen before (`None`); the logged line.
    fn apply_one(&self, event: &Event, original: &Original) -> Result<Option<FeedbackRecord>, InboundError> {
        let _one_at_a_time = lock(&self.applying);
        if lock(&self.seen).contains(&event.id.0) {
            tracing::info!("inbound: event {} was handled before; not counted again", event.id.0);
            return Ok(None);
        }
        let (update, record) = self.effect(event, original);
        if let Some(update) = update {
            self.store
                .apply(std::slice::from_ref(&update))
                .map_err(|e| InboundError::Store(e.to_string()))?;
        }
        if let (Some(guards), Some(campaign)) = (&self.guards, &original.campaign) {
            let signal = match &event.kind {
                EventKind::Complaint { .. } => Some(Signal::Complaint),
                EventKind::Bounce { .. } => Some(Signal::HardBounce),
                _ => None,
            };
            if let Some(signal) = signal {
                let route = original.source_ip.map(|ip| {
                    (
                        ip,
                        original.provider.as_deref().unwrap_or(volley_warmup::provider::OTHER),
                    )
                });
                guards.record(campaign, route, signal, std::time::SystemTime::now());
            }
        }
        let folder = original
            .folder
            .clone()
            .unwrap_or_else(|| self.state_dir.join(UNKNOWN_CAMPAIGN));
        append(&folder.join(FEEDBACK_LOG), &record)?;
        lock(&self.seen).insert(event.id.0.clone());
        Ok(Some(record))
    }

    /// The campaign, recipient, source IP and provider group the event is about.
    fn original(&self, event: &Event) -> Original {
        let mut o = Original {
            recipient: event.origin.recipient.clone(),
            ..Original::default()
        };
        if let Some(token) = &event.origin.token {
            (o.campaign, o.folder) = self.campaign_of(token.campaign).unzip();
            // Unsubscribe tokens carry the unspecified address (the message is built before
            // its source IP is chosen): the accounting log names the IP below.
            o.source_ip = Some(token.source_ip).filter(|ip| !ip.is_unspecified());
            o.line = Some(token.line);
            if o.campaign.is_none() {
                tracing::warn!(
                    "inbound: token of an unknown campaign (tag {}) in {}",
                    token.campaign,
                    self.state_dir.display()
                );
            }
        }
        if let (Some(folder), Some(line)) = (&o.folder, o.line) {
            let log = folder.join("accounting.jsonl");
            if let Some(sent) = sent_line(&log, line) {
                // The recipient we sent to, whatever the report calls it.
                o.recipient = Some(sent.recipient);
                o.provider = sent.provider;
                o.source_ip = o.source_ip.or(sent.source_ip);
            }
        }
        if o.provider.is_none() {
            if let Some(domain) = o.recipient.as_deref().and_then(|r| r.rsplit_once('@')).map(|(_, d)| d) {
                o.provider = Some(self.providers.group_and_source(&[], domain).0.to_string());
            }
        }
        o
    }

    /// The suppression update and the log line of one event.
    fn effect(&self, event: &Event, o: &Original) -> (Option<Update>, FeedbackRecord) {
        let campaign = o.campaign.as_deref().unwrap_or("unknown");
        let mut record = FeedbackRecord {
            ts: now_rfc3339(),
            event_id: event.id.0.clone(),
            campaign: o.campaign.clone(),
            recipient: o.recipient.clone(),
            domain: o
                .recipient
                .as_deref()
                .and_then(|r| r.rsplit_once('@'))
                .map(|(_, d)| d.to_string()),
            source_ip: o.source_ip,
            provider: o.provider.clone(),
            outcome: String::new(),
            asynchronous: true,
            code: None,
            enhanced: None,
            category: None,
            text: String::new(),
            line: o.line,
            message_id: event.origin.message_id.clone(),
            suppression: None,
            list: None,
        };
        let now = unix_now();
        let (outcome, update) = match &event.kind {
            EventKind::Bounce { status, class, .. } => {
                record.code = status.code;
                record.enhanced.clone_from(&status.status);
                record.category = Some(class.category.clone());
                record.text.clone_from(&status.diagnostic);
                let update = o.recipient.as_ref().and_then(|address| match class.action {
                    SuppressAction::Suppress => Some(Update::suppress(
                        GLOBAL,
                        address.clone(),
                        Entry::new(status.diagnostic.clone(), format!("dsn:{campaign}"), now)
                            .with_codes(status.code, status.status.clone())
                            .with_category(class.category.clone()),
                    )),
                    SuppressAction::Soft => Some(Update::SoftBounce {
                        scope: GLOBAL.to_string(),
                        address: address.clone(),
                        code: status.code,
                        enhanced: status.status.clone(),
                        reason: status.diagnostic.clone(),
                        at: now,
                    }),
                    SuppressAction::None => None,
                });
                ("bounced", update)
            }
            EventKind::Complaint {
                feedback_type,
                user_agent,
            } => {
                record.category = Some("complaint".into());
                record.text = format!(
                    "{feedback_type} report{}",
                    user_agent.as_deref().map(|u| format!(" from {u}")).unwrap_or_default()
                );
                let update = o.recipient.as_ref().map(|address| {
                    Update::suppress(
                        GLOBAL,
                        address.clone(),
                        Entry::new(format!("complaint ({feedback_type})"), format!("arf:{campaign}"), now)
                            .with_category("complaint"),
                    )
                });
                ("complained", update)
            }
            EventKind::Unsubscribe { via } => {
                let list = o
                    .folder
                    .as_deref()
                    .and_then(|f| std::fs::read_to_string(f.join(LIST_FILE)).ok())
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .unwrap_or_else(|| GLOBAL.to_string());
                record.text = match via {
                    UnsubscribeVia::Mail => "unsubscribe by mail",
                    UnsubscribeVia::Http => "unsubscribe by the List-Unsubscribe link (RFC 8058 POST)",
                }
                .into();
                let update = o.recipient.as_ref().map(|address| {
                    Update::suppress(
                        list.clone(),
                        address.clone(),
                        Entry::new("unsubscribe", format!("unsubscribe:{campaign}"), now).with_category("unsubscribe"),
                    )
                });
                record.list = Some(list);
                ("unsubscribed", update)
            }
            EventKind::Delayed { status } => {
                record.enhanced.clone_from(&status.status);
                record.text.clone_from(&status.diagnostic);
                ("delayed", None)
            }
            EventKind::Notice { action, status } => {
                record.enhanced.clone_from(&status.status);
                record.text = format!("{action}: {}", status.diagnostic);
                ("notice", None)
            }
            EventKind::Report { feedback_type } => {
                record.text = format!("{feedback_type} report");
                ("reported", None)
            }
        };
        record.outcome = outcome.to_string();
        if let Some(u) = &update {
            record.suppression = Some(match u {
                Update::SoftBounce { .. } => "soft".into(),
                _ => "suppress".into(),
            });
            if record.list.is_none() {
                record.list = Some(GLOBAL.to_string());
            }
        }
        if o.recipient.is_none() && matches!(event.kind, EventKind::Bounce { .. } | EventKind::Complaint { .. }) {
            tracing::warn!(
                "inbound: event {} names no recipient we sent to; logged, nothing suppressed",
                event.id.0
            );
        }
        (update, record)
    }
}

/// What a campaign's accounting log says about one recipient line.
struct SentLine {
    recipient: String,
    provider: Option<String>,
    /// The source IP of the delivery (else of the last attempt).
    source_ip: Option<IpAddr>,
}

/// The recipient, provider group and source IP of the line `line` of a campaign's
/// accounting log: from its `delivered` attempt when there is one (a deferred attempt may
/// have gone out from another IP), else from its last.
fn sent_line(log: &Path, line: u64) -> Option<SentLine> {
    let file = std::fs::File::open(log).ok()?;
    let needle = format!("\"line\":{line}");
    let mut found: Option<SentLine> = None;
    for text in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        if !text.contains(&needle) {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if v["line"].as_u64() != Some(line) {
            continue;
        }
        let Some(recipient) = v["recipient"].as_str() else {
            continue;
        };
        let sent = SentLine {
            recipient: recipient.to_ascii_lowercase(),
            provider: v["provider"].as_str().map(str::to_string),
            source_ip: v["source_ip"].as_str().and_then(|ip| ip.parse().ok()),
        };
        let delivered = v["outcome"].as_str() == Some("delivered");
        found = Some(sent);
        if delivered {
            break;
        }
    }
    found
}

fn read_ids(path: &Path, into: &mut HashSet<String>) {
    let Ok(file) = std::fs::File::open(path) else { return };
    for text in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        if let Ok(r) = serde_json::from_str::<FeedbackRecord>(&text) {
            into.insert(r.event_id);
        }
    }
}

/// Appends one line and syncs it.
fn append(path: &Path, record: &FeedbackRecord) -> Result<(), InboundError> {
    let io = |action: &'static str| {
        move |source| InboundError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create the feedback log's folder"))?;
    }
    let mut line = serde_json::to_vec(record).map_err(|e| io("encode a feedback line")(std::io::Error::other(e)))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("open the feedback log"))?;
    file.write_all(&line).map_err(io("write the feedback log"))?;
    file.sync_data().map_err(io("sync the feedback log"))
}
