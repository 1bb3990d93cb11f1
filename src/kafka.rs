//! The Kafka commands of the binary: `gmv run --kafka`, `gmv generate
//! --kafka`, `gmv demo` on the embedded mock cluster, and `gmv serve
//! --from-kafka`. The work happens in `gmv-kafka`; this module wires config,
//! signals, progress, HTTP and the report around it.

use crate::config::Loaded;
use anyhow::{Context, Result};
use gmv_core::output::{AlertRecord, MerchantRecord, Snapshot, TopMerchant};
use gmv_core::sink::LiveSink;
use gmv_kafka::config::StoreKind;
use gmv_kafka::outputs::{read_to_end, reader};
use gmv_kafka::publish::{OnTick, Outcome, ProcessView, RunOptions};
use gmv_kafka::view::{poll_into, GlobalView};
use gmv_serve::{FeedSource, Metrics};
use gmv_synth::SynthConfig;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::RwLock;
use rdkafka::message::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The HTTP API over the process's merged partitions.
struct ProcessSource(Arc<ProcessView>);

impl FeedSource for ProcessSource {
    fn top_merchants(&self, n: usize) -> Vec<TopMerchant> {
        self.0.top_merchants(n)
    }
    fn merchant(&self, merchant_id: &str) -> Option<MerchantRecord> {
        self.0.merchant(merchant_id).map(|m| MerchantRecord {
            gmv_cny: gmv_core::money::format_fen(m.gmv),
            mobile_gmv_cny: gmv_core::money::format_fen(m.mobile_gmv),
            transactions: m.transactions,
            merchant_id: m.merchant_id,
        })
    }
    fn metrics(&self) -> Metrics {
        let (dedup_ids, dedup_bytes) = self.0.dedup();
        let mut metrics = self
            .0
            .snapshot()
            .map(|s| snapshot_metrics(&s))
            .unwrap_or_default();
        metrics.dedup_ids = dedup_ids;
        metrics.dedup_bytes = dedup_bytes;
        metrics
    }
}

/// `/metrics` figures from an assembled snapshot.
fn snapshot_metrics(s: &Snapshot) -> Metrics {
    let f = &s.figures;
    Metrics {
        consumed: f.accounting.consumed,
        counted: f.accounting.counted,
        rejected: f.rejected,
        gmv_cny: f.gmv_cny.clone(),
        mobile_gmv_cny: f.mobile_gmv_cny.clone(),
        merchants: f.merchants,
        peak_tps: f.peak_tps,
        latency_ms: s.latency_ms.clone(),
        ..Metrics::default()
    }
}

/// Runs the consumer group pipeline with `loaded.config.kafka`.
pub fn run(
    loaded: &Loaded,
    live: Vec<Arc<dyn LiveSink>>,
    stop: Arc<AtomicBool>,
    on_tick: Option<OnTick>,
    view: Arc<ProcessView>,
    hold_open: Option<Arc<AtomicBool>>,
) -> Result<Outcome> {
    let config = loaded.config.kafka.clone();
    tracing::info!(
        brokers = %config.brokers,
        group = %config.group_id,
        topic = %config.input_topic,
        members = loaded.settings.workers,
        checkpoints = %checkpoint_store(&config),
        "consuming"
    );
    gmv_kafka::publish::run(RunOptions {
        settings: loaded.settings.clone(),
        config,
        members: loaded.settings.workers,
        publish_interval: loaded.config.publish.interval,
        live,
        stop,
        on_tick,
        view,
        hold_open,
    })
    .context("running on Kafka")
}

/// Where `config`'s checkpoints go, for the log.
fn checkpoint_store(config: &gmv_kafka::KafkaConfig) -> String {
    match config.checkpoint.store {
        StoreKind::Dir => format!("directory {}", config.checkpoint.dir.display()),
        StoreKind::Topic => format!("changelog topic {}", config.checkpoint.topic),
    }
}

/// The HTTP source for a Kafka run.
pub fn process_source(view: &Arc<ProcessView>) -> Arc<dyn FeedSource> {
    Arc::new(ProcessSource(view.clone()))
}

/// Produces the synthetic stream into `loaded.config.kafka.input_topic`.
pub fn generate(
    loaded: &Loaded,
    synth: SynthConfig,
    rate: Option<u64>,
    stop: Arc<AtomicBool>,
    show_progress: bool,
) -> Result<gmv_kafka::generate::Generated> {
    let progress = show_progress.then(|| {
        let bar = ProgressBar::new(synth.events);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
                .expect("static template"),
        );
        Box::new(move |done: u64, _total: u64| bar.set_position(done))
            as gmv_kafka::generate::Progress
    });
    let generated = gmv_kafka::generate::produce(gmv_kafka::generate::GenerateOptions {
        config: loaded.config.kafka.clone(),
        synth,
        rate,
        stop,
        progress,
    })
    .context("producing the synthetic stream")?;
    Ok(generated)
}

