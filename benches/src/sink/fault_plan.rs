//! Configurable fault injection: which reply (or TLS handshake) goes wrong, how, how often.
//!
//! A [`Fault`] names an SMTP stage and a [`FaultKind`]; the command at that stage is carried
//! out as usual (a message is accepted at `data-end`), only its reply is replaced, delayed or
//! never sent. That is the realistic case: after a lost final reply (RFC 1047) the server may
//! well have taken the message. A [`TlsFault`] spoils the STARTTLS handshake.
//!
//! On the command line (`volley sink --fault`, `--tls-fault`) a fault is written
//! `STAGE:KIND[:ARG][@PCT][#COUNT]`, e.g. `rcpt:close@10`, `data-end:delay:5s#1`,
//! `any:garbage@2`, and a TLS fault `KIND[:ARG][@PCT][#COUNT]`, e.g. `stall:10s`,
//! `wrong-name`.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::is_percentage;
use super::faults::chance;

/// Default length of a `long-line` reply line, in octets (RFC 5321 §4.5.3.1.5 allows 512).
pub const DEFAULT_LONG_LINE: usize = 8 * 1024;
/// Default number of lines of a `long-reply`.
pub const DEFAULT_LONG_REPLY_LINES: usize = 20_000;

/// Where a fault strikes: the reply to one SMTP stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStage {
    /// The banner.
    Greeting,
    /// The reply to EHLO or HELO.
    Ehlo,
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to RCPT TO.
    Rcpt,
    /// The reply to DATA (the 354), or to a BDAT chunk that is not the last.
    Data,
    /// The final reply after the dot or the last BDAT chunk (RFC 1047 window).
    DataEnd,
    /// Any of the above.
    Any,
}

impl FaultStage {
    const NAMES: [(&'static str, FaultStage); 7] = [
        ("greeting", FaultStage::Greeting),
        ("ehlo", FaultStage::Ehlo),
        ("mail", FaultStage::Mail),
        ("rcpt", FaultStage::Rcpt),
        ("data", FaultStage::Data),
        ("data-end", FaultStage::DataEnd),
        ("any", FaultStage::Any),
    ];

    fn matches(self, at: FaultStage) -> bool {
        self == FaultStage::Any || self == at
    }
}

/// What goes wrong with the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The reply is sent after this long (longer than the client's timeout, typically).
    Delay(Duration),
    /// The connection is closed instead of replying.
    Close,
    /// A line that is not an SMTP reply replaces the reply.
    Garbage,
    /// One reply line of this many octets replaces the reply.
    LongLine(usize),
    /// A multi-line reply of this many `250-` lines replaces the reply.
    LongReply(usize),
    /// The first half of the reply (no CRLF), then the connection is closed.
    Truncated,
    /// The reply is sent, then the sink stops reading: the client's writes block once the
    /// socket buffers fill (the sink's receive buffer is kept small when this fault is set).
    StopReading,
}

/// One fault: stage, kind, probability, optional maximum number of injections.
#[derive(Debug)]
pub struct Fault {
    /// The stage whose reply is affected.
    pub stage: FaultStage,
    /// What happens.
    pub kind: FaultKind,
    /// Probability in percent (0..=100) at each occurrence of the stage.
    pub percent: f64,
    /// Injected at most this many times over the sink's life; `None` is unlimited.
    pub count: Option<u64>,
    injected: AtomicU64,
}

impl Clone for Fault {
    fn clone(&self) -> Self {
        Fault::new(self.stage, self.kind, self.percent, self.count)
    }
}

impl Fault {
    /// A fault that has not been injected yet.
    pub fn new(stage: FaultStage, kind: FaultKind, percent: f64, count: Option<u64>) -> Fault {
        Fault {
            stage,
            kind,
            percent,
            count,
            injected: AtomicU64::new(0),
        }
    }

    /// Draws the fault at `at`: true when it applies and is injected (counted) this time.
    pub(crate) fn strikes(&self, at: FaultStage) -> bool {
        self.stage.matches(at) && draw(self.percent, self.count, &self.injected)
    }
}

/// How the STARTTLS handshake goes wrong (after the sink's `220 Ready to start TLS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFaultKind {
    /// Bytes that are not TLS instead of a ServerHello, then close.
    Garbage,
    /// Close the connection after reading the ClientHello.
    Close,
    /// Read the ClientHello and then say nothing for this long (a handshake timeout).
    Stall(Duration),
    /// Complete the handshake with a certificate for `wrong-name.invalid` only; it is the one
    /// [`SinkHandle::certificate_pem`](crate::SinkHandle::certificate_pem) returns, so a
    /// client that trusts it still fails on the name.
    WrongName,
}

