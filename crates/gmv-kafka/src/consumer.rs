//! Consumer-group ingestion with per-partition state and checkpoints.
//!
//! Each member thread runs one `BaseConsumer` in the group (polling on the
//! thread itself: no async hop on the hot path) and owns the partitions the
//! group assigns it. Every owned partition has a [`Slot`]: its own
//! [`Engine`], fed straight from the borrowed message payloads in order, so
//! the partition's state is a pure function of its log prefix.
//!
//! Exactly-once, with respect to the log:
//! - every `checkpoint.interval` the member waits until the outputs produced
//!   so far are delivered, then writes each changed partition's state and
//!   next offset as one durable checkpoint, and only then commits that
//!   offset;
//! - on assignment a partition is restored from its checkpoint and fetched
//!   from exactly the checkpoint's offset (not the committed one), and a
//!   record below the state's next offset is never counted again;
//! - on revocation the member checkpoints what it processed before letting
//!   the partition go, so the next owner resumes where it stopped.
//!
//! Backpressure: the member processes what it polls before polling again, so
//! librdkafka's bounded prefetch queue is the only buffer; when the producer's
//! queue is full, sending waits, and so does consumption.

use crate::checkpoint::{CheckpointStore, Loaded};
use crate::config::KafkaConfig;
use crate::outputs::{client_config, Outputs};
use crate::KafkaError;
use gmv_core::engine::Latency;
use gmv_core::state::{settings_hash, Checkpoint};
use gmv_core::{Engine, Settings};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages taken from librdkafka per processing round.
const MAX_BATCH: usize = 2048;

/// One owned partition's state, shared with the publisher.
pub struct Slot {
    /// Input topic.
    pub topic: String,
    /// Input partition.
    pub partition: i32,
    /// The partition's engine.
    pub engine: Engine,
    /// First offset the state covers (-1 until a record is processed).
    pub first_offset: AtomicI64,
    /// Next offset to process (-1 until known).
    pub next_offset: AtomicI64,
    /// Producer timestamps (ms) of records processed since the publisher
    /// last looked: latency from production to the snapshot including them.
    pub pending_timestamps: Mutex<Vec<i64>>,
    /// The group member owning it.
    pub member: String,
}

/// State shared by the member threads and the publisher.
pub struct Shared {
    /// Engine settings.
    pub settings: Settings,
    /// `[kafka]`.
    pub config: KafkaConfig,
    /// Where checkpoints go.
    pub store: CheckpointStore,
    /// Dead letters, alerts, snapshots.
    pub outputs: Outputs,
    /// Owned partitions of this process, by partition.
    pub registry: Mutex<BTreeMap<i32, Arc<Slot>>>,
    /// Set to stop: members finish their round, checkpoint and leave.
    pub stop: Arc<AtomicBool>,
    /// Production → snapshot latency of this process.
    pub latency: Latency,
    /// Production → processed latency (the part before the snapshot), to
    /// tell where the time goes.
    pub processed_latency: Latency,
    /// One flag per member: everything it owns is at the log's end and has
    /// been for `exit_when_idle`.
    pub idle: Vec<AtomicBool>,
    /// Members that have made their final checkpoint and commit.
    drained: AtomicUsize,
    failure: Mutex<Option<KafkaError>>,
}

impl Shared {
    /// Shared state for `members` member threads.
    pub fn new(
        settings: Settings,
        config: KafkaConfig,
        store: CheckpointStore,
        outputs: Outputs,
        stop: Arc<AtomicBool>,
        members: usize,
    ) -> Self {
        Self {
            settings,
            config,
            store,
            outputs,
            registry: Mutex::new(BTreeMap::new()),
            stop,
            latency: Latency::new(),
            processed_latency: Latency::new(),
            idle: (0..members).map(|_| AtomicBool::new(false)).collect(),
            drained: AtomicUsize::new(0),
            failure: Mutex::new(None),
        }
    }

