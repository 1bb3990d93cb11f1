//! Stdin or a pipe: one thread reads it and cuts chunks at the last newline
//! it has, without looking at the records in between (only the bytes after
//! the last newline are searched), and hands them to the workers over a
//! bounded channel.
//!
//! A chunk goes when it is full, or when its oldest line has waited
//! `linger` with no more input arriving, so a feed of one event a second
//! is counted within the linger, not when a full chunk has built up. The
//! thread waits for input with `poll(2)` and a timeout, so it notices a
//! stop (a signal) even while the pipe is idle; then it hands on the lines
//! it has read and ends.

use super::{now_ms, BufferPool, Chunk, ChunkSource, Polled};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Bytes asked of each `read(2)`.
const READ: usize = 256 << 10;
/// How long an idle wait lasts before looking at the stop token again.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// A stream read by one thread (see the module docs).
pub struct StreamChunks {
    name: String,
    chunks: Receiver<io::Result<Chunk>>,
}

/// How a stream is cut.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// A chunk goes once it holds this many bytes of whole lines.
    pub chunk_bytes: usize,
    /// Longest part of one line kept.
    pub hold: usize,
    /// A partial chunk goes once its oldest line has waited this long.
    pub linger: Duration,
}

impl StreamChunks {
    /// Starts reading `input` (named `name` in origins) on a thread of its
    /// own; it stops at the input's end or when `stop` is cancelled.
    pub fn spawn<R: AsRawFd + Send + 'static>(
        name: &str,
        input: R,
        options: StreamOptions,
        stop: CancellationToken,
        pool: Arc<BufferPool>,
    ) -> io::Result<Self> {
        let (tx, chunks) = bounded(2);
        let reader_name = name.to_owned();
        std::thread::Builder::new()
            .name("gmv-stdin".into())
            .spawn(move || {
                let mut cutter = Cutter::new(options, pool);
                let fd = input.as_raw_fd();
                let result = cutter.run(fd, &stop, |chunk| tx.send(Ok(chunk)).is_ok());
                if let Err(e) = result {
                    let _ = tx.send(Err(io::Error::new(
                        e.kind(),
                        format!("reading {reader_name}: {e}"),
                    )));
                }
                drop(input);
            })?;
        Ok(Self {
            name: name.to_owned(),
            chunks,
        })
    }
}

impl ChunkSource for StreamChunks {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_chunk(&self, pool: &Arc<BufferPool>) -> io::Result<Option<Chunk>> {
        loop {
            match self.poll_chunk(pool, IDLE_POLL)? {
                Polled::Chunk(chunk) => return Ok(Some(chunk)),
                Polled::Ended => return Ok(None),
                Polled::Later => {}
            }
        }
    }

    fn poll_chunk(&self, _pool: &Arc<BufferPool>, wait: Duration) -> io::Result<Polled> {
        match self.chunks.recv_timeout(wait) {
            Ok(chunk) => chunk.map(Polled::Chunk),
            Err(RecvTimeoutError::Disconnected) => Ok(Polled::Ended),
            Err(RecvTimeoutError::Timeout) => Ok(Polled::Later),
        }
    }
}

/// The reading thread's state: pending bytes, the end of their last whole
/// line, and a line being skipped past the hold limit.
struct Cutter {
    options: StreamOptions,
    pool: Arc<BufferPool>,
    pending: super::Buffer,
    /// Bytes of `pending` that are whole lines.
    whole: usize,
    /// Records of `pending` cut at the hold limit.
    truncated: Vec<(u32, u64)>,
    /// A line longer than the hold limit: its start in `pending` and its
    /// length so far; its bytes past the limit are dropped as they come.
    skipping: Option<(usize, u64)>,
    /// When the oldest whole line in `pending` arrived.
    oldest: Option<Instant>,
    next_index: u64,
}

impl Cutter {
    fn new(options: StreamOptions, pool: Arc<BufferPool>) -> Self {
        Self {
            pending: pool.take(),
            pool,
            options,
            whole: 0,
            truncated: Vec::new(),
            skipping: None,
            oldest: None,
            next_index: 0,
        }
    }

