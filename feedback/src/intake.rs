//! One inbound message -> [`Feedback`]: the envelope's token first, then the report inside
//! (DSN, ARF, plain-text bounce), or a quarantine verdict. Never panics on any input; never
//! looks at more than the configured size.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mail_parser::MessageParser;

use crate::event::{
    BounceClassifier, Event, EventKind, Feedback, Origin, QuarantineReason, ReportedStatus, UnsubscribeVia,
};
use crate::key::Keyring;
use crate::token::{Token, TokenKind, DEFAULT_UNSUBSCRIBE_MAX_AGE};
use crate::verp::{token_in_address, AddressToken};
use crate::{arf, dsn, plain};

/// The default largest message the intake parses (DSNs may return the whole original).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 10 << 20;

/// The SMTP envelope a message arrived with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundEnvelope {
    /// `MAIL FROM` (empty for bounces, RFC 5321 §4.5.5).
    pub mail_from: String,
    /// `RCPT TO` addresses: for a bounce, our VERP return path.
    pub rcpt_to: Vec<String>,
}

/// The intake: keys to verify tokens, the bounce classifier, our domains and the size cap.
#[derive(Clone)]
pub struct Intake {
    keys: Arc<Keyring>,
    classifier: Arc<dyn BounceClassifier + Send + Sync>,
    domains: Vec<String>,
    max_bytes: usize,
    unsubscribe_max_age: Duration,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("keys", &self.keys)
            .field("domains", &self.domains)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl Intake {
    /// An intake accepting tokens at any domain, with [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub fn new(keys: Arc<Keyring>, classifier: Arc<dyn BounceClassifier + Send + Sync>) -> Intake {
        Intake {
            keys,
            classifier,
            domains: Vec::new(),
            max_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            unsubscribe_max_age: DEFAULT_UNSUBSCRIBE_MAX_AGE,
        }
    }

    /// Unsubscribe tokens older than `max_age` are refused (quarantined, nothing changes).
    pub fn with_unsubscribe_max_age(mut self, max_age: Duration) -> Intake {
        self.unsubscribe_max_age = max_age;
        self
    }

    /// Only addresses at these domains carry our tokens (e.g. the bounce domain).
    pub fn with_domains(mut self, domains: Vec<String>) -> Intake {
        self.domains = domains;
        self
    }

