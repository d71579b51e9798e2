//! DATA content (RFC 5321 §4.1.1.4, §4.5.2): finds the end marker `CRLF . CRLF` and undoes
//! dot-stuffing while the content streams in, without copying it.

use memchr::memmem::Finder;

/// One step over the unread input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DotStep {
    /// The input holds nothing decidable yet (empty, or a possible marker's start).
    NeedMore,
    /// The first `len` octets are content, delivered as they are.
    Content(usize),
    /// The first octet is a stuffed dot: drop it.
    StuffedDot,
    /// The first `len` octets are the end marker's `.CRLF`; the content is complete.
    End(usize),
}

/// The un-stuffing scanner of one message. Only `CRLF.CRLF` ends the content: a bare
/// `LF.LF` (or `LF.CRLF`) does not (SMTP smuggling), and a line starts only after CRLF.
#[derive(Debug)]
pub(crate) struct DotReader {
    finder: Finder<'static>,
    /// The previous content ended with CRLF (or the DATA line did).
    line_start: bool,
}

impl Default for DotReader {
    fn default() -> Self {
        DotReader {
            finder: Finder::new(b"\r\n."),
            line_start: true,
        }
    }
}

impl DotReader {
    /// Starts a message, right after the DATA line's CRLF.
    pub(crate) fn start(&mut self) {
        self.line_start = true;
    }

    /// Classifies the start of `input`; the caller consumes what the step says and calls
    /// again.
    pub(crate) fn step(&mut self, input: &[u8]) -> DotStep {
        if input.is_empty() {
            return DotStep::NeedMore;
        }
        if self.line_start && input[0] == b'.' {
            return match (input.get(1), input.get(2)) {
                (None, _) | (Some(b'\r'), None) => DotStep::NeedMore,
                (Some(b'\r'), Some(b'\n')) => DotStep::End(3),
                _ => {
                    // RFC 5321 §4.5.2: a line starting with a dot and other characters has
                    // its first dot removed.
                    self.line_start = false;
                    DotStep::StuffedDot
                }
            };
        }
        if let Some(at) = self.finder.find(input) {
            self.line_start = true;
            return DotStep::Content(at + 2);
        }
        let len = input.len();
        if input.ends_with(b"\r\n") {
            self.line_start = true;
            DotStep::Content(len)
        } else if input[len - 1] == b'\r' {
            // Keep the CR: with the next octets it may begin `CRLF.`.
            self.line_start = false;
            if len == 1 {
                DotStep::NeedMore
            } else {
                DotStep::Content(len - 1)
            }
        } else {
            self.line_start = false;
            DotStep::Content(len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `step` octets; returns the un-stuffed content and the
    /// offset just past the marker.
    fn read(data: &[u8], step: usize) -> Option<(Vec<u8>, usize)> {
        let mut reader = DotReader::default();
        reader.start();
        let mut content = Vec::new();
        let mut consumed = 0;
        let mut available = 0;
        loop {
            match reader.step(&data[consumed..available]) {
                DotStep::NeedMore => {
                    if available == data.len() {
                        return None;
                    }
                    available = (available + step).min(data.len());
                }
                DotStep::Content(n) => {
                    content.extend_from_slice(&data[consumed..consumed + n]);
                    consumed += n;
                }
                DotStep::StuffedDot => consumed += 1,
                DotStep::End(n) => return Some((content, consumed + n)),
            }
        }
    }

    #[test]
    fn unstuffs_and_finds_the_marker_at_every_split() {
        let data = b"Subject: x\r\n\r\n..hidden\r\n.x\r\nend\r\n.\r\nQUIT\r\n";
        let end = data.len() - b"QUIT\r\n".len();
        for step in 1..=data.len() {
            assert_eq!(
                read(data, step),
                Some((b"Subject: x\r\n\r\n.hidden\r\nx\r\nend\r\n".to_vec(), end)),
                "step {step}"
            );
        }
    }

    #[test]
    fn empty_message_ends_at_once() {
        for step in 1..=3 {
            assert_eq!(read(b".\r\nNOOP\r\n", step), Some((Vec::new(), 3)));
        }
    }

    #[test]
    fn bare_lf_dot_does_not_end_content() {
        assert_eq!(read(b"a\n.\nb\r\n.\n", 2), None);
        assert_eq!(read(b"a\r\n.\nb\n.\r\n", 3), None);
        assert_eq!(
            read(b"a\n.\r\n.\r\n", 1),
            Some((b"a\n.\r\n".to_vec(), 8)),
            "LF.CRLF is content"
        );
    }

    #[test]
    fn lone_cr_and_dot_cr_are_content() {
        assert_eq!(
            read(b"a\rb\r\n.\rx\r\n.\r\n", 1),
            Some((b"a\rb\r\n\rx\r\n".to_vec(), 13))
        );
    }
}
