//! Finding the end of message content (`CRLF . CRLF`, RFC 5321 §4.1.1.4) without copying it.

use memchr::memmem::Finder;

/// The end-of-data marker. Its leading CRLF ends the last content line.
const END_OF_DATA: &[u8] = b"\r\n.\r\n";

/// Scans message content as it streams in, keeping only the last few bytes of the previous
/// chunk so that a marker split across reads is still found. Only bare `CRLF.CRLF` ends the
/// content; a lone `LF.LF` does not (SMTP smuggling).
#[derive(Debug)]
pub(crate) struct DataScanner {
    finder: Finder<'static>,
    /// Up to four bytes preceding the next chunk.
    tail: [u8; 4],
    tail_len: usize,
    /// Content bytes consumed so far, marker included.
    consumed: usize,
}

impl Default for DataScanner {
    fn default() -> Self {
        DataScanner {
            finder: Finder::new(END_OF_DATA),
            tail: [0; 4],
            tail_len: 0,
            consumed: 0,
        }
    }
}

impl DataScanner {
    /// Starts a new message. The CRLF that ended the DATA command line counts as the start of
    /// the marker, so an empty message (`.` right away) ends at once.
    pub(crate) fn start(&mut self) {
        self.tail[..2].copy_from_slice(b"\r\n");
        self.tail_len = 2;
        self.consumed = 0;
    }

    /// Looks for the end of content in `chunk`, the next bytes from the client. Returns the
    /// number of bytes of `chunk` up to and including the marker, or `None` when the whole
    /// chunk is content.
    pub(crate) fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        // A marker straddling the previous chunk and this one. The tail is shorter than the
        // marker, so any match here ends inside `chunk`.
        let mut joint = [0u8; 8];
        let head = chunk.len().min(4);
        joint[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        joint[self.tail_len..self.tail_len + head].copy_from_slice(&chunk[..head]);
        let joint = &joint[..self.tail_len + head];
        let end = match self.finder.find(joint) {
            Some(at) => Some(at + END_OF_DATA.len() - self.tail_len),
            None => self.finder.find(chunk).map(|at| at + END_OF_DATA.len()),
        };
        if let Some(end) = end {
            self.consumed += end;
            return Some(end);
        }
        self.consumed += chunk.len();
        let source = if chunk.len() >= 4 { chunk } else { joint };
        let keep = source.len().min(4);
        self.tail[..keep].copy_from_slice(&source[source.len() - keep..]);
        self.tail_len = keep;
        None
    }

    /// Size of the content so far, without the final `.CRLF` (the CRLF before the dot ends
    /// the last line and belongs to the message). Dot-stuffing is not undone.
    pub(crate) fn message_size(&self) -> usize {
        self.consumed.saturating_sub(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `step` bytes; returns (offset just past the marker, size).
    fn feed(data: &[u8], step: usize) -> Option<(usize, usize)> {
        let mut scanner = DataScanner::default();
        scanner.start();
        let mut offset = 0;
        for chunk in data.chunks(step) {
            if let Some(end) = scanner.scan(chunk) {
                return Some((offset + end, scanner.message_size()));
            }
            offset += chunk.len();
        }
        None
    }

    #[test]
    fn finds_marker_at_every_split() {
        let body = b"Subject: x\r\n\r\nhello\r\n..stuffed\r\n.\r\nQUIT\r\n";
        let end = body.len() - b"QUIT\r\n".len();
        for step in 1..=body.len() {
            assert_eq!(feed(body, step), Some((end, end - 3)), "step {step}");
        }
    }

    #[test]
    fn finds_marker_at_every_pair_of_splits() {
        let body = b"ab\r\n.x\r\n\r\n.\r\nQUIT\r\n";
        let end = body.len() - b"QUIT\r\n".len();
        for i in 1..body.len() {
            for j in i + 1..body.len() {
                let mut scanner = DataScanner::default();
                scanner.start();
                let mut offset = 0;
                let mut found = None;
                for chunk in [&body[..i], &body[i..j], &body[j..]] {
                    if let Some(e) = scanner.scan(chunk) {
                        found = Some(offset + e);
                        break;
                    }
                    offset += chunk.len();
                }
                assert_eq!(found, Some(end), "splits at {i} and {j}");
            }
        }
    }

    #[test]
    fn empty_message_ends_immediately() {
        for step in 1..=3 {
            assert_eq!(feed(b".\r\nNOOP\r\n", step), Some((3, 0)));
        }
    }

    #[test]
    fn bare_lf_dot_does_not_end_content() {
        assert_eq!(feed(b"a\n.\nb\r\n.\n", 2), None);
        assert_eq!(feed(b"a\r\n.\nb\n.\r\n", 3), None);
    }
}
