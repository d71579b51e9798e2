//! Errors raised while configuring or starting the sink.
//!
//! Peer misbehaviour is never an error here: the sink answers it with an SMTP reply.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong before the sink serves its first connection.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from [`SinkConfig::listen`](crate::SinkConfig::listen).
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The self-signed certificate for STARTTLS could not be generated.
    #[error("cannot generate the self-signed STARTTLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the generated certificate or key.
    #[error("cannot build the TLS server configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A canned-reply file could not be read.
    #[error("cannot read canned replies from {}: {source}", path.display())]
    CannedRead {
        /// The file named by the caller.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A canned-reply file is not valid TOML or does not have the expected shape.
    #[error("invalid canned-reply file {}: {source}", path.display())]
    CannedParse {
        /// The file named by the caller.
        path: PathBuf,
        /// The TOML parser's message, which names the line and field.
        source: toml::de::Error,
    },
    /// A field of one `[[reply]]` table has an invalid value.
    #[error("invalid canned reply in {}: reply[{index}].{field}: {reason}", path.display())]
    CannedField {
        /// The file (or `<config>` when the reply was built in code).
        path: PathBuf,
        /// Zero-based position of the `[[reply]]` table.
        index: usize,
        /// The offending field (`domain`, `text`, `percent`, ...).
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A [`SinkConfig`](crate::SinkConfig) field has a value the sink cannot honour.
    #[error("invalid sink configuration: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The field name, e.g. `tempfail_pct`.
        field: &'static str,
        /// The rejected value, rendered.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A command-line flag of `volley sink` has an invalid value.
    #[error("invalid value '{value}' for {flag}: {reason}")]
    InvalidArgument {
        /// The flag, e.g. `--tempfail`.
        flag: &'static str,
        /// The rejected value, as given.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The SMTP client that sends complaints and late bounces could not be set up.
    #[error("cannot set up the feedback client: {0}")]
    FeedbackClient(String),
    /// A `--fault` or `--tls-fault` spec does not parse.
    #[error("invalid value '{value}' for {flag}: {reason}")]
    InvalidFault {
        /// `--fault` or `--tls-fault`.
        flag: &'static str,
        /// The spec, as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SinkError {
    /// True when the error comes from the caller's input (configuration, flags, canned-reply
    /// file) rather than from the environment (sockets, crypto); fixing the input fixes it.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            SinkError::CannedParse { .. }
                | SinkError::CannedField { .. }
                | SinkError::InvalidConfig { .. }
                | SinkError::InvalidArgument { .. }
                | SinkError::InvalidFault { .. }
        )
    }
}
