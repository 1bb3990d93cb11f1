//! A regular file, cut into ranges that worker threads read themselves.
//!
//! Range `k` covers bytes `k·C .. (k+1)·C` of the file; its records are the
//! lines that *start* in it (a line starts at byte 0 or after a `\n`). So a
//! range reads from just before its start to find its first line start, and
//! past its end to finish its last line; neighbouring ranges agree on the
//! cut without talking to each other. A line in the middle of a range is at
//! most `C` long; only the last line of a range can be longer, and of that
//! one at most the hold limit is kept (it is oversize and rejected anyway).

use super::{now_ms, BufferPool, Chunk, ChunkSource};
use memchr::memchr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How much is read at a time while looking for a line's end.
const SCAN: usize = 64 << 10;

/// A file read in ranges (see the module docs).
pub struct FileChunks {
    file: File,
    name: String,
    len: u64,
    chunk_bytes: u64,
    hold: usize,
    next: AtomicU64,
    stop: CancellationToken,
}

impl FileChunks {
    /// Reads `path` (its length now) in ranges of `chunk_bytes`, keeping at
    /// most `hold` bytes of any one line; stops handing out chunks once
    /// `stop` is cancelled.
    pub fn open(
        path: &Path,
        chunk_bytes: usize,
        hold: usize,
        stop: CancellationToken,
    ) -> io::Result<Self> {
        let name = path.display().to_string();
        let annotate =
            |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {name}: {e}"));
        let file = File::open(path).map_err(|e| annotate("opening input", e))?;
        let meta = file
            .metadata()
            .map_err(|e| annotate("reading the metadata of", e))?;
        if meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("input {name} is a directory, not a file of events"),
            ));
        }
        Ok(Self {
            file,
            len: meta.len(),
            name,
            chunk_bytes: chunk_bytes.max(1) as u64,
            hold: hold.max(1),
            next: AtomicU64::new(0),
            stop,
        })
    }

    fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, at) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading input {} at byte {at}: {e}", self.name),
                    ))
                }
                Ok(n) => return Ok(n),
            }
        }
    }

    /// The position of the first `\n` in `from..limit`, if any.
    fn find_newline(&self, from: u64, limit: u64) -> io::Result<Option<u64>> {
        let mut scratch = vec![0; SCAN];
        let mut at = from;
        while at < limit.min(self.len) {
            let want = (limit.min(self.len) - at).min(SCAN as u64) as usize;
            let n = self.read_at(&mut scratch[..want], at)?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(i) = memchr(b'\n', &scratch[..n]) {
                return Ok(Some(at + i as u64));
            }
            at += n as u64;
        }
        Ok(None)
    }

    /// Fills `chunk` with the lines starting in range `index`.
    fn fill(&self, chunk: &mut Chunk) -> io::Result<()> {
        let c = self.chunk_bytes;
        let range_start = chunk.index * c;
        let range_end = (range_start + c).min(self.len);
        let start = if chunk.index == 0 {
            0
        } else {
            match self.find_newline(range_start - 1, range_end)? {
                Some(newline) => newline + 1,
                None => return Ok(()), // no line starts in this range
            }
        };
        if start >= range_end {
            return Ok(());
        }
        let bytes = &mut chunk.bytes.bytes;
        bytes.resize((range_end - start) as usize, 0);
        let mut filled = 0;
        while filled < bytes.len() {
            let n = self.read_at(&mut bytes[filled..], start + filled as u64)?;
            if n == 0 {
                break; // the file shrank: what is there is what there is
            }
            filled += n;
        }
        bytes.truncate(filled);
        if bytes.last() == Some(&b'\n') || range_end >= self.len {
            return Ok(());
        }
        self.finish_last_line(chunk, range_end)
    }

    /// Reads on from `at` to the end of the range's last line, keeping at
    /// most the hold limit of it.
    fn finish_last_line(&self, chunk: &mut Chunk, mut at: u64) -> io::Result<()> {
        let bytes = &mut chunk.bytes.bytes;
        let line_start = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1);
        let mut line_len = (bytes.len() - line_start) as u64;
        let mut newline = false;
        let mut scratch = vec![0; SCAN];
        while !newline {
            let n = self.read_at(&mut scratch, at)?;
            if n == 0 {
                break; // the input's last line, without a newline
            }
            let content = match memchr(b'\n', &scratch[..n]) {
                Some(i) => {
                    newline = true;
                    &scratch[..i]
                }
                None => &scratch[..n],
            };
            let room = (self.hold as u64).saturating_sub(line_len) as usize;
            bytes.extend_from_slice(&content[..content.len().min(room)]);
            line_len += content.len() as u64;
            at += content.len() as u64 + u64::from(newline);
        }
        if line_len > self.hold as u64 {
            bytes.truncate(line_start + self.hold);
            chunk.truncated.push((line_start as u32, line_len));
        }
        if newline {
            bytes.push(b'\n');
        }
        Ok(())
    }
}

