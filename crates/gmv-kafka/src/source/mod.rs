//! Kafka as a source of the run loop: group members that own the topic's
//! partitions, each a [`gmv_core::Partition`] fed straight from the message
//! payloads in offset order, checkpointed with its offset.
//!
//! - [`member`]: one consumer thread in the group: rebalances, restores,
//!   processing, checkpoints and commits.
//! - [`task`]: one owned partition.
//!
//! [`prepare`] reaches the cluster, creates missing topics and opens the
//! checkpoint store and the producer; it gives the [`KafkaSource`] to run
//! and the [`SnapshotsTopic`] sink that publishes the process's partitions
//! for `gmv serve --from-kafka`.

mod durable;
mod member;
mod task;

use crate::checkpoint::CheckpointStore;
use crate::config::{KafkaConfig, StoreKind};
use crate::outputs::{
    ensure_topics, metadata_client, topic_partitions, topic_state, wait_for_cluster, Cleanup,
    Outputs, TopicState,
};
use crate::snapshots::SnapshotsTopic;
use crate::KafkaError;
use gmv_core::output::PartitionId;
use gmv_core::partition::dedup_share;
use gmv_core::view::LiveState;
use gmv_core::Settings;
use gmv_pipeline::{AlertOrder, Board, Lifecycle, Source, StopCause, TaskError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long to wait before trying the cluster again after a transient error.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The Kafka source of one process: `members` consumer threads in the group.
pub struct KafkaSource {
    settings: Arc<Settings>,
    config: KafkaConfig,
    members: usize,
    store: CheckpointStore,
    outputs: Arc<Outputs>,
    dedup_share: usize,
    hold_open: Option<Arc<AtomicBool>>,
    /// Partitions of the input topic at start.
    input_partitions: usize,
}

/// What the member threads share.
pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) config: KafkaConfig,
    pub(crate) store: CheckpointStore,
    pub(crate) outputs: Arc<Outputs>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) board: Board,
    pub(crate) state: Arc<LiveState>,
    /// Each partition's share of `dedup.max_ids`.
    pub(crate) dedup_share: usize,
    /// One flag per member: everything it owns is at the log's end and has
    /// been for `exit_when_idle`.
    pub(crate) idle: Vec<AtomicBool>,
    /// One flag per member: it holds an assignment from the group (possibly
    /// empty), restored. False between an eager revocation and the next
    /// assignment, so a member mid-rebalance is neither idle nor ready.
    assigned: Vec<AtomicBool>,
    /// Consumer lag of every partition this process owns.
    lag: parking_lot::Mutex<BTreeMap<(String, i32), i64>>,
    /// Members that have made their final checkpoint and commit.
    drained: AtomicUsize,
    /// When any member's assignment last changed.
    last_rebalance: parking_lot::Mutex<Instant>,
    /// The cluster has lost records this run read: no offset is committed
    /// to it any more, so that the next start finds the loss too.
    pub(crate) log_lost: AtomicBool,
}

impl Shared {
    /// Records the first fatal error and stops the run.
    pub(crate) fn fail(&self, error: KafkaError) {
        if matches!(error, KafkaError::LogLost { .. }) {
            self.log_lost.store(true, Ordering::SeqCst);
        }
        self.lifecycle.fail(Box::new(error));
    }

    /// Counts a rebalance after which member `member` owns `owned`
    /// partitions, restored (`None`: none until its next assignment). The
    /// process is ready once every member holds an assignment.
    pub(crate) fn rebalanced(&self, member: usize, owned: Option<usize>) {
        *self.last_rebalance.lock() = Instant::now();
        self.assigned[member].store(owned.is_some(), Ordering::SeqCst);
        let ready = self.assigned.iter().all(|a| a.load(Ordering::SeqCst));
        self.state.set_status(|s| {
            s.rebalances += 1;
            s.ready = ready;
        });
        self.owned_changed();
    }

    /// Whether this process may take the group's committed offsets as the
    /// whole story: it owns every one of the topic's `partitions`, or the
    /// group has been settled for a session timeout, so a member that died
    /// holding partitions has been expired and its partitions handed on.
    pub(crate) fn group_settled(&self, partitions: usize, session: Duration) -> bool {
        self.lag.lock().len() >= partitions || self.last_rebalance.lock().elapsed() >= session
    }

    /// Whether member `member` holds an assignment.
    pub(crate) fn is_assigned(&self, member: usize) -> bool {
        self.assigned[member].load(Ordering::SeqCst)
    }

