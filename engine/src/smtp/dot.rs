//! DATA payload preparation: CRLF normalisation, dot-stuffing (RFC 5321 §4.5.2) and the
//! line-length limit (RFC 5321 §4.5.3.1.6: 1000 octets including CRLF).
//!
//! A message is prepared once and the result is shared (it is a [`Bytes`]) by every recipient,
//! connection and retry that carries it; the session writes it with no further copy.

use bytes::Bytes;

/// Longest line allowed, excluding the CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// A message ready for the DATA phase: stuffed, CRLF-terminated, ending with `.\r\n`.
#[derive(Clone, Debug)]
pub struct DataPayload {
    bytes: Bytes,
    eight_bit: bool,
    message_size: u64,
}

impl DataPayload {
    /// The bytes to send after the 354 reply, including the terminating `.\r\n`.
    pub fn wire_bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Whether the message has octets above 127 (then `BODY=8BITMIME` is declared).
    pub fn is_eight_bit(&self) -> bool {
        self.eight_bit
    }
    /// Size of the normalised message without stuffing and terminator, for `SIZE=` (RFC 1870).
    pub fn message_size(&self) -> u64 {
        self.message_size
    }
    /// The normalised message without stuffing and terminator: what a `BDAT` chunk carries
    /// (RFC 3030 §2, no dot-stuffing). Shares the payload's buffer (no copy) unless a line
    /// had to be stuffed, which only a message with a line starting with a dot needs.
    pub fn content(&self) -> Bytes {
        let unstuffed = self.message_size + TERMINATOR.len() as u64 == self.bytes.len() as u64;
        if unstuffed {
            self.bytes.slice(..self.bytes.len() - TERMINATOR.len())
        } else {
            Bytes::from(unstuff(&self.bytes))
        }
    }
}

/// The end-of-data line that follows the content (RFC 5321 §4.1.1.4).
const TERMINATOR: &[u8] = b".\r\n";

/// A message that cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A line longer than 998 octets (RFC 5321 §4.5.3.1.6); the message must be re-encoded.
    #[error("line {line} of the message is {length} octets long; SMTP allows at most {MAX_LINE}")]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// Its length in octets, without the line ending.
        length: usize,
    },
}

/// Normalises line endings to CRLF (a bare LF or a bare CR ends a line), doubles a leading dot
/// on every line, refuses over-long lines, ends the message with CRLF and appends `.\r\n`.
pub fn prepare(message: &[u8]) -> Result<DataPayload, DataError> {
    match wire_ready(message) {
        Some(ready) => {
            let mut out = Vec::with_capacity(message.len() + TAIL);
            out.extend_from_slice(message);
            Ok(ready.finish(out))
        }
        None => prepare_slow(message),
    }
}

/// Like [`prepare`], but takes the message by value: a message that already has CRLF line
/// ends, no line starting with a dot and no over-long line (what mail-builder and the DKIM
/// signer produce) becomes the payload without being copied.
pub fn prepare_owned(mut message: Vec<u8>) -> Result<DataPayload, DataError> {
    match wire_ready(&message) {
        Some(ready) => {
            message.reserve(TAIL);
            Ok(ready.finish(message))
        }
        None => prepare_slow(&message),
    }
}

/// Most bytes appended to a wire-ready message: a final CRLF and the `.\r\n` terminator.
const TAIL: usize = 5;

/// A message that needs no change but its ending (see [`wire_ready`]).
struct WireReady {
    /// The message does not end with CRLF (and is not empty).
    needs_crlf: bool,
    eight_bit: bool,
}

impl WireReady {
    fn finish(self, mut out: Vec<u8>) -> DataPayload {
        if self.needs_crlf {
            out.extend_from_slice(b"\r\n");
        }
        let message_size = out.len() as u64;
        out.extend_from_slice(TERMINATOR);
        DataPayload {
            bytes: Bytes::from(out),
            eight_bit: self.eight_bit,
            message_size,
        }
    }
}

