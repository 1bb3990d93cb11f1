//! What a processor writes to Kafka: dead letters, threshold alerts and
//! snapshots, through one idempotent producer; plus the cluster chores around
//! them (reaching the cluster, creating topics, reading back the alerts
//! already announced).
//!
//! Delivery is checked, not hoped for: a dead letter or alert that librdkafka
//! finally fails to deliver marks the run failed, and since a partition's
//! checkpoint is only written once every record sent before it has been
//! answered, the records it covers are replayed (and their outputs produced
//! again) on restart.

use crate::config::KafkaConfig;
use crate::KafkaError;
use gmv_core::output::AlertRecord;
use gmv_core::reject::Rejection;
use parking_lot::{Condvar, Mutex};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Counts what librdkafka could not deliver, by kind.
#[derive(Default)]
pub struct DeliveryReport {
    /// Dead letters or alerts that failed: data a restart must re-produce.
    pub lost_outputs: AtomicU64,
    /// Snapshots that failed: harmless, the next one supersedes them.
    pub lost_snapshots: AtomicU64,
    /// Alerts the broker acknowledged.
    pub alerts_delivered: AtomicU64,
    /// Dead letters the broker acknowledged.
    pub dead_letters_delivered: AtomicU64,
}

/// The records sent and not yet answered by the broker, by send number.
///
/// [`Outputs::flush`] waits for the records sent before it, not for an
/// empty queue as librdkafka's flush does: the publisher sends a snapshot
/// every interval, and a queue that never empties would hold a checkpoint
/// (or a stop) up for the whole timeout.
#[derive(Default)]
struct InFlight {
    state: Mutex<Numbered>,
    answered: Condvar,
}

#[derive(Default)]
struct Numbered {
    next: u64,
    waiting: BTreeSet<u64>,
}

impl InFlight {
    /// Numbers a record about to be sent.
    fn open(&self) -> u64 {
        let mut state = self.state.lock();
        let number = state.next;
        state.next += 1;
        state.waiting.insert(number);
        number
    }

    /// The broker answered record `number` (or it was never queued).
    fn close(&self, number: u64) {
        let mut state = self.state.lock();
        state.waiting.remove(&number);
        self.answered.notify_all();
    }

    /// The number the next record will get: [`Self::wait_for`] it to wait
    /// for every record numbered so far.
    fn mark(&self) -> u64 {
        self.state.lock().next
    }

    /// Waits until every record numbered before `before` is answered, up to
    /// `timeout`; returns how many are still waiting then.
    fn wait_for(&self, before: u64, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        loop {
            let left = state.waiting.range(..before).count();
            if left == 0 || self.answered.wait_until(&mut state, deadline).timed_out() {
                return state.waiting.range(..before).count();
            }
        }
    }
}

/// The producer's context: delivery accounting.
pub struct OutputContext {
    snapshots_topic: String,
    alerts_topic: String,
    report: DeliveryReport,
    in_flight: InFlight,
}

impl ClientContext for OutputContext {}

impl ProducerContext for OutputContext {
    /// The record's number in [`InFlight`].
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, number: usize) {
        self.in_flight.close(number as u64);
        if let Ok(message) = result {
            let counter = if message.topic() == self.alerts_topic {
                &self.report.alerts_delivered
            } else if message.topic() == self.snapshots_topic {
                return;
            } else {
                &self.report.dead_letters_delivered
            };
            counter.fetch_add(1, Relaxed);
        }
        if let Err((error, message)) = result {
            if message.topic() == self.snapshots_topic {
                self.report.lost_snapshots.fetch_add(1, Relaxed);
            } else {
                self.report.lost_outputs.fetch_add(1, Relaxed);
                tracing::error!(topic = message.topic(), %error, "an output record could not be delivered");
            }
        }
    }
}

