//! `gmv`: the gmv-stream binary. Subcommands wire the library crates
//! together: `run` (a file or stdin through the engine to a report), `demo`
//! (the synthetic 11.11 day through the same pipeline), `generate` (write the
//! synthetic stream), `serve` (the scoreboard from Kafka alone) and `config`
//! (print the merged configuration).
//!
//! # Layout
//! - [`config`]: the layered configuration tree and its validation.
//! - [`source`]: record sources filling recycled batches.
//! - [`pipeline`]: reader → workers → publisher threads around one engine.
//! - [`sinks`]: dead-letter and alert files.
//! - [`http`]: the live feed server on a runtime of its own.
//! - [`kafka`]: `run --kafka`, `generate --kafka`, the embedded demo cluster
//!   and `serve --from-kafka`, around `gmv-kafka`.

mod config;
mod http;
mod kafka;
mod pipeline;
mod sinks;
mod source;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use config::{Config, Loaded};
use figment::providers::Serialized;
use figment::Figment;
use gmv_core::output::Report;
use gmv_core::sink::LiveSink;
use gmv_core::Engine;
use gmv_synth::SynthConfig;
use pipeline::PipelineOptions;
use sinks::{AlertFile, DeadLetterFile};
use source::{LineSource, Source, SynthSource};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit code for invalid configuration or usage.
const EXIT_CONFIG: u8 = 2;
/// Exit code when a signal stopped the run before the input ended.
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "gmv",
    version,
    about = "Real-time GMV analytics over settled-transaction streams"
)]
struct Cli {
    /// A TOML file layered over the embedded defaults (see config/default.toml).
    #[arg(long, short, global = true, env = "GMV_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr (level via RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Process newline-delimited JSON events from a file or stdin and write the final report.
    Run(RunArgs),
    /// Run the synthetic 11.11 day through Kafka (an embedded cluster) and print the day's figures.
    Demo(DemoArgs),
    /// Write the synthetic 11.11 stream as newline-delimited JSON, or produce it into Kafka.
    Generate(GenerateArgs),
    /// Serve the live scoreboard from the Kafka snapshots topic alone (the global view).
    Serve(ServeArgs),
    /// Write the post-event report (report.json, merchants.csv, report.html) from a run's report.
    Report(ReportArgs),
    /// Print the merged configuration (defaults, file, environment) as TOML.
    Config,
}

#[derive(Args)]
struct ReportArgs {
    /// The report JSON written by `gmv run --report`.
    #[arg(long)]
    run: PathBuf,
    /// A previous year's report (from `gmv run` or `gmv report`) for growth figures.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Directory to write into (created if missing).
    #[arg(long, short, default_value = "gmv-report")]
    out: PathBuf,
}

/// Flags shared by every command that processes events.
#[derive(Args)]
struct EngineFlags {
    /// Worker threads (overrides engine.workers; 0 = one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Snapshot cadence, e.g. 500ms (overrides publish.interval).
    #[arg(long)]
    publish_interval: Option<String>,
    /// JSON-lines file for rejected records (overrides dead_letter.path).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Where to write the final report JSON (default: stdout for `run`, nowhere for `demo`).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Also write each threshold alert as a JSON line here.
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Serve the live feed and scoreboard on this address, e.g. 127.0.0.1:8080 (sets http.bind).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Progress line on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
struct RunArgs {
    /// Input file of newline-delimited JSON events, or `-` for stdin.
    #[arg(
        long,
        short,
        required_unless_present = "kafka",
        conflicts_with = "kafka"
    )]
    input: Option<PathBuf>,
    /// Consume the input topic from this Kafka cluster (`host:port,...`; sets kafka.brokers).
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    #[command(flatten)]
    kafka_flags: KafkaFlags,
    #[command(flatten)]
    engine: EngineFlags,
}

