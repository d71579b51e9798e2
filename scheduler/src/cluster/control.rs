//! Pause, resume and cancel a cluster campaign from any node: the campaign's `state` field in
//! its meta hash (`running` when absent), set by [`Store::set_state`] (one script: a cancel is
//! final) and read by every node at most once per [`CHECK_EVERY`] ([`Control`]), which applies
//! it to the chunk campaigns it is sending.

use std::time::{Duration, Instant};

use super::{ClusterError, ClusterStatus, Keys, Store};
use crate::send::Launched;

/// How often a node reads the campaign's state (one `HGET`).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What an operator asked of a cluster campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Nodes take and send chunks.
    #[default]
    Running,
    /// Nodes send nothing new and take no chunk; they keep their chunks (and renew their
    /// leases, so nothing is taken over).
    Paused,
    /// Nodes stop their chunks (left unacknowledged) and return; the publisher stops. Final.
    Cancelled,
}

impl CampaignState {
    /// Its name in Redis and in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Cancelled => "cancelled",
        }
    }

    /// The state named `s` (`None` when it names none).
    pub fn parse(s: &str) -> Option<CampaignState> {
        [CampaignState::Running, CampaignState::Paused, CampaignState::Cancelled]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for CampaignState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `state` field as stored (absent: `running`).
pub(super) fn parse_state(key: &str, stored: Option<&str>) -> Result<CampaignState, ClusterError> {
    match stored {
        None => Ok(CampaignState::Running),
        Some(s) => CampaignState::parse(s).ok_or_else(|| ClusterError::BadData {
            key: key.to_owned(),
            reason: format!("state {s:?} (expected running, paused or cancelled)"),
        }),
    }
}

impl Store {
    /// The campaign's state (one `HGET`).
    pub fn state(&self, keys: &Keys) -> Result<CampaignState, ClusterError> {
        let v: Option<String> = self.with("HGET", |con| redis::cmd("HGET").arg(&keys.meta).arg("state").query(con))?;
        parse_state(&keys.meta, v.as_deref())
    }

    /// Sets campaign `id`'s state; returns the state before. Refused for a campaign never
    /// published, one complete, and one cancelled unless `to` is `cancelled` again.
    pub fn set_state(&self, id: &str, keys: &Keys, to: CampaignState) -> Result<CampaignState, ClusterError> {
        let script = redis::Script::new(include_str!("state.lua"));
        let mut call = script.prepare_invoke();
        call.key(&keys.meta).arg(to.as_str());
        let before: String = self.with("state", |con| call.invoke(con))?;
        match before.as_str() {
            "unknown" => Err(ClusterError::UnknownCampaign(id.to_owned())),
            "complete" => Err(ClusterError::Complete(id.to_owned())),
            "final" => Err(ClusterError::Cancelled(id.to_owned())),
            other => parse_state(&keys.meta, Some(other)),
        }
    }
}

/// Sets campaign `id`'s state in the Redis at `url` (from any node) and returns its status.
pub fn set(url: &str, id: &str, to: CampaignState) -> Result<ClusterStatus, ClusterError> {
    let keys = Keys::new(id);
    let store = Store::for_campaign(url, &keys)?;
    store.set_state(id, &keys, to)?;
    store.status(id, &keys)
}

/// A node's view of the campaign's state, read at most once per [`CHECK_EVERY`].
#[derive(Default)]
pub(super) struct Control {
    state: CampaignState,
    read_at: Option<Instant>,
}

impl Control {
    /// Whether the campaign was paused when last read.
    pub fn paused(&self) -> bool {
        self.state == CampaignState::Paused
    }

    /// The campaign's state (read from Redis on the first call, then at most once per
    /// [`CHECK_EVERY`]), applied to `chunks` on every call, so a chunk started since is
    /// paused too: paused or resumed, or cancelled (what is on the wire is recorded; the rest
    /// of the chunk gets no outcome here).
    pub fn check<'a>(
        &mut self,
        store: &Store,
        keys: &Keys,
        chunks: impl IntoIterator<Item = &'a Launched>,
    ) -> Result<CampaignState, ClusterError> {
        if self.read_at.is_none_or(|t| t.elapsed() >= CHECK_EVERY) {
            let state = tokio::task::block_in_place(|| store.state(keys))?;
            if state != self.state {
                tracing::info!(campaign = %keys.meta, %state, "cluster campaign state changed");
            }
            self.state = state;
            self.read_at = Some(Instant::now());
        }
        for chunk in chunks {
            chunk.live.set_paused(self.state == CampaignState::Paused);
            if self.state == CampaignState::Cancelled {
                chunk.cancel();
            }
        }
        Ok(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_a_bad_one_names_key_and_value() {
        for s in [CampaignState::Running, CampaignState::Paused, CampaignState::Cancelled] {
            assert_eq!(parse_state("k", Some(s.as_str())).expect("parses"), s);
        }
        assert_eq!(parse_state("k", None).expect("absent"), CampaignState::Running);
        let e = parse_state("volley:{x}:campaign", Some("stopped")).expect_err("unknown state");
        assert!(
            e.to_string().contains("volley:{x}:campaign") && e.to_string().contains("stopped"),
            "{e}"
        );
    }
}
