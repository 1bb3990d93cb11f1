//! The Kafka run of one process: start-up checks, the member threads, and the
//! publisher that, at the publish cadence, writes each owned partition's
//! partial snapshot and changed per-second counts to the snapshots topic and
//! hands the process's merged view to local sinks (HTTP feed, alert file).

use crate::checkpoint::CheckpointStore;
use crate::config::KafkaConfig;
use crate::config::StoreKind;
use crate::consumer::{run_member, Shared, Slot};
use crate::outputs::{ensure_topics, wait_for_cluster, Cleanup, Outputs};
use crate::view::GlobalView;
use crate::wire::{PartitionSnapshot, SecondCounts};
use crate::KafkaError;
use gmv_core::aggregate::MerchantFigures;
use gmv_core::engine::top_merchant;
use gmv_core::output::{Accounting, PartitionAccounting, Report, Snapshot, TopMerchant};
use gmv_core::sink::LiveSink;
use gmv_core::{Engine, Settings};
use parking_lot::RwLock;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Called after each publish tick with the process's snapshot and the time
/// since start.
pub type OnTick = Box<dyn FnMut(&Snapshot, Duration) + Send>;

/// The process's view of the partitions it owns, for the HTTP API: the
/// latest merged snapshot, and the partitions' engines for look-ups (each
/// merchant lives in one partition).
pub struct ProcessView {
    slots: RwLock<Vec<Arc<Slot>>>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
}

impl Default for ProcessView {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessView {
    /// An empty view.
    pub fn new() -> Self {
        Self {
            slots: RwLock::new(Vec::new()),
            snapshot: RwLock::new(None),
        }
    }

    /// Partitions this process owned at the last tick.
    pub fn partitions(&self) -> usize {
        self.slots.read().len()
    }

    /// The latest merged snapshot.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().clone()
    }

    /// The `n` biggest merchants over every owned partition.
    pub fn top_merchants(&self, n: usize) -> Vec<TopMerchant> {
        let mut top: Vec<MerchantFigures> = self
            .slots
            .read()
            .iter()
            .flat_map(|s| s.engine.aggregator().summary(n).top)
            .collect();
        top.sort_unstable_by(|a, b| {
            b.gmv
                .cmp(&a.gmv)
                .then_with(|| a.merchant_id.cmp(&b.merchant_id))
        });
        top.iter().take(n).map(top_merchant).collect()
    }

    /// One merchant's figures, from the partition that holds it.
    pub fn merchant(&self, merchant_id: &str) -> Option<MerchantFigures> {
        self.slots
            .read()
            .iter()
            .find_map(|s| s.engine.aggregator().merchant(merchant_id))
    }

