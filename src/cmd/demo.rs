//! `gmv demo`: the synthetic 11.11 day produced into an embedded Kafka
//! cluster (librdkafka's mock cluster, in process) and consumed by the same
//! consumer group, checkpoints and publisher as a real run, with the
//! scoreboard served; or, with `--no-kafka`, fed straight to the workers.

use crate::cli::DemoArgs;
use crate::cmd::generate::produce;
use crate::cmd::run::{kafka_source, split_source};
use crate::config::{Config, Loaded};
use crate::local::{Local, Output};
use crate::Ended;
use anyhow::{Context, Result};
use gmv_kafka::config::StoreKind;
use gmv_pipeline::chunks::{BufferPool, SynthChunks, DEFAULT_CHUNK_BYTES};
use gmv_synth::SynthConfig;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `gmv demo`.
pub fn execute(args: &DemoArgs, config_file: Option<&Path>) -> Result<Ended> {
    let mut loaded = Config::load(config_file, &args.engine.overrides())?;
    if args.no_http {
        loaded.config.http = None;
    } else if loaded.config.http.is_none() {
        loaded.config.http = Some(gmv_serve::ServeConfig::default());
    }
    let synth = SynthConfig {
        events: args.events,
        seed: args.seed,
        window: loaded.settings.window,
        ..SynthConfig::default()
    };
    let linger = loaded.config.http.is_some() && !args.exit_when_done;
    if args.no_kafka {
        tracing::info!(
            events = args.events,
            rate = args.rate,
            "demo: the synthetic 11.11 day, straight to the workers"
        );
        let local = Local::open(&loaded, &args.engine)?;
        let pool = Arc::new(BufferPool::default());
        let chunks = Arc::new(SynthChunks::new(
            synth,
            Some(args.rate),
            DEFAULT_CHUNK_BYTES,
            local.lifecycle.token(),
        ));
        let source = split_source(&loaded, chunks, pool)?;
        return local.run(
            &loaded,
            &args.engine,
            source,
            Vec::new(),
            Output::Summary,
            linger,
        );
    }
    tracing::info!(
        events = args.events,
        rate = args.rate,
        "demo: the synthetic 11.11 day, through Kafka"
    );
    let cluster = embedded_cluster(&mut loaded)?;
    if args.exit_when_done {
        loaded.config.kafka.exit_when_idle = Some(Duration::from_secs(3));
    }
    let local = Local::open(&loaded, &args.engine)?;
    // The run may not end as idle while the producer is still at it.
    let producing = Arc::new(AtomicBool::new(true));
    let (source, sinks) = kafka_source(&loaded, Some(producing.clone()))?;
    let producer = {
        let loaded = loaded.clone();
        let state = local.state.clone();
        let lifecycle = local.lifecycle.clone();
        let rate = Some(args.rate).filter(|&r| r > 0);
        std::thread::Builder::new()
            .name("gmv-demo-producer".into())
            .spawn(move || {
                // The mock cluster keeps only ~5 MiB per partition: produce
                // once the group is consuming every partition.
                let partitions = loaded.config.kafka.partitions as u64;
                let deadline = Instant::now() + Duration::from_secs(30);
                while state.status().partitions < partitions
                    && Instant::now() < deadline
                    && !lifecycle.is_cancelled()
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let generated = produce(&loaded, synth, rate, &lifecycle, false);
                producing.store(false, Ordering::SeqCst);
                generated
            })
            .context("starting the demo producer")?
    };
    let ended = local.run(
        &loaded,
        &args.engine,
        source,
        sinks,
        Output::Summary,
        linger,
    );
    match producer.join() {
        Ok(Ok(generated)) => tracing::info!(
            delivered = generated.delivered,
            failed = generated.failed,
            "demo producer finished"
        ),
        Ok(Err(e)) => tracing::warn!("demo producer: {e:#}"),
        Err(_) => tracing::warn!("demo producer panicked"),
    }
    let _ = std::fs::remove_dir_all(&loaded.config.kafka.checkpoint.dir);
    drop(cluster);
    ended
}

/// Starts the embedded cluster and points `loaded` at it, with its topics
/// and a checkpoint directory of its own (its checkpoints must not outlive
/// it).
fn embedded_cluster(loaded: &mut Loaded) -> Result<gmv_kafka::mock::EmbeddedCluster> {
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
    config.checkpoint.dir = std::env::temp_dir().join(format!("gmv-demo-{}", std::process::id()));
    tracing::info!(brokers = %config.brokers, "embedded Kafka (librdkafka mock cluster) started");
    Ok(cluster)
}