/// Output topics and the producer that writes them.
pub struct Outputs {
    producer: ThreadedProducer<OutputContext>,
    dead_letter_topic: String,
    alerts_topic: String,
    snapshots_topic: String,
    /// (merchant_id, threshold_cny) already in the alerts topic or sent by us.
    announced: Mutex<HashSet<(String, String)>>,
    /// Reads of the alerts topic under way: alerts wait while any is.
    holds: AtomicUsize,
    /// A read was given up (the run stopped or failed first): the announced
    /// set is incomplete for good, so no alert goes out any more; the
    /// partitions' next owners offer their crossings again.
    announced_unknown: AtomicBool,
}

/// The configuration every client of `config` starts from: the bootstrap
/// servers and the `[kafka.client]` properties (security, for example, which
/// every consumer, producer, reader and admin client needs alike).
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &config.brokers);
    for (key, value) in &config.client {
        cfg.set(key, value);
    }
    cfg
}

impl Outputs {
    /// An idempotent producer for `config`'s output topics.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut cfg = client_config(config);
        cfg.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("queue.buffering.max.kbytes", "65536");
        for (key, value) in &config.producer {
            cfg.set(key, value);
        }
        let producer = cfg
            .create_with_context(OutputContext {
                snapshots_topic: config.snapshots_topic.clone(),
                alerts_topic: config.alerts_topic.clone(),
                report: DeliveryReport::default(),
                in_flight: InFlight::default(),
            })
            .map_err(|source| KafkaError::Client {
                what: "creating the producer",
                source,
            })?;
        Ok(Self {
            producer,
            dead_letter_topic: config.dead_letter_topic.clone(),
            alerts_topic: config.alerts_topic.clone(),
            snapshots_topic: config.snapshots_topic.clone(),
            announced: Mutex::new(HashSet::new()),
            holds: AtomicUsize::new(0),
            announced_unknown: AtomicBool::new(false),
        })
    }

    /// Delivery failures so far.
    pub fn deliveries(&self) -> &DeliveryReport {
        &self.producer.context().report
    }

    /// Sends a rejected record's original payload to the dead-letter topic,
    /// with the reason, detail and origin as headers. Waits while the
    /// producer's queue is full: backpressure on the consumer, not an
    /// unbounded buffer.
    pub fn dead_letter(
        &self,
        rejection: &Rejection,
        payload: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let origin = format!("{topic}/{partition}/{offset}");
        let headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: "reason",
                value: Some(rejection.reason.as_str()),
            })
            .insert(Header {
                key: "detail",
                value: Some(rejection.detail.as_ref()),
            })
            .insert(Header {
                key: "origin",
                value: Some(origin.as_str()),
            });
        self.send(&self.dead_letter_topic, &origin, payload, Some(headers));
    }

    /// Announces a crossing unless it is already in the alerts topic (a
    /// replay after a crash re-detects crossings that were announced).
    /// Returns whether it was sent.
    pub fn alert(&self, alert: &AlertRecord) -> bool {
        let id = (alert.merchant_id.clone(), alert.threshold_cny.clone());
        if !self.announced.lock().insert(id) {
            return false;
        }
        let key = format!("{}:{}", alert.merchant_id, alert.threshold_cny);
        let json = serde_json::to_vec(alert).expect("an alert always serialises");
        self.send(&self.alerts_topic, &key, &json, None);
        true
    }

    /// Publishes one snapshot-topic record.
    pub fn snapshot(&self, key: &str, json: &[u8]) {
        self.send(&self.snapshots_topic, key, json, None);
    }

    fn send(&self, topic: &str, key: &str, payload: &[u8], headers: Option<OwnedHeaders>) {
        let context = self.producer.context();
        let number = context.in_flight.open();
        let mut record = BaseRecord::with_opaque_to(topic, number as usize)
            .key(key)
            .payload(payload);
        record.headers = headers;
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, back)) => {
                    tracing::error!(topic = back.topic, %error, "could not enqueue an output record");
                    context.report.lost_outputs.fetch_add(1, Relaxed);
                    context.in_flight.close(number);
                    return;
                }
            }
        }
    }

    /// Waits until every record sent before this call is delivered (or
    /// failed), up to `timeout`. Records sent meanwhile do not hold it up.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let in_flight = &self.producer.context().in_flight;
        match in_flight.wait_for(in_flight.mark(), timeout) {
            0 => Ok(()),
            _ => Err(KafkaError::Client {
                what: "waiting for output records to be delivered",
                source: RdKafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
            }),
        }
    }

    /// Holds alerts back until the matching [`Self::release_alerts`]: the
    /// announced set is being read.
    pub fn hold_alerts(&self) {
        self.holds.fetch_add(1, Ordering::SeqCst);
    }

    /// Ends one [`Self::hold_alerts`], the announced set read (`true`) or
    /// given up (`false`: alerts stay held for the rest of the run).
    pub fn release_alerts(&self, read: bool) {
        if !read {
            self.announced_unknown.store(true, Ordering::SeqCst);
        }
        self.holds.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether alerts wait (offer them again later).
    pub fn alerts_held(&self) -> bool {
        self.reading_announced() || self.announced_unknown.load(Ordering::SeqCst)
    }

    /// Whether a read of the alerts topic is under way.
    pub fn reading_announced(&self) -> bool {
        self.holds.load(Ordering::SeqCst) > 0
    }

    /// Replaces the announced set with what the alerts topic holds now
    /// (called when partitions are assigned, so that crossings another
    /// process announced before it died are not announced again).
    pub fn reload_announced(&self, config: &KafkaConfig) -> Result<usize, KafkaError> {
        // Ours first: everything we sent must be in the topic before we read it.
        self.flush(config.connect_timeout)?;
        let found = read_announced(config)?;
        let n = found.len();
        self.announced.lock().extend(found);
        Ok(n)
    }
}

