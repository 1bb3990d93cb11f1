//! One group member: a thread with a `BaseConsumer` (polled on the thread
//! itself: no async hop on the hot path) that owns the partitions the group
//! assigns it, each a [`Task`].
//!
//! Exactly-once, with respect to the log:
//! - every `checkpoint.interval` the member captures what changed in each
//!   partition and hands it to its writer ([`super::durable`]), which waits
//!   until the outputs produced so far are delivered and makes the capture
//!   durable; the member commits the offset only once the writer says so;
//! - on assignment a partition is restored from its checkpoint and fetched
//!   from exactly the checkpoint's offset (not the committed one), and a
//!   record below the state's next offset is never counted again;
//! - on revocation the member checkpoints what it processed before letting
//!   the partition go, so the next owner resumes where it stopped.
//!
//! Backpressure: the member counts what it polls before polling again, so
//! librdkafka's bounded prefetch queue is the only buffer; when the
//! producer's queue is full, sending waits, and so does consumption.

use super::durable::{Durable, Restored};
use super::task::Task;
use super::Shared;
use crate::checkpoint::Loaded;
use crate::config::KafkaConfig;
use crate::outputs::client_config;
use crate::KafkaError;
use gmv_core::partition::Partition;
use gmv_core::state::CheckpointKind;
use gmv_core::view::PartitionKey;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages taken from librdkafka per processing round.
const MAX_BATCH: usize = 2048;

/// How often a member refreshes its partitions' consumer lag.
const LAG_EVERY: Duration = Duration::from_millis(250);

/// How often a quiet member asks the broker whether the input is drained
/// (`kafka.exit_when_idle`).
const END_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Longest wait for the group's committed offsets when only a warning
/// depends on them.
const COMMITTED_WAIT: Duration = Duration::from_secs(3);

/// librdkafka's session timeout unless `[kafka.consumer]` sets another.
const SESSION_TIMEOUT_MS: u64 = 10_000;

/// The consumer context: rebalance handling with checkpoints.
pub(crate) struct Member {
    shared: Arc<Shared>,
    name: String,
    index: usize,
    tasks: Mutex<HashMap<i32, Task>>,
    /// Makes captured checkpoints durable off this thread.
    durable: Durable,
    /// Assignments and revocations so far: idleness restarts with each.
    assignments: AtomicU64,
    /// When the last rebalance callback returned: time spent restoring or
    /// checkpointing in one is work, not a stall.
    rebalanced_at: Mutex<Instant>,
}

