//! From a recipient row to a job: the message is built on the reading thread, then signed
//! (DKIM) on the signing pool's worker threads when a key covers the campaign's From domain —
//! never on the async runtime's threads — and prepared for DATA. Results arrive through one
//! callback either way, so the reading threads do not care which path a message took.

use std::sync::Arc;

use volley_engine::dkim::{DkimSigners, SignPool};

use super::job::{build, Built, Job, Refused, RowRef};
use crate::message::MessageFactory;
use crate::recipients::RecipientRow;

/// Where finished jobs (or refusals found while finishing them) go.
pub(crate) type Done = Arc<dyn Fn(Result<Job, Box<Refused>>) + Send + Sync>;

/// How the run signs its messages.
#[derive(Clone)]
pub(crate) struct Signing {
    pub signers: Arc<DkimSigners>,
    /// Signing threads (0: one per core).
    pub threads: usize,
    /// The campaign's From domain (the `d=` of its signatures); `None` for an injection
    /// campaign, whose messages are signed for their own From domains.
    pub from_domain: Option<Arc<str>>,
}

/// Builds, signs and prepares messages for one reading thread.
pub(crate) struct Renderer {
    factory: Arc<MessageFactory>,
    done: Done,
    pool: Option<Pool>,
}

/// The signing threads, the campaign's domain (`None`: each message's own) and the keys.
type Pool = (SignPool<Built>, Option<Arc<str>>, Arc<DkimSigners>);

/// Messages queued for signing per worker thread before the reading thread waits.
const QUEUE_PER_THREAD: usize = 64;

impl Renderer {
    /// A renderer that signs when `signing` has a key for its From domain.
    pub fn start(factory: Arc<MessageFactory>, signing: Option<&Signing>, done: Done) -> std::io::Result<Renderer> {
        let covered = |s: &&Signing| s.from_domain.as_ref().is_none_or(|d| s.signers.has_key_for(d));
        let pool = match signing.filter(covered) {
            Some(s) => {
                let threads = if s.threads == 0 {
                    volley_engine::dkim::default_threads()
                } else {
                    s.threads
                };
                let finish = done.clone();
                let pool = SignPool::start(
                    s.signers.clone(),
                    threads,
                    threads * QUEUE_PER_THREAD,
                    move |built: Built, signed| {
                        finish(match signed {
                            Ok(bytes) => built.finish(bytes),
                            Err(e) => Err(built.unsigned(&e)),
                        })
                    },
                )?;
                Some((pool, s.from_domain.clone(), s.signers.clone()))
            }
            None => None,
        };
        Ok(Renderer { factory, done, pool })
    }

    /// Builds the message for `row`. A row the template refuses comes back at once (for the
    /// rejects file); otherwise the job (or a refusal found while signing or preparing it)
    /// goes to the callback, now or from a signing thread.
    pub fn render(&self, row: RecipientRow, r: RowRef) -> Result<(), Box<Refused>> {
        let (built, bytes) = build(&self.factory, row, r)?;
        let domain = self
            .pool
            .as_ref()
            .and_then(|(_, campaign, signers)| {
                built
                    .sign_domain
                    .clone()
                    .or_else(|| campaign.clone())
                    .map(|d| (signers.has_key_for(&d), d))
            })
            .filter(|(covered, _)| *covered)
            .map(|(_, d)| d);
        match (&self.pool, domain) {
            (Some((pool, ..)), Some(domain)) => {
                if let Err(closed) = pool.submit(built, domain, bytes) {
                    // Only after close(): never send unsigned what should be signed.
                    (self.done)(Err(closed.item.refused("(dkim)", "the signing pool is closed".into())));
                }
            }
            // No key covers the message's domain (injected mail only: a campaign without a
            // key for its From domain starts no pool).
            _ => (self.done)(built.finish(bytes)),
        }
        Ok(())
    }

    /// Waits until every submitted message has reached the callback.
    pub fn close(self) {
        if let Some((pool, ..)) = self.pool {
            if let Err(e) = pool.close() {
                tracing::error!("DKIM signing pool: {e}");
            }
        }
    }
}
