//! `gmv generate --kafka`: the synthetic 11.11 stream produced into the
//! input topic, keyed by `merchant_id` (as the contract asks of producers),
//! paced or as fast as the cluster takes it. `gmv demo` paces it by event
//! time instead (a [`Replay`]) and holds it within what its consumer has
//! read ([`Pacing`]).

use crate::config::KafkaConfig;
use crate::outputs::{client_config, ensure_topics, wait_for_cluster, Cleanup};
use crate::KafkaError;
use gmv_pipeline::Lifecycle;
use gmv_synth::{Generator, Replay, SynthConfig};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Called now and then with (records produced, records in all).
pub type Progress = Box<dyn FnMut(u64, u64) + Send>;

/// What to produce and how fast.
pub struct GenerateOptions {
    /// Cluster, topic and producer properties.
    pub config: KafkaConfig,
    /// The stream.
    pub synth: SynthConfig,
    /// Records per second; `None` is as fast as possible.
    pub rate: Option<u64>,
    /// Cancelled to stop early.
    pub stop: Lifecycle,
    /// Progress callback.
    pub progress: Option<Progress>,
}

/// How the producer holds itself back, beyond [`GenerateOptions::rate`].
#[derive(Default)]
pub struct Pacing {
    /// Plays the records' event time on the wall clock; replaces `rate`.
    pub replay: Option<Replay>,
    /// Asked every 1,024 records with the number sent so far; while it says
    /// no, the producer waits. A consumer in the same process uses it to
    /// keep the producer within what the cluster retains.
    pub may_send: Option<Box<dyn FnMut(u64) -> bool + Send>>,
}

/// What was produced.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    /// Records acknowledged by the cluster.
    pub delivered: u64,
    /// Records the cluster did not take.
    pub failed: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Time from each record's timestamp (the produce call) to its
    /// acknowledgement: median, ms.
    pub ack_p50_ms: f64,
    /// The same, 99th percentile.
    pub ack_p99_ms: f64,
    /// How far the replay clock fell behind the wall (the producer could
    /// not keep its pace), in all.
    pub slipped: Duration,
    /// Time spent waiting for [`Pacing::may_send`].
    pub held: Duration,
}

struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Produce call → acknowledgement, ms.
    ack_ms: Mutex<Histogram<u64>>,
}

impl Default for Counting {
    fn default() -> Self {
        Self {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ack_ms: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000, 3).expect("static histogram bounds"),
            ),
        }
    }
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(at) = message.timestamp().to_millis() {
                    let now = chrono::Utc::now().timestamp_millis();
                    let waited = u64::try_from(now.saturating_sub(at)).unwrap_or(0);
                    let _ = self.ack_ms.lock().record(waited.max(1));
                }
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Produces the stream; creates the topic if missing (and allowed).
pub fn produce(options: GenerateOptions) -> Result<Generated, KafkaError> {
    produce_paced(options, Pacing::default())
}

/// Produces the stream as [`produce`] does, held back by `pacing`.
pub fn produce_paced(options: GenerateOptions, pacing: Pacing) -> Result<Generated, KafkaError> {
    let Pacing {
        mut replay,
        mut may_send,
    } = pacing;
    let GenerateOptions {
        config,
        synth,
        rate,
        stop,
        mut progress,
    } = options;
    wait_for_cluster(&config)?;
    ensure_topics(
        &config,
        &[(&config.input_topic, config.partitions, Cleanup::Default)],
    )?;
    let mut cfg = client_config(&config);
    cfg.set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144");
    for (key, value) in &config.producer {
        cfg.set(key, value);
    }
    let producer: BaseProducer<Counting> =
        cfg.create_with_context(Counting::default())
            .map_err(|source| KafkaError::Client {
                what: "creating the producer",
                source,
            })?;
    let total = synth.events;
    let rate = rate.filter(|&r| r > 0);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut last_progress = Instant::now();
    let mut held = Duration::ZERO;
    let mut generator = Generator::new(synth);
    while let Some((record, at)) = generator.next_timed() {
        if stop.is_cancelled() {
            break;
        }
        if let Some(may_send) = may_send.as_mut().filter(|_| sent.is_multiple_of(1024)) {
            let since = Instant::now();
            while !may_send(sent) && !stop.is_cancelled() {
                producer.poll(Duration::from_millis(5));
            }
            held += since.elapsed();
        }
        if let Some(replay) = replay.as_mut() {
            if let Some(due) = replay.due(at, Instant::now()) {
                wait_until(&producer, due, &stop);
            }
        } else if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                producer.poll(Duration::ZERO);
                std::thread::sleep(wait);
            }
        }
        let mut message = BaseRecord::to(&config.input_topic)
            .key(record.key.as_str())
            .payload(record.payload.as_slice());
        loop {
            match producer.send(message) {
                Ok(()) => break,
                Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    message = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(KafkaError::Client {
                        what: "producing a generated record",
                        source,
                    })
                }
            }
        }
        sent += 1;
        if sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
            if last_progress.elapsed() >= Duration::from_millis(200) {
                if let Some(progress) = progress.as_mut() {
                    progress(sent, total);
                }
                last_progress = Instant::now();
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|source| KafkaError::Client {
            what: "waiting for the last records to be delivered",
            source,
        })?;
    if let Some(progress) = progress.as_mut() {
        progress(sent, total);
    }
    let context = producer.context();
    let ack = context.ack_ms.lock();
    Ok(Generated {
        delivered: context.delivered.load(Ordering::Relaxed),
        failed: context.failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        ack_p50_ms: ack.value_at_quantile(0.5) as f64,
        ack_p99_ms: ack.value_at_quantile(0.99) as f64,
        slipped: replay.map_or(Duration::ZERO, |r| r.slipped()),
        held,
    })
}

/// Serves deliveries until `due`; a wait under a millisecond is not worth
/// a sleep (the next record is then sent that much early, and the pace
/// holds on average since every due time is absolute).
fn wait_until(producer: &BaseProducer<Counting>, due: Instant, stop: &Lifecycle) {
    while let Some(wait) = due.checked_duration_since(Instant::now()) {
        if wait < Duration::from_millis(1) || stop.is_cancelled() {
            return;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(wait.min(Duration::from_millis(50)));
    }
}
