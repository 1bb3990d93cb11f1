//! The synthetic 11.11 stream as chunks, as fast as the workers take them,
//! paced at a rate (records per second of wall time), or replayed by event
//! time (`gmv demo --no-kafka`: the midnight rush in real time, then the
//! day as a time-lapse).

use super::{now_ms, Buffer, BufferPool, Chunk, ChunkSource};
use gmv_synth::{Generator, Replay, SynthConfig, SynthRecord};
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
    /// Plays event time on the wall clock instead of `rate`.
    replay: Option<Replay>,
    /// A record made but not yet due, with its slot's event time.
    pending: Option<(SynthRecord, u64)>,
}

/// How far ahead of its due time a replayed record may go out, so that a
/// chunk holds ~10 ms of records rather than one.
const REPLAY_AHEAD: Duration = Duration::from_millis(10);

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
                replay: None,
                pending: None,
            }),
            rate: rate.filter(|&r| r > 0),
            chunk_bytes: chunk_bytes.max(1),
            stop,
        }
    }

    /// Generates per `config`, each record due when `replay` says.
    pub fn replayed(
        config: SynthConfig,
        replay: Replay,
        chunk_bytes: usize,
        stop: CancellationToken,
    ) -> Self {
        let chunks = Self::new(config, None, chunk_bytes, stop);
        chunks.state.lock().replay = Some(replay);
        chunks
    }

    /// The records due within [`REPLAY_AHEAD`], up to a chunk's bytes;
    /// waits for the first when none is due yet.
    fn replayed_chunk(&self, state: &mut State, bytes: &mut Vec<u8>) -> Option<u64> {
        let mut records = 0;
        while bytes.len() < self.chunk_bytes {
            let next = match state.pending.take() {
                Some(made) => Some(made),
                None => state.generator.next_timed(),
            };
            let Some((record, at)) = next else {
                state.done = true;
                break;
            };
            let now = Instant::now();
            let early = state
                .replay
                .as_mut()
                .and_then(|replay| replay.due(at, now))
                .and_then(|due| due.checked_duration_since(now + REPLAY_AHEAD));
            if let Some(early) = early {
                state.pending = Some((record, at));
                if records > 0 {
                    break;
                }
                // The workers have nothing else to take: wait here, lock held.
                if self.stop.is_cancelled() {
                    return None;
                }
                std::thread::sleep(early.min(Duration::from_millis(50)));
                continue;
            }
            bytes.extend_from_slice(&record.payload);
            bytes.push(b'\n');
            records += 1;
        }
        Some(records)
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
        if state.replay.is_some() {
            let mut bytes = pool.take();
            let records = self.replayed_chunk(&mut state, &mut bytes.bytes);
            return Ok(records.and_then(|records| state.chunk(bytes, records)));
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
        Ok(state.chunk(bytes, records))
    }
}

impl State {
    /// `bytes` (holding `records` lines) as the next chunk; none if empty.
    fn chunk(&mut self, bytes: Buffer, records: u64) -> Option<Chunk> {
        self.produced += records;
        if records == 0 {
            return None;
        }
        let index = self.next_index;
        self.next_index += 1;
        Some(Chunk {
            index,
            bytes,
            truncated: Vec::new(),
            read_at: now_ms(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `source` to its end, checking chunk indices run in order;
    /// returns the chunks and lines read.
    fn drain(source: &SynthChunks) -> (u64, usize) {
        let pool = Arc::new(BufferPool::default());
        let (mut chunks, mut lines) = (0, 0);
        while let Some(chunk) = source.next_chunk(&pool).unwrap() {
            assert_eq!(chunk.index, chunks);
            chunks += 1;
            lines += memchr::memchr_iter(b'\n', &chunk.bytes.bytes).count();
        }
        (chunks, lines)
    }

    #[test]
    fn yields_exactly_the_configured_count() {
        let config = SynthConfig {
            events: 10_000,
            ..SynthConfig::default()
        };
        let source = SynthChunks::new(config, None, 64 << 10, CancellationToken::new());
        let (chunks, lines) = drain(&source);
        assert_eq!(lines, 10_000);
        assert!(chunks > 1);
    }

    #[test]
    fn a_replay_plays_event_time_on_the_wall_clock() {
        use gmv_synth::{Schedule, Segment, Stage};
        // 300 ms of the night in real time, then the rest of the day at a
        // million times.
        let schedule = Schedule::new(vec![
            Segment {
                millis: 300,
                events: 3_000,
            },
            Segment {
                millis: 86_399_700,
                events: 3_000,
            },
        ]);
        let replay = Replay::new(vec![
            Stage {
                until_ms: 300,
                speed: Some(1.0),
            },
            Stage {
                until_ms: 86_400_000,
                speed: Some(1e6),
            },
        ]);
        let config = SynthConfig::default().scheduled(schedule);
        let source = SynthChunks::replayed(config, replay, 64 << 10, CancellationToken::new());
        let started = Instant::now();
        let (chunks, lines) = drain(&source);
        let took = started.elapsed();
        assert_eq!(lines, 6_000);
        // ~10 ms of records a chunk while the clock runs at 1x.
        assert!(chunks >= 20, "{chunks} chunks");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
}
