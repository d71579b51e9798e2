//! Child processes with their resource usage: `wait4(2)` reaps a child and returns its CPU
//! time (user + system) and peak resident set size (`ru_maxrss`), the figures the kernel
//! keeps for exactly that process — nothing sampled.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::error::ScenarioError;

/// How a child ended and what it used.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// Its exit status.
    pub status: ExitStatus,
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in the kernel.
    pub sys: Duration,
    /// Peak resident set size, KiB.
    pub max_rss_kib: u64,
    /// When it was reaped.
    pub at: Instant,
}

impl Exit {
    /// User + system CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        (self.user + self.sys).as_secs_f64()
    }
}

/// How often a running child is polled.
const POLL: Duration = Duration::from_millis(2);

/// Waits for `child` to exit (reaping it with `wait4`) until `deadline`; at the deadline it is
/// killed (SIGKILL), reaped, and `Ok(None)` returned. `child` must not have been waited for.
pub fn wait_with_usage(child: &mut Child, deadline: Instant) -> std::io::Result<Option<Exit>> {
    let pid = child.id() as libc::pid_t;
    loop {
        if let Some(exit) = try_wait4(pid)? {
            return Ok(Some(exit));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            while try_wait4(pid)?.is_none() {
                std::thread::sleep(POLL);
            }
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// One non-blocking `wait4`: `Some` once the child has exited (it is reaped then).
fn try_wait4(pid: libc::pid_t) -> std::io::Result<Option<Exit>> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `usage` are valid, writable and live for the call; `pid` is our
        // own child, not yet reaped (callers never wait for it through `Child`).
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == 0 {
            return Ok(None);
        }
        if got == pid {
            let time = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
            return Ok(Some(Exit {
                status: ExitStatus::from_raw(status),
                user: time(usage.ru_utime),
                sys: time(usage.ru_stime),
                max_rss_kib: usage.ru_maxrss.max(0) as u64,
                at: Instant::now(),
            }));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends SIGINT (what `volley sink` stops on, printing its final stats).
pub fn interrupt(child: &Child) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers; the pid is our child, not yet reaped, so it cannot
    // name another process.
    if unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The last `lines` lines of a (log) file, for error messages; empty when unreadable.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A [`ScenarioError::Child`] for `what`, with the tail of its stderr file.
pub fn failed(what: &str, reason: String, stderr: &Path) -> ScenarioError {
    ScenarioError::Child {
        what: what.to_owned(),
        reason,
        stderr_tail: tail(stderr, 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn wait4_reports_cpu_and_rss_of_the_child() {
        // A busy child: ~0.2 s of CPU in a shell loop.
        let mut child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exit 3"])
            .spawn()
            .unwrap();
        let exit = wait_with_usage(&mut child, Instant::now() + Duration::from_secs(60))
            .unwrap()
            .expect("exits before the deadline");
        assert_eq!(exit.status.code(), Some(3));
        assert!(exit.cpu_s() > 0.0, "{exit:?}");
        assert!(exit.max_rss_kib > 100, "{exit:?}");
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let started = Instant::now();
        let got = wait_with_usage(&mut child, Instant::now() + Duration::from_millis(100)).unwrap();
        assert!(got.is_none());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
