//! `gmv run`: a file, stdin or a Kafka topic through the pipeline to the
//! report.

use crate::cli::RunArgs;
use crate::config::{check_kafka_properties, Config, ConfigProblems, Loaded, PropertyCheck};
use crate::dead_letters::LazyDeadLetters;
use crate::local::{Local, Output, ReportTo};
use crate::supervise;
use crate::Ended;
use anyhow::Result;
use gmv_pipeline::chunks::{
    BufferPool, ChunkSource, FileChunks, StreamChunks, StreamOptions, DEFAULT_CHUNK_BYTES,
};
use gmv_pipeline::sinks::LinesMode;
use gmv_pipeline::split::SplitSource;
use gmv_pipeline::{Source, TickSink};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How long a partial chunk of a stream waits for more input before it is
/// processed anyway: a slow feed is live within this.
const STREAM_LINGER: Duration = Duration::from_millis(50);

/// Runs `gmv run`.
pub fn execute(args: &RunArgs, config_file: Option<&Path>) -> Result<Ended> {
    if args.input.is_none() && !supervise::is_worker() {
        return supervise::run_in_worker();
    }
    let loaded = Config::load(
        config_file,
        &args
            .engine
            .overrides()
            .merge(args.kafka_flags.overrides(args.kafka.as_deref())),
    )?;
    let stem = args.input.as_deref().and_then(input_stem);
    let report_to = ReportTo::choose(args.engine.report.as_deref(), || match &stem {
        Some(stem) => PathBuf::from(format!("{stem}.report.json")),
        None => PathBuf::from("gmv-report.json"),
    });
    let mut local = Local::open(&loaded, &args.engine)?;
    local.report_to(report_to.clone());
    local.allow_partial(args.allow_partial);
    match &args.input {
        None => {
            let (source, sinks) = kafka_source(&loaded, None)?;
            local.run(&loaded, &args.engine, source, sinks, Output::Report, false)
        }
        Some(input) => {
            let dead_letter_path = loaded
                .config
                .dead_letter
                .path
                .clone()
                .unwrap_or_else(|| beside_report(&report_to, stem.as_deref()));
            let mode = if args.append_dead_letters {
                LinesMode::Append
            } else {
                LinesMode::Truncate
            };
            let dead_letters = Arc::new(LazyDeadLetters::new(&dead_letter_path, mode)?);
            local.dead_letters(dead_letters.clone());
            if let Some(records) = estimate_records(input) {
                local.expect_records(records);
            }
            let pool = Arc::new(BufferPool::default());
            let chunks = input_chunks(input, &loaded, &local, &pool)?;
            let source = split_source_to(&loaded, chunks, pool, dead_letters)?;
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

/// The input's file name without its extension (`events` for
/// `data/events.jsonl`); none for stdin.
fn input_stem(input: &Path) -> Option<String> {
    if input.as_os_str() == "-" {
        return None;
    }
    input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
}

/// Where dead letters go when no path is configured: beside the report
/// file (`out/run.json` → `out/run.dead-letters.jsonl`), or, when the
/// report goes to stdout, `<input>.dead-letters.jsonl` in the working
/// directory (`gmv-dead-letters.jsonl` for stdin).
fn beside_report(report: &ReportTo, input_stem: Option<&str>) -> PathBuf {
    match report {
        ReportTo::File(path) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "gmv".into());
            let name = match (stem.strip_suffix(".report"), stem.strip_suffix("-report")) {
                (Some(base), _) => format!("{base}.dead-letters.jsonl"),
                (None, Some(base)) => format!("{base}-dead-letters.jsonl"),
                (None, None) => format!("{stem}.dead-letters.jsonl"),
            };
            path.with_file_name(name)
        }
        ReportTo::Stdout => match input_stem {
            Some(stem) => PathBuf::from(format!("{stem}.dead-letters.jsonl")),
            None => PathBuf::from("gmv-dead-letters.jsonl"),
        },
    }
}

/// About how many records a regular file holds: its size over the mean
/// length of the lines in its first MiB. The progress line's percentage
/// rests on it (the chunk source does not say how many bytes it has read).
fn estimate_records(input: &Path) -> Option<u64> {
    let meta = std::fs::metadata(input).ok()?;
    if !meta.is_file() || meta.len() == 0 {
        return None;
    }
    let mut head = Vec::with_capacity(1 << 20);
    std::fs::File::open(input)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut head)
        .ok()?;
    let lines = memchr::memchr_iter(b'\n', &head).count().max(1) as u64;
    let mean = (head.len() as u64 / lines).max(1);
    Some(meta.len() / mean)
}

/// The split source over `chunks`, with its dead-letter file
/// (`dead_letter.path`, or `gmv-dead-letters.jsonl`, created only when a
/// record is rejected).
pub fn split_source(
    loaded: &Loaded,
    chunks: Arc<dyn ChunkSource>,
    pool: Arc<BufferPool>,
) -> Result<Box<dyn Source>> {
    let path = loaded
        .config
        .dead_letter
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("gmv-dead-letters.jsonl"));
    let dead_letters = Arc::new(LazyDeadLetters::new(&path, LinesMode::Truncate)?);
    split_source_to(loaded, chunks, pool, dead_letters)
}

/// The split source over `chunks`, keeping rejected records in
/// `dead_letters`.
pub fn split_source_to(
    loaded: &Loaded,
    chunks: Arc<dyn ChunkSource>,
    pool: Arc<BufferPool>,
    dead_letters: Arc<LazyDeadLetters>,
) -> Result<Box<dyn Source>> {
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
        dead_letters,
    }))
}

/// A source and the sinks it brings.
pub type SourceAndSinks = (Box<dyn Source>, Vec<Box<dyn TickSink>>);

/// The Kafka source of `loaded.config.kafka`, and its snapshots-topic sink.
pub fn kafka_source(loaded: &Loaded, hold_open: Option<Arc<AtomicBool>>) -> Result<SourceAndSinks> {
    if loaded.config.kafka.brokers.is_empty() {
        return Err(ConfigProblems::one(
            "kafka.brokers",
            "is empty: pass --kafka HOST:PORT or set kafka.brokers (or use `gmv demo` for the embedded cluster)",
        )
        .into());
    }
    let refused = check_kafka_properties(&loaded.config.kafka, PropertyCheck::NamesAndValues);
    if !refused.is_empty() {
        return Err(ConfigProblems::from_errors(refused).into());
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