    /// Records the first fatal error and stops every member.
    pub fn fail(&self, error: KafkaError) {
        tracing::error!(%error, "stopping");
        self.failure.lock().get_or_insert(error);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The fatal error, if any.
    pub fn take_failure(&self) -> Option<KafkaError> {
        self.failure.lock().take()
    }

    /// Counts this member as drained and waits (bounded) for the others, so
    /// that no member leaves the group, and so starts a rebalance, while
    /// another is still committing its final offsets.
    fn drained_wait_for_others(&self) {
        self.drained.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.drained.load(Ordering::SeqCst) < self.idle.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether every member is idle.
    pub fn all_idle(&self) -> bool {
        self.idle.iter().all(|i| i.load(Ordering::SeqCst))
    }
}

/// A member's bookkeeping for one owned partition.
struct Task {
    slot: Arc<Slot>,
    /// Sequence number of the last durable checkpoint (0: none).
    seq: u64,
    /// Checksum of the last durable checkpoint, which the next delta extends.
    tip: Option<u64>,
    deltas_since_base: u32,
    /// Next offset in the last durable checkpoint (-1: none).
    checkpointed_next: i64,
    /// The next checkpoint must be a base (a save failed after the journal
    /// was taken).
    force_base: bool,
    /// Crossings already offered to the alerts topic.
    alerts_done: usize,
    /// After (re)assignment at a checkpoint's offset: the first record must
    /// be that offset. Some brokers (tansu 0.6) answer a fetch from inside a
    /// record batch with the *next* batch; a record past the expected offset
    /// is then a gap, and we fetch again from further back.
    expect_first: Option<i64>,
    /// How far back the next re-fetch starts.
    refetch_back: i64,
    /// A re-fetch has gone back to the log's start already.
    refetched_from_low: bool,
    /// A re-fetch was asked for during this batch: the rest of the batch's
    /// records of this partition come from the old fetch position.
    refetch_in_batch: bool,
    timestamps: Vec<i64>,
}

/// The consumer context: rebalance handling with checkpoints.
struct Member {
    shared: Arc<Shared>,
    name: String,
    tasks: Mutex<HashMap<i32, Task>>,
    /// Holds an assignment from the group (possibly empty): false between a
    /// revocation and the next assignment, so a member mid-rebalance is
    /// never taken for idle.
    assigned: AtomicBool,
    /// Assignments received so far: idleness restarts with each.
    assignments: AtomicU64,
}

impl ClientContext for Member {
    fn error(&self, error: RdKafkaError, reason: &str) {
        // librdkafka retries broker errors itself: a warning, not a failure.
        tracing::warn!(member = %self.name, %error, reason, "kafka client error (retrying)");
    }
}

impl ConsumerContext for Member {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => tracing::warn!(member = %self.name, error = ?other, "rebalance error"),
        }
    }
}

