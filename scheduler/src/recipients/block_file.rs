//! [`BlockFile`]: a file read through one cached, aligned block, for the fetcher's re-reads of
//! single rows by offset. Rows parked behind a busy site are fetched in roughly the order they
//! were read, a few dozen bytes apart, so most fetches are served from the block already in
//! memory: no seek and no read system call per row (the plain `File` behind the csv reader and
//! `BufReader` cost two seeks and two reads per row).

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

/// Size (and alignment) of the cached block.
const BLOCK: usize = 64 * 1024;

/// A read-only view of a file with a logical position and one cached block. Seeking only
/// moves the position; a read outside the block loads the aligned block holding the position
/// with one positioned read (`pread`). The file must not change while it is read (the
/// recipient file of a run never does).
pub(super) struct BlockFile {
    file: File,
    block: Vec<u8>,
    /// File offset of `block[0]`.
    block_start: u64,
    /// Logical position.
    pos: u64,
    block_size: usize,
}

impl BlockFile {
    pub(super) fn new(file: File) -> BlockFile {
        BlockFile::with_block_size(file, BLOCK)
    }

    fn with_block_size(file: File, block_size: usize) -> BlockFile {
        BlockFile {
            file,
            block: Vec::new(),
            block_start: 0,
            pos: 0,
            block_size,
        }
    }

    /// The open file.
    pub(super) fn get_ref(&self) -> &File {
        &self.file
    }

    /// The bytes from the position to the end of the cached block (empty at the end of the
    /// file), loading the block first when the position is outside it.
    fn available(&mut self) -> io::Result<&[u8]> {
        let end = self.block_start + self.block.len() as u64;
        if self.pos < self.block_start || self.pos >= end {
            let start = self.pos - self.pos % self.block_size as u64;
            self.block.resize(self.block_size, 0);
            let mut filled = 0;
            while filled < self.block.len() {
                match self.file.read_at(&mut self.block[filled..], start + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.block.clear();
                        return Err(e);
                    }
                }
            }
            self.block.truncate(filled);
            self.block_start = start;
        }
        let from = usize::try_from(self.pos - self.block_start).unwrap_or(usize::MAX);
        Ok(self.block.get(from..).unwrap_or(&[]))
    }
}

impl Read for BlockFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.available()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl BufRead for BlockFile {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.available()
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
    }
}

impl Seek for BlockFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )
        };
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(invalid)?,
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d).ok_or_else(invalid)?,
        };
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    #[test]
    fn reads_seeks_and_lines_across_block_boundaries_like_the_file() {
        let data: Vec<u8> = (0..1000u32).flat_map(|i| format!("row {i}\n").into_bytes()).collect();
        let mut b = BlockFile::with_block_size(file_of(&data), 16);
        // Lines spanning blocks, in order, then backwards and forwards jumps.
        let mut line = Vec::new();
        for offset in [0usize, 6, 12, 4000, 30, data.len() - 8] {
            b.seek(SeekFrom::Start(offset as u64)).unwrap();
            line.clear();
            b.read_until(b'\n', &mut line).unwrap();
            let end = data[offset..].iter().position(|&c| c == b'\n').unwrap() + offset + 1;
            assert_eq!(line, &data[offset..end], "line at {offset}");
        }
        // Read to the end from the middle: exactly the rest, then 0.
        b.seek(SeekFrom::Start(5000)).unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, &data[5000..]);
        assert_eq!(b.read(&mut [0; 8]).unwrap(), 0);
        assert_eq!(b.seek(SeekFrom::End(-3)).unwrap(), data.len() as u64 - 3);
        assert_eq!(b.seek(SeekFrom::Current(1)).unwrap(), data.len() as u64 - 2);
        assert!(b.seek(SeekFrom::Current(-(data.len() as i64))).is_err());
    }

    #[test]
    fn a_position_past_the_end_reads_nothing() {
        let mut b = BlockFile::new(file_of(b"abc"));
        b.seek(SeekFrom::Start(10)).unwrap();
        assert_eq!(b.read(&mut [0; 4]).unwrap(), 0);
        b.seek(SeekFrom::Start(1)).unwrap();
        let mut two = [0; 2];
        b.read_exact(&mut two).unwrap();
        assert_eq!(&two, b"bc");
    }
}
