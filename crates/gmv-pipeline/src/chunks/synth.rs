//! The synthetic 11.11 stream as chunks, as fast as the workers take them
//! or paced at a rate (records per second of wall time).

use super::{now_ms, BufferPool, Chunk, ChunkSource};
use gmv_synth::{Generator, SynthConfig};
use parking_lot::Mutex;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The generator, shared by the workers (one makes a chunk at a time).
pub struct SynthChunks {
    state: Mutex<State>,
    rate: Option<u64>,
    chunk_bytes: usize,
    stop: CancellationToken,
}

struct State {
    generator: Generator,
    next_index: u64,
    produced: u64,
    begun: Option<Instant>,
    done: bool,
}

impl SynthChunks {
    /// Generates per `config`; `rate` of `None` or 0 means unpaced.
    pub fn new(
        config: SynthConfig,
        rate: Option<u64>,
        chunk_bytes: usize,
        stop: CancellationToken,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                generator: Generator::new(config),
                next_index: 0,
                produced: 0,
                begun: None,
                done: false,
            }),
            rate: rate.filter(|&r| r > 0),
            chunk_bytes: chunk_bytes.max(1),
            stop,
        }
    }
}

impl ChunkSource for SynthChunks {
    fn name(&self) -> &str {
        "synth"
    }

    fn next_chunk(&self, pool: &Arc<BufferPool>) -> io::Result<Option<Chunk>> {
        let mut state = self.state.lock();
        if state.done || self.stop.is_cancelled() {
            return Ok(None);
        }
        let begun = *state.begun.get_or_insert_with(Instant::now);
        // Paced chunks hold ~10 ms of records, so latency reflects the pace.
        let limit = match self.rate {
            Some(rate) => (rate / 100).max(1),
            None => u64::MAX,
        };
        if let Some(rate) = self.rate {
            let due = begun + Duration::from_secs_f64(state.produced as f64 / rate as f64);
            while let Some(wait) = due.checked_duration_since(Instant::now()) {
                if self.stop.is_cancelled() {
                    return Ok(None);
                }
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
        let mut bytes = pool.take();
        let mut records = 0;
        while records < limit && bytes.bytes.len() < self.chunk_bytes {
            let Some(record) = state.generator.next() else {
                state.done = true;
                break;
            };
            bytes.bytes.extend_from_slice(&record.payload);
            bytes.bytes.push(b'\n');
            records += 1;
        }
        state.produced += records;
        if records == 0 {
            return Ok(None);
        }
        let index = state.next_index;
        state.next_index += 1;
        Ok(Some(Chunk {
            index,
            bytes,
            truncated: Vec::new(),
            read_at: now_ms(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_exactly_the_configured_count() {
        let config = SynthConfig {
            events: 10_000,
            ..SynthConfig::default()
        };
        let source = SynthChunks::new(config, None, 64 << 10, CancellationToken::new());
        let pool = Arc::new(BufferPool::default());
        let mut lines = 0;
        let mut chunks = 0;
        while let Some(chunk) = source.next_chunk(&pool).unwrap() {
            assert_eq!(chunk.index, chunks);
            chunks += 1;
            lines += memchr::memchr_iter(b'\n', &chunk.bytes.bytes).count();
        }
        assert_eq!(lines, 10_000);
        assert!(chunks > 1);
    }
}