impl Member {
    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        tracing::info!(member = %self.name, ?partitions, "assigned");
        let started = Instant::now();
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        // The announced alerts and the checkpoint chains are read side by
        // side: each read ends with a quiet wait (see `read_to_end`).
        let metadata = self.committed_metadata(consumer, tpl);
        let (announced, chains) = std::thread::scope(|scope| {
            let announced = (!partitions.is_empty())
                .then(|| scope.spawn(|| self.shared.outputs.reload_announced(&self.shared.config)));
            let chains: Vec<_> = by_topic
                .iter()
                .map(|(topic, partitions)| {
                    let metadata: Vec<String> = partitions
                        .iter()
                        .map(|&p| {
                            let key = (topic.to_string(), p);
                            metadata.get(&key).cloned().unwrap_or_default()
                        })
                        .collect();
                    let loaded = self.shared.store.load(topic, partitions, &metadata);
                    (*topic, loaded)
                })
                .collect();
            let announced = announced.map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
            (announced, chains)
        });
        if let Some(Err(error)) = announced {
            self.shared.fail(error);
        }
        let mut tasks = self.tasks.lock();
        for ((topic, loaded), partitions) in chains.into_iter().zip(by_topic.into_values()) {
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    self.shared.fail(error);
                    continue;
                }
            };
            for (partition, loaded) in partitions.into_iter().zip(loaded) {
                match self.restore(topic, partition, loaded) {
                    Ok(task) => {
                        let next = task.slot.next_offset.load(Ordering::SeqCst);
                        let offset = if next >= 0 {
                            Offset::Offset(next)
                        } else {
                            Offset::Beginning
                        };
                        if let Err(error) = tpl.set_partition_offset(topic, partition, offset) {
                            self.shared.fail(KafkaError::Client {
                                what: "setting a partition's start offset",
                                source: error,
                            });
                        }
                        self.shared
                            .registry
                            .lock()
                            .insert(partition, task.slot.clone());
                        tasks.insert(partition, task);
                    }
                    Err(error) => self.shared.fail(error),
                }
            }
        }
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(error) = assigned {
            self.shared.fail(KafkaError::Client {
                what: "assigning partitions",
                source: error,
            });
        }
        if !partitions.is_empty() {
            tracing::info!(
                member = %self.name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state restored; fetching"
            );
        }
        self.assignments.fetch_add(1, Ordering::SeqCst);
        self.assigned.store(true, Ordering::SeqCst);
    }

    /// The metadata committed with each of `tpl`'s offsets, if the store
    /// uses it (a failure only makes the store read more).
    fn committed_metadata(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> HashMap<(String, i32), String> {
        let mut out = HashMap::new();
        if tpl.count() == 0 || !self.shared.store.reads_commit_metadata() {
            return out;
        }
        match consumer.committed_offsets(tpl.clone(), self.shared.config.connect_timeout) {
            Ok(committed) => {
                for element in committed.elements() {
                    out.insert(
                        (element.topic().to_string(), element.partition()),
                        element.metadata().to_string(),
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading committed offsets; checkpoints are read from the changelog's beginning")
            }
        }
        out
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        self.assigned.store(false, Ordering::SeqCst);
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        tracing::info!(member = %self.name, ?partitions, lost = consumer.assignment_lost(), "revoked");
        let mut tasks = self.tasks.lock();
        let mut revoked: Vec<Task> = partitions.iter().filter_map(|p| tasks.remove(p)).collect();
        // A lost assignment may already be someone else's: leave its
        // checkpoints alone and let the new owner resume from the last one.
        if !consumer.assignment_lost() {
            self.checkpoint(consumer, &mut revoked, CommitMode::Sync);
        }
        let mut registry = self.shared.registry.lock();
        for task in &revoked {
            registry.remove(&task.slot.partition);
        }
        drop(registry);
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = unassigned {
            tracing::warn!(%error, "unassigning partitions");
        }
    }

    /// The task of a newly assigned partition, from its loaded chain.
    fn restore(&self, topic: &str, partition: i32, loaded: Loaded) -> Result<Task, KafkaError> {
        let settings = &self.shared.settings;
        for (link, why) in &loaded.set_aside {
            tracing::warn!(
                %link,
                why,
                "checkpoint set aside; resuming {topic}/{partition} from the last good one and re-reading the log after it"
            );
        }
        let (engine, last): (Engine, Option<&Checkpoint>) = match loaded.chain.first() {
            None => (Engine::with_journal(settings.clone()), None),
            Some(base) => {
                if base.settings_hash != settings_hash(settings) {
                    return Err(KafkaError::SettingsChanged {
                        topic: topic.into(),
                        partition,
                    });
                }
                let engine = Engine::restore(settings.clone(), &loaded.chain).map_err(|e| {
                    KafkaError::Restore {
                        topic: topic.into(),
                        partition,
                        reason: e.to_string(),
                    }
                })?;
                (engine, loaded.chain.last())
            }
        };
        if let Some(last) = last {
            tracing::info!(
                topic,
                partition,
                seq = last.seq,
                next_offset = last.next_offset,
                "restored from checkpoint"
            );
        }
        Ok(Task {
            slot: Arc::new(Slot {
                topic: topic.into(),
                partition,
                engine,
                first_offset: AtomicI64::new(last.map_or(-1, |c| c.first_offset)),
                next_offset: AtomicI64::new(last.map_or(-1, |c| c.next_offset)),
                pending_timestamps: Mutex::new(Vec::new()),
                member: self.name.clone(),
            }),
            seq: last.map_or(0, |c| c.seq),
            tip: loaded.tip,
            deltas_since_base: loaded.chain.len().saturating_sub(1) as u32,
            checkpointed_next: last.map_or(-1, |c| c.next_offset),
            force_base: false,
            // Restored crossings are offered again: the announced set (read
            // from the alerts topic) drops those already out.
            alerts_done: 0,
            expect_first: last.map(|c| c.next_offset),
            refetch_back: 1024,
            refetched_from_low: false,
            refetch_in_batch: false,
            timestamps: Vec::new(),
        })
    }

    /// Makes the tasks' state durable and commits their offsets. Outputs
    /// first: a checkpoint must never cover a dead letter or alert that is
    /// not delivered.
    fn checkpoint(&self, consumer: &BaseConsumer<Self>, tasks: &mut [Task], mode: CommitMode) {
        let shared = &self.shared;
        if let Err(error) = shared.outputs.flush(shared.config.connect_timeout) {
            tracing::warn!(%error, "outputs not yet delivered; checkpoint postponed");
            return;
        }
        let lost = shared
            .outputs
            .deliveries()
            .lost_outputs
            .load(Ordering::SeqCst);
        if lost > 0 {
            shared.fail(KafkaError::OutputsLost(lost));
            return;
        }
        let mut commit = TopicPartitionList::new();
        for task in tasks.iter_mut() {
            let slot = &task.slot;
            let next = slot.next_offset.load(Ordering::SeqCst);
            if next < 0 || next == task.checkpointed_next {
                continue;
            }
            let base = task.seq == 0
                || task.tip.is_none()
                || task.force_base
                || task.deltas_since_base >= shared.config.checkpoint.deltas_per_base;
            let checkpoint = slot.engine.checkpoint(
                task.seq + 1,
                if base { None } else { task.tip },
                slot.first_offset.load(Ordering::SeqCst),
                next,
            );
            match shared.store.save(&slot.topic, slot.partition, &checkpoint) {
                Ok(checksum) => {
                    task.seq += 1;
                    task.tip = Some(checksum);
                    task.deltas_since_base = if base { 0 } else { task.deltas_since_base + 1 };
                    task.checkpointed_next = next;
                    task.force_base = false;
                    let _ = commit.add_partition_offset(
                        &slot.topic,
                        slot.partition,
                        Offset::Offset(next),
                    );
                }
                Err(error) => {
                    // The journal was taken: only a base can cover it now.
                    task.force_base = true;
                    tracing::error!(topic = %slot.topic, partition = slot.partition, %error, "checkpoint failed; will retry with a full one");
                }
            }
        }
        // Every owned partition's durable offset, changed or not: a commit
        // lost to a rebalance is made good by the next one.
        for task in tasks.iter() {
            let slot = &task.slot;
            if task.checkpointed_next >= 0 {
                let _ = commit.add_partition_offset(
                    &slot.topic,
                    slot.partition,
                    Offset::Offset(task.checkpointed_next),
                );
                // Where the next owner starts reading the chain.
                if let Some(metadata) = shared.store.commit_metadata(&slot.topic, slot.partition) {
                    if let Some(mut element) = commit.find_partition(&slot.topic, slot.partition) {
                        element.set_metadata(metadata);
                    }
                }
            }
        }
        if commit.count() > 0 {
            match consumer.commit(&commit, mode) {
                Ok(()) => {}
                // Expected while the group rebalances; the next commit (or
                // the new owner's) carries the same durable offsets.
                Err(RdKafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress)) => {
                    tracing::debug!("commit deferred: the group is rebalancing");
                }
                Err(error) => {
                    tracing::warn!(%error, "committing checkpointed offsets (the checkpoints stand; offsets are advisory)")
                }
            }
        }
    }

    /// Whether every owned partition has been processed up to its high
    /// watermark (asked of the broker: only checked once quiet).
    fn at_end(&self, consumer: &BaseConsumer<Self>) -> bool {
        let owned: Vec<(Arc<Slot>, i64)> = self
            .tasks
            .lock()
            .values()
            .map(|t| (t.slot.clone(), t.slot.next_offset.load(Ordering::SeqCst)))
            .collect();
        owned.iter().all(|(slot, next)| {
            consumer
                .fetch_watermarks(&slot.topic, slot.partition, Duration::from_secs(2))
                .is_ok_and(|(low, high)| high == 0 || high <= low || *next >= high)
        })
    }

    fn process(&self, consumer: &BaseConsumer<Self>, batch: &[BorrowedMessage<'_>]) {
        let mut tasks = self.tasks.lock();
        for task in tasks.values_mut() {
            task.refetch_in_batch = false;
        }
        let outputs = &self.shared.outputs;
        let mut start = 0;
        while start < batch.len() {
            let partition = batch[start].partition();
            let end = start
                + batch[start..]
                    .iter()
                    .take_while(|m| m.partition() == partition)
                    .count();
            // Records of a partition revoked meanwhile are its next owner's.
            if let Some(task) = tasks.get_mut(&partition) {
                let run = task.skip_to_expected(consumer, &batch[start..end]);
                task.process(run, outputs, &self.shared.processed_latency);
            }
            start = end;
        }
    }
}

impl Task {
    /// Checks the first records after a (re)assignment; returns the part of
    /// `run` that may be processed (empty while re-fetching).
    fn skip_to_expected<'r, 'm>(
        &mut self,
        consumer: &BaseConsumer<Member>,
        run: &'r [BorrowedMessage<'m>],
    ) -> &'r [BorrowedMessage<'m>] {
        let Some(expected) = self.expect_first else {
            return run;
        };
        if self.refetch_in_batch {
            return &[];
        }
        let slot = &self.slot;
        // Records below the expected offset are already counted (the
        // processing loop skips them); the question is the first one at or
        // after it.
        let Some(at) = run.iter().position(|m| m.offset() >= expected) else {
            return run;
        };
        let first = run[at].offset();
        if first == expected {
            self.expect_first = None;
            return run;
        }
        let low = consumer
            .fetch_watermarks(&slot.topic, slot.partition, Duration::from_secs(5))
            .map_or(0, |(low, _)| low);
        if low >= expected || self.refetched_from_low {
            // Fetched from the log's start and still past it: the log really
            // has a gap here (compaction or retention), not a fetch quirk.
            tracing::warn!(
                topic = %slot.topic,
                partition = slot.partition,
                expected,
                first,
                "records between the checkpoint and the first record fetched are gone from the log"
            );
            self.expect_first = None;
            return run;
        }
        let from = expected.saturating_sub(self.refetch_back).max(low);
        self.refetched_from_low = from == low;
        tracing::debug!(topic = %slot.topic, partition = slot.partition, expected, first, from, "fetch skipped past the checkpoint offset; fetching again from further back");
        if let Err(error) = consumer.seek(
            &slot.topic,
            slot.partition,
            Offset::Offset(from),
            Duration::from_secs(5),
        ) {
            tracing::warn!(%error, "re-fetching from before the checkpoint offset");
        }
        self.refetch_back = self.refetch_back.saturating_mul(4);
        // librdkafka drops what the old position fetched once seek returns;
        // what this batch still holds of it is skipped here.
        self.refetch_in_batch = true;
        &run[..at]
    }

    fn process(&mut self, run: &[BorrowedMessage<'_>], outputs: &Outputs, processed: &Latency) {
        let slot = &self.slot;
        let mut next = slot.next_offset.load(Ordering::Relaxed);
        let mut first = slot.first_offset.load(Ordering::Relaxed);
        let mut worker = slot.engine.worker();
        let timestamps = &mut self.timestamps;
        let records = run.iter().filter_map(|message| {
            let offset = message.offset();
            if offset < next {
                return None; // fetched again after a rebalance; already counted
            }
            if let Some(ts) = message.timestamp().to_millis() {
                timestamps.push(ts);
            }
            if first < 0 {
                first = offset;
            }
            next = offset + 1;
            Some((offset, message.payload().unwrap_or_default()))
        });
        worker.process_each(records, |offset, payload, rejection| {
            outputs.dead_letter(&rejection, payload, &slot.topic, slot.partition, offset);
        });
        drop(worker);
        slot.first_offset.store(first, Ordering::SeqCst);
        slot.next_offset.store(next, Ordering::SeqCst);
        if !self.timestamps.is_empty() {
            processed.record_all_since(&self.timestamps, chrono::Utc::now().timestamp_millis());
            slot.pending_timestamps.lock().append(&mut self.timestamps);
        }
        let crossings = slot.engine.aggregator().crossing_count();
        if crossings > self.alerts_done {
            for alert in slot.engine.alert_records(self.alerts_done) {
                outputs.alert(&alert);
            }
            self.alerts_done = crossings;
        }
    }
}

/// The librdkafka consumer properties of a member.
fn consumer_config(config: &KafkaConfig, client_id: &str) -> rdkafka::ClientConfig {
    let mut cfg = client_config(config);
    cfg.set("group.id", &config.group_id)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // librdkafka's 500 ms default makes each fetch wait (BROKERS.md).
        .set("fetch.wait.max.ms", "10")
        // When the prefetch queue is full librdkafka backs off fetching for
        // this long (default 1 s): measured, it starved members into 1 s
        // stalls and halved throughput (bench-kafka: 290k → 605k events/s).
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "32768");
    for (key, value) in &config.consumer {
        cfg.set(key, value);
    }
    cfg
}