/// `Some` when every line of `message` already ends with CRLF (the last may have no ending),
/// no line starts with a dot, no line is longer than [`MAX_LINE`] and there is no bare CR or
/// LF: then [`prepare_slow`] would only append the ending, and the bytes can be used as they
/// are. Whole-message passes (vectorised), not a loop per line: a 4 KB message has ~60 lines.
fn wire_ready(message: &[u8]) -> Option<WireReady> {
    // CR and LF only in CRLF pairs: a CR exactly where an LF follows.
    if message.first() == Some(&b'\n') || message.last() == Some(&b'\r') {
        return None;
    }
    if let Some(head) = message.len().checked_sub(1) {
        let unpaired = message[..head]
            .iter()
            .zip(&message[1..])
            .fold(0u8, |acc, (&a, &b)| acc | (u8::from(a == b'\r') ^ u8::from(b == b'\n')));
        if unpaired != 0 {
            return None;
        }
    }
    if message.first() == Some(&b'.') || memchr::memmem::find(message, b"\n.").is_some() {
        return None;
    }
    if !lines_certainly_short(message) && longest_line(message) > MAX_LINE {
        return None;
    }
    Some(WireReady {
        needs_crlf: !message.is_empty() && !message.ends_with(b"\r\n"),
        // No short-circuit: the OR over all bytes vectorises.
        eight_bit: message.iter().fold(0u8, |acc, &b| acc | b) >= 0x80,
    })
}

/// Bytes per block of [`lines_certainly_short`].
const SHORT_BLOCK: usize = 256;

/// True when every block of [`SHORT_BLOCK`] bytes but the last holds an LF: then no run of
/// bytes without one is longer than two blocks (the end of one and all of the last), far
/// under [`MAX_LINE`]. False says nothing: [`longest_line`] decides.
fn lines_certainly_short(message: &[u8]) -> bool {
    const _: () = assert!(2 * SHORT_BLOCK < MAX_LINE);
    let mut blocks = message.chunks(SHORT_BLOCK);
    blocks.next_back();
    blocks.all(|block| memchr::memchr(b'\n', block).is_some())
}

/// Length of the longest line of a message whose line ends are all CRLF, without them.
fn longest_line(message: &[u8]) -> usize {
    let mut longest = 0;
    let mut line_start = 0;
    for lf in memchr::memchr_iter(b'\n', message) {
        longest = longest.max(lf - 1 - line_start);
        line_start = lf + 1;
    }
    longest.max(message.len() - line_start)
}

/// The general case of [`prepare`]: line by line, normalising and stuffing.
fn prepare_slow(message: &[u8]) -> Result<DataPayload, DataError> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut pos = 0;
    let mut line_no = 1;
    let mut stuffed = 0u64;
    while pos < message.len() {
        let rest = &message[pos..];
        let (line, advance) = match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => (&rest[..i], i + 2),
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        if line.len() > MAX_LINE {
            return Err(DataError::LineTooLong {
                line: line_no,
                length: line.len(),
            });
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
            stuffed += 1;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        pos += advance;
        line_no += 1;
    }
    let message_size = out.len() as u64 - stuffed;
    out.extend_from_slice(TERMINATOR);
    let eight_bit = message.iter().any(|&b| b >= 0x80);
    Ok(DataPayload {
        bytes: Bytes::from(out),
        eight_bit,
        message_size,
    })
}

