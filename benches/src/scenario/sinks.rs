//! The `volley sink` children of a run: started on a free loopback port each (the address is
//! read from the sink's `listening on ADDR` line), stopped with SIGINT, after which the sink
//! prints its final counters as one JSON line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::error::ScenarioError;
use super::process::{failed, interrupt, wait_with_usage, Exit};
use crate::SinkStats;

/// How long a sink may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a sink may take to stop after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running sink child.
pub struct SinkProcess {
    child: Option<Child>,
    addr: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
    what: String,
}

/// A stopped sink: its counts and resource usage.
#[derive(Clone, Debug)]
pub struct StoppedSink {
    /// Its final counters.
    pub counts: SinkStats,
    /// Its exit and resource usage.
    pub exit: Exit,
}

impl SinkProcess {
    /// Starts `volley sink --listen 127.0.0.1:0 <flags>`, output in `dir/<name>.*`, and
    /// waits for its ready line.
    pub fn start(volley: &Path, dir: &Path, name: &str, flags: &[String]) -> Result<SinkProcess, ScenarioError> {
        let what = format!("volley sink {name}");
        let stdout = dir.join(format!("{name}.stdout"));
        let stderr = dir.join(format!("{name}.stderr"));
        let out = std::fs::File::create(&stdout).map_err(ScenarioError::io(&stdout))?;
        let err = std::fs::File::create(&stderr).map_err(ScenarioError::io(&stderr))?;
        let child = Command::new(volley)
            .args(["sink", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| ScenarioError::Spawn {
                what: what.clone(),
                program: volley.to_path_buf(),
                source,
            })?;
        let mut sink = SinkProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
            what,
        };
        sink.addr = sink.wait_ready()?;
        Ok(sink)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn wait_ready(&mut self) -> Result<SocketAddr, ScenarioError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if let Some(rest) = text.lines().find_map(|l| l.split_once("listening on ").map(|(_, a)| a)) {
                return rest.trim().parse().map_err(|e| ScenarioError::Output {
                    path: self.stderr.clone(),
                    line: None,
                    reason: format!("bad address in the ready line {rest:?}: {e}"),
                });
            }
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| failed(&self.what, "is gone".into(), &self.stderr))?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(failed(
                    &self.what,
                    format!("exited ({status}) before it was ready"),
                    &self.stderr,
                ));
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    &self.what,
                    format!("printed no `listening on` line within {READY_TIMEOUT:?}"),
                    &self.stderr,
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops it (SIGINT), reaps it and reads its final counters.
    pub fn stop(mut self) -> Result<StoppedSink, ScenarioError> {
        let Some(mut child) = self.child.take() else {
            return Err(failed(&self.what, "is gone".into(), &self.stderr));
        };
        interrupt(&child).map_err(|source| ScenarioError::Wait {
            what: format!("stopping {}", self.what),
            source,
        })?;
        let exit = wait_with_usage(&mut child, Instant::now() + STOP_TIMEOUT)
            .map_err(|source| ScenarioError::Wait {
                what: format!("waiting for {}", self.what),
                source,
            })?
            .ok_or_else(|| {
                failed(
                    &self.what,
                    format!("did not stop within {STOP_TIMEOUT:?} of SIGINT"),
                    &self.stderr,
                )
            })?;
        if !exit.status.success() {
            return Err(failed(&self.what, format!("exited with {}", exit.status), &self.stderr));
        }
        let text = std::fs::read_to_string(&self.stdout).map_err(ScenarioError::io(&self.stdout))?;
        let (number, last) = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .last()
            .ok_or_else(|| ScenarioError::Output {
                path: self.stdout.clone(),
                line: None,
                reason: "the sink printed no stats line".to_owned(),
            })?;
        let counts = serde_json::from_str(last).map_err(|e| ScenarioError::Output {
            path: self.stdout.clone(),
            line: Some(number + 1),
            reason: format!("not a stats line: {e}"),
        })?;
        Ok(StoppedSink { counts, exit })
    }
}

impl Drop for SinkProcess {
    /// A sink not stopped on purpose (an error path) is killed.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
