//! A source the process splits into partitions itself: a file, stdin, the
//! synthetic stream.
//!
//! Every worker thread both reads and owns. As a reader it claims the next
//! chunk of the input, decodes its records and routes each to the owner of
//! its partition ([`route`]); as an owner it holds the partitions `p` with
//! `p % workers == its number` and applies the parts routed to it strictly
//! in chunk order, so each partition sees its records in input order, and
//! the counts, crossings and refusals are those of a single thread reading
//! the input from the top, whatever the number of workers.
//!
//! At most `window` chunks are in flight past the slowest owner, which
//! bounds memory. Parts are handed over whole (one per chunk and owner);
//! nothing is shared per record. Dead letters go through the [`ledger`],
//! which writes them in input order.

mod ledger;
mod route;

use crate::chunks::{position, BufferPool, Chunk, ChunkSource, Polled};
use crate::handoff::{Board, Handoff};
use crate::lifecycle::{Lifecycle, TaskError};
use crate::publish::AlertOrder;
use crate::Source;
use gmv_core::partition::{dedup_share, Partition};
use gmv_core::sink::DeadLetterSink;
use gmv_core::view::{LiveState, PartitionKey};
use gmv_core::Settings;
use ledger::{Ledger, Refusal};
use parking_lot::{Condvar, Mutex};
use route::{route, Routed};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How many routed records an owner looks ahead to prefetch their dedup
/// probe.
const LOOKAHEAD: usize = 8;

/// How long a reader waits for a slow input's next chunk before it looks
/// at its own partitions' parts again.
const CLAIM_WAIT: Duration = Duration::from_millis(20);

/// A split source and how to run it.
pub struct SplitSource {
    /// Engine settings (`partitions` says how many).
    pub settings: Arc<Settings>,
    /// The input.
    pub chunks: Arc<dyn ChunkSource>,
    /// The buffers the input is read into.
    pub pool: Arc<BufferPool>,
    /// Worker threads (each reads and owns).
    pub workers: usize,
    /// Where refused records go, in input order.
    pub dead_letters: Arc<dyn DeadLetterSink>,
}

/// One chunk's records for one owner.
struct Part {
    chunk: Arc<Chunk>,
    records: Vec<Routed>,
}

#[derive(Default)]
struct Claims {
    /// Chunks handed out so far (their indices are `0..claimed`).
    claimed: u64,
    /// Claims under way.
    in_progress: usize,
    /// The input has ended (or the run is stopping).
    ended: bool,
    /// A reader failed: owners stop without waiting for its chunk.
    failed: bool,
}

struct Shared {
    settings: Arc<Settings>,
    chunks: Arc<dyn ChunkSource>,
    pool: Arc<BufferPool>,
    ledger: Ledger,
    partitions: u32,
    owners: usize,
    window: u64,
    claims: Mutex<Claims>,
    inboxes: Vec<Mutex<BTreeMap<u64, Part>>>,
    /// Per owner: the next chunk it will apply.
    applied: Vec<AtomicU64>,
    /// Emptied part buffers, for reuse.
    spare_parts: Mutex<Vec<Vec<Routed>>>,
    /// Wakes waiting workers when a part arrives, the window moves, or the
    /// input ends.
    changed: Condvar,
    changed_lock: Mutex<()>,
}

impl Source for SplitSource {
    fn alert_order(&self) -> AlertOrder {
        AlertOrder::Input
    }

    fn start(
        self: Box<Self>,
        lifecycle: &Lifecycle,
        board: Board,
        state: &Arc<LiveState>,
    ) -> Result<Vec<JoinHandle<()>>, TaskError> {
        let owners = self.workers.max(1);
        let partitions = self.settings.partitions.max(1) as u32;
        // Every partition is this process's from the start: nothing to wait for.
        state.set_status(|s| {
            s.ready = true;
            s.partitions = u64::from(partitions);
        });
        let shared = Arc::new(Shared {
            ledger: Ledger::new(self.chunks.name(), owners, self.dead_letters.clone()),
            settings: self.settings,
            chunks: self.chunks,
            pool: self.pool,
            partitions,
            owners,
            window: 2 * owners as u64 + 2,
            claims: Mutex::new(Claims::default()),
            inboxes: (0..owners).map(|_| Mutex::new(BTreeMap::new())).collect(),
            applied: (0..owners).map(|_| AtomicU64::new(0)).collect(),
            spare_parts: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            changed_lock: Mutex::new(()),
        });
        // Every partition is registered before any record is read: alerts
        // in input order wait for all of them.
        let workers: Vec<Worker> = (0..owners)
            .map(|owner| Worker::new(&shared, owner, &board))
            .collect();
        workers
            .into_iter()
            .enumerate()
            .map(|(owner, worker)| {
                let shared = shared.clone();
                lifecycle
                    .spawn(&format!("gmv-worker-{owner}"), move || {
                        let result = worker.run(&shared);
                        if result.is_err() {
                            shared.claims.lock().failed = true;
                            shared.notify();
                        }
                        result
                    })
                    .map_err(TaskError::from)
            })
            .collect()
    }
}

impl Shared {
    fn notify(&self) {
        let _guard = self.changed_lock.lock();
        self.changed.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let mut guard = self.changed_lock.lock();
        self.changed.wait_for(&mut guard, timeout);
    }