/// One TLS fault with its probability and optional maximum number of injections.
#[derive(Debug)]
pub struct TlsFault {
    /// What happens.
    pub kind: TlsFaultKind,
    /// Probability in percent (0..=100) per handshake.
    pub percent: f64,
    /// Injected at most this many times; `None` is unlimited.
    pub count: Option<u64>,
    injected: AtomicU64,
}

impl Clone for TlsFault {
    fn clone(&self) -> Self {
        TlsFault::new(self.kind, self.percent, self.count)
    }
}

impl TlsFault {
    /// A TLS fault that has not been injected yet.
    pub fn new(kind: TlsFaultKind, percent: f64, count: Option<u64>) -> TlsFault {
        TlsFault {
            kind,
            percent,
            count,
            injected: AtomicU64::new(0),
        }
    }

    /// Draws the fault for one handshake.
    pub(crate) fn strikes(&self) -> bool {
        draw(self.percent, self.count, &self.injected)
    }
}

/// Percentage draw, then takes one of the `count` injections (if limited).
fn draw(percent: f64, count: Option<u64>, injected: &AtomicU64) -> bool {
    if !chance(percent) {
        return false;
    }
    match count {
        None => {
            injected.fetch_add(1, Ordering::Relaxed);
            true
        }
        Some(max) => injected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok(),
    }
}

/// Splits `[@PCT][#COUNT]` off the end of a fault spec.
fn split_tail(spec: &str) -> Result<(&str, f64, Option<u64>), String> {
    let (rest, count) = match spec.rsplit_once('#') {
        Some((rest, n)) => {
            let n: u64 = n.parse().map_err(|_| format!("count `#{n}` is not a whole number"))?;
            (rest, Some(n))
        }
        None => (spec, None),
    };
    let (rest, percent) = match rest.rsplit_once('@') {
        Some((rest, pct)) => {
            let pct: f64 = pct
                .parse()
                .map_err(|_| format!("percentage `@{pct}` is not a number"))?;
            if !is_percentage(pct) {
                return Err(format!("percentage `@{pct}` must be between 0 and 100"));
            }
            (rest, pct)
        }
        None => (rest, 100.0),
    };
    Ok((rest, percent, count))
}

fn duration_arg(kind: &str, arg: Option<&str>) -> Result<Duration, String> {
    let arg = arg.ok_or_else(|| format!("`{kind}` needs a duration, e.g. `{kind}:5s`"))?;
    humantime::parse_duration(arg).map_err(|e| format!("`{arg}` is not a duration: {e}"))
}

fn count_arg(kind: &str, arg: Option<&str>, default: usize) -> Result<usize, String> {
    match arg {
        None => Ok(default),
        Some(a) => match a.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("`{kind}:{a}`: the size must be a whole number above 0")),
        },
    }
}

impl FromStr for Fault {
    type Err = String;

    /// Parses `STAGE:KIND[:ARG][@PCT][#COUNT]`.
    fn from_str(spec: &str) -> Result<Fault, String> {
        let (rest, percent, count) = split_tail(spec.trim())?;
        let mut parts = rest.splitn(3, ':');
        let stage_name = parts.next().unwrap_or_default();
        let stage = FaultStage::NAMES
            .iter()
            .find(|(name, _)| *name == stage_name)
            .map(|(_, s)| *s)
            .ok_or_else(|| format!("unknown stage `{stage_name}` (greeting, ehlo, mail, rcpt, data, data-end, any)"))?;
        let kind_name = parts.next().ok_or("expected STAGE:KIND")?;
        let arg = parts.next();
        let kind = match kind_name {
            "delay" => FaultKind::Delay(duration_arg(kind_name, arg)?),
            "long-line" => FaultKind::LongLine(count_arg(kind_name, arg, DEFAULT_LONG_LINE)?),
            "long-reply" => FaultKind::LongReply(count_arg(kind_name, arg, DEFAULT_LONG_REPLY_LINES)?),
            "close" | "garbage" | "truncated" | "stop-reading" if arg.is_some() => {
                return Err(format!("`{kind_name}` takes no argument"));
            }
            "close" => FaultKind::Close,
            "garbage" => FaultKind::Garbage,
            "truncated" => FaultKind::Truncated,
            "stop-reading" => FaultKind::StopReading,
            other => {
                return Err(format!(
                    "unknown kind `{other}` (delay:DURATION, close, garbage, long-line[:BYTES], \
                     long-reply[:LINES], truncated, stop-reading)"
                ))
            }
        };
        Ok(Fault::new(stage, kind, percent, count))
    }
}

impl FromStr for TlsFault {
    type Err = String;

