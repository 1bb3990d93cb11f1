//! One group member: a thread with a `BaseConsumer` (polled on the thread
//! itself: no async hop on the hot path) that owns the partitions the group
//! assigns it, each a [`Task`].
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
//! Backpressure: the member counts what it polls before polling again, so
//! librdkafka's bounded prefetch queue is the only buffer; when the
//! producer's queue is full, sending waits, and so does consumption.

use super::task::Task;
use super::Shared;
use crate::checkpoint::Loaded;
use crate::config::KafkaConfig;
use crate::outputs::client_config;
use crate::KafkaError;
use gmv_core::partition::Partition;
use gmv_core::view::PartitionKey;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages taken from librdkafka per processing round.
const MAX_BATCH: usize = 2048;

/// The consumer context: rebalance handling with checkpoints.
pub(crate) struct Member {
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
        let shared = &self.shared;
        let (announced, chains) = std::thread::scope(|scope| {
            let announced = (!partitions.is_empty())
                .then(|| scope.spawn(|| shared.outputs.reload_announced(&shared.config)));
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
                    (*topic, shared.store.load(topic, partitions, &metadata))
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
            shared.fail(error);
        }
        let mut tasks = self.tasks.lock();
        for ((topic, loaded), partitions) in chains.into_iter().zip(by_topic.into_values()) {
            let loaded = match loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    shared.fail(error);
                    continue;
                }
            };
            for (partition, loaded) in partitions.into_iter().zip(loaded) {
                match self.restore(topic, partition, loaded) {
                    Ok(task) => {
                        let next = task.engine.next_position();
                        let offset = if next >= 0 {
                            Offset::Offset(next)
                        } else {
                            Offset::Beginning
                        };
                        if let Err(error) = tpl.set_partition_offset(topic, partition, offset) {
                            shared.fail(KafkaError::Client {
                                what: "setting a partition's start offset",
                                source: error,
                            });
                        }
                        tasks.insert(partition, task);
                    }
                    Err(error) => shared.fail(error),
                }
            }
        }
        let assigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(error) = assigned {
            shared.fail(KafkaError::Client {
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
        shared.rebalanced(partitions.len() as i64);
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
        drop(tasks);
        for task in revoked {
            let Task {
                mut engine,
                handoff,
                ..
            } = task;
            handoff.close(&mut engine, false);
        }
        self.shared.rebalanced(-(partitions.len() as i64));
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
        let shared = &self.shared;
        if let Some(why) = loaded.refused {
            return Err(KafkaError::Refused {
                topic: topic.into(),
                partition,
                why,
            });
        }
        for (link, why) in &loaded.set_aside {
            tracing::warn!(
                %link,
                why,
                "checkpoint set aside; resuming {topic}/{partition} from the last good one and re-reading the log after it"
            );
        }
        let (engine, restored) = match loaded.chain.last() {
            None => (
                Partition::new(shared.settings.clone(), shared.dedup_share).journaled(),
                None,
            ),
            Some(last) => {
                let engine =
                    Partition::restore(shared.settings.clone(), shared.dedup_share, &loaded.chain)
                        .map_err(|e| match e {
                            gmv_core::state::StateError::SettingsChanged => {
                                KafkaError::SettingsChanged {
                                    topic: topic.into(),
                                    partition,
                                }
                            }
                            other => KafkaError::Restore {
                                topic: topic.into(),
                                partition,
                                reason: other.to_string(),
                            },
                        })?;
                tracing::info!(
                    topic,
                    partition,
                    seq = last.seq,
                    next_offset = last.next_offset,
                    "restored from checkpoint"
                );
                let deltas = loaded.chain.len().saturating_sub(1) as u32;
                (engine, Some((last.seq, loaded.tip, deltas)))
            }
        };
        let handoff = shared
            .board
            .register(PartitionKey::kafka(topic, partition), &self.name);
        Ok(Task::new(topic, partition, engine, handoff, restored))
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
            let next = task.engine.next_position();
            if next < 0 || next == task.checkpointed_next {
                continue;
            }
            let base = task.seq == 0
                || task.tip.is_none()
                || task.force_base
                || task.deltas_since_base >= shared.config.checkpoint.deltas_per_base;
            let checkpoint = task
                .engine
                .checkpoint(task.seq + 1, if base { None } else { task.tip });
            match shared.store.save(&task.topic, task.partition, &checkpoint) {
                Ok(checksum) => {
                    task.seq += 1;
                    task.tip = Some(checksum);
                    task.deltas_since_base = if base { 0 } else { task.deltas_since_base + 1 };
                    task.checkpointed_next = next;
                    task.force_base = false;
                    shared.checkpointed();
                }
                Err(error) => {
                    // The changes were taken: only a base can cover them now.
                    task.force_base = true;
                    tracing::error!(topic = %task.topic, partition = task.partition, %error, "checkpoint failed; will retry with a full one");
                }
            }
        }
        // Every owned partition's durable offset, changed or not: a commit
        // lost to a rebalance is made good by the next one.
        for task in tasks.iter() {
            if task.checkpointed_next >= 0 {
                let _ = commit.add_partition_offset(
                    &task.topic,
                    task.partition,
                    Offset::Offset(task.checkpointed_next),
                );
                // Where the next owner starts reading the chain.
                if let Some(metadata) = shared.store.commit_metadata(&task.topic, task.partition) {
                    if let Some(mut element) = commit.find_partition(&task.topic, task.partition) {
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
        let owned: Vec<(String, i32, i64)> = self
            .tasks
            .lock()
            .values()
            .map(|t| (t.topic.clone(), t.partition, t.engine.next_position()))
            .collect();
        owned.iter().all(|(topic, partition, next)| {
            consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(2))
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
                let run = task.contiguous(consumer, &batch[start..end]);
                task.process(run, outputs);
            }
            start = end;
        }
    }

    /// Hands a delta of every owned partition that has one due (a quiet
    /// partition still gets its last records published).
    fn offer_all(&self) {
        for task in self.tasks.lock().values_mut() {
            task.handoff.offer(&mut task.engine);
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
        // stalls and halved throughput.
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "32768");
    for (key, value) in &config.consumer {
        cfg.set(key, value);
    }
    cfg
}

/// Runs one group member until the run stops; returns after its final
/// checkpoint and commit, with its partitions handed to the publisher.
pub(crate) fn run_member(shared: Arc<Shared>, index: usize) -> Result<(), KafkaError> {
    let name = format!("{}/{}/{index}", hostname(), std::process::id());
    let context = Member {
        shared: shared.clone(),
        name: name.clone(),
        tasks: Mutex::new(HashMap::new()),
        assigned: AtomicBool::new(false),
        assignments: AtomicU64::new(0),
    };
    let consumer: BaseConsumer<Member> = consumer_config(&shared.config, &name)
        .create_with_context(context)
        .map_err(|source| KafkaError::Client {
            what: "creating a consumer",
            source,
        })?;
    consumer
        .subscribe(&[&shared.config.input_topic])
        .map_err(|source| KafkaError::Client {
            what: "subscribing to the input topic",
            source,
        })?;
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
    while !shared.lifecycle.is_cancelled() {
        let mut wait = Duration::from_millis(50);
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
        if batch.is_empty() {
            member.offer_all();
        } else {
            member.process(&consumer, &batch);
            batch.clear();
            last_message = Instant::now();
        }
        if last_checkpoint.elapsed() >= interval {
            let mut tasks = member.tasks.lock();
            let mut owned: Vec<Task> = tasks.drain().map(|(_, t)| t).collect();
            member.checkpoint(&consumer, &mut owned, CommitMode::Async);
            tasks.extend(owned.into_iter().map(|t| (t.partition, t)));
            last_checkpoint = Instant::now();
        }
        if shared.config.exit_when_idle.is_some() {
            let assignments = member.assignments.load(Ordering::SeqCst);
            if assignments != assignments_seen {
                assignments_seen = assignments;
                last_message = Instant::now();
            }
            let idle_after = shared.config.exit_when_idle.unwrap_or_default();
            let idle = member.assigned.load(Ordering::SeqCst)
                && last_message.elapsed() >= idle_after
                && member.at_end(&consumer);
            shared.idle[index].store(idle, Ordering::SeqCst);
        }
    }
    // Drain: everything processed becomes durable and committed before we
    // leave the group, and the publisher gets each partition's last delta.
    let mut tasks = member.tasks.lock();
    let mut owned: Vec<Task> = tasks.drain().map(|(_, t)| t).collect();
    drop(tasks);
    member.checkpoint(&consumer, &mut owned, CommitMode::Sync);
    for task in owned {
        let Task {
            mut engine,
            handoff,
            ..
        } = task;
        handoff.close(&mut engine, true);
    }
    shared.drained_wait_for_others();
    consumer.unsubscribe();
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}