    /// Claims and reads the next chunk if the window allows; `Ok(None)` when
    /// it does not, when a slow input has nothing yet, or when it has ended.
    fn claim(&self) -> std::io::Result<Option<Chunk>> {
        {
            let mut claims = self.claims.lock();
            let slowest = self
                .applied
                .iter()
                .map(|a| a.load(Ordering::Acquire))
                .min()
                .unwrap_or(0);
            if claims.ended || claims.claimed + claims.in_progress as u64 >= slowest + self.window {
                return Ok(None);
            }
            claims.in_progress += 1;
        }
        // A reader waiting on a pipe must come back to count its part of
        // the chunks others have routed meanwhile: a burst followed by
        // silence would otherwise stay half-counted until the next line.
        let read = self.chunks.poll_chunk(&self.pool, CLAIM_WAIT);
        {
            let mut claims = self.claims.lock();
            claims.in_progress -= 1;
            match &read {
                Ok(Polled::Chunk(_)) => claims.claimed += 1,
                Ok(Polled::Later) => {}
                Ok(Polled::Ended) => claims.ended = true,
                Err(_) => {
                    claims.ended = true;
                    claims.failed = true;
                }
            }
        }
        self.notify();
        read.map(|polled| match polled {
            Polled::Chunk(chunk) => Some(chunk),
            Polled::Later | Polled::Ended => None,
        })
    }

    /// Whether owner `next` chunks in has applied everything there will be
    /// (or the run failed).
    fn finished(&self, next: u64) -> bool {
        let claims = self.claims.lock();
        claims.failed || (claims.ended && claims.in_progress == 0 && next >= claims.claimed)
    }

    fn spare_part(&self) -> Vec<Routed> {
        self.spare_parts.lock().pop().unwrap_or_default()
    }
}

/// One worker: its partitions and where it is.
struct Worker {
    owner: usize,
    partitions: Vec<(Partition, Handoff)>,
    next: u64,
}

impl Worker {
    fn new(shared: &Shared, owner: usize, board: &Board) -> Self {
        let share = dedup_share(shared.settings.dedup_max_ids, shared.partitions as usize);
        let member = format!("worker-{owner}");
        let partitions = (owner as u32..shared.partitions)
            .step_by(shared.owners)
            .map(|p| {
                (
                    Partition::new(shared.settings.clone(), share),
                    board.register(PartitionKey::split(p), &member),
                )
            })
            .collect();
        Self {
            owner,
            partitions,
            next: 0,
        }
    }

    /// The slot of partition `p` among this worker's.
    fn slot(&self, p: u32, owners: usize) -> usize {
        p as usize / owners
    }

    fn run(mut self, shared: &Shared) -> Result<(), TaskError> {
        loop {
            let mut busy = false;
            while let Some(part) = shared.inboxes[self.owner].lock().remove(&self.next) {
                self.apply(shared, part)?;
                busy = true;
            }
            if shared.finished(self.next) {
                break;
            }
            if let Some(chunk) = shared.claim()? {
                self.route(shared, chunk)?;
                busy = true;
            }
            if !busy {
                self.offer_all();
                shared.wait(Duration::from_millis(5));
            }
        }
        if shared.claims.lock().failed {
            return Ok(()); // the failing worker reports why
        }
        shared.ledger.flush()?;
        for (mut partition, mut handoff) in self.partitions {
            handoff.advance(position(self.next, 0));
            handoff.close(&mut partition, true);
        }
        Ok(())
    }

    /// Decodes a chunk and hands each owner its part.
    fn route(&mut self, shared: &Shared, chunk: Chunk) -> Result<(), TaskError> {
        let mut parts: Vec<Vec<Routed>> = (0..shared.owners).map(|_| shared.spare_part()).collect();
        let lines = route(&shared.settings, shared.partitions, &chunk, &mut parts);
        let index = chunk.index;
        shared.ledger.lines(index, lines)?;
        let chunk = Arc::new(chunk);
        for (owner, records) in parts.into_iter().enumerate() {
            let part = Part {
                chunk: chunk.clone(),
                records,
            };
            shared.inboxes[owner].lock().insert(index, part);
        }
        shared.notify();
        Ok(())
    }

    /// Counts this owner's part of a chunk, in order.
    fn apply(&mut self, shared: &Shared, mut part: Part) -> Result<(), TaskError> {
        let owners = shared.owners;
        let bytes = &part.chunk.bytes.bytes[..];
        let index = part.chunk.index;
        let mut refusals = Vec::new();
        let mut counted = vec![0u32; self.partitions.len()];
        for i in 0..part.records.len() {
            if let Some(ahead) = part.records.get(i + LOOKAHEAD) {
                if let Ok(txn) = &ahead.verdict {
                    self.partitions[self.slot(ahead.partition, owners)]
                        .0
                        .prefetch(txn.merchant_hash(), txn.key());
                }
            }
            let record = &part.records[i];
            let slot = self.slot(record.partition, owners);
            counted[slot] += 1;
            let txn = match &record.verdict {
                Ok(txn) => Ok(txn.txn(bytes)),
                Err(rejection) => Err(rejection.clone()),
            };
            if let Err(rejection) = self.partitions[slot]
                .0
                .count(position(index, record.line), txn)
            {
                let span = record.start as usize..(record.start + record.len) as usize;
                refusals.push(Refusal {
                    line: record.line,
                    payload: bytes[span].to_vec(),
                    rejection,
                });
            }
        }
        shared.ledger.part(index, refusals)?;
        self.next = index + 1;
        shared.applied[self.owner].store(self.next, Ordering::Release);
        let read_at = part.chunk.read_at;
        for ((partition, handoff), n) in self.partitions.iter_mut().zip(counted) {
            if n > 0 {
                handoff.started(read_at, n);
            }
            handoff.advance(position(self.next, 0));
            handoff.offer(partition);
        }
        part.records.clear();
        shared
            .spare_parts
            .lock()
            .push(std::mem::take(&mut part.records));
        shared.notify();
        Ok(())
    }

    fn offer_all(&mut self) {
        for (partition, handoff) in &mut self.partitions {
            handoff.offer(partition);
        }
    }
}