    /// Parses `KIND[:ARG][@PCT][#COUNT]`.
    fn from_str(spec: &str) -> Result<TlsFault, String> {
        let (rest, percent, count) = split_tail(spec.trim())?;
        let (kind_name, arg) = match rest.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (rest, None),
        };
        let kind = match kind_name {
            "stall" => TlsFaultKind::Stall(duration_arg(kind_name, arg)?),
            "garbage" | "close" | "wrong-name" if arg.is_some() => {
                return Err(format!("`{kind_name}` takes no argument"));
            }
            "garbage" => TlsFaultKind::Garbage,
            "close" => TlsFaultKind::Close,
            "wrong-name" => TlsFaultKind::WrongName,
            other => {
                return Err(format!(
                    "unknown TLS fault `{other}` (garbage, close, stall:DURATION, wrong-name)"
                ))
            }
        };
        Ok(TlsFault::new(kind, percent, count))
    }
}

impl fmt::Display for FaultStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FaultStage::NAMES
            .iter()
            .find(|(_, s)| s == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

/// The bytes that replace a reply for the kinds that rewrite it (`garbage`, `long-line`,
/// `long-reply`); `None` for the others.
pub(crate) fn replacement(kind: FaultKind) -> Option<Vec<u8>> {
    match kind {
        FaultKind::Garbage => Some(b"HTTP/1.1 400 Bad Request \x00\xff not SMTP\r\n".to_vec()),
        FaultKind::LongLine(n) => {
            let mut line = b"250 ".to_vec();
            line.resize(n.max(6) - 2, b'x');
            line.extend_from_slice(b"\r\n");
            Some(line)
        }
        FaultKind::LongReply(lines) => {
            const LINE: &[u8] = b"250-an endless multi-line reply that never ends\r\n";
            let mut reply = Vec::with_capacity(LINE.len() * lines + 16);
            for _ in 1..lines {
                reply.extend_from_slice(LINE);
            }
            reply.extend_from_slice(b"250 end\r\n");
            Some(reply)
        }
        FaultKind::Delay(_) | FaultKind::Close | FaultKind::Truncated | FaultKind::StopReading => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stage_kind_arg_percent_count() {
        let f: Fault = "data-end:delay:5s@50#3".parse().expect("valid");
        assert_eq!(f.stage, FaultStage::DataEnd);
        assert_eq!(f.kind, FaultKind::Delay(Duration::from_secs(5)));
        assert_eq!((f.percent, f.count), (50.0, Some(3)));
        let f: Fault = "rcpt:close".parse().expect("valid");
        assert_eq!(
            (f.stage, f.kind, f.percent, f.count),
            (FaultStage::Rcpt, FaultKind::Close, 100.0, None)
        );
        let f: Fault = "any:long-line".parse().expect("valid");
        assert_eq!(f.kind, FaultKind::LongLine(DEFAULT_LONG_LINE));
        let f: Fault = "ehlo:long-reply:100".parse().expect("valid");
        assert_eq!(f.kind, FaultKind::LongReply(100));
        let t: TlsFault = "stall:2s#1".parse().expect("valid");
        assert_eq!(
            (t.kind, t.count),
            (TlsFaultKind::Stall(Duration::from_secs(2)), Some(1))
        );
        let t: TlsFault = "wrong-name@10".parse().expect("valid");
        assert_eq!((t.kind, t.percent), (TlsFaultKind::WrongName, 10.0));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Fault>().expect_err(s);
        assert!(err("helo:close").contains("unknown stage `helo`"));
        assert!(err("rcpt:explode").contains("unknown kind `explode`"));
        assert!(err("rcpt").contains("STAGE:KIND"));
        assert!(err("rcpt:delay").contains("needs a duration"));
        assert!(err("rcpt:close@150").contains("between 0 and 100"));
        assert!(err("rcpt:close#x").contains("count"));
        assert!(err("rcpt:close:1").contains("takes no argument"));
        assert!(err("rcpt:long-line:0").contains("above 0"));
        assert!("stall"
            .parse::<TlsFault>()
            .expect_err("no arg")
            .contains("needs a duration"));
        assert!("boom"
            .parse::<TlsFault>()
            .expect_err("bad")
            .contains("unknown TLS fault"));
    }

    #[test]
    fn count_limits_injections() {
        let f: Fault = "rcpt:close#2".parse().expect("valid");
        let hits = (0..10).filter(|_| f.strikes(FaultStage::Rcpt)).count();
        assert_eq!(hits, 2);
        assert!(!f.strikes(FaultStage::Mail), "other stages are untouched");
        let any: Fault = "any:garbage".parse().expect("valid");
        assert!(any.strikes(FaultStage::Greeting) && any.strikes(FaultStage::DataEnd));
    }

    #[test]
    fn replacements_are_oversized_or_not_smtp() {
        let line = replacement(FaultKind::LongLine(8192)).expect("bytes");
        assert_eq!(line.len(), 8192);
        let reply = replacement(FaultKind::LongReply(1000)).expect("bytes");
        assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1000);
        assert!(replacement(FaultKind::Close).is_none());
    }
}
