//! Where a split run's records come from: an input cut into chunks of whole
//! lines, each read by one thread and handed on as it is, so that no thread
//! touches every record on the way to the decoders.
//!
//! - [`FileChunks`]: a regular file, read at byte ranges by the worker
//!   threads themselves (each cuts its range at line starts: a record
//!   belongs to the range it starts in).
//! - [`StreamChunks`]: stdin or a pipe, read by one thread that only cuts at
//!   the last newline and hands a partial chunk on after a short linger, so
//!   a slow feed is seen live.
//! - [`SynthChunks`]: the synthetic 11.11 stream, optionally paced.
//!
//! A chunk's records are its lines; a record's position in the input is
//! the chunk's index and the line's number within it ([`position`]), which
//! orders records across chunks without anyone counting lines up front.

mod file;
mod stream;
mod synth;

pub use file::FileChunks;
pub use stream::{StreamChunks, StreamOptions};
pub use synth::SynthChunks;

use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The position of line `line` (0-based) of chunk `chunk`: ordered as the
/// input is, comparable across partitions.
#[inline]
pub fn position(chunk: u64, line: u32) -> i64 {
    ((chunk << 32) | u64::from(line)) as i64
}

/// Bytes a reader takes at a time unless configured otherwise.
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

/// Recycled chunk buffers: fresh pages for every chunk would cost a page
/// fault per 4 KiB read.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer from the pool, or a new one.
    pub fn take(self: &Arc<Self>) -> Buffer {
        let mut bytes = self.free.lock().pop().unwrap_or_default();
        bytes.clear();
        Buffer {
            bytes,
            pool: Some(self.clone()),
        }
    }
}

/// Bytes that go back to their pool when dropped.
pub struct Buffer {
    /// The bytes.
    pub bytes: Vec<u8>,
    pool: Option<Arc<BufferPool>>,
}

impl Buffer {
    /// A buffer of its own (tests).
    pub fn unpooled(bytes: Vec<u8>) -> Self {
        Self { bytes, pool: None }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let mut free = pool.free.lock();
            // A few spares per thread are plenty; more would only hold memory.
            if free.len() < 64 {
                free.push(std::mem::take(&mut self.bytes));
            }
        }
    }
}

/// Whole lines of the input.
pub struct Chunk {
    /// 0, 1, 2, ... in input order.
    pub index: u64,
    /// The lines, each ending in `\n` but perhaps the input's last.
    pub bytes: Buffer,
    /// Records cut short at the hold limit: (byte offset of the record in
    /// `bytes`, its full length).
    pub truncated: Vec<(u32, u64)>,
    /// When it was read (ms since the epoch): where its latency starts.
    pub read_at: i64,
}

impl Chunk {
    /// Whether the chunk starts the input (a byte-order mark may lead it).
    pub fn starts_input(&self) -> bool {
        self.index == 0
    }
}

/// A source of chunks, read by any number of threads at once.
pub trait ChunkSource: Send + Sync {
    /// The name records' origins start with (`events.jsonl`, `stdin`, `synth`).
    fn name(&self) -> &str;
    /// The next chunk in order of claiming, or `None` once the input has
    /// ended or the run is stopping. Every chunk index below the last one
    /// handed out is handed out exactly once.
    fn next_chunk(&self, pool: &Arc<BufferPool>) -> io::Result<Option<Chunk>>;

    /// Like [`Self::next_chunk`], but waits at most about `wait` for a
    /// source whose next chunk may be long in coming (a pipe), so that a
    /// reader can go back to its other work meanwhile. Sources that never
    /// wait for their input keep the default.
    fn poll_chunk(&self, pool: &Arc<BufferPool>, wait: Duration) -> io::Result<Polled> {
        let _ = wait;
        Ok(match self.next_chunk(pool)? {
            Some(chunk) => Polled::Chunk(chunk),
            None => Polled::Ended,
        })
    }
}

/// What [`ChunkSource::poll_chunk`] found.
pub enum Polled {
    /// The next chunk.
    Chunk(Chunk),
    /// Nothing yet; ask again.
    Later,
    /// The input has ended or the run is stopping.
    Ended,
}

/// The time now, ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