/// How long a topic must stay quiet to be taken as fully read.
const QUIET_END: Duration = Duration::from_millis(500);

/// A consumer of a whole topic from its beginning (assigned, not in a
/// group: every reader sees every record).
pub fn reader(config: &KafkaConfig, topic: &str) -> Result<BaseConsumer, KafkaError> {
    reader_of(config, topic, None)
}

/// A consumer of `partitions` of `topic`, each from its offset (all
/// partitions from the beginning if `None`).
pub fn reader_of(
    config: &KafkaConfig,
    topic: &str,
    partitions: Option<&[(i32, Offset)]>,
) -> Result<BaseConsumer, KafkaError> {
    let consumer: BaseConsumer = client_config(config)
        .set("group.id", format!("{}-reader", config.group_id))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|source| KafkaError::Client {
            what: "creating a topic reader",
            source,
        })?;
    let mut assignment = TopicPartitionList::new();
    for p in partition_ids(&consumer, config, topic)? {
        let from = match partitions {
            None => Offset::Beginning,
            Some(wanted) => match wanted.iter().find(|(w, _)| *w == p) {
                Some(&(_, from)) => from,
                None => continue,
            },
        };
        assignment
            .add_partition_offset(topic, p, from)
            .map_err(|source| KafkaError::Client {
                what: "assigning a topic to its reader",
                source,
            })?;
    }
    if assignment.count() == 0 {
        return Err(KafkaError::MissingTopic {
            topic: topic.to_string(),
            brokers: config.brokers.clone(),
        });
    }
    consumer
        .assign(&assignment)
        .map_err(|source| KafkaError::Client {
            what: "assigning a topic to its reader",
            source,
        })?;
    Ok(consumer)
}

