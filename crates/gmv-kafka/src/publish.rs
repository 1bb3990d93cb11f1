//! The Kafka run of one process: start-up checks, the member threads, and the
//! publisher that, at the publish cadence, writes each owned partition's
//! partial snapshot and changed per-second counts to the snapshots topic and
//! hands the process's merged view to local sinks (HTTP feed, alert file).

use crate::checkpoint::CheckpointDir;
use crate::config::KafkaConfig;
use crate::consumer::{run_member, Shared, Slot};
use crate::outputs::{ensure_topics, topic_partitions, wait_for_cluster, Outputs};
use crate::wire::{PartitionSnapshot, SecondCounts};
use crate::KafkaError;
use gmv_core::output::{Accounting, PartitionAccounting, Report};
use gmv_core::sink::LiveSink;
use gmv_core::{Engine, Settings};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Called after each publish tick with the merged view and the time since start.
pub type OnTick = Box<dyn FnMut(&Engine, Duration) + Send>;

/// The process's merged view of its partitions, refreshed every tick (for
/// the HTTP API's merchant look-ups and top lists).
pub struct ProcessView {
    current: RwLock<Arc<Engine>>,
    partitions: std::sync::atomic::AtomicUsize,
}

impl ProcessView {
    /// An empty view.
    pub fn new(settings: Settings) -> Self {
        Self {
            current: RwLock::new(Arc::new(Engine::new(settings))),
            partitions: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Partitions this process owned at the last tick.
    pub fn partitions(&self) -> usize {
        self.partitions.load(Ordering::SeqCst)
    }

    /// The latest merged engine.
    pub fn engine(&self) -> Arc<Engine> {
        self.current.read().clone()
    }
}

/// How a Kafka run goes.
pub struct RunOptions {
    /// Engine settings.
    pub settings: Settings,
    /// `[kafka]`.
    pub config: KafkaConfig,
    /// Group members (consumer threads) in this process.
    pub members: usize,
    /// Snapshot cadence.
    pub publish_interval: Duration,
    /// Local receivers of the merged snapshot and alerts.
    pub live: Vec<Arc<dyn LiveSink>>,
    /// Set from outside (a signal) to drain and stop.
    pub stop: Arc<AtomicBool>,
    /// Progress callback.
    pub on_tick: Option<OnTick>,
    /// Where the merged view is kept for readers.
    pub view: Arc<ProcessView>,
    /// While set, `kafka.exit_when_idle` may not end the run (an in-process
    /// producer, as in `gmv demo`, is still producing).
    pub hold_open: Option<Arc<AtomicBool>>,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Everything owned was at its end for `kafka.exit_when_idle`.
    Idle,
    /// Stopped from outside (signal).
    Stopped,
}

/// What a finished run produced.
pub struct Outcome {
    /// The report over the partitions this process owned at the end.
    pub report: Report,
    /// Why it ended.
    pub cause: StopCause,
    /// Time from start to stop.
    pub elapsed: Duration,
}

/// Runs the Kafka pipeline until stopped or idle.
pub fn run(options: RunOptions) -> Result<Outcome, KafkaError> {
    let RunOptions {
        settings,
        config,
        members,
        publish_interval,
        live,
        stop,
        mut on_tick,
        view,
        hold_open,
    } = options;
    let members = members.max(1);
    wait_for_cluster(&config)?;
    if topic_partitions(&config, &config.input_topic)?.is_none() {
        ensure_topics(&config, &[(&config.input_topic, config.partitions)])?;
    }
    ensure_topics(
        &config,
        &[
            (&config.snapshots_topic, 1),
            (&config.alerts_topic, 1),
            (&config.dead_letter_topic, config.partitions),
        ],
    )?;
    let store =
        CheckpointDir::open(&config.checkpoint.dir).map_err(|source| KafkaError::Checkpoint {
            dir: config.checkpoint.dir.clone(),
            source,
        })?;
    let outputs = Outputs::new(&config)?;
    let shared = Arc::new(Shared::new(
        settings,
        config,
        store,
        outputs,
        stop.clone(),
        members,
    ));
    let started = Instant::now();
    let handles: Vec<_> = (0..members)
        .map(|index| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("gmv-member-{index}"))
                .spawn(move || run_member(shared, index))
                .expect("spawning a member thread")
        })
        .collect();
    let mut publisher = Publisher::new(shared.clone(), live, publish_interval, view);
    let mut cause = StopCause::Stopped;
    let mut next_tick = Instant::now() + publish_interval;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20).min(publish_interval));
        if Instant::now() >= next_tick {
            publisher.tick();
            if let Some(on_tick) = on_tick.as_mut() {
                on_tick(&publisher.view.engine(), started.elapsed());
            }
            next_tick += publish_interval;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + publish_interval;
            }
        }
        let held = hold_open.as_ref().is_some_and(|h| h.load(Ordering::SeqCst));
        if shared.config.exit_when_idle.is_some() && !held && shared.all_idle() {
            cause = StopCause::Idle;
            stop.store(true, Ordering::SeqCst);
        }
    }
    for handle in handles {
        if handle.join().is_err() {
            shared.fail(KafkaError::Timeout {
                what: "in a member thread that panicked".into(),
            });
        }
    }
    let elapsed = started.elapsed();
    publisher.tick();
    if let Some(on_tick) = on_tick.as_mut() {
        on_tick(&publisher.view.engine(), elapsed);
    }
    shared.outputs.flush(shared.config.connect_timeout)?;
    let deliveries = shared.outputs.deliveries();
    tracing::info!(
        alerts = deliveries.alerts_delivered.load(Ordering::SeqCst),
        dead_letters = deliveries.dead_letters_delivered.load(Ordering::SeqCst),
        lost_snapshots = deliveries.lost_snapshots.load(Ordering::SeqCst),
        "outputs delivered"
    );
    if let Some(error) = shared.take_failure() {
        return Err(error);
    }
    let report = publisher.report();
    Ok(Outcome {
        report,
        cause,
        elapsed,
    })
}

