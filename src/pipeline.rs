//! The processing pipeline of one `gmv run`: a reader thread fills batches
//! from a [`Source`], a bounded channel hands them to one worker per core
//! (decode → window → dedup → aggregate in `gmv-core`), emptied batches go
//! back for reuse, and a publisher thread emits a snapshot and the new alerts
//! to every [`LiveSink`] at the configured cadence, plus one final snapshot
//! when the input ends. Rejected records go to the dead-letter sink; a sink
//! that cannot keep a record stops the run (nothing is dropped silently).

use crate::source::{Batch, Source};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use gmv_core::reject::{Reason, Rejection};
use gmv_core::sink::{DeadLetter, DeadLetterSink, LiveSink};
use gmv_core::Engine;
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A callback run after each publish tick with the time since the start.
pub type OnTick<'a> = Box<dyn FnMut(&Engine, Duration) + Send + 'a>;

/// How a pipeline runs.
pub struct PipelineOptions<'a> {
    /// Worker threads (at least one).
    pub workers: usize,
    /// Where rejected records go.
    pub dead_letters: &'a dyn DeadLetterSink,
    /// Who receives snapshots and alerts.
    pub live: Vec<Arc<dyn LiveSink>>,
    /// Snapshot cadence.
    pub publish_interval: Duration,
    /// Set from outside (signal) to stop reading; what was read is finished.
    pub stop: Arc<AtomicBool>,
    /// Called after each publish with the elapsed time (progress lines).
    pub on_tick: Option<OnTick<'a>>,
}

/// What a finished pipeline reports.
#[derive(Debug)]
pub struct Outcome {
    /// Wall time from start to the last record processed.
    pub elapsed: Duration,
    /// Whether the input was read to its end (false: stopped by a signal).
    pub completed: bool,
    /// Snapshots published, including the final one.
    pub snapshots: u64,
}

/// Runs `source` through `engine` to its end (or until `stop`).
pub fn run(
    engine: &Engine,
    mut source: Box<dyn Source>,
    options: PipelineOptions<'_>,
) -> io::Result<Outcome> {
    let PipelineOptions {
        workers,
        dead_letters,
        live,
        publish_interval,
        stop,
        mut on_tick,
    } = options;
    let workers = workers.max(1);
    let (full_txs, full_rxs): (Vec<Sender<Batch>>, Vec<Receiver<Batch>>) =
        (0..workers).map(|_| bounded::<Batch>(2)).unzip();
    let (empty_tx, empty_rx) = bounded::<Batch>(workers * 4 + 2);
    let (done_tx, done_rx) = bounded::<()>(1);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);
    let source_name = source.name().to_owned();
    let started = Instant::now();
    let publisher = Publisher::new(live, publish_interval);

    let (completed, elapsed, snapshots) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut router = Router::new(full_txs, &empty_rx);
            read_all(&mut *source, &mut router, &stop)
        });
        let handles: Vec<_> = full_rxs
            .into_iter()
            .map(|full_rx| {
                let empty_tx = empty_tx.clone();
                let (failure, stop, source_name) = (&failure, &stop, source_name.as_str());
                scope.spawn(move || {
                    if let Err(e) = work(engine, &full_rx, &empty_tx, dead_letters, source_name) {
                        failure.lock().get_or_insert(e);
                        stop.store(true, Ordering::Relaxed);
                        // Drain so the reader is never blocked on a full channel.
                        for _ in full_rx.iter() {}
                    }
                })
            })
            .collect();
        let publisher =
            scope.spawn(|| publisher.run_until(engine, &done_rx, started, &mut on_tick));

        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        for handle in handles {
            if handle.join().is_err() {
                failure
                    .lock()
                    .get_or_insert(io::Error::other("worker thread panicked"));
            }
        }
        let elapsed = started.elapsed();
        let _ = done_tx.send(());
        let snapshots = publisher.join().unwrap_or(0);
        match read {
            Ok(completed) => (completed, elapsed, snapshots),
            Err(e) => {
                failure.lock().get_or_insert(e);
                (false, elapsed, snapshots)
            }
        }
    });
    if let Some(e) = failure.into_inner() {
        return Err(e);
    }
    dead_letters.flush()?;
    Ok(Outcome {
        elapsed,
        completed,
        snapshots,
    })
}

/// Fills batches until the source ends (`Ok(true)`) or `stop` is set (`Ok(false)`).
fn read_all(
    source: &mut dyn Source,
    router: &mut Router<'_>,
    stop: &AtomicBool,
) -> io::Result<bool> {
    loop {
        if stop.load(Ordering::Relaxed) {
            router.finish();
            return Ok(false);
        }
        let mut batch = router.empty_batch();
        let more = source.fill(&mut batch)?;
        if !router.route(batch) {
            // Every worker has gone: one failed and the run is stopping.
            return Ok(false);
        }
        if !more {
            router.finish();
            return Ok(true);
        }
    }
}

/// Hands records to workers so that every record with the same `txn_id`
/// goes to the same worker, in input order: a redelivery or a conflicting
/// reuse is then judged against the version that came first in the input,
/// whatever the number of workers, and a run is reproducible to the fen.
struct Router<'a> {
    outputs: Vec<Sender<Batch>>,
    pending: Vec<Batch>,
    empty: &'a Receiver<Batch>,
    /// The last routed source batch, refilled next (multi-worker mode).
    spare: Option<Batch>,
    txn_key: memchr::memmem::Finder<'static>,
}