/// The HTTP API over the global view.
struct GlobalSource(RwLock<Arc<Snapshot>>);

impl FeedSource for GlobalSource {
    fn top_merchants(&self, n: usize) -> Vec<TopMerchant> {
        let s = self.0.read();
        s.figures.top_merchants.iter().take(n).cloned().collect()
    }
    fn merchant(&self, _merchant_id: &str) -> Option<MerchantRecord> {
        // The snapshots carry each partition's top list with shares, not
        // every merchant's exact figures: look-ups need a processor's feed.
        None
    }
    fn metrics(&self) -> Metrics {
        snapshot_metrics(&self.0.read())
    }
}

/// `gmv serve --from-kafka`: the scoreboard from the snapshots topic alone.
pub fn serve_global(loaded: &Loaded, stop: Arc<AtomicBool>, print_final: bool) -> Result<Snapshot> {
    let config = &loaded.config.kafka;
    gmv_kafka::outputs::wait_for_cluster(config).context("reaching Kafka")?;
    let consumer =
        reader(config, &config.snapshots_topic).context("reading the snapshots topic")?;
    let mut view = GlobalView::default();
    if print_final {
        // `--once`: everything the topic holds now. A fixed quiet time from
        // the start would end before a slow first fetch (seen under load:
        // a view of half the day).
        read_to_end(&consumer, config, &config.snapshots_topic, |message| {
            if let Some(payload) = message.payload() {
                view.apply(payload);
            }
        })
        .context("reading the snapshots topic to its end")?;
        return Ok(view.assemble(&loaded.settings, 1));
    }
    let empty = Arc::new(view.assemble(&loaded.settings, 0));
    let source = Arc::new(GlobalSource(RwLock::new(empty.clone())));
    let server = loaded
        .config
        .http
        .as_ref()
        .map(|http| crate::http::Server::start(http, source.clone()))
        .transpose()?;
    let feed = server.as_ref().map(|s| s.feed());
    let interval = loaded.config.publish.interval;
    let alerts = reader(config, &config.alerts_topic).context("reading the alerts topic")?;
    let mut seq = 0;
    let mut latest = empty;
    let mut next_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        poll_into(&consumer, &mut view, Duration::from_millis(50), 10_000);
        while let Some(Ok(message)) = alerts.poll(Duration::ZERO) {
            let alert = message
                .payload()
                .and_then(|p| serde_json::from_slice::<AlertRecord>(p).ok());
            if let (Some(alert), Some(feed)) = (alert, &feed) {
                feed.alert(&alert);
            }
        }
        if Instant::now() >= next_tick {
            seq += 1;
            latest = Arc::new(view.assemble(&loaded.settings, seq));
            *source.0.write() = latest.clone();
            if let Some(feed) = &feed {
                feed.snapshot(&latest);
            }
            next_tick = Instant::now() + interval;
        }
    }
    if let Some(server) = server {
        server.stop()?;
    }
    Ok(Arc::unwrap_or_clone(latest))
}

/// `gmv demo`: the embedded mock cluster, a paced generator producing into
/// it, and the consumer group reading it, all in this process.
pub fn demo_cluster(loaded: &mut Loaded) -> Result<gmv_kafka::mock::EmbeddedCluster> {
    let cluster =
        gmv_kafka::mock::EmbeddedCluster::start().context("starting the embedded Kafka")?;
    let config = &mut loaded.config.kafka;
    config.brokers = cluster.bootstrap();
    // The mock cluster has no CreateTopics API: make every topic here.
    cluster.create_topic(&config.input_topic, config.partitions)?;
    cluster.create_topic(&config.dead_letter_topic, config.partitions)?;
    cluster.create_topic(&config.snapshots_topic, 1)?;
    cluster.create_topic(&config.alerts_topic, 1)?;
    if config.checkpoint.store == StoreKind::Topic {
        cluster.create_topic(&config.checkpoint.topic, config.partitions)?;
    }
    // A fresh cluster each time: its checkpoints must not outlive it.
    config.checkpoint.dir = std::env::temp_dir().join(format!("gmv-demo-{}", std::process::id()));
    tracing::info!(brokers = %config.brokers, "embedded Kafka (librdkafka mock cluster) started");
    Ok(cluster)
}