    /// Reads `fd` to its end (or until `stop`), handing chunks to `emit`
    /// (which says whether anyone still takes them).
    fn run(
        &mut self,
        fd: RawFd,
        stop: &CancellationToken,
        mut emit: impl FnMut(Chunk) -> bool,
    ) -> io::Result<()> {
        loop {
            if stop.is_cancelled() {
                if self.skipping.is_some() || self.pending.bytes.len() > self.whole {
                    tracing::warn!(
                        "stopping: the part of a line read so far is not a record and is dropped"
                    );
                }
                self.emit_whole(&mut emit);
                return Ok(());
            }
            let wait = match self.oldest {
                Some(since) => self.options.linger.saturating_sub(since.elapsed()),
                None => IDLE_POLL,
            };
            let got = if readable(fd, wait)? {
                self.read(fd)?
            } else {
                None
            };
            match got {
                Some(0) => {
                    // End of input: the last line may lack its newline.
                    self.end_last_line();
                    self.emit_whole(&mut emit);
                    return Ok(());
                }
                Some(_)
                    if self.whole >= self.options.chunk_bytes && !self.emit_whole(&mut emit) =>
                {
                    return Ok(());
                }
                Some(_) => {}
                None => {}
            }
            let lingered = self
                .oldest
                .is_some_and(|since| since.elapsed() >= self.options.linger);
            if lingered && !self.emit_whole(&mut emit) {
                return Ok(());
            }
        }
    }

    /// One `read(2)` into the pending buffer; `Some(0)` at the end.
    fn read(&mut self, fd: RawFd) -> io::Result<Option<usize>> {
        let bytes = &mut self.pending.bytes;
        let before = bytes.len();
        bytes.reserve(READ);
        let spare = bytes.spare_capacity_mut();
        // SAFETY: read(2) writes at most `spare.len()` bytes into the
        // buffer's spare capacity, which is allocated and ours.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(e),
            };
        }
        let n = n as usize;
        // SAFETY: the first `n` bytes of the spare capacity were just written.
        unsafe { bytes.set_len(before + n) };
        if n > 0 {
            self.took(before);
        }
        Ok(Some(n))
    }

    /// Accounts for new bytes from `from` on: finds the last newline (only
    /// the new bytes are searched) and applies the hold limit.
    fn took(&mut self, from: usize) {
        let bytes = &mut self.pending.bytes;
        if let Some((start, len)) = self.skipping {
            // Only the skipped line's tail can be here; look for its end.
            let new = &bytes[from..];
            match memchr::memchr(b'\n', new) {
                None => {
                    self.skipping = Some((start, len + new.len() as u64));
                    bytes.truncate(from);
                    return;
                }
                Some(i) => {
                    self.truncated.push((start as u32, len + i as u64));
                    bytes.drain(from..from + i); // keep the newline and what follows
                    self.skipping = None;
                }
            }
        }
        if let Some(i) = memchr::memrchr(b'\n', &bytes[from..]) {
            self.oldest.get_or_insert_with(Instant::now);
            self.whole = from + i + 1;
        }
        let tail = bytes.len() - self.whole;
        if tail > self.options.hold {
            bytes.truncate(self.whole + self.options.hold);
            self.skipping = Some((self.whole, tail as u64));
        }
    }

    /// At the end of input, a line being skipped or without a newline ends.
    fn end_last_line(&mut self) {
        let bytes = &mut self.pending.bytes;
        if let Some((start, len)) = self.skipping.take() {
            self.truncated.push((start as u32, len));
        }
        if bytes.len() > self.whole {
            self.whole = bytes.len();
        }
    }

    /// Hands on the whole lines, keeping the partial tail; returns whether
    /// anyone still takes chunks.
    fn emit_whole(&mut self, emit: &mut impl FnMut(Chunk) -> bool) -> bool {
        if self.whole == 0 {
            return true;
        }
        let mut rest = self.pool.take();
        rest.bytes
            .extend_from_slice(&self.pending.bytes[self.whole..]);
        let mut bytes = std::mem::replace(&mut self.pending, rest);
        bytes.bytes.truncate(self.whole);
        let (truncated, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.truncated)
            .into_iter()
            .partition(|&(at, _)| (at as usize) < self.whole);
        self.truncated = kept
            .into_iter()
            .map(|(at, len)| (at - self.whole as u32, len))
            .collect();
        if let Some((start, len)) = self.skipping {
            self.skipping = Some((start - self.whole, len));
        }
        let chunk = Chunk {
            index: self.next_index,
            bytes,
            truncated,
            read_at: now_ms(),
        };
        self.next_index += 1;
        self.whole = 0;
        self.oldest = None;
        emit(chunk)
    }
}

