//! [`SuppressionError`]: what failed, in which backend, on which URL (password redacted) or file.

use std::path::PathBuf;

/// A suppression-store failure. Every variant names the backend (a redacted Redis URL or the
/// embedded database path) or the file and line involved.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// A Redis command or connection failed.
    #[error("suppression store {url}: {op} failed: {source}")]
    Redis {
        /// The Redis URL with any password replaced by `***`.
        url: String,
        /// What was being done (`connect`, `check`, `apply`, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },
    /// The configured Redis URL could not be parsed.
    #[error("invalid suppression redis URL {url}: {source}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// The parser's complaint.
        #[source]
        source: redis::RedisError,
    },
    /// An embedded (redb) database operation failed.
    #[error("suppression store {}: {op} failed: {source}", path.display())]
    Embedded {
        /// The database file.
        path: PathBuf,
        /// What was being done (`open`, `check`, `apply`, ...).
        op: &'static str,
        /// The underlying error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The embedded database file is locked by another process.
    #[error(
        "suppression store {} is in use by another volley process; configure [suppression] redis to share one list",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The embedded database is locked by another process and that process does not answer
    /// on its control socket (an older volley, or one exiting or starting at this moment).
    #[error(
        "suppression store {} is in use by another volley process, which does not answer on {}: {source}",
        path.display(),
        socket.display()
    )]
    HolderUnreachable {
        /// The database file.
        path: PathBuf,
        /// The control socket beside it.
        socket: PathBuf,
        /// Why connecting failed.
        #[source]
        source: std::io::Error,
    },
    /// The process holding the embedded database refused an operation sent through its
    /// control socket.
    #[error("suppression store (through {}): {op} failed: {message}", socket.display())]
    Remote {
        /// The control socket.
        socket: PathBuf,
        /// What was being done (`check`, `apply`, ...).
        op: &'static str,
        /// The holder's error message.
        message: String,
    },
    /// Reading or writing a file (CSV, spill file, state directory) failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file (CSV or spill file) holds something that cannot be read.
    #[error("{}:{line}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: u64,
        /// What is wrong with that line.
        message: String,
    },
    /// A `[suppression]` setting is invalid.
    #[error("suppression.{field} = {value}: {message}")]
    Config {
        /// The field name inside `[suppression]`.
        field: &'static str,
        /// The offending value, as configured (passwords redacted).
        value: String,
        /// Why it is refused.
        message: String,
    },
}

impl SuppressionError {
    /// True when the store could not be reached or failed in a way that may heal by itself
    /// (connection refused/dropped, timeouts, Redis loading/busy). Callers pause and retry these;
    /// other errors (bad config, lock held, bad file) need an operator.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SuppressionError::Redis { .. } => true,
            SuppressionError::Embedded { .. } => true,
            SuppressionError::Io { .. } => true,
            SuppressionError::InvalidUrl { .. }
            | SuppressionError::Locked { .. }
            | SuppressionError::HolderUnreachable { .. }
            | SuppressionError::Remote { .. }
            | SuppressionError::BadFile { .. }
            | SuppressionError::Config { .. } => false,
        }
    }
}

/// `url` with the password redacted (shared with the warm-up counters' configuration).
pub use volley_warmup::secret_url::redact_url;