/// Runs one group member until `shared.stop`; returns after its final
/// checkpoint and commit.
pub fn run_member(shared: Arc<Shared>, index: usize) {
    let name = format!("{}/{}/{index}", hostname(), std::process::id());
    let context = Member {
        shared: shared.clone(),
        name: name.clone(),
        tasks: Mutex::new(HashMap::new()),
        assigned: AtomicBool::new(false),
        assignments: AtomicU64::new(0),
    };
    let consumer: BaseConsumer<Member> =
        match consumer_config(&shared.config, &name).create_with_context(context) {
            Ok(consumer) => consumer,
            Err(source) => {
                shared.fail(KafkaError::Client {
                    what: "creating a consumer",
                    source,
                });
                shared.drained_wait_for_others();
                return;
            }
        };
    if let Err(source) = consumer.subscribe(&[&shared.config.input_topic]) {
        shared.fail(KafkaError::Client {
            what: "subscribing to the input topic",
            source,
        });
        shared.drained_wait_for_others();
        return;
    }
    let member = consumer.context();
    let interval = shared.config.checkpoint.interval;
    let mut last_checkpoint = Instant::now();
    // Idle time counts from the last record or the last assignment, whichever
    // is later: a partition just taken over may look finished (tansu 0.6
    // under-reports high watermarks) before its first fetch returns.
    let mut last_message = Instant::now();
    let mut assignments_seen = 0;
    let mut last_warning: Option<Instant> = None;
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(MAX_BATCH);
    while !shared.stop.load(Ordering::SeqCst) {
        let mut wait = Duration::from_millis(100);
        while batch.len() < MAX_BATCH {
            match consumer.poll(wait) {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error)) => {
                    // The client reconnects by itself; say so now and then.
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                        tracing::warn!(member = %name, %error, "consumer error; retrying");
                        last_warning = Some(Instant::now());
                    }
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        if !batch.is_empty() {
            member.process(&consumer, &batch);
            batch.clear();
            last_message = Instant::now();
        }
        if last_checkpoint.elapsed() >= interval {
            let mut tasks = member.tasks.lock();
            let mut owned: Vec<Task> = tasks.drain().map(|(_, t)| t).collect();
            member.checkpoint(&consumer, &mut owned, CommitMode::Async);
            tasks.extend(owned.into_iter().map(|t| (t.slot.partition, t)));
            last_checkpoint = Instant::now();
        }
        if let Some(idle_after) = shared.config.exit_when_idle {
            let assignments = member.assignments.load(Ordering::SeqCst);
            if assignments != assignments_seen {
                assignments_seen = assignments;
                last_message = Instant::now();
            }
            let idle = member.assigned.load(Ordering::SeqCst)
                && last_message.elapsed() >= idle_after
                && member.at_end(&consumer);
            shared.idle[index].store(idle, Ordering::SeqCst);
        }
    }
    // Drain: everything processed becomes durable and committed before we
    // leave the group.
    let mut tasks = member.tasks.lock();
    let mut owned: Vec<Task> = tasks.drain().map(|(_, t)| t).collect();
    member.checkpoint(&consumer, &mut owned, CommitMode::Sync);
    // The slots stay in the registry for the final snapshot and report.
    drop(tasks);
    shared.drained_wait_for_others();
    consumer.unsubscribe();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}