    /// Replaces the lag of the partitions in `lags`.
    pub(crate) fn report_lag(&self, lags: Vec<(String, i32, i64)>) {
        let mut all = self.lag.lock();
        for (topic, partition, lag) in lags {
            all.insert((topic, partition), lag);
        }
        drop(all);
        self.owned_changed();
    }

    /// Drops a partition that left this process from the lag figures.
    pub(crate) fn forget_lag(&self, topic: &str, partition: i32) {
        self.lag.lock().remove(&(topic.to_owned(), partition));
    }

    fn owned_changed(&self) {
        let all = self.lag.lock();
        let lag: Vec<(String, i32, i64)> = all
            .iter()
            .map(|((topic, partition), lag)| (topic.clone(), *partition, *lag))
            .collect();
        drop(all);
        self.state.set_status(|s| {
            s.partitions = lag.len() as u64;
            s.lag = lag;
        });
    }

    /// Reads the alerts already in the alerts topic into the announced set
    /// on another thread, holding every alert of this process until it is
    /// done (a partition that moved here must not announce again what its
    /// last owner announced), while counting goes on. While the cluster is
    /// out of reach it tries again: the alerts wait, nothing is lost.
    pub(crate) fn reload_announced(self: &Arc<Self>) {
        let shared = self.clone();
        self.outputs.hold_alerts();
        let spawned = std::thread::Builder::new()
            .name("gmv-announced".into())
            .spawn(move || {
                // `None`: given up, the run stopping.
                let result = loop {
                    match shared.outputs.reload_announced(&shared.config) {
                        Err(error) if error.is_transient() => {
                            tracing::warn!(%error, "cannot read the alerts topic yet; alerts wait, trying again in {RETRY_AFTER:?}");
                            if shared.lifecycle.sleep(RETRY_AFTER) {
                                break None;
                            }
                        }
                        other => break Some(other),
                    }
                };
                shared
                    .outputs
                    .release_alerts(matches!(result, Some(Ok(_))));
                match result {
                    Some(Ok(n)) => tracing::debug!(alerts = n, "announced alerts read"),
                    Some(Err(error)) => shared.fail(error),
                    None => tracing::warn!(
                        "stopping before the alerts topic could be read: this run announces no more alerts; the next owners of its partitions do"
                    ),
                }
            });
        if let Err(source) = spawned {
            self.outputs.release_alerts(false);
            self.fail(KafkaError::Thread {
                what: "starting the alerts-topic reader",
                source,
            });
        }
    }

    /// Notes a durable checkpoint.
    pub(crate) fn checkpointed(&self) {
        let now = chrono::Utc::now().timestamp_millis();
        self.state.set_status(|s| s.last_checkpoint_ms = Some(now));
    }

    /// Counts this member as drained and waits (bounded) for the others, so
    /// that no member leaves the group, and so starts a rebalance, while
    /// another is still committing its final offsets.
    pub(crate) fn drained_wait_for_others(&self) {
        self.drained.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.drained.load(Ordering::SeqCst) < self.idle.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether every member is idle.
    fn all_idle(&self) -> bool {
        self.idle.iter().all(|i| i.load(Ordering::SeqCst))
    }
}

/// How a Kafka run is set up.
pub struct KafkaOptions {
    /// Engine settings.
    pub settings: Arc<Settings>,
    /// `[kafka]`.
    pub config: KafkaConfig,
    /// Group members (consumer threads) in this process.
    pub members: usize,
    /// Snapshot cadence (for the snapshots topic's records).
    pub publish_interval: Duration,
    /// While set, `kafka.exit_when_idle` may not end the run (an in-process
    /// producer, as in `gmv demo`, is still producing).
    pub hold_open: Option<Arc<AtomicBool>>,
}

/// Reaches the cluster, creates missing topics, opens the checkpoint store
/// and the producer: the source to run, and the sink that publishes each
/// partition to the snapshots topic.
pub fn prepare(options: KafkaOptions) -> Result<(KafkaSource, SnapshotsTopic), KafkaError> {
    let KafkaOptions {
        settings,
        config,
        members,
        publish_interval,
        hold_open,
    } = options;
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
    let partitions = topic_partitions(&config, &config.input_topic)?.unwrap_or(1);
    let store = CheckpointStore::open(&config)?;
    let outputs = Arc::new(Outputs::new(&config)?);
    let sink = SnapshotsTopic::new(outputs.clone(), settings.clone(), publish_interval);
    tracing::info!(
        brokers = %config.brokers,
        group = %config.group_id,
        topic = %config.input_topic,
        partitions,
        members,
        checkpoints = %match config.checkpoint.store {
            StoreKind::Dir => format!("directory {}", config.checkpoint.dir.display()),
            StoreKind::Topic => format!("changelog topic {}", config.checkpoint.topic),
        },
        "consuming"
    );
    Ok((
        KafkaSource {
            dedup_share: dedup_share(settings.dedup_max_ids, partitions),
            settings,
            config,
            members: members.max(1),
            store,
            outputs,
            hold_open,
            input_partitions: partitions,
        },
        sink,
    ))
}

impl Source for KafkaSource {
    fn alert_order(&self) -> AlertOrder {
        AlertOrder::Arrival
    }