impl ClientContext for Member {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        // Errors also reach `error` below; the log proper is for debugging
        // (`RUST_LOG=librdkafka=debug` with `kafka.consumer.debug`).
        match level {
            L::Emerg | L::Alert | L::Critical => {
                tracing::error!(target: "librdkafka", member = %self.name, fac, "{log_message}")
            }
            _ => tracing::debug!(target: "librdkafka", member = %self.name, fac, "{log_message}"),
        }
    }

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
        *self.rebalanced_at.lock() = Instant::now();
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
        if self.shared.lifecycle.is_cancelled() {
            // The run is ending and counts nothing more: a partition handed
            // on as another member left keeps the figures that member
            // published last, and the next run resumes it from its
            // checkpoints. Taking it would register it in the view only to
            // drop it again as this member leaves, and the report would
            // miss it.
            self.accept_as_given(consumer, tpl);
            return;
        }
        let started = Instant::now();
        // A partition assigned again while still held (librdkafka has taken
        // it for lost without saying so): what it processed after its last
        // durable checkpoint may be someone else's by now, so it starts over
        // from the store like any newly assigned partition.
        let mut tasks = self.tasks.lock();
        let mut stale: Vec<Task> = partitions
            .iter()
            .filter_map(|(_, partition)| tasks.remove(partition))
            .collect();
        if !stale.is_empty() {
            tracing::warn!(member = %self.name, partitions = ?stale.iter().map(|t| t.partition).collect::<Vec<_>>(), "assigned partitions it still held; resuming them from their checkpoints");
            self.durable.wait();
            self.settle(stale.iter_mut().chain(tasks.values_mut()));
        }
        drop(tasks);
        self.let_go(stale);
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let shared = &self.shared;
        if !partitions.is_empty() {
            // Alerts already in the topic are read on the side; every alert
            // waits until they are in, and counting starts at once.
            shared.reload_announced();
        }
        let answered = self.committed(consumer, tpl);
        let group_answered = answered.is_some();
        let committed = answered.unwrap_or_default();
        let chains: Vec<_> = by_topic
            .iter()
            .map(|(topic, partitions)| {
                let metadata: Vec<String> = partitions
                    .iter()
                    .map(|&p| {
                        let key = (topic.to_string(), p);
                        committed
                            .get(&key)
                            .map(|(_, metadata)| metadata.clone())
                            .unwrap_or_default()
                    })
                    .collect();
                (*topic, shared.store.load(topic, partitions, &metadata))
            })
            .collect();
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
                let key = (topic.to_string(), partition);
                if let Some((offset, _)) = committed.get(&key).filter(|(o, _)| *o > 0) {
                    if loaded.chain.is_empty() && loaded.refused.is_none() {
                        tracing::warn!(
                            topic,
                            partition,
                            committed = offset,
                            group = %shared.config.group_id,
                            "the group committed this partition but its checkpoints are gone (a deleted checkpoint directory or changelog?): its state is lost, so it is read again from the beginning (totals stay exact if the log still holds it all)"
                        );
                    }
                }
                match self.restore(topic, partition, loaded) {
                    Ok(task) => {
                        let next = task.engine.next_position();
                        // Only when the group answered: a cluster out of
                        // reach would make each look-up wait its timeout.
                        if group_answered {
                            if let Some(what) = beyond_the_log(consumer, topic, partition, next) {
                                shared.fail(KafkaError::LogLost { what });
                            }
                        }
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
        self.accept_as_given(consumer, tpl);
        if !partitions.is_empty() {
            tracing::info!(
                member = %self.name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state restored; fetching"
            );
        }
        self.assignments.fetch_add(1, Ordering::SeqCst);
        shared.rebalanced(self.index, Some(partitions.len()));
    }

    /// The group's committed offset and its metadata for each of `tpl`'s
    /// partitions that has one. The store may read its chain from the
    /// metadata; a committed partition without checkpoints is state lost.
    /// `None` when there was nothing to ask or the group did not answer.
    fn committed(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Option<HashMap<(String, i32), (i64, String)>> {
        let mut out = HashMap::new();
        if tpl.count() == 0 {
            return None;
        }
        // The changelog store reads less with the metadata; the directory
        // store only warns with it, so it waits less.
        let timeout = if self.shared.store.reads_commit_metadata() {
            self.shared.config.connect_timeout
        } else {
            self.shared.config.connect_timeout.min(COMMITTED_WAIT)
        };
        match consumer.committed_offsets(tpl.clone(), timeout) {
            Ok(committed) => {
                for element in committed.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        out.insert(
                            (element.topic().to_string(), element.partition()),
                            (offset, element.metadata().to_string()),
                        );
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "reading committed offsets; checkpoints are read from the changelog's beginning");
                return None;
            }
        }
        Some(out)
    }

    /// Tells librdkafka the assignment is taken (at the offsets `tpl` has).
    fn accept_as_given(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
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
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        tracing::info!(member = %self.name, ?partitions, lost = consumer.assignment_lost(), "revoked");
        let mut tasks = self.tasks.lock();
        let mut revoked: Vec<Task> = partitions.iter().filter_map(|p| tasks.remove(p)).collect();
        // A lost assignment may already be someone else's: leave its
        // checkpoints alone and let the new owner resume from the last one.
        if consumer.assignment_lost() {
            // Its captures in flight land before anyone (here) restores it.
            self.durable.wait();
            self.settle(revoked.iter_mut().chain(tasks.values_mut()));
        } else {
            self.checkpoint_now(consumer, &mut revoked, &mut tasks);
        }
        drop(tasks);
        self.let_go(revoked);
        let unassigned = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = unassigned {
            tracing::warn!(%error, "unassigning partitions");
        }
        // Cooperative: a member that keeps partitions stays assigned. One
        // left with none, or whose assignment was lost, or any member under
        // the eager protocol, owns nothing until its next assignment: it is
        // neither ready nor idle meanwhile.
        let kept = self.tasks.lock().len();
        let remaining = (matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        ) && !consumer.assignment_lost()
            && kept > 0)
            .then_some(kept);
        self.assignments.fetch_add(1, Ordering::SeqCst);
        self.shared.rebalanced(self.index, remaining);
    }

    /// Partitions this member no longer holds: their writer forgets them
    /// (what it has written stays for the next owner) and the view drops
    /// them.
    fn let_go(&self, tasks: Vec<Task>) {
        for task in tasks {
            self.durable.forget(&task.topic, task.partition);
            self.shared.forget_lag(&task.topic, task.partition);
            let Task {
                mut engine,
                handoff,
                ..
            } = task;
            handoff.close(&mut engine, false);
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
        let Loaded { chain, tip, .. } = loaded;
        let (engine, restored) = match chain.last() {
            None => (
                Partition::new(shared.settings.clone(), shared.dedup_share).journaled(),
                None,
            ),
            Some(last) => {
                let engine =
                    Partition::restore(shared.settings.clone(), shared.dedup_share, &chain)
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
                let restored = Restored {
                    seq: last.seq,
                    tip,
                    deltas: chain.len().saturating_sub(1) as u32,
                    chain,
                };
                (engine, Some(restored))
            }
        };
        let fresh = restored.is_none();
        self.durable.adopt(topic, partition, restored);
        let handoff = shared
            .board
            .register(PartitionKey::kafka(topic, partition), &self.name);
        Ok(Task::new(topic, partition, engine, handoff, !fresh))
    }

    /// Hands the writer a delta of each of `tasks` that changed since its
    /// last capture and has none in flight. Cheap: no whole-state copy.
    fn capture<'t>(&self, tasks: impl Iterator<Item = &'t mut Task>) {
        let mut captures = Vec::new();
        for task in tasks {
            let next = task.engine.next_position();
            if task.in_flight || next < 0 || next == task.captured_next {
                continue;
            }
            // The writer numbers and chains links: 0 is a placeholder.
            let delta = task.engine.capture(0, CheckpointKind::Delta);
            task.captured_next = next;
            task.in_flight = true;
            captures.push(((task.topic.clone(), task.partition), delta));
        }
        self.durable.save(captures);
    }

    /// Takes the writer's answers; returns whether any of `tasks` became
    /// durable. `tasks` must be every partition this member holds: an
    /// answer for any other is for a partition gone, and dropped.
    fn settle<'t>(&self, tasks: impl Iterator<Item = &'t mut Task>) -> bool {
        let mut by_partition: HashMap<(String, i32), &mut Task> =
            tasks.map(|t| ((t.topic.clone(), t.partition), t)).collect();
        let mut durable = false;
        for saved in self.durable.saved() {
            let Some(task) = by_partition.get_mut(&(saved.topic, saved.partition)) else {
                continue; // revoked meanwhile
            };
            task.in_flight = false;
            if saved.durable {
                task.checkpointed_next = saved.next;
                durable = true;
            } else {
                // Capture again, even with nothing new: the writer then
                // writes a base that covers what failed.
                task.captured_next = i64::MIN;
            }
        }
        if durable {
            self.shared.checkpointed();
        }
        durable
    }

    /// Commits every one of `tasks`' durable offsets, changed or not: a
    /// commit lost to a rebalance is made good by the next one.
    fn commit<'t>(
        &self,
        consumer: &BaseConsumer<Self>,
        tasks: impl Iterator<Item = &'t Task>,
        mode: CommitMode,
    ) {
        if self.shared.log_lost.load(Ordering::SeqCst) {
            return;
        }
        let offsets = self.durable_offsets(tasks);
        if offsets.count() == 0 {
            return;
        }
        match consumer.commit(&offsets, mode) {
            Ok(()) => {}
            // Expected while the group rebalances; the next commit (or the
            // new owner's) carries the same durable offsets.
            Err(RdKafkaError::ConsumerCommit(RDKafkaErrorCode::RebalanceInProgress)) => {
                tracing::debug!("commit deferred: the group is rebalancing");
            }
            Err(error) => {
                tracing::warn!(%error, "committing checkpointed offsets (the checkpoints stand; offsets are advisory)")
            }
        }
    }

    /// The durable offset of each of `tasks` that has one, with the store's
    /// metadata (where the next owner starts reading the chain).
    fn durable_offsets<'t>(&self, tasks: impl Iterator<Item = &'t Task>) -> TopicPartitionList {
        let mut offsets = TopicPartitionList::new();
        for task in tasks.filter(|t| t.checkpointed_next >= 0) {
            let _ = offsets.add_partition_offset(
                &task.topic,
                task.partition,
                Offset::Offset(task.checkpointed_next),
            );
            if let Some(metadata) = self
                .shared
                .store
                .commit_metadata(&task.topic, task.partition)
            {
                if let Some(mut element) = offsets.find_partition(&task.topic, task.partition) {
                    element.set_metadata(metadata);
                }
            }
        }
        offsets
    }

    /// Makes everything `leaving` processed durable and commits it, waiting
    /// for the writer (before those partitions leave this member). The
    /// writer's answers for the partitions `staying` are taken too.
    fn checkpoint_now(
        &self,
        consumer: &BaseConsumer<Self>,
        leaving: &mut [Task],
        staying: &mut HashMap<i32, Task>,
    ) {
        // A capture in flight first, so that the last one covers the rest.
        self.durable.wait();
        self.settle(leaving.iter_mut().chain(staying.values_mut()));
        self.capture(leaving.iter_mut());
        self.durable.wait();
        self.settle(leaving.iter_mut().chain(staying.values_mut()));
        self.commit(
            consumer,
            leaving.iter().chain(staying.values()),
            CommitMode::Sync,
        );
    }

    /// Publishes each owned partition's consumer lag: the high watermark
    /// the client last saw (no request to the broker) less the next offset.
    fn report_lag(&self, consumer: &BaseConsumer<Self>) {
        let tasks = self.tasks.lock();
        let lags: Vec<(String, i32, i64)> = tasks
            .values()
            .filter_map(|t| {
                let (low, high) = cached_watermarks(consumer, &t.topic, t.partition)?;
                let next = t.engine.next_position();
                let from = if next >= 0 { next } else { low.max(0) };
                Some((t.topic.clone(), t.partition, (high - from).max(0)))
            })
            .collect();
        drop(tasks);
        self.shared.report_lag(lags);
    }

    /// Whether every owned partition has been processed up to its high
    /// watermark, and the group as a whole has committed every partition of
    /// the input topic up to its end (asked of the broker: only checked once
    /// quiet). The second half matters under cooperative rebalancing: a
    /// partition moving between members belongs to nobody for a while, and
    /// a run that stopped then would leave it out.
    fn at_end(&self, consumer: &BaseConsumer<Self>) -> bool {
        let owned: Vec<(String, i32, i64)> = self
            .tasks
            .lock()
            .values()
            .map(|t| (t.topic.clone(), t.partition, t.engine.next_position()))
            .collect();
        let timeout = Duration::from_secs(2);
        let drained = |topic: &str, partition: i32, next: i64| {
            consumer
                .fetch_watermarks(topic, partition, timeout)
                .is_ok_and(|(low, high)| high == 0 || high <= low || next >= high)
        };
        if !owned.iter().all(|(t, p, next)| drained(t, *p, *next)) {
            return false;
        }
        let topic = &self.shared.config.input_topic;
        let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
            return false;
        };
        let mut all = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            all.add_partition(topic, partition.id());
        }
        // A member killed while holding partitions still holds them until
        // the group expires it: their committed offsets may be at the end
        // while nobody here has counted them.
        if !self
            .shared
            .group_settled(all.count(), session_timeout(&self.shared.config))
        {
            tracing::debug!(
                "waiting a session timeout after the last rebalance for members that may have died"
            );
            return false;
        }
        let committed = match consumer.committed_offsets(all, timeout) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::debug!(%error, "reading the group's committed offsets");
                return false;
            }
        };
        let behind: Vec<(i32, i64)> = committed
            .elements()
            .iter()
            .filter_map(|e| {
                let next = match e.offset() {
                    Offset::Offset(n) => n,
                    _ => -1,
                };
                (!drained(topic, e.partition(), next)).then_some((e.partition(), next))
            })
            .collect();
        if !behind.is_empty() {
            tracing::debug!(
                ?behind,
                "partitions the group has not committed to their end"
            );
        }
        behind.is_empty()
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

    /// After a stall: whether the group still counts this member, asked by
    /// committing the durable offsets synchronously (a member the group has
    /// dropped or moved past is refused). With nothing durable to commit
    /// there is nothing to ask with, and the member goes on.
    fn still_a_member(&self, consumer: &BaseConsumer<Self>) -> bool {
        let offsets = self.durable_offsets(self.tasks.lock().values());
        if offsets.count() == 0 {
            return true;
        }
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(member = %self.name, %error, "this member stalled for half a session and cannot confirm it still owns its partitions (its commit failed): dropping what it counted since their last checkpoint (whoever owns them next resumes from it) and rejoining");
                false
            }
        }
    }

    /// Names the owned partitions whose log no longer holds the next record
    /// to read, after librdkafka found a fetch offset out of range.
    fn log_lost(&self, consumer: &BaseConsumer<Self>) -> KafkaError {
        let topic = &self.shared.config.input_topic;
        let mut found = Vec::new();
        for (&partition, task) in self.tasks.lock().iter() {
            let next = task.engine.next_position();
            if next < 0 {
                continue;
            }
            if let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, LOG_CHECK_TIMEOUT)
            {
                if next < low || next > high {
                    found.push(format!(
                        "{topic}/{partition} was read up to offset {next}, but the log now holds offsets {low} to {high}"
                    ));
                }
            }
        }
        if found.is_empty() {
            found.push(format!(
                "librdkafka found a fetch offset of `{topic}` out of range"
            ));
        }
        KafkaError::LogLost {
            what: found.join("; "),
        }
    }

    /// Lets go of every partition without a checkpoint, as lost, and joins
    /// the group again, so that whatever it is given is restored afresh.
    fn rejoin(&self, consumer: &BaseConsumer<Self>) {
        let lost: Vec<Task> = {
            let mut tasks = self.tasks.lock();
            self.durable.wait();
            self.settle(tasks.values_mut());
            tasks.drain().map(|(_, task)| task).collect()
        };
        self.let_go(lost);
        self.shared.rebalanced(self.index, None);
        consumer.unsubscribe();
        if let Err(source) = consumer.subscribe(&[&self.shared.config.input_topic]) {
            self.shared.fail(KafkaError::Client {
                what: "subscribing again after a stall",
                source,
            });
        }
    }

    /// Hands a delta of every owned partition that has one due (a quiet
    /// partition still gets its last records published).
    fn offer_all(&self) {
        let outputs = &self.shared.outputs;
        for task in self.tasks.lock().values_mut() {
            task.announce(outputs);
            task.handoff.offer(&mut task.engine);
        }
    }
}