/// Per-tick publishing state.
struct Publisher {
    shared: Arc<Shared>,
    live: Vec<Arc<dyn LiveSink>>,
    interval_ms: u64,
    seq: u64,
    view: Arc<ProcessView>,
    /// Per-second counts last published, per slot (by address: a restored
    /// partition is a new slot and publishes all its minutes again).
    published_seconds: HashMap<(i32, usize), Vec<u32>>,
    /// Alerts already handed to the local sinks.
    announced_live: HashSet<(String, u64)>,
    timestamps: Vec<i64>,
}

impl Publisher {
    fn new(
        shared: Arc<Shared>,
        live: Vec<Arc<dyn LiveSink>>,
        interval: Duration,
        view: Arc<ProcessView>,
    ) -> Self {
        Self {
            shared,
            live,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            seq: 0,
            view,
            published_seconds: HashMap::new(),
            announced_live: HashSet::new(),
            timestamps: Vec::new(),
        }
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.shared.registry.lock().values().cloned().collect()
    }

    fn tick(&mut self) {
        self.seq += 1;
        let slots = self.slots();
        let merged = Engine::new(self.shared.settings.clone());
        let mut starts = std::mem::take(&mut self.timestamps);
        for slot in &slots {
            // Timestamps first, then the snapshot: a record counted between
            // the two is reported late, never early.
            starts.append(&mut slot.pending_timestamps.lock());
            let state = slot.engine.export();
            if let Err(error) = merged.absorb(&state) {
                tracing::error!(%error, "merging a partition into the process view");
            }
            let mut snapshot = slot.engine.snapshot(self.seq, self.interval_ms);
            snapshot.figures.accounting.partitions =
                vec![accounting(slot, &snapshot.figures.accounting)];
            snapshot.latency_ms = self.shared.latency.percentiles();
            let record = PartitionSnapshot {
                kind: "partition".into(),
                topic: slot.topic.clone(),
                partition: slot.partition,
                member: slot.member.clone(),
                snapshot,
            };
            match serde_json::to_vec(&record) {
                Ok(json) => self
                    .shared
                    .outputs
                    .snapshot(&PartitionSnapshot::key(&slot.topic, slot.partition), &json),
                Err(error) => tracing::error!(%error, "serialising a partition snapshot"),
            }
            self.publish_seconds(slot);
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.shared.latency.record_all_since(&starts, now);
        starts.clear();
        self.timestamps = starts;

        let mut snapshot = merged.snapshot(self.seq, self.interval_ms);
        snapshot.figures.accounting.partitions = slots.iter().map(|s| accounting_of(s)).collect();
        snapshot.latency_ms = self.shared.latency.percentiles();
        let snapshot = Arc::new(snapshot);
        for alert in merged.aggregator().crossings() {
            if self
                .announced_live
                .insert((alert.merchant_id.clone(), alert.threshold))
            {
                let record = merged.alert_record(&alert);
                for sink in &self.live {
                    sink.alert(&record);
                }
            }
        }
        for sink in &self.live {
            sink.snapshot(&snapshot);
        }
        *self.view.current.write() = Arc::new(merged);
        self.view.partitions.store(slots.len(), Ordering::SeqCst);
    }

    fn publish_seconds(&mut self, slot: &Arc<Slot>) {
        let counts = slot.engine.aggregator().per_second();
        let key = (slot.partition, Arc::as_ptr(slot) as usize);
        let last = self
            .published_seconds
            .entry(key)
            .or_insert_with(|| vec![0; counts.len()]);
        for (minute, (now, before)) in counts.chunks(60).zip(last.chunks(60)).enumerate() {
            if now != before {
                let record = SecondCounts {
                    kind: "seconds".into(),
                    topic: slot.topic.clone(),
                    partition: slot.partition,
                    minute: minute as u32,
                    counts: now.to_vec(),
                };
                if let Ok(json) = serde_json::to_vec(&record) {
                    self.shared.outputs.snapshot(
                        &SecondCounts::key(&slot.topic, slot.partition, minute as u32),
                        &json,
                    );
                }
            }
        }
        *last = counts;
    }

    /// The report over every partition this process holds now.
    fn report(&self) -> Report {
        let merged = self.view.engine();
        let mut report = merged.report();
        let slots = self.slots();
        report.figures.accounting.partitions = slots.iter().map(|s| accounting_of(s)).collect();
        // The merged view has no dedup set of its own: report the partitions'.
        report.dedup.ids_held = slots.iter().map(|s| s.engine.dedup().len() as u64).sum();
        report.dedup.bytes = slots
            .iter()
            .map(|s| s.engine.dedup().allocated_bytes() as u64)
            .sum();
        report.latency_ms = self.shared.latency.percentiles();
        report
    }
}

fn accounting(slot: &Slot, totals: &Accounting) -> PartitionAccounting {
    PartitionAccounting {
        topic: slot.topic.clone(),
        partition: slot.partition,
        consumed: totals.consumed,
        counted: totals.counted,
        rejected: totals.rejected,
        first_offset: slot.first_offset.load(Ordering::SeqCst),
        next_offset: slot.next_offset.load(Ordering::SeqCst),
    }
}

fn accounting_of(slot: &Slot) -> PartitionAccounting {
    accounting(slot, &slot.engine.figures().accounting)
}