    fn input_partitions(&self) -> Option<Vec<PartitionId>> {
        Some(
            (0..self.input_partitions)
                .map(|partition| PartitionId {
                    topic: self.config.input_topic.clone(),
                    partition: partition as i32,
                })
                .collect(),
        )
    }

    fn start(
        self: Box<Self>,
        lifecycle: &Lifecycle,
        board: Board,
        state: &Arc<LiveState>,
    ) -> Result<Vec<JoinHandle<()>>, TaskError> {
        let hold_open = self.hold_open;
        let shared = Arc::new(Shared {
            settings: self.settings,
            idle: (0..self.members).map(|_| AtomicBool::new(false)).collect(),
            assigned: (0..self.members).map(|_| AtomicBool::new(false)).collect(),
            lag: parking_lot::Mutex::new(BTreeMap::new()),
            config: self.config,
            store: self.store,
            outputs: self.outputs,
            lifecycle: lifecycle.clone(),
            board,
            state: state.clone(),
            dedup_share: self.dedup_share,
            drained: AtomicUsize::new(0),
            last_rebalance: parking_lot::Mutex::new(Instant::now()),
            log_lost: AtomicBool::new(false),
        });
        let mut handles = Vec::new();
        for index in 0..shared.idle.len() {
            let shared = shared.clone();
            handles.push(lifecycle.spawn(&format!("gmv-member-{index}"), move || {
                let result = member::run_member(shared.clone(), index);
                // Whatever happened, what was sent goes out before the run ends.
                let _ = shared.outputs.flush(shared.config.connect_timeout);
                result.map_err(TaskError::from)
            })?);
        }
        let watched = shared.clone();
        if shared.config.exit_when_idle.is_some() {
            let watcher = lifecycle.clone();
            handles.push(lifecycle.spawn("gmv-idle-watch", move || {
                while !watcher.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(20));
                    let held = hold_open.as_ref().is_some_and(|h| h.load(Ordering::SeqCst));
                    if !held && shared.all_idle() {
                        tracing::info!(
                            "every partition is at its end: stopping (kafka.exit_when_idle)"
                        );
                        watcher.cancel(StopCause::Finished);
                    }
                }
                Ok(())
            })?);
        }
        let partitions = self.input_partitions;
        handles.push(lifecycle.spawn("gmv-cluster-watch", move || {
            watch_input_topic(&watched, partitions);
            Ok(())
        })?);
        Ok(handles)
    }
}

/// How often the input topic is looked up while the run goes on.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Stops the run if the input topic disappears or shrinks (a broker that
/// came back without its data, a topic deleted under the run): the records
/// this run has read are gone, and nothing read after could be trusted.
/// Two answers in a row must say so, as a broker restarting can briefly
/// answer for a topic it is still loading.
fn watch_input_topic(shared: &Shared, partitions: usize) {
    let topic = &shared.config.input_topic;
    let mut client = None;
    let mut strikes = 0;
    while !shared.lifecycle.sleep(WATCH_EVERY) {
        if client.is_none() {
            client = metadata_client(&shared.config).ok();
        }
        let Some(client) = &client else {
            continue;
        };
        let lost = match topic_state(client, topic, WATCH_EVERY) {
            TopicState::Missing => Some(format!(
                "the input topic `{topic}` is gone from the cluster (it had {partitions} partitions at start)"
            )),
            TopicState::Present(now) if now < partitions => Some(format!(
                "the input topic `{topic}` has {now} partitions, {partitions} at start"
            )),
            _ => None,
        };
        match lost {
            Some(what) if strikes >= 1 => {
                shared.fail(KafkaError::LogLost { what });
                return;
            }
            Some(_) => strikes += 1,
            None => strikes = 0,
        }
    }
}
