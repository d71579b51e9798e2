//! Threads for a campaign's reading side (its producer and its fetcher), kept for the next
//! campaign of the process once one ends.
//!
//! A plain `volley send` starts two such threads and ends. A process that runs campaign after
//! campaign — a cluster node runs one per chunk of 1,000 recipients — paid for a thread's
//! start and end twice per chunk: its stack mapped and faulted in, the allocator's heap of the
//! thread set up and handed back, the kernel's work for the clone and the exit (benches/
//! cluster.sh profiles). An idle thread here waits [`IDLE_FOR`] for its next job, then ends.
//! Threads are kept by name, so that a profile still tells producers from fetchers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendError, Sender};

/// How long a thread without a job waits for one before it ends.
pub const IDLE_FOR: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// An idle thread: its name, its id and the channel it waits on.
struct Idle {
    name: &'static str,
    id: u64,
    jobs: Sender<Job>,
}

/// The idle threads, the one idle last, last.
static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// The id of the last thread started.
static LAST_ID: AtomicU64 = AtomicU64::new(0);

fn idle() -> MutexGuard<'static, Vec<Idle>> {
    IDLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job's result, once it is done ([`Spawned::join`]).
pub struct Spawned<T> {
    result: Receiver<std::thread::Result<T>>,
}

impl<T> Spawned<T> {
    /// Waits for the job's result; `Err` with the panic's payload if it panicked.
    pub fn join(self) -> std::thread::Result<T> {
        self.result
            .recv()
            .unwrap_or_else(|_| Err(Box::new("the reading thread ended without a result")))
    }
}

/// Runs `f` on an idle thread named `name`, or on a new one.
pub fn spawn<T: Send + 'static>(
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<Spawned<T>> {
    let (tx, result) = crossbeam_channel::bounded(1);
    let mut job: Job = Box::new(move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(out);
    });
    while let Some(thread) = take_idle(name) {
        // Only a thread that ended without leaving the list refuses it (none does: see
        // `serve`); the job then goes to the next one.
        match thread.send(job) {
            Ok(()) => return Ok(Spawned { result }),
            Err(SendError(back)) => job = back,
        }
    }
    let (jobs, rx) = crossbeam_channel::bounded::<Job>(1);
    let id = LAST_ID.fetch_add(1, Ordering::Relaxed) + 1;
    // Its first job waits in its channel (room for one) until it starts.
    if jobs.send(job).is_err() {
        return Err(std::io::Error::other(
            "a reading thread's channel closed before it started",
        ));
    }
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || serve(name, id, jobs, rx))?;
    Ok(Spawned { result })
}

/// Takes the idle thread named `name` that was idle last off the list.
fn take_idle(name: &str) -> Option<Sender<Job>> {
    let mut list = idle();
    let at = list.iter().rposition(|t| t.name == name)?;
    Some(list.remove(at).jobs)
}

/// A reading thread: runs its jobs; between them it is listed as idle, for [`IDLE_FOR`].
fn serve(name: &'static str, id: u64, jobs: Sender<Job>, rx: Receiver<Job>) {
    loop {
        match rx.recv_timeout(IDLE_FOR) {
            Ok(job) => {
                job();
                let jobs = jobs.clone();
                idle().push(Idle { name, id, jobs });
            }
            Err(RecvTimeoutError::Timeout) => {
                // It ends unless a spawner has just taken it off the list (its job is coming).
                let mut list = idle();
                if let Some(at) = list.iter().position(|t| t.id == id) {
                    list.remove(at);
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    /// Names used by no other test of this binary: their lists are these tests' own.
    #[test]
    fn a_thread_that_finished_its_job_takes_the_next_one_of_its_name() {
        let first = spawn("test-reader-a", thread_id)
            .expect("spawn")
            .join()
            .expect("result");
        // Listed as idle once its job's result is sent: wait for that.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !idle().iter().any(|t| t.name == "test-reader-a") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let second = spawn("test-reader-a", thread_id)
            .expect("spawn")
            .join()
            .expect("result");
        assert_eq!(first, second, "the idle thread ran the second job");
        assert_ne!(first, thread_id());
        let other = spawn("test-reader-b", thread_id)
            .expect("spawn")
            .join()
            .expect("result");
        assert_ne!(other, first, "another name gets a thread of its own");
    }

    #[test]
    fn jobs_run_at_once_each_on_a_thread_and_a_panic_is_returned() {
        let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
        // Two jobs that only end together: they run on two threads at once.
        let a = {
            let go = go_tx.clone();
            spawn("test-reader-c", move || go.send(()).is_ok()).expect("spawn")
        };
        let b = spawn("test-reader-c", move || go_rx.recv().is_ok()).expect("spawn");
        assert!(a.join().expect("a") && b.join().expect("b"));
        let panicked = spawn("test-reader-c", || -> u8 { panic!("job failed") }).expect("spawn");
        assert!(panicked.join().is_err(), "the panic comes back to the joiner");
        // The thread that caught it runs the next job.
        assert_eq!(spawn("test-reader-c", || 7).expect("spawn").join().expect("result"), 7);
    }
}