/// Reverses [`prepare`]: strips the terminator and one leading dot per line. Used by tests and
/// by receivers built on this crate.
pub fn unstuff(wire: &[u8]) -> Vec<u8> {
    let body = wire.strip_suffix(TERMINATOR).unwrap_or(wire);
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(msg: &[u8]) -> Vec<u8> {
        prepare(msg).map(|p| p.wire_bytes().to_vec()).unwrap_or_default()
    }

    #[test]
    fn stuffing_rfc5321_4_5_2() {
        assert_eq!(wire(b"a\r\n.b\r\n..c\r\n.\r\n"), b"a\r\n..b\r\n...c\r\n..\r\n.\r\n");
    }

    #[test]
    fn normalises_bare_lf_and_cr() {
        assert_eq!(wire(b"a\nb\rc\r\n"), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(wire(b"no newline at end"), b"no newline at end\r\n.\r\n");
        assert_eq!(wire(b""), b".\r\n");
        assert_eq!(wire(b"\n.\n"), b"\r\n..\r\n.\r\n");
    }

    #[test]
    fn line_limit() {
        let ok = vec![b'x'; MAX_LINE];
        assert!(prepare(&ok).is_ok());
        let mut bad = b"short\r\n".to_vec();
        bad.extend(vec![b'x'; MAX_LINE + 1]);
        assert_eq!(
            prepare(&bad).err(),
            Some(DataError::LineTooLong { line: 2, length: 999 })
        );
    }

    #[test]
    fn size_and_eight_bit() {
        let p = prepare(b".x\r\n").map_err(|e| e.to_string());
        let p = p.as_ref().map(|p| (p.message_size(), p.is_eight_bit()));
        assert_eq!(p, Ok((4, false)));
        let p = prepare("h\u{e9}\n".as_bytes()).map(|p| (p.message_size(), p.is_eight_bit()));
        assert_eq!(p, Ok((5, true)));
    }

    /// The fast path and the zero-copy path give exactly what the line-by-line path gives.
    fn same_as_slow(msg: &[u8]) {
        let view = |p: Result<DataPayload, DataError>| {
            p.map(|p| (p.wire_bytes().to_vec(), p.is_eight_bit(), p.message_size()))
        };
        let slow = view(prepare_slow(msg));
        assert_eq!(view(prepare(msg)), slow, "prepare {msg:?}");
        assert_eq!(view(prepare_owned(msg.to_vec())), slow, "prepare_owned {msg:?}");
    }

    #[test]
    fn fast_path_agrees_on_the_edge_cases() {
        let long = [vec![b'x'; MAX_LINE], b"\r\n".to_vec(), vec![b'y'; MAX_LINE + 1]].concat();
        let no_lf = [vec![b'a'; 600], b"\r\n".to_vec(), vec![b'b'; 300]].concat();
        let cases: [&[u8]; 16] = [
            &no_lf,
            &no_lf[..700],
            b"",
            b"a\r\nb\r\n",
            b"a\r\nb",
            b".a\r\n",
            b"a\r\n.b\r\n",
            b"a\r\n.",
            b"a\nb\r\n",
            b"\n",
            b"a\rb\r\n",
            b"a\r",
            b"\r\n\r\n",
            "caf\u{e9}\r\n".as_bytes(),
            &long[..MAX_LINE + 2],
            &long,
        ];
        for case in cases {
            same_as_slow(case);
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_the_line_by_line_path(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b"\r\n".to_vec()),
                    proptest::strategy::Just(b"\n".to_vec()),
                    proptest::strategy::Just(b"\r".to_vec()),
                    proptest::strategy::Just(b".".to_vec()),
                    proptest::strategy::Just(vec![0xC3, 0xA9]),
                    proptest::collection::vec(b'a'..=b'z', 0..40),
                    proptest::strategy::Just(vec![b'x'; MAX_LINE - 1]),
                ],
                0..24,
            )
        ) {
            same_as_slow(&parts.concat());
        }
    }

    #[test]
    fn bdat_content_is_the_unstuffed_message() {
        let plain = prepare_owned(b"Subject: a\r\n\r\nbody\r\n".to_vec()).expect("valid");
        let content = plain.content();
        assert_eq!(&content[..], b"Subject: a\r\n\r\nbody\r\n");
        assert_eq!(content.len() as u64, plain.message_size());
        assert_eq!(
            content.as_ptr(),
            plain.wire_bytes().as_ptr(),
            "no copy without stuffing"
        );
        let dotted = prepare(b"a\n.b\n..\nend").expect("valid");
        assert_eq!(&dotted.content()[..], b"a\r\n.b\r\n..\r\nend\r\n");
        assert_eq!(dotted.content().len() as u64, dotted.message_size());
        assert_eq!(&prepare(b"").expect("valid").content()[..], b"");
    }

    #[test]
    fn unstuff_round_trip() {
        let msg = b"a\r\n.b\r\n..\r\nend\r\n";
        assert_eq!(unstuff(&wire(msg)), msg);
    }
}
