//! [`ScenarioError`]: what can stop a scenario from loading or running.

use std::path::PathBuf;

/// A scenario that cannot be loaded, validated or run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The scenario file is not valid TOML, has an unknown field or a value of the wrong type.
    #[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The scenario file (`<built-in default>` for the embedded one).
        file: PathBuf,
        /// 1-based line, when the parser reported a position.
        line: Option<usize>,
        /// The parser's message (it names the field).
        message: String,
    },
    /// A field has a value the runner cannot use.
    #[error("{}: {field} = {value}: {reason}", file.display())]
    Invalid {
        /// The scenario file, or `<command line>` for a flag.
        file: PathBuf,
        /// The field, e.g. `domains[2].weight` or `sink.faults[0]`.
        field: String,
        /// The offending value, rendered.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The `volley` binary the runner starts does not exist.
    #[error(
        "the volley binary {} does not exist (build it with `cargo build --release --bin volley`, \
         or pass --volley PATH)",
        path.display()
    )]
    VolleyMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A child process could not be started.
    #[error("cannot start {what} ({}): {source}", program.display())]
    Spawn {
        /// What the child is for, e.g. `volley send`.
        what: String,
        /// The program.
        program: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A child process failed, timed out or did not get ready.
    #[error("{what} {reason}; its stderr ends with:\n{stderr_tail}")]
    Child {
        /// What the child is for, e.g. `volley send`.
        what: String,
        /// What went wrong (exit status, timeout).
        reason: String,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// Waiting for or signalling a child process failed.
    #[error("{what}: {source}")]
    Wait {
        /// What was being done.
        what: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// An output of a child (summary JSON, accounting log, sink stats) is not what was expected.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Output {
        /// The file read.
        path: PathBuf,
        /// 1-based line, for line-oriented files.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
}

impl ScenarioError {
    /// An [`Io`](ScenarioError::Io) error for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ScenarioError {
        let path = path.into();
        move |source| ScenarioError::Io { path, source }
    }
}
