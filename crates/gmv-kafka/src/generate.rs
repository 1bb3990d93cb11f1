//! `gmv generate --kafka`: the synthetic 11.11 stream produced into the
//! input topic, keyed by `merchant_id` (as the contract asks of producers),
//! paced or as fast as the cluster takes it.

use crate::config::KafkaConfig;
use crate::outputs::{client_config, ensure_topics, wait_for_cluster, Cleanup};
use crate::KafkaError;
use gmv_pipeline::Lifecycle;
use gmv_synth::{Generator, SynthConfig};
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
    for record in Generator::new(synth) {
        if stop.is_cancelled() {
            break;
        }
        if let Some(rate) = rate {
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
    })
}