fn partition_ids(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), config.connect_timeout)
        .map_err(|source| KafkaError::Client {
            what: "reading a topic's metadata",
            source,
        })?;
    Ok(metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Hands every record `consumer` (a [`reader_of`] `topic`) can fetch to
/// `on_record`, up to the topic's current end; fails if no record arrives
/// for `config.connect_timeout` before the end (a long topic may take
/// longer in all, as long as it keeps coming).
///
/// The end is where the high watermarks were *and* nothing more arrives for
/// a moment: some brokers (tansu 0.6) under-report the high watermark, and a
/// record missed here is an alert announced twice or a checkpoint not found.
pub fn read_to_end(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    topic: &str,
    mut on_record: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let timeout = config.connect_timeout;
    let assigned = consumer.assignment().map_err(|source| KafkaError::Client {
        what: "reading a reader's assignment",
        source,
    })?;
    let mut ends = Vec::new();
    for element in assigned.elements() {
        let p = element.partition();
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|source| KafkaError::Client {
                what: "reading a topic's offsets",
                source,
            })?;
        if high > low {
            ends.push((p, high));
        }
    }
    let mut last_record = Instant::now();
    let mut last_warning = None;
    while !ends.is_empty() || last_record.elapsed() < QUIET_END {
        if last_record.elapsed() > timeout {
            return Err(KafkaError::Timeout {
                what: format!("reading the topic `{topic}` to its end (kafka.connect_timeout)"),
            });
        }
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(message)) => {
                last_record = Instant::now();
                on_record(&message);
                let (partition, offset) = (message.partition(), message.offset());
                ends.retain(|&(p, high)| !(p == partition && offset + 1 >= high));
            }
            Some(Err(error)) => {
                // An outage repeats its error at every poll: say it once a
                // second, not thousands of times.
                if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%error, topic, "while reading a topic to its end");
                    last_warning = Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None => {}
        }
    }
    Ok(())
}

/// Reads every alert in `config.alerts_topic` up to its current end.
pub fn read_announced(config: &KafkaConfig) -> Result<HashSet<(String, String)>, KafkaError> {
    let consumer = reader(config, &config.alerts_topic)?;
    let mut found = HashSet::new();
    read_to_end(&consumer, config, &config.alerts_topic, |message| {
        if let Some(alert) = message
            .payload()
            .and_then(|p| serde_json::from_slice::<AlertRecord>(p).ok())
        {
            found.insert((alert.merchant_id, alert.threshold_cny));
        }
    })?;
    Ok(found)
}

/// A client for metadata requests only.
/// A client for metadata look-ups only (it joins no group).
pub fn metadata_client(config: &KafkaConfig) -> Result<BaseConsumer, KafkaError> {
    client_config(config)
        .create()
        .map_err(|source| KafkaError::Client {
            what: "creating a metadata client",
            source,
        })
}

/// Waits until the cluster answers (metadata), up to `config.connect_timeout`.
pub fn wait_for_cluster(config: &KafkaConfig) -> Result<(), KafkaError> {
    let consumer = metadata_client(config)?;
    consumer
        .fetch_metadata(None, config.connect_timeout)
        .map(|_| ())
        .map_err(|source| KafkaError::Unreachable {
            brokers: config.brokers.clone(),
            waited: config.connect_timeout,
            source,
        })
}

/// Partitions of `topic`, or `None` if the cluster does not have it.
pub fn topic_partitions(config: &KafkaConfig, topic: &str) -> Result<Option<usize>, KafkaError> {
    let consumer = metadata_client(config)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), config.connect_timeout)
        .map_err(|source| KafkaError::Client {
            what: "reading topic metadata",
            source,
        })?;
    Ok(match state_in(&metadata, topic) {
        TopicState::Present(partitions) => Some(partitions),
        TopicState::Missing | TopicState::Unclear => None,
    })
}

/// What the cluster's metadata says about a topic, when it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    /// The topic exists with this many partitions.
    Present(usize),
    /// The cluster says it has no such topic.
    Missing,
    /// No clear answer (no broker reachable, a leader election): ask later.
    Unclear,
}

/// Asks the cluster about `topic` through `client` (a
/// [`metadata_client`]), waiting at most `timeout`.
pub fn topic_state(client: &BaseConsumer, topic: &str, timeout: Duration) -> TopicState {
    match client.fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => state_in(&metadata, topic),
        Err(_) => TopicState::Unclear,
    }
}

