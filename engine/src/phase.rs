//! The phases of an SMTP client session, named in errors, timeouts and outcomes.

use std::fmt;

/// Where in the session something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Opening the TCP connection from the source IP.
    Connect,
    /// Waiting for the 220 greeting.
    Banner,
    /// EHLO (or HELO fallback).
    Ehlo,
    /// STARTTLS command and the TLS handshake.
    StartTls,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// DATA command, up to the 354 reply.
    Data,
    /// Sending the message content.
    DataBlock,
    /// Waiting for the reply to the final dot.
    DataEnd,
    /// RSET between transactions.
    Rset,
    /// QUIT.
    Quit,
}

impl Phase {
    /// Lower-case name used in logs and the accounting log.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Ehlo => "ehlo",
            Phase::StartTls => "starttls",
            Phase::MailFrom => "mail_from",
            Phase::RcptTo => "rcpt_to",
            Phase::Data => "data",
            Phase::DataBlock => "data_block",
            Phase::DataEnd => "data_end",
            Phase::Rset => "rset",
            Phase::Quit => "quit",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