/// Whether `fd` has input (or its end, or an error) within `wait`.
fn readable(fd: RawFd, wait: Duration) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, and its count.
    let n = unsafe { libc::poll(&mut poll, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each chunk's bytes and its records cut at the hold limit.
    type Read = Vec<(Vec<u8>, Vec<(u32, u64)>)>;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn options(chunk_bytes: usize, hold: usize) -> StreamOptions {
        StreamOptions {
            chunk_bytes,
            hold,
            linger: Duration::from_millis(30),
        }
    }

    fn read_all(source: &StreamChunks) -> Read {
        let pool = Arc::new(BufferPool::default());
        let mut out = Vec::new();
        while let Some(chunk) = source.next_chunk(&pool).unwrap() {
            assert_eq!(chunk.index as usize, out.len());
            out.push((chunk.bytes.bytes.clone(), chunk.truncated.clone()));
        }
        out
    }

    #[test]
    fn a_stream_comes_back_whole_cut_at_newlines() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let pool = Arc::new(BufferPool::default());
        let source = StreamChunks::spawn(
            "t",
            reader,
            options(8, 1 << 20),
            CancellationToken::new(),
            pool,
        )
        .unwrap();
        let input = b"one\ntwo\nthree\nfour\nfive, without a newline";
        writer.write_all(input).unwrap();
        drop(writer);
        let chunks = read_all(&source);
        let joined: Vec<u8> = chunks.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(joined, input);
        for (bytes, _) in &chunks[..chunks.len() - 1] {
            assert!(bytes.ends_with(b"\n"));
        }
    }

    #[test]
    fn a_slow_feed_is_handed_on_after_the_linger() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let pool = Arc::new(BufferPool::default());
        let source = StreamChunks::spawn(
            "t",
            reader,
            options(1 << 20, 1 << 20),
            CancellationToken::new(),
            pool.clone(),
        )
        .unwrap();
        writer.write_all(b"first\n").unwrap();
        let started = Instant::now();
        let chunk = source.next_chunk(&pool).unwrap().unwrap();
        assert_eq!(chunk.bytes.bytes, b"first\n");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(writer);
        assert!(source.next_chunk(&pool).unwrap().is_none());
    }

    #[test]
    fn a_stop_ends_an_idle_stream_with_what_was_read() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let pool = Arc::new(BufferPool::default());
        let stop = CancellationToken::new();
        let source = StreamChunks::spawn(
            "t",
            reader,
            options(1 << 20, 1 << 20),
            stop.clone(),
            pool.clone(),
        )
        .unwrap();
        writer.write_all(b"a\nb\npartial").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        stop.cancel();
        let chunks = read_all(&source);
        let joined: Vec<u8> = chunks.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(joined, b"a\nb\n");
        drop(writer);
    }

    #[test]
    fn a_line_past_the_hold_limit_keeps_its_start_and_its_length() {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        let pool = Arc::new(BufferPool::default());
        let source = StreamChunks::spawn(
            "t",
            reader,
            options(1 << 20, 5),
            CancellationToken::new(),
            pool,
        )
        .unwrap();
        writer.write_all(b"ok\n0123456789").unwrap();
        // Let the reader take the first part on its own.
        std::thread::sleep(Duration::from_millis(200));
        writer.write_all(b"abcdef\nnext\n").unwrap();
        drop(writer);
        let chunks = read_all(&source);
        let joined: Vec<u8> = chunks.iter().flat_map(|(b, _)| b.clone()).collect();
        assert_eq!(joined, b"ok\n01234\nnext\n");
        let truncated: Vec<(u32, u64)> = chunks.iter().flat_map(|(_, t)| t.clone()).collect();
        assert_eq!(truncated.len(), 1);
        assert_eq!(truncated[0].1, 16);
    }
}