impl<'a> Router<'a> {
    fn new(outputs: Vec<Sender<Batch>>, empty: &'a Receiver<Batch>) -> Self {
        let pending = (0..outputs.len()).map(|_| Batch::default()).collect();
        Self {
            outputs,
            pending,
            empty,
            spare: None,
            txn_key: memchr::memmem::Finder::new(b"\"txn_id\""),
        }
    }

    fn empty_batch(&mut self) -> Batch {
        let mut batch = self.spare.take().unwrap_or_else(|| recycled(self.empty));
        batch.clear();
        batch
    }

    /// Routes a filled batch; `false` when no worker is left to take it.
    fn route(&mut self, batch: Batch) -> bool {
        if batch.is_empty() {
            return true;
        }
        if self.outputs.len() == 1 {
            return self.outputs[0].send(batch).is_ok();
        }
        for (index, (position, record)) in batch.records().enumerate() {
            let shard = (self.txn_hash(record) % self.outputs.len() as u64) as usize;
            let out = &mut self.pending[shard];
            if out.is_empty() {
                out.started = batch.started;
            }
            if let Some(length) = batch.truncated_length(index) {
                out.truncated.push((out.len(), length));
            }
            out.push(record, position);
            if out.is_full() {
                let full = std::mem::replace(out, recycled(self.empty));
                if self.outputs[shard].send(full).is_err() {
                    return false;
                }
            }
        }
        self.spare = Some(batch);
        true
    }

    /// Sends every partly filled batch.
    fn finish(&mut self) {
        for (shard, out) in self.pending.iter_mut().enumerate() {
            if !out.is_empty() {
                let _ = self.outputs[shard].send(std::mem::take(out));
            }
        }
    }

    /// A hash of the raw `txn_id` value (records without one, which are
    /// rejected anyway, hash to 0).
    fn txn_hash(&self, record: &[u8]) -> u64 {
        let Some(at) = self.txn_key.find(record) else {
            return 0;
        };
        let rest = &record[at + 8..];
        let rest = rest
            .trim_ascii_start()
            .strip_prefix(b":")
            .unwrap_or(rest)
            .trim_ascii_start();
        let Some(value) = rest.strip_prefix(b"\"") else {
            return 0;
        };
        let end = memchr::memchr(b'"', value).unwrap_or(value.len());
        // FNV-1a: ids are short and this only spreads load.
        value[..end].iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }
}

/// An emptied batch from the workers, or a new one.
fn recycled(empty: &Receiver<Batch>) -> Batch {
    let mut batch = empty.try_recv().unwrap_or_else(|_| Batch::with_capacity());
    batch.clear();
    batch
}

/// One worker: processes batches until the channel closes.
fn work(
    engine: &Engine,
    full: &Receiver<Batch>,
    empty: &Sender<Batch>,
    dead_letters: &dyn DeadLetterSink,
    source_name: &str,
) -> io::Result<()> {
    let mut worker = engine.worker();
    for batch in full.iter() {
        // Only offsets here: the engine prefetches each record's bytes a
        // few records before it reads them (sources strip line endings and
        // skip blank lines while the bytes are still in cache).
        let records = batch
            .records()
            .enumerate()
            .map(|(index, (position, record))| ((index, position), record));
        let mut kept = Ok(());
        worker.process_each(records, |(index, position), record, rejection| {
            if kept.is_err() {
                return; // the sink failed; the run ends with that error
            }
            let origin = format!("{source_name}:{position}");
            let rejection = match batch.truncated_length(index) {
                Some(length) => Rejection {
                    reason: Reason::Oversize,
                    detail: format!("record of {length} bytes exceeds engine.max_event_bytes; its first {} bytes are kept", record.len()).into(),
                },
                None => rejection,
            };
            kept = dead_letters.keep(DeadLetter {
                rejection: &rejection,
                payload: record,
                origin: &origin,
            });
        });
        kept?;
        worker.flush();
        if let Some(started) = batch.started {
            engine
                .latency()
                .record(started.elapsed().as_micros() as u64, batch.len() as u64);
        }
        let _ = empty.try_send(batch);
    }
    Ok(())
}

/// Emits snapshots and alerts to the live sinks at a fixed cadence.
struct Publisher {
    sinks: Vec<Arc<dyn LiveSink>>,
    interval: Duration,
}

impl Publisher {
    fn new(sinks: Vec<Arc<dyn LiveSink>>, interval: Duration) -> Self {
        Self { sinks, interval }
    }

    /// Publishes every interval until `done` fires, then once more; returns
    /// the number of snapshots published.
    fn run_until(
        &self,
        engine: &Engine,
        done: &Receiver<()>,
        started: Instant,
        on_tick: &mut Option<OnTick<'_>>,
    ) -> u64 {
        let mut seq = 0;
        let mut alerts_sent = 0;
        let interval_ms = self.interval.as_millis() as u64;
        loop {
            let finished = match done.recv_timeout(self.interval) {
                Err(RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            };
            seq += 1;
            // Alerts first, so a snapshot never shows a crossing not yet announced.
            let alerts = engine.alert_records(alerts_sent);
            alerts_sent += alerts.len();
            if !self.sinks.is_empty() {
                for alert in &alerts {
                    self.sinks.iter().for_each(|sink| sink.alert(alert));
                }
                let snapshot = Arc::new(engine.snapshot(seq, interval_ms));
                self.sinks.iter().for_each(|sink| sink.snapshot(&snapshot));
            }
            if let Some(tick) = on_tick.as_mut() {
                tick(engine, started.elapsed());
            }
            if finished {
                return seq;
            }
        }
    }
}
