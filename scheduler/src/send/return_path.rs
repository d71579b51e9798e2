//! The envelope sender (SMTP `MAIL FROM`) of each message: the campaign's `envelope_from`, or
//! with VERP (`[feedback]` in volley.toml, a campaign's `verp`) `bounces+<token>@<bounce
//! domain>`, the token naming the campaign, the recipient's line and the source IP, so that
//! a later bounce or complaint maps back to the message. The header `From:` is unchanged.

use std::net::IpAddr;
use std::sync::Arc;

use volley_feedback::{Keyring, Token};

use crate::campaign::{Campaign, FeedbackIds};
use crate::config::SendConfig;

use super::SendError;

/// One campaign's return path.
#[derive(Debug)]
pub(crate) enum ReturnPath {
    /// The same address for every message.
    Fixed(Arc<str>),
    /// The envelope sender each injected message came with.
    Client,
    /// A signed token per message.
    Verp {
        keys: Arc<Keyring>,
        campaign: FeedbackIds,
        domain: String,
    },
}

impl ReturnPath {
    /// The return path `campaign` uses under `config`: VERP when the campaign's `verp` says so,
    /// else when `[feedback] verp` does. Reads the token keys.
    pub fn new(campaign: &Campaign, config: &SendConfig) -> Result<ReturnPath, SendError> {
        let verp = campaign
            .verp()
            .unwrap_or_else(|| config.feedback.as_ref().is_some_and(|f| f.verp));
        if !verp && campaign.spool().is_some() {
            return Ok(ReturnPath::Client);
        }
        if !verp {
            return Ok(ReturnPath::Fixed(Arc::from(campaign.envelope_from().as_str())));
        }
        let feedback = config.feedback.as_ref().ok_or_else(|| {
            SendError::Config(format!(
                "campaign {} sets `verp = true` but volley.toml has no [feedback] table (bounce_domain, key_file)",
                campaign.id()
            ))
        })?;
        let keys = feedback
            .keyring()
            .map_err(|(field, value, reason)| SendError::Config(format!("field `{field}` = {value:?}: {reason}")))?;
        Ok(ReturnPath::Verp {
            keys: Arc::new(keys),
            campaign: campaign.feedback_ids(),
            domain: feedback.bounce_domain.clone(),
        })
    }

    /// The `MAIL FROM` address for recipient `line` sent from `source`; `sender` is the
    /// envelope sender an injected message came with.
    pub fn mail_from(&self, line: u64, source: IpAddr, sender: Option<&str>) -> String {
        match self {
            ReturnPath::Fixed(address) => address.to_string(),
            ReturnPath::Client => sender.unwrap_or_default().to_owned(),
            ReturnPath::Verp { keys, campaign, domain } => {
                let (campaign, line) = campaign.of(line);
                volley_feedback::verp::return_path(&Token::bounce(campaign, line, source), keys, domain)
            }
        }
    }
}
