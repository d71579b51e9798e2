//! [`SignPool`]: DKIM signing on dedicated OS threads, fed through a bounded channel.
//!
//! RSA signing costs about a millisecond of CPU per message, so it must not run on tokio's
//! workers. The producer (the scheduler's render thread) calls [`SignPool::submit`], which blocks
//! while the queue is full: back-pressure reaches the producer instead of memory growing. Each
//! result goes to the `done` callback on the worker thread, typically a non-blocking send into a
//! tokio channel (`UnboundedSender::send`, or `Sender::blocking_send` — never from a tokio thread).

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::{DkimError, DkimSigners};

/// What a worker receives.
struct Job<T> {
    item: T,
    from_domain: Arc<str>,
    message: Vec<u8>,
}

/// [`SignPool::submit`] on a pool whose workers have all stopped (each `done` call panicked).
/// Gives the work back.
#[derive(Debug, thiserror::Error)]
#[error("the dkim signing pool is closed")]
pub struct Closed<T> {
    /// The caller's payload.
    pub item: T,
    /// The unsigned message.
    pub message: Vec<u8>,
}

/// Workers that panicked (in the `done` callback) before [`SignPool::close`] joined them.
#[derive(Debug, thiserror::Error)]
#[error("{workers} dkim signing worker(s) panicked")]
pub struct WorkersPanicked {
    /// How many.
    pub workers: usize,
}

/// A fixed set of signing threads. Dropping it without [`SignPool::close`] lets the workers
/// finish the queue in the background.
pub struct SignPool<T> {
    queue: Option<Sender<Job<T>>>,
    workers: Vec<JoinHandle<()>>,
}

impl<T> std::fmt::Debug for SignPool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignPool")
            .field("threads", &self.workers.len())
            .field("queued", &self.queue.as_ref().map_or(0, Sender::len))
            .finish()
    }
}

impl<T: Send + 'static> SignPool<T> {
    /// Starts `threads` workers (0 = [`default_threads`]) behind a queue of `queue` messages
    /// (at least 1). Each submitted message comes back through `done(item, result)`, where
    /// `result` is the signed message (signature headers + original bytes), the original bytes
    /// when no key is configured for its From domain, or the signing error. Fails only when the
    /// OS refuses a thread.
    pub fn start<F>(signers: Arc<DkimSigners>, threads: usize, queue: usize, done: F) -> io::Result<SignPool<T>>
    where
        F: Fn(T, Result<Vec<u8>, DkimError>) + Send + Sync + 'static,
    {
        let threads = if threads == 0 { default_threads() } else { threads };
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        let done = Arc::new(done);
        let workers = (0..threads)
            .map(|i| {
                let (rx, signers, done) = (rx.clone(), Arc::clone(&signers), Arc::clone(&done));
                std::thread::Builder::new()
                    .name(format!("dkim-sign-{i}"))
                    .spawn(move || work(&rx, &signers, &*done))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(SignPool {
            queue: Some(tx),
            workers,
        })
    }

    /// Queues `message` (From domain `from_domain`) for signing, blocking while the queue is full.
    /// Call it from a plain thread (or `spawn_blocking`), not from an async task.
    pub fn submit(&self, item: T, from_domain: Arc<str>, message: Vec<u8>) -> Result<(), Closed<T>> {
        let job = Job {
            item,
            from_domain,
            message,
        };
        let Some(queue) = &self.queue else {
            return Err(Closed {
                item: job.item,
                message: job.message,
            });
        };
        queue.send(job).map_err(|e| Closed {
            item: e.0.item,
            message: e.0.message,
        })
    }

    /// Messages waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.as_ref().map_or(0, Sender::len)
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Stops taking work, lets the workers sign everything queued, and joins them: every
    /// submitted message has had its `done` call when this returns.
    pub fn close(mut self) -> Result<(), WorkersPanicked> {
        drop(self.queue.take());
        let panicked = self
            .workers
            .drain(..)
            .map(JoinHandle::join)
            .filter(Result::is_err)
            .count();
        if panicked == 0 {
            Ok(())
        } else {
            Err(WorkersPanicked { workers: panicked })
        }
    }
}

impl<T> Drop for SignPool<T> {
    fn drop(&mut self) {
        // Closing the channel ends each worker once the queue is empty; they are not joined here.
        drop(self.queue.take());
    }
}

/// One thread per available core (at least 1).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A worker: sign until the channel is closed and empty.
fn work<T>(jobs: &Receiver<Job<T>>, signers: &DkimSigners, done: &dyn Fn(T, Result<Vec<u8>, DkimError>)) {
    for job in jobs {
        let result = signers.sign_message(&job.from_domain, job.message);
        done(job.item, result);
    }
}