/// Flags of the Kafka commands (each overrides its `[kafka]` key).
#[derive(Args)]
struct KafkaFlags {
    /// Consumer group (kafka.group_id).
    #[arg(long)]
    group: Option<String>,
    /// Checkpoint directory (kafka.checkpoint.dir).
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Exit once every owned partition has been at its end this long, e.g. 5s (kafka.exit_when_idle).
    #[arg(long, value_name = "DURATION")]
    exit_when_idle: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// The Kafka cluster whose snapshots topic to read (sets kafka.brokers).
    #[arg(long, value_name = "BROKERS")]
    from_kafka: String,
    /// Address to serve on (sets http.bind; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Read what the topic holds now, print the assembled snapshot as JSON and exit.
    #[arg(long)]
    once: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Records to generate.
    #[arg(long, default_value_t = 3_000_000)]
    events: u64,
    /// Records per second; 0 = as fast as the engine goes.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Do not serve the scoreboard (by default on http.bind, 127.0.0.1:8080).
    #[arg(long)]
    no_http: bool,
    /// Exit when the stream ends instead of serving until Ctrl-C.
    #[arg(long)]
    exit_when_done: bool,
    /// Seed of the synthetic stream.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Feed the engine directly instead of through the embedded Kafka cluster.
    #[arg(long)]
    no_kafka: bool,
    #[command(flatten)]
    engine: EngineFlags,
}