/// The librdkafka consumer properties of a member.
fn consumer_config(config: &KafkaConfig, client_id: &str, index: usize) -> rdkafka::ClientConfig {
    let mut cfg = client_config(config);
    cfg.set("group.id", &config.group_id)
        .set("client.id", client_id)
        // A member joining or leaving moves only the partitions that must
        // move; the others keep counting through the rebalance.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A start offset the log no longer holds is lost data, never a
        // place to silently jump from (see `Member::log_lost`).
        .set("auto.offset.reset", "error")
        // librdkafka's 500 ms default makes each fetch wait (BROKERS.md).
        .set("fetch.wait.max.ms", "10")
        // When the prefetch queue is full librdkafka backs off fetching for
        // this long (default 1 s): measured, it starved members into 1 s
        // stalls and halved throughput.
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "32768");
    if let Some(id) = &config.group_instance_id {
        // Static membership: a restarted process gets its partitions back
        // without a rebalance if it returns within the session timeout.
        cfg.set("group.instance.id", format!("{id}-{index}"));
    }
    for (key, value) in &config.consumer {
        cfg.set(key, value);
    }
    cfg
}

/// Runs one group member until the run stops; returns after its final
/// checkpoint and commit, with its partitions handed to the publisher.
pub(crate) fn run_member(shared: Arc<Shared>, index: usize) -> Result<(), KafkaError> {
    let name = format!("{}/{}/{index}", hostname(), std::process::id());
    let durable = Durable::start(shared.clone(), index).map_err(|source| KafkaError::Thread {
        what: "starting a checkpoint writer",
        source,
    })?;
    let context = Member {
        shared: shared.clone(),
        name: name.clone(),
        index,
        tasks: Mutex::new(HashMap::new()),
        durable,
        assignments: AtomicU64::new(0),
        rebalanced_at: Mutex::new(Instant::now()),
    };
    let consumer: BaseConsumer<Member> = consumer_config(&shared.config, &name, index)
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
    let mut last_lag = Instant::now();
    let (mut idle, mut last_end_check) = (false, Instant::now());
    // Idle time counts from the last record or the last assignment, whichever
    // is later: a partition just taken over may look finished (tansu 0.6
    // under-reports high watermarks) before its first fetch returns.
    let mut last_message = Instant::now();
    let mut assignments_seen = 0;
    let mut last_warning: Option<Instant> = None;
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(MAX_BATCH);
    let stall = stall_after(&shared.config);
    let mut last_turn = Instant::now();
    while !shared.lifecycle.is_cancelled() {
        let mut wait = Duration::from_millis(50);
        while batch.len() < MAX_BATCH {
            match consumer.poll(wait) {
                Some(Ok(message)) => batch.push(message),
                Some(Err(error))
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) =>
                {
                    shared.fail(member.log_lost(&consumer));
                    break;
                }
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
        let since = last_turn.max(*member.rebalanced_at.lock());
        if since.elapsed() >= stall && !member.still_a_member(&consumer) {
            // Frozen long enough for the group to give its partitions away
            // (a stopped process, a swapped-out machine): what it fetched
            // before is another owner's to count and announce.
            batch.clear();
            member.rejoin(&consumer);
        }
        last_turn = Instant::now();
        if batch.is_empty() {
            member.offer_all();
        } else {
            member.process(&consumer, &batch);
            batch.clear();
            last_message = Instant::now();
        }
        {
            let mut tasks = member.tasks.lock();
            let durable = member.settle(tasks.values_mut());
            let due = last_checkpoint.elapsed() >= interval;
            if due {
                member.capture(tasks.values_mut());
                last_checkpoint = Instant::now();
            }
            if durable || due {
                member.commit(&consumer, tasks.values(), CommitMode::Async);
            }
        }
        if last_lag.elapsed() >= LAG_EVERY {
            member.report_lag(&consumer);
            last_lag = Instant::now();
        }
        if shared.config.exit_when_idle.is_some() {
            let assignments = member.assignments.load(Ordering::SeqCst);
            if assignments != assignments_seen {
                assignments_seen = assignments;
                last_message = Instant::now();
            }
            let idle_after = shared.config.exit_when_idle.unwrap_or_default();
            if !shared.is_assigned(index) || last_message.elapsed() < idle_after {
                idle = false;
            } else if last_end_check.elapsed() >= END_CHECK_EVERY {
                idle = member.at_end(&consumer);
                last_end_check = Instant::now();
            }
            shared.idle[index].store(idle, Ordering::SeqCst);
        }
    }
    // Drain: everything processed becomes durable and committed before we
    // leave the group, and the publisher gets each partition's last delta.
    member.report_lag(&consumer);
    // Crossings held while the alerts topic was read go out before the end.
    let held_since = Instant::now();
    while shared.outputs.reading_announced() && held_since.elapsed() < shared.config.connect_timeout
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    member.offer_all();
    let mut tasks = member.tasks.lock();
    let mut owned: Vec<Task> = tasks.drain().map(|(_, t)| t).collect();
    member.checkpoint_now(&consumer, &mut owned, &mut tasks);
    drop(tasks);
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

/// Whether a partition read up to `next` finds its log ending before half
/// of that, twice a moment apart: the cluster has lost records already
/// counted (a broker back empty, the topic made again), and reading on from
/// `next` would count a different log.
///
/// Half, not any shortfall: tansu 0.6 reports high watermarks below records
/// already fetched, by up to a quarter and for tens of seconds, and a
/// healthy partition must never look cut short. Apache Kafka needs no
/// margin: reading from an offset its log does not hold fails the fetch
/// (see `auto.offset.reset`), which stops the run too.
fn beyond_the_log<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    next: i64,
) -> Option<String> {
    let short_of = next / 2;
    if short_of <= 0 {
        return None;
    }
    let mut high = 0;
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        high = match consumer.fetch_watermarks(topic, partition, LOG_CHECK_TIMEOUT) {
            Ok((_, high)) if high < short_of => high,
            _ => return None,
        };
    }
    Some(format!(
        "{topic}/{partition} was read up to offset {next}, but its log now ends at offset {high}"
    ))
}

/// How long to wait for a partition's offsets when naming lost records.
const LOG_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a member's loop may go without a turn before it asks whether
/// the group still counts it: half the session timeout, after which the
/// coordinator may have given its partitions to others.
fn stall_after(config: &KafkaConfig) -> Duration {
    session_timeout(config) / 2
}

/// The group's session timeout for this process's members.
fn session_timeout(config: &KafkaConfig) -> Duration {
    let session_ms = config
        .consumer
        .get("session.timeout.ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or(SESSION_TIMEOUT_MS);
    Duration::from_millis(session_ms)
}

/// The low and high watermarks of a partition as the client last saw them
/// in fetch responses: no request to the broker, so cheap to ask often.
/// `None` until the first fetch answers.
fn cached_watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle lives as long as `consumer`, `topic` is a
    // NUL-terminated string that outlives the call, and librdkafka only
    // writes the two offsets (rd_kafka_get_watermark_offsets is documented
    // as a local, non-blocking lookup).
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some((low, high))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}
