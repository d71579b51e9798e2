//! The `List-Unsubscribe` value of a campaign with `[list_unsubscribe] volley = true`: a
//! signed unsubscribe token per message, in the link to Volley's endpoint and in the
//! `mailto:` address at the bounce domain (RFC 2369 §3.2, RFC 8058 §3.1).
//!
//! The token names the campaign and the recipient's line; its source IP field holds the
//! unspecified address `0.0.0.0`. The message is built and DKIM-signed (the header is
//! covered) on the producer's threads before the dispatcher picks a source IP, and a deferred
//! recipient may be retried from another IP with the same bytes; building per dispatch would
//! move rendering and signing onto the dispatcher's path for one field that the accounting log
//! already holds. So the unsubscribe's `source_ip` (and provider group) come from the
//! campaign's accounting log for that line: the delivered attempt's (see `inbound/apply.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use volley_feedback::{Keyring, Token};

use crate::campaign::{Campaign, FeedbackIds};
use crate::config::{SendConfig, UnsubscribeUrl};
use crate::send::SendError;

/// The source IP field of unsubscribe tokens (unknown when the message is built).
pub const TOKEN_SOURCE_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// What a campaign with `volley = true` needs to make its `List-Unsubscribe` values.
#[derive(Debug)]
pub struct UnsubscribeLinks {
    keys: Arc<Keyring>,
    campaign: FeedbackIds,
    /// `[feedback] unsubscribe_url`, without a trailing `/`.
    base: String,
    /// `[feedback] bounce_domain`.
    domain: String,
}

impl UnsubscribeLinks {
    /// The links of `campaign` under `config`: `None` unless its `[list_unsubscribe]` says
    /// `volley = true`, which needs `[feedback]` with `unsubscribe_url` and a readable key.
    pub fn for_campaign(campaign: &Campaign, config: &SendConfig) -> Result<Option<UnsubscribeLinks>, SendError> {
        let Some(line) = campaign.list_unsubscribe().and_then(|l| l.volley) else {
            return Ok(None);
        };
        let refuse = |why: String| {
            SendError::Config(format!(
                "{}: line {line}: field `list_unsubscribe.volley` = true: {why}",
                campaign.path().display()
            ))
        };
        let feedback = config.feedback.as_ref().ok_or_else(|| {
            refuse("volley.toml has no [feedback] table (bounce_domain, key_file, unsubscribe_url)".into())
        })?;
        let url = feedback.unsubscribe_url.as_deref().ok_or_else(|| {
            refuse("volley.toml [feedback] has no unsubscribe_url (the endpoint's public https:// address)".into())
        })?;
        let url =
            UnsubscribeUrl::parse(url).map_err(|why| refuse(format!("[feedback] unsubscribe_url = {url:?}: {why}")))?;
        let keys = feedback
            .keyring()
            .map_err(|(field, value, reason)| refuse(format!("{field} = {value:?}: {reason}")))?;
        Ok(Some(UnsubscribeLinks {
            keys: Arc::new(keys),
            campaign: campaign.feedback_ids(),
            base: url.base,
            domain: feedback.bounce_domain.clone(),
        }))
    }

    /// `<https://…/<token>>, <mailto:unsubscribe+<token>@<bounce domain>?subject=unsubscribe>`
    /// for recipient `line`, the token issued at `now`.
    pub fn header_value(&self, line: u64, now: SystemTime) -> String {
        let (campaign, line) = self.campaign.of(line);
        let text = Token::unsubscribe(campaign, line, TOKEN_SOURCE_IP, now).encode(&self.keys);
        let prefix = volley_feedback::verp::UNSUBSCRIBE_PREFIX;
        format!(
            "<{}/{text}>, <mailto:{prefix}+{text}@{}?subject=unsubscribe>",
            self.base, self.domain
        )
    }
}