/// What `metadata` says about `topic`.
fn state_in(metadata: &Metadata, topic: &str) -> TopicState {
    match metadata.topics().iter().find(|t| t.name() == topic) {
        None => TopicState::Missing,
        Some(t) => match t.error().map(RDKafkaErrorCode::from) {
            None if !t.partitions().is_empty() => TopicState::Present(t.partitions().len()),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) => TopicState::Missing,
            _ => TopicState::Unclear,
        },
    }
}

/// How a topic's old records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// The broker's default (deleted after the retention time).
    Default,
    /// Compacted: the latest record per key is kept (changelogs).
    Compact,
}

/// Creates each missing topic with its partition count and cleanup policy
/// (replication: the broker's default).
pub fn ensure_topics(
    config: &KafkaConfig,
    topics: &[(&str, i32, Cleanup)],
) -> Result<(), KafkaError> {
    let mut missing = Vec::new();
    for &(topic, partitions, cleanup) in topics {
        if topic_partitions(config, topic)?.is_none() {
            missing.push((topic, partitions, cleanup));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !config.create_topics {
        return Err(KafkaError::MissingTopic {
            topic: missing[0].0.to_string(),
            brokers: config.brokers.clone(),
        });
    }
    let admin: AdminClient<DefaultClientContext> =
        client_config(config)
            .create()
            .map_err(|source| KafkaError::Client {
                what: "creating an admin client",
                source,
            })?;
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|&(name, partitions, cleanup)| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
            match cleanup {
                Cleanup::Default => topic,
                Cleanup::Compact => topic.set("cleanup.policy", "compact"),
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(config.connect_timeout));
    let results = futures::executor::block_on(admin.create_topics(&new_topics, &options)).map_err(
        |source| KafkaError::Client {
            what: "creating topics",
            source,
        },
    )?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic: name,
                    reason: code.to_string(),
                })
            }
        }
    }
    // Metadata can lag creation by a moment.
    let deadline = Instant::now() + config.connect_timeout;
    for (topic, _, _) in missing {
        while topic_partitions(config, topic)?.is_none() {
            if Instant::now() > deadline {
                return Err(KafkaError::Timeout {
                    what: format!("waiting for the new topic `{topic}` to appear"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_flush_waits_for_the_records_sent_before_it_and_not_for_later_ones() {
        let in_flight = Arc::new(InFlight::default());
        let (first, second) = (in_flight.open(), in_flight.open());
        in_flight.close(second);
        assert_eq!(in_flight.wait_for(in_flight.mark(), Duration::ZERO), 1);

        let flush = in_flight.mark();
        let waiter = {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || in_flight.wait_for(flush, Duration::from_secs(10)))
        };
        // A publisher sending on must not hold the flush up.
        let later = in_flight.open();
        in_flight.close(first);
        assert_eq!(waiter.join().unwrap(), 0);
        assert_eq!(in_flight.wait_for(in_flight.mark(), Duration::ZERO), 1);
        in_flight.close(later);
        assert_eq!(in_flight.wait_for(in_flight.mark(), Duration::ZERO), 0);
    }

    #[test]
    fn alerts_wait_while_the_announced_set_is_read_and_for_good_once_a_read_is_given_up() {
        // No broker needed: librdkafka connects only when it sends.
        let outputs = Outputs::new(&KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            ..KafkaConfig::default()
        })
        .expect("producer");
        outputs.hold_alerts();
        outputs.hold_alerts();
        assert!(outputs.alerts_held() && outputs.reading_announced());
        outputs.release_alerts(true);
        assert!(outputs.alerts_held(), "one read is still under way");
        outputs.release_alerts(true);
        assert!(!outputs.alerts_held());
        outputs.hold_alerts();
        outputs.release_alerts(false);
        assert!(!outputs.reading_announced(), "a stop need not wait");
        assert!(outputs.alerts_held(), "nothing is announced unchecked");
    }
}
