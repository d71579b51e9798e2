//! The SMTP client protocol: the sans-IO codec ([`reply`], [`ehlo`], [`command`], [`dot`]) and
//! the async session built on it ([`session`], [`transaction`]).

pub mod command;
pub mod dot;
pub mod ehlo;
pub mod reply;
pub mod session;
pub mod transaction;