#[derive(Args)]
struct GenerateArgs {
    /// Records to write (including repeats and bad records).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seed: the same seed and flags always give the same bytes.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Output file, or `-` for stdout.
    #[arg(long, short, default_value = "-")]
    output: PathBuf,
    /// Distinct merchants.
    #[arg(long, default_value_t = 140_000)]
    merchants: u64,
    /// Share of verbatim redeliveries.
    #[arg(long, default_value_t = 0.002)]
    duplicate_share: f64,
    /// Share of txn_id reuses with different content.
    #[arg(long, default_value_t = 0.0002)]
    conflict_share: f64,
    /// Share of malformed or invalid records.
    #[arg(long, default_value_t = 0.001)]
    malformed_share: f64,
    /// Share of events outside the festival window.
    #[arg(long, default_value_t = 0.001)]
    outside_window_share: f64,
    /// Share of events in a foreign currency.
    #[arg(long, default_value_t = 0.01)]
    foreign_share: f64,
    /// No repeats, bad records, foreign currency or out-of-window events.
    #[arg(long)]
    clean: bool,
    /// Produce into this Kafka cluster's input topic instead of writing a file (sets kafka.brokers).
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// With --kafka: records per second (0 = as fast as the cluster takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match execute(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(problems) = e.downcast_ref::<config::ConfigProblems>() {
                eprint!("gmv: {problems}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("gmv: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to a file or a collector stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn execute(cli: Cli) -> Result<ExitCode> {
    let config_file = cli.config.as_deref();
    match cli.command {
        Command::Config => {
            let loaded = Config::load(config_file, &Figment::new())?;
            print!(
                "{}",
                toml::to_string_pretty(&loaded.config).context("printing the configuration")?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => generate(&args, config_file),
        Command::Report(args) => post_event_report(args),
        Command::Serve(args) => {
            let mut figment =
                Figment::new().merge(Serialized::default("kafka.brokers", &args.from_kafka));
            if let Some(addr) = &args.http {
                figment = figment.merge(Serialized::default("http.bind", addr));
            }
            let mut loaded = Config::load(config_file, &figment)?;
            if args.once {
                loaded.config.http = None;
            } else if loaded.config.http.is_none() {
                loaded.config.http = Some(gmv_serve::ServeConfig::default());
            }
            let stop = stop_on_signals()?;
            let snapshot = kafka::serve_global(&loaded, stop, args.once)?;
            if args.once {
                println!("{}", serde_json::to_string_pretty(&snapshot)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let loaded = Config::load(
                config_file,
                &overrides(&args.engine)
                    .merge(kafka_overrides(args.kafka.as_deref(), &args.kafka_flags)),
            )?;
            let Some(input) = args.input else {
                return process_kafka(
                    &loaded,
                    &args.engine,
                    Output::ReportToStdout,
                    false,
                    None,
                    None,
                );
            };
            let hold_limit = loaded.settings.max_event_bytes.max(16 << 20) + 1;
            let source: Box<dyn Source> = if input.as_os_str() == "-" {
                Box::new(LineSource::new("stdin", Box::new(io::stdin()), hold_limit))
            } else {
                let file = File::open(&input)
                    .with_context(|| format!("opening input {}", input.display()))?;
                let name = input.display().to_string();
                Box::new(LineSource::new(
                    name,
                    Box::new(file) as Box<dyn Read + Send>,
                    hold_limit,
                ))
            };
            process(&loaded, source, &args.engine, Output::ReportToStdout, false)
        }
        Command::Demo(args) => {
            let mut loaded = Config::load(config_file, &overrides(&args.engine))?;
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
            tracing::info!(
                events = args.events,
                rate = args.rate,
                "demo: the synthetic 11.11 day, through Kafka"
            );
            if args.no_kafka {
                let source = Box::new(SynthSource::new(synth, Some(args.rate)));
                let linger = loaded.config.http.is_some() && !args.exit_when_done;
                return process(&loaded, source, &args.engine, Output::Summary, linger);
            }
            let cluster = kafka::demo_cluster(&mut loaded)?;
            if args.exit_when_done {
                loaded.config.kafka.exit_when_idle = Some(Duration::from_secs(3));
            }
            let producer_stop = Arc::new(AtomicBool::new(false));
            // The run may not end as idle while the producer is still at it.
            let producing = Arc::new(AtomicBool::new(true));
            let view = Arc::new(gmv_kafka::publish::ProcessView::new());
            let producer = {
                let loaded = loaded.clone();
                let stop = producer_stop.clone();
                let producing = producing.clone();
                let view = view.clone();
                let rate = Some(args.rate).filter(|&r| r > 0);
                std::thread::Builder::new()
                    .name("gmv-demo-producer".into())
                    .spawn(move || {
                        // The mock cluster keeps only ~5 MiB per partition:
                        // produce once the group is consuming every partition.
                        let partitions = loaded.config.kafka.partitions as usize;
                        let deadline = Instant::now() + Duration::from_secs(30);
                        while view.partitions() < partitions
                            && Instant::now() < deadline
                            && !stop.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        let generated = kafka::generate(&loaded, synth, rate, stop, false);
                        producing.store(false, std::sync::atomic::Ordering::SeqCst);
                        generated
                    })
                    .context("starting the demo producer")?
            };
            let linger = loaded.config.http.is_some() && !args.exit_when_done;
            let code = process_kafka(
                &loaded,
                &args.engine,
                Output::Summary,
                linger,
                Some(producing),
                Some(view),
            );
            producer_stop.store(true, std::sync::atomic::Ordering::Relaxed);
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
            code
        }
    }
}

/// Kafka flags as configuration overrides.
fn kafka_overrides(brokers: Option<&str>, flags: &KafkaFlags) -> Figment {
    let figment = set_if(Figment::new(), "kafka.brokers", brokers);
    let figment = set_if(figment, "kafka.group_id", flags.group.as_ref());
    let figment = set_if(
        figment,
        "kafka.checkpoint.dir",
        flags.checkpoint_dir.as_ref(),
    );
    set_if(
        figment,
        "kafka.exit_when_idle",
        flags.exit_when_idle.as_ref(),
    )
}

/// Layers `key = value` over `figment` when a flag gave a value.
fn set_if<T: serde::Serialize>(figment: Figment, key: &str, value: Option<T>) -> Figment {
    match value {
        Some(value) => figment.merge(Serialized::default(key, value)),
        None => figment,
    }
}

/// SIGINT/SIGTERM set the returned flag.
fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Consumes Kafka until stopped (or idle), then reports like [`process`].
fn process_kafka(
    loaded: &Loaded,
    flags: &EngineFlags,
    output: Output,
    linger: bool,
    hold_open: Option<Arc<AtomicBool>>,
    view: Option<Arc<gmv_kafka::publish::ProcessView>>,
) -> Result<ExitCode> {
    if loaded.config.kafka.brokers.is_empty() {
        return Err(config::ConfigProblems(vec![gmv_core::config::ConfigError::new(
            "kafka.brokers",
            "is empty: pass --kafka HOST:PORT or set kafka.brokers (or use `gmv demo` for the embedded cluster)",
        )])
        .into());
    }
    let view = view.unwrap_or_default();
    let mut local = LocalOutputs::open(loaded, flags, kafka::process_source(&view))?;
    let on_tick = local.show_progress.then(kafka_progress_line);
    let live = std::mem::take(&mut local.live);
    let run = kafka::run(loaded, live, local.stop.clone(), on_tick, view, hold_open)?;
    let report = run.report;
    let seconds = run.elapsed.as_secs_f64().max(1e-9);
    tracing::info!(
        consumed = report.figures.accounting.consumed,
        rejected = report.figures.accounting.rejected,
        seconds = format!("{seconds:.3}"),
        events_per_second = (report.figures.accounting.consumed as f64 / seconds) as u64,
        "done"
    );
    let completed = run.cause == gmv_kafka::publish::StopCause::Idle;
    local.finish(&report, flags, output, run.elapsed, linger && completed)?;
    // A Kafka run has no end of input: a signal is its normal way to stop.
    Ok(ExitCode::SUCCESS)
}

/// What a run writes locally besides the engine: the alert file, the HTTP
/// feed, the progress line, and the signal flag that stops it.
struct LocalOutputs {
    /// Sinks for the publisher (taken by the run).
    live: Vec<Arc<dyn LiveSink>>,
    alerts: Option<Arc<AlertFile>>,
    http: Option<http::Server>,
    stop: Arc<AtomicBool>,
    show_progress: bool,
}

impl LocalOutputs {
    /// Opens the alert file and starts the HTTP feed over `source`, per flags
    /// and config; installs the signal handlers.
    fn open(
        loaded: &Loaded,
        flags: &EngineFlags,
        source: Arc<dyn gmv_serve::FeedSource>,
    ) -> Result<Self> {
        let mut live: Vec<Arc<dyn LiveSink>> = Vec::new();
        let alerts = flags.alerts.as_deref().map(AlertFile::create).transpose()?;
        if let Some(alerts) = &alerts {
            live.push(alerts.clone());
        }
        let http = loaded
            .config
            .http
            .as_ref()
            .map(|config| http::Server::start(config, source))
            .transpose()?;
        if let Some(server) = &http {
            live.push(server.feed());
        }
        Ok(Self {
            live,
            alerts,
            http,
            stop: stop_on_signals()?,
            show_progress: match flags.progress {
                Progress::Always => true,
                Progress::Never => false,
                Progress::Auto => io::stderr().is_terminal(),
            },
        })
    }

    /// Ends the progress line, closes the alert file, writes the report (or
    /// summary), and with `linger` keeps serving HTTP until a signal.
    fn finish(
        self,
        report: &Report,
        flags: &EngineFlags,
        output: Output,
        elapsed: Duration,
        linger: bool,
    ) -> Result<()> {
        if self.show_progress {
            eprintln!();
        }
        if let Some(alerts) = &self.alerts {
            alerts.finish().context("writing alerts")?;
        }
        match (&flags.report, output) {
            (Some(path), _) => write_report(report, path)?,
            (None, Output::ReportToStdout) => {
                let mut out = io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, report).context("writing the report")?;
                writeln!(out)?;
            }
            (None, Output::Summary) => {}
        }
        if matches!(output, Output::Summary) {
            print!("{}", summary(report, elapsed));
        }
        if let Some(server) = self.http {
            if linger {
                tracing::info!(url = %server.url(), "the stream has ended; still serving the scoreboard (Ctrl-C to stop)");
                while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            server.stop()?;
        }
        Ok(())
    }
}

/// CLI flags as the top configuration layer.
fn overrides(flags: &EngineFlags) -> Figment {
    let figment = set_if(Figment::new(), "engine.workers", flags.workers);
    let figment = set_if(figment, "publish.interval", flags.publish_interval.as_ref());
    let figment = set_if(figment, "dead_letter.path", flags.dead_letter.as_ref());
    set_if(figment, "http.bind", flags.http.as_ref())
}

#[derive(Clone, Copy)]
enum Output {
    ReportToStdout,
    Summary,
}

/// Processes `source` to its end; with `linger`, keeps serving HTTP afterwards until a signal.
fn process(
    loaded: &Loaded,
    source: Box<dyn Source>,
    flags: &EngineFlags,
    output: Output,
    linger: bool,
) -> Result<ExitCode> {
    let engine = Arc::new(Engine::new(loaded.settings.clone()));
    let dead_letters = DeadLetterFile::open(&loaded.config.dead_letter.path)?;
    let mut local = LocalOutputs::open(loaded, flags, engine.clone())?;
    let workers = loaded.settings.workers;
    tracing::info!(workers, dead_letters = %dead_letters.path().display(), "processing");
    let outcome = pipeline::run(
        &engine,
        source,
        PipelineOptions {
            workers,
            dead_letters: &dead_letters,
            live: std::mem::take(&mut local.live),
            publish_interval: loaded.config.publish.interval,
            stop: local.stop.clone(),
            on_tick: local.show_progress.then(|| progress_line()),
        },
    )
    .context("processing")?;
    let report = engine.report();
    let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
    tracing::info!(
        consumed = report.figures.accounting.consumed,
        rejected = report.figures.accounting.rejected,
        dead_letters = dead_letters.kept(),
        snapshots = outcome.snapshots,
        seconds = format!("{seconds:.3}"),
        events_per_second = (report.figures.accounting.consumed as f64 / seconds) as u64,
        "done"
    );
    local.finish(
        &report,
        flags,
        output,
        outcome.elapsed,
        linger && outcome.completed,
    )?;
    if outcome.completed {
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::warn!(
            "stopped by a signal before the input ended; the report covers what was read"
        );
        Ok(ExitCode::from(EXIT_INTERRUPTED))
    }
}

/// Prints the progress line at most once a second.
struct ProgressLine {
    last: Instant,
}

impl ProgressLine {
    fn new() -> Self {
        Self {
            last: Instant::now() - Duration::from_secs(1),
        }
    }

    /// Whether a second has passed since the last line (and the caller
    /// should read its figures and print).
    fn due(&mut self) -> bool {
        let due = self.last.elapsed() >= Duration::from_secs(1);
        if due {
            self.last = Instant::now();
        }
        due
    }

    fn print(consumed: u64, gmv_cny: &str, rejected: u64, elapsed: Duration, extra: &str) {
        let rate = consumed as f64 / elapsed.as_secs_f64().max(1e-9);
        eprint!(
            "\r{consumed} records  {:.2}M/s  GMV CNY {gmv_cny}  rejected {rejected}{extra}   ",
            rate / 1e6
        );
    }
}

/// The progress line of a file run, from the engine at each tick.
fn progress_line() -> pipeline::OnTick<'static> {
    let mut line = ProgressLine::new();
    Box::new(move |engine, elapsed| {
        if !line.due() {
            return;
        }
        let gmv = engine.aggregator().summary(0).gmv;
        ProgressLine::print(
            engine.consumed(),
            &gmv_core::money::format_fen(gmv),
            engine.rejected().total(),
            elapsed,
            "",
        );
    })
}

/// The progress line of a Kafka run, from each tick's merged snapshot.
fn kafka_progress_line() -> gmv_kafka::publish::OnTick {
    let mut line = ProgressLine::new();
    Box::new(move |snapshot, elapsed| {
        if !line.due() {
            return;
        }
        let a = &snapshot.figures.accounting;
        let partitions = format!("  partitions {}", a.partitions.len());
        ProgressLine::print(
            a.consumed,
            &snapshot.figures.gmv_cny,
            a.rejected,
            elapsed,
            &partitions,
        );
    })
}

/// Writes the report atomically (temporary file, then rename).
fn write_report(report: &Report, path: &Path) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut out =
        BufWriter::new(File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    serde_json::to_writer_pretty(&mut out, report)?;
    out.write_all(b"\n")?;
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    tracing::info!(path = %path.display(), "report written");
    Ok(())
}

/// The day's figures in a few lines, in the style of the 11.11 press release.
fn summary(report: &Report, elapsed: Duration) -> String {
    let f = &report.figures;
    let mut out = format!(
        "GMV CNY {} (US${}) from {} transactions; {:.1}% on mobile\n",
        f.gmv_cny,
        f.gmv_usd,
        f.transactions,
        f.mobile_share * 100.0
    );
    for t in &f.thresholds {
        out += &format!("  merchants over CNY {}: {}\n", t.cny, t.merchants);
    }
    out += &format!(
        "peak {} transactions/s at {}; {} merchants\n",
        f.peak_tps,
        f.peak_second.as_deref().unwrap_or("-"),
        f.merchants
    );
    out += &format!(
        "accounting: consumed {} = counted {} + rejected {} ({:.2}s, {:.2}M records/s)\n",
        f.accounting.consumed,
        f.accounting.counted,
        f.accounting.rejected,
        elapsed.as_secs_f64(),
        f.accounting.consumed as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6
    );
    out
}

fn post_event_report(args: ReportArgs) -> Result<ExitCode> {
    let options = gmv_report::ReportOptions {
        run: args.run,
        compare: args.compare,
        out_dir: args.out,
    };
    match gmv_report::write_report(&options) {
        Ok(summary) => {
            println!("{}", summary.headline);
            for file in &summary.files {
                println!("wrote {}", file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("gmv report: {e}");
            Ok(match e.fault() {
                gmv_report::Fault::Input => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::FAILURE,
            })
        }
    }
}

fn generate(args: &GenerateArgs, config_file: Option<&Path>) -> Result<ExitCode> {
    let loaded = Config::load(
        config_file,
        &kafka_overrides(
            args.kafka.as_deref(),
            &KafkaFlags {
                group: None,
                checkpoint_dir: None,
                exit_when_idle: None,
            },
        ),
    )?;
    for (name, share) in [
        ("--duplicate-share", args.duplicate_share),
        ("--conflict-share", args.conflict_share),
        ("--malformed-share", args.malformed_share),
        ("--outside-window-share", args.outside_window_share),
        ("--foreign-share", args.foreign_share),
    ] {
        if !(0.0..=0.5).contains(&share) {
            bail!("{name} must be between 0 and 0.5, got {share}");
        }
    }
    if args.merchants == 0 {
        bail!("--merchants must be at least 1");
    }
    let mut synth = SynthConfig {
        events: args.events,
        seed: args.seed,
        merchants: args.merchants,
        duplicate_share: args.duplicate_share,
        conflict_share: args.conflict_share,
        malformed_share: args.malformed_share,
        outside_window_share: args.outside_window_share,
        foreign_share: args.foreign_share,
        window: loaded.settings.window,
        ..SynthConfig::default()
    };
    if args.clean {
        synth = synth.clean();
    }
    if args.kafka.is_some() {
        let stop = stop_on_signals()?;
        let generated = kafka::generate(
            &loaded,
            synth,
            Some(args.rate),
            stop,
            io::stderr().is_terminal(),
        )?;
        let seconds = generated.elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "gmv: produced {} records to {} ({} failed) in {seconds:.2}s, {:.0} records/s; produce→ack p50 {} ms, p99 {} ms",
            generated.delivered,
            loaded.config.kafka.input_topic,
            generated.failed,
            generated.delivered as f64 / seconds,
            generated.ack_p50_ms,
            generated.ack_p99_ms
        );
        return Ok(if generated.failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let sink: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .with_context(|| format!("creating {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    for record in gmv_synth::Generator::new(synth) {
        out.write_all(&record.payload)?;
        out.write_all(b"\n")?;
    }
    out.flush().context("writing the generated stream")?;
    Ok(ExitCode::SUCCESS)
}