    /// Redelivery ids held and their bytes, over every owned partition.
    pub fn dedup(&self) -> (u64, u64) {
        self.slots.read().iter().fold((0, 0), |(ids, bytes), s| {
            (
                ids + s.engine.dedup().len() as u64,
                bytes + s.engine.dedup().allocated_bytes() as u64,
            )
        })
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
    let mut topics = vec![
        (
            config.input_topic.as_str(),
            config.partitions,
            Cleanup::Default,
        ),
        (&config.snapshots_topic, 1, Cleanup::Default),
        (&config.alerts_topic, 1, Cleanup::Default),
        (
            &config.dead_letter_topic,
            config.partitions,
            Cleanup::Default,
        ),
    ];
    if config.checkpoint.store == StoreKind::Topic {
        topics.push((
            &config.checkpoint.topic,
            config.partitions,
            Cleanup::Compact,
        ));
    }
    ensure_topics(&config, &topics)?;
    let store = CheckpointStore::open(&config)?;
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
                if let Some(snapshot) = publisher.view.snapshot() {
                    on_tick(&snapshot, started.elapsed());
                }
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
    if let (Some(on_tick), Some(snapshot)) = (on_tick.as_mut(), publisher.view.snapshot()) {
        on_tick(&snapshot, elapsed);
    }
    shared.outputs.flush(shared.config.connect_timeout)?;
    let (to_processed, to_snapshot) = (
        shared.processed_latency.percentiles(),
        shared.latency.percentiles(),
    );
    tracing::info!(
        processed_p50_ms = to_processed.p50,
        processed_p99_ms = to_processed.p99,
        snapshot_p50_ms = to_snapshot.p50,
        snapshot_p99_ms = to_snapshot.p99,
        "latency from the producer's timestamp"
    );
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
    /// Per slot (by address), crossings already looked at.
    crossing_cursors: HashMap<usize, usize>,
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
            crossing_cursors: HashMap::new(),
            timestamps: Vec::new(),
        }
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.shared.registry.lock().values().cloned().collect()
    }

    /// Publishes each partition's snapshot and changed seconds, and hands
    /// the merged snapshot and new alerts to local sinks. Nothing here copies
    /// every merchant: each partition is summarised once and the merge works
    /// on those summaries (as a `gmv serve --from-kafka` reader would).
    fn tick(&mut self) {
        self.seq += 1;
        let slots = self.slots();
        let mut merged = GlobalView::default();
        let mut starts = std::mem::take(&mut self.timestamps);
        for slot in &slots {
            // Timestamps first, then the snapshot: a record counted between
            // the two is reported late, never early.
            starts.append(&mut slot.pending_timestamps.lock());
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
            merged.insert_partition(record);
            for minute in self.publish_seconds(slot) {
                merged.insert_seconds(&minute);
            }
            self.announce_live(slot);
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.shared.latency.record_all_since(&starts, now);
        starts.clear();
        self.timestamps = starts;

        let mut snapshot = merged.assemble(&self.shared.settings, self.seq);
        snapshot.latency_ms = self.shared.latency.percentiles();
        let snapshot = Arc::new(snapshot);
        for sink in &self.live {
            sink.snapshot(&snapshot);
        }
        *self.view.snapshot.write() = Some(snapshot);
        *self.view.slots.write() = slots;
    }

    /// Hands a partition's new crossings to the local sinks.
    fn announce_live(&mut self, slot: &Arc<Slot>) {
        let cursor = self
            .crossing_cursors
            .entry(Arc::as_ptr(slot) as usize)
            .or_default();
        let aggregator = slot.engine.aggregator();
        if aggregator.crossing_count() <= *cursor {
            return;
        }
        for crossing in aggregator.crossings_since(*cursor) {
            *cursor += 1;
            if self
                .announced_live
                .insert((crossing.merchant_id.clone(), crossing.threshold))
            {
                let record = slot.engine.alert_record(&crossing);
                for sink in &self.live {
                    sink.alert(&record);
                }
            }
        }
    }

    /// Publishes the minutes whose per-second counts changed; returns every
    /// non-empty minute (for the merged view).
    fn publish_seconds(&mut self, slot: &Arc<Slot>) -> Vec<SecondCounts> {
        let counts = slot.engine.aggregator().per_second();
        let key = (slot.partition, Arc::as_ptr(slot) as usize);
        let last = self
            .published_seconds
            .entry(key)
            .or_insert_with(|| vec![0; counts.len()]);
        let mut minutes = Vec::new();
        for (minute, (now, before)) in counts.chunks(60).zip(last.chunks(60)).enumerate() {
            if now.iter().all(|&n| n == 0) {
                continue;
            }
            let record = SecondCounts {
                kind: "seconds".into(),
                topic: slot.topic.clone(),
                partition: slot.partition,
                minute: minute as u32,
                counts: now.to_vec(),
            };
            if now != before {
                if let Ok(json) = serde_json::to_vec(&record) {
                    self.shared.outputs.snapshot(
                        &SecondCounts::key(&slot.topic, slot.partition, minute as u32),
                        &json,
                    );
                }
            }
            minutes.push(record);
        }
        *last = counts;
        minutes
    }

    /// The report over every partition this process holds now: the one
    /// place that merges every merchant (the run has stopped).
    fn report(&self) -> Report {
        let slots = self.slots();
        let merged = Engine::new(self.shared.settings.clone());
        for slot in &slots {
            if let Err(error) = merged.absorb(&slot.engine.export()) {
                tracing::error!(%error, "merging a partition into the report");
            }
        }
        let mut report = merged.report();
        report.figures.accounting.partitions = slots.iter().map(|s| accounting_of(s)).collect();
        // The merged engine has no dedup set of its own: report the partitions'.
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
