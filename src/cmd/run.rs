//! `gmv run`: a file, stdin or a Kafka topic through the pipeline to the
//! report.

use crate::cli::RunArgs;
use crate::config::{Config, ConfigProblems, Loaded};
use crate::local::{Local, Output};
use crate::Ended;
use anyhow::Result;
use gmv_core::config::ConfigError;
use gmv_pipeline::chunks::{
    BufferPool, ChunkSource, FileChunks, StreamChunks, StreamOptions, DEFAULT_CHUNK_BYTES,
};
use gmv_pipeline::sinks::{DeadLetterFile, LinesMode};
use gmv_pipeline::split::SplitSource;
use gmv_pipeline::{Source, TickSink};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How long a partial chunk of a stream waits for more input before it is
/// processed anyway: a slow feed is live within this.
const STREAM_LINGER: Duration = Duration::from_millis(50);

/// Runs `gmv run`.
pub fn execute(args: &RunArgs, config_file: Option<&Path>) -> Result<Ended> {
    let loaded = Config::load(
        config_file,
        &args
            .engine
            .overrides()
            .merge(args.kafka_flags.overrides(args.kafka.as_deref())),
    )?;
    let local = Local::open(&loaded, &args.engine)?;
    match &args.input {
        None => {
            let (source, sinks) = kafka_source(&loaded, None)?;
            local.run(&loaded, &args.engine, source, sinks, Output::Report, false)
        }
        Some(input) => {
            let pool = Arc::new(BufferPool::default());
            let chunks = input_chunks(input, &loaded, &local, &pool)?;
            let source = split_source(&loaded, chunks, pool)?;
            local.run(
                &loaded,
                &args.engine,
                source,
                Vec::new(),
                Output::Report,
                false,
            )
        }
    }
}

/// The longest part of one line an input keeps: enough of an oversize
/// record to show what it was in its dead letter.
pub fn hold_limit(loaded: &Loaded) -> usize {
    loaded.settings.max_event_bytes.max(16 << 20) + 1
}

/// The chunks of `input`: a regular file is read in ranges by the workers;
/// stdin (`-`), a FIFO or a device is read as a stream.
fn input_chunks(
    input: &Path,
    loaded: &Loaded,
    local: &Local,
    pool: &Arc<BufferPool>,
) -> Result<Arc<dyn ChunkSource>> {
    let stream = StreamOptions {
        chunk_bytes: DEFAULT_CHUNK_BYTES,
        hold: hold_limit(loaded),
        linger: STREAM_LINGER,
    };
    let token = local.lifecycle.token();
    if input.as_os_str() == "-" {
        return Ok(Arc::new(StreamChunks::spawn(
            "stdin",
            std::io::stdin(),
            stream,
            token,
            pool.clone(),
        )?));
    }
    let is_file = std::fs::metadata(input).is_ok_and(|m| m.is_file() || m.is_dir());
    if is_file {
        return Ok(Arc::new(FileChunks::open(
            input,
            DEFAULT_CHUNK_BYTES,
            hold_limit(loaded),
            token,
        )?));
    }
    let file = std::fs::File::open(input)
        .map_err(|e| anyhow::anyhow!("opening input {}: {e}", input.display()))?;
    let name = input.display().to_string();
    Ok(Arc::new(StreamChunks::spawn(
        &name,
        file,
        stream,
        token,
        pool.clone(),
    )?))
}

/// The split source over `chunks`, with its dead-letter file.
pub fn split_source(
    loaded: &Loaded,
    chunks: Arc<dyn ChunkSource>,
    pool: Arc<BufferPool>,
) -> Result<Box<dyn Source>> {
    let dead_letters = DeadLetterFile::open(&loaded.config.dead_letter.path, LinesMode::Truncate)?;
    tracing::info!(
        workers = loaded.settings.workers,
        partitions = loaded.settings.partitions,
        dead_letters = %dead_letters.path().display(),
        "processing"
    );
    Ok(Box::new(SplitSource {
        settings: Arc::new(loaded.settings.clone()),
        chunks,
        pool,
        workers: loaded.settings.workers,
        dead_letters: Arc::new(dead_letters),
    }))
}

/// A source and the sinks it brings.
pub type SourceAndSinks = (Box<dyn Source>, Vec<Box<dyn TickSink>>);

/// The Kafka source of `loaded.config.kafka`, and its snapshots-topic sink.
pub fn kafka_source(loaded: &Loaded, hold_open: Option<Arc<AtomicBool>>) -> Result<SourceAndSinks> {
    if loaded.config.kafka.brokers.is_empty() {
        return Err(ConfigProblems(vec![ConfigError::new(
            "kafka.brokers",
            "is empty: pass --kafka HOST:PORT or set kafka.brokers (or use `gmv demo` for the embedded cluster)",
        )])
        .into());
    }
    let (source, sink) = gmv_kafka::source::prepare(gmv_kafka::source::KafkaOptions {
        settings: Arc::new(loaded.settings.clone()),
        config: loaded.config.kafka.clone(),
        members: loaded.settings.workers,
        publish_interval: loaded.config.publish.interval,
        hold_open,
    })?;
    Ok((Box::new(source), vec![Box::new(sink)]))
}
