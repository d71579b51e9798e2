//! The SMTP client protocol: the sans-IO codec ([`reply`], [`ehlo`], [`command`], [`dot`]) and
//! the async session built on it ([`session`], [`transaction`], and `pipeline`: a batch of
//! transactions at one round trip per message).

pub mod command;
pub mod dot;
pub mod ehlo;
mod pipeline;
pub mod reply;
pub mod session;
pub mod transaction;