impl ChunkSource for FileChunks {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_chunk(&self, pool: &Arc<BufferPool>) -> io::Result<Option<Chunk>> {
        if self.stop.is_cancelled() {
            return Ok(None);
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if index.saturating_mul(self.chunk_bytes) >= self.len {
            return Ok(None);
        }
        let mut chunk = Chunk {
            index,
            bytes: pool.take(),
            truncated: Vec::new(),
            read_at: now_ms(),
        };
        self.fill(&mut chunk)?;
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each chunk's bytes and its records cut at the hold limit.
    type Read = Vec<(Vec<u8>, Vec<(u32, u64)>)>;
    use proptest::prelude::*;
    use std::io::Write;

    fn chunks_of(content: &[u8], chunk_bytes: usize, hold: usize) -> Read {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        let source =
            FileChunks::open(file.path(), chunk_bytes, hold, CancellationToken::new()).unwrap();
        let pool = Arc::new(BufferPool::default());
        let mut out = Vec::new();
        while let Some(chunk) = source.next_chunk(&pool).unwrap() {
            assert_eq!(chunk.index as usize, out.len());
            out.push((chunk.bytes.bytes.clone(), chunk.truncated.clone()));
        }
        out
    }

    proptest! {
        #[test]
        fn ranges_cut_at_line_starts_give_back_the_input(
            lines in proptest::collection::vec("[a-z]{0,12}", 0..40),
            final_newline in any::<bool>(),
            chunk_bytes in 1usize..30,
        ) {
            let mut content = lines.join("\n").into_bytes();
            if final_newline && !content.is_empty() {
                content.push(b'\n');
            }
            let chunks = chunks_of(&content, chunk_bytes, 1 << 20);
            let joined: Vec<u8> = chunks.iter().flat_map(|(b, _)| b.clone()).collect();
            prop_assert_eq!(&joined, &content);
            // Every line but the input's last ends in its chunk.
            let filled: Vec<&Vec<u8>> =
                chunks.iter().map(|(b, _)| b).filter(|b| !b.is_empty()).collect();
            for bytes in &filled[..filled.len().saturating_sub(1)] {
                prop_assert!(bytes.ends_with(b"\n"));
            }
        }
    }

    #[test]
    fn a_line_longer_than_the_hold_limit_keeps_its_start_and_its_length() {
        let mut content = b"ok\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 100));
        content.extend_from_slice(b"\nnext\n");
        let chunks = chunks_of(&content, 8, 10);
        let (first, truncated) = &chunks[0];
        assert_eq!(first, b"ok\nxxxxxxxxxx\n");
        assert_eq!(truncated, &[(3, 100)]);
        let rest: Vec<u8> = chunks[1..].iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(rest, b"next\n");
    }

    #[test]
    fn a_directory_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let error = FileChunks::open(dir.path(), 10, 10, CancellationToken::new())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("is a directory"), "{error}");
    }
}