    /// Messages larger than `max_bytes` are quarantined unparsed.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Intake {
        self.max_bytes = max_bytes;
        self
    }

    /// What `raw`, received with `envelope`, amounts to.
    pub fn process(&self, raw: &[u8], envelope: &InboundEnvelope) -> Feedback {
        match self.events(raw, envelope) {
            Ok(events) => Feedback::Events { events },
            Err(reason) => Feedback::Quarantine { reason },
        }
    }

    fn events(&self, raw: &[u8], envelope: &InboundEnvelope) -> Result<Vec<Event>, QuarantineReason> {
        if raw.len() > self.max_bytes {
            return Err(QuarantineReason::TooLarge {
                size: raw.len(),
                max: self.max_bytes,
            });
        }
        let rcpts: Vec<(&'static str, Option<&str>)> = envelope
            .rcpt_to
            .iter()
            .map(|r| ("envelope recipient", Some(r.as_str())))
            .collect();
        let envelope_token = self.token(&rcpts)?;
        if let Some(token) = envelope_token.as_ref().filter(|t| t.kind == TokenKind::Unsubscribe) {
            token
                .check_age(SystemTime::now(), self.unsubscribe_max_age)
                .map_err(|error| QuarantineReason::BadToken {
                    place: "envelope recipient",
                    error: error.to_string(),
                })?;
            let origin = Origin {
                token: Some(token.clone()),
                ..Origin::default()
            };
            let kind = EventKind::Unsubscribe {
                via: UnsubscribeVia::Mail,
            };
            return Ok(vec![Event::new(origin, kind)]);
        }
        let message = MessageParser::new().parse(raw).ok_or(QuarantineReason::NotMime)?;
        if dsn::is_dsn(&message) {
            let report = dsn::parse(&message, raw).map_err(|detail| QuarantineReason::Malformed {
                report: "delivery-status report",
                detail,
            })?;
            let token = match envelope_token {
                Some(t) => Some(t),
                None => self.token(&[("returned Return-Path", report.returned.return_path.as_deref())])?,
            };
            return Ok(report
                .recipients
                .iter()
                .map(|r| self.dsn_event(&report, r, token.clone()))
                .collect());
        }
        if arf::is_arf(&message) {
            let report = arf::parse(raw).map_err(|detail| QuarantineReason::Malformed {
                report: "feedback report",
                detail,
            })?;
            let token = self
                .token(&[
                    ("reported Original-Mail-From", report.original_mail_from.as_deref()),
                    ("reported Return-Path", report.reported.return_path.as_deref()),
                ])?
                .or(envelope_token);
            let recipient = report.original_rcpt_to.clone().or_else(|| {
                report
                    .reported
                    .to
                    .as_deref()
                    .and_then(|to| to.split(['<', '>', ',', ' ']).find(|w| w.contains('@')))
                    .map(str::to_lowercase)
            });
            if token.is_none() && recipient.is_none() {
                return Err(QuarantineReason::Unidentified {
                    report: "feedback report",
                });
            }
            let origin = Origin {
                token,
                recipient,
                message_id: report.reported.message_id.clone(),
            };
            let feedback_type = report.feedback_type.to_owned();
            let kind = if report.is_complaint() {
                EventKind::Complaint {
                    feedback_type,
                    user_agent: report.user_agent.clone(),
                }
            } else {
                EventKind::Report { feedback_type }
            };
            return Ok(vec![Event::new(origin, kind)]);
        }
        if let Some(bounce) = plain::detect(&message, raw, &envelope.rcpt_to) {
            let token = match envelope_token {
                Some(t) => Some(t),
                None => self.token(&[("returned Return-Path", bounce.returned.return_path.as_deref())])?,
            };
            if token.is_none() && bounce.recipient.is_none() {
                return Err(QuarantineReason::Unidentified {
                    report: "plain-text bounce",
                });
            }
            let origin = Origin {
                token,
                recipient: bounce.recipient.clone(),
                message_id: bounce.returned.message_id.clone(),
            };
            let kind = if bounce.delayed {
                EventKind::Delayed { status: bounce.status }
            } else {
                let mut classified = bounce.status.to_recipient_status(true);
                classified.text = Arc::from(format!("{} {}", bounce.status.diagnostic, bounce.explanation));
                EventKind::Bounce {
                    class: self.classifier.classify(&classified),
                    status: bounce.status,
                    mta: None,
                    asynchronous: true,
                }
            };
            return Ok(vec![Event::new(origin, kind)]);
        }
        Err(QuarantineReason::Unrecognised)
    }

    fn dsn_event(&self, report: &dsn::DsnReport, r: &dsn::DsnRecipient, token: Option<Token>) -> Event {
        let origin = Origin {
            token,
            recipient: Some(
                r.original_recipient
                    .clone()
                    .unwrap_or_else(|| r.final_recipient.clone()),
            ),
            message_id: report.returned.message_id.clone(),
        };
        let status = ReportedStatus {
            status: Some(r.status.clone()),
            code: r.reply_code(),
            diagnostic: r.diagnostic.clone().unwrap_or_default(),
        };
        let kind = match r.action.as_str() {
            "failed" => EventKind::Bounce {
                class: self.classifier.classify(&status.to_recipient_status(true)),
                status,
                mta: r.remote_mta.clone().or_else(|| report.reporting_mta.clone()),
                asynchronous: true,
            },
            "delayed" => EventKind::Delayed { status },
            action => EventKind::Notice {
                action: action.to_owned(),
                status,
            },
        };
        Event::new(origin, kind)
    }

    /// The first valid token among `candidates` (place, address); a refused one quarantines.
    fn token(&self, candidates: &[(&'static str, Option<&str>)]) -> Result<Option<Token>, QuarantineReason> {
        for (place, address) in candidates {
            let Some(address) = address else { continue };
            match token_in_address(address, &self.keys, &self.domains) {
                AddressToken::Valid(token) => return Ok(Some(token)),
                AddressToken::Refused(error) => {
                    return Err(QuarantineReason::BadToken {
                        place,
                        error: error.to_string(),
                    })
                }
                AddressToken::NotOurs => {}
            }
        }
        Ok(None)
    }
}
