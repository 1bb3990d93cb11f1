//! The command line: every command, its flags, and the configuration layer
//! the flags make. Flags override the configuration file and environment
//! (see [`crate::config`]).

use clap::{Args, Parser, Subcommand, ValueEnum};
use figment::Figment;
use std::path::PathBuf;

/// The exit codes, shown under every command's `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 runtime failure (input unreadable, cluster \
    unreachable, output not writable); 2 usage or configuration error (nothing was done); \
    130/143 stopped by SIGINT/SIGTERM (what was read is counted and reported).";

#[derive(Parser)]
#[command(
    name = "gmv",
    version,
    about = "Real-time GMV analytics over settled-transaction streams",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// A TOML file layered over the embedded defaults (see config/default.toml).
    #[arg(long, short, global = true, env = "GMV_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format on stderr (level via RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Process newline-delimited JSON events from a file or stdin, or a Kafka topic, and write the report.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Run the synthetic 11.11 day through Kafka (an embedded cluster) and print the day's figures.
    #[command(after_help = EXIT_CODES)]
    Demo(DemoArgs),
    /// Write the synthetic 11.11 stream as newline-delimited JSON, or produce it into Kafka.
    #[command(after_help = EXIT_CODES)]
    Generate(GenerateArgs),
    /// Serve the live scoreboard from the Kafka snapshots topic alone (the global view).
    #[command(after_help = EXIT_CODES)]
    Serve(ServeArgs),
    /// Write the post-event report (report.json, merchants.csv, report.html) from a run's report.
    #[command(after_help = EXIT_CODES)]
    Report(ReportArgs),
    /// Print the merged configuration (defaults, file, environment, flags) as TOML.
    #[command(after_help = EXIT_CODES)]
    Config(ConfigArgs),
    /// Print a shell completion script, e.g. `gmv completions bash > /etc/bash_completion.d/gmv`.
    #[command(after_help = EXIT_CODES)]
    Completions(CompletionsArgs),
}

/// Where `gmv run` writes, under its `--help`.
const RUN_HELP: &str = "Where the output goes: the report JSON to --report FILE; without it, to \
    stdout when stdout is not a terminal, and on a terminal to <input>.report.json \
    (gmv-report.json for stdin or Kafka) in the working directory, with a summary printed. \
    Rejected records of a file or stdin go to --dead-letter FILE (dead_letter.path); without it, \
    beside the report as <report>.dead-letters.jsonl (<input>.dead-letters.jsonl in the \
    working directory when the report goes to stdout), created only when a record is rejected, and emptied for each run unless \
    --append-dead-letters. Both paths are said on stderr at the end.

Exit codes: 0 done; 1 runtime failure (input unreadable, cluster unreachable, output not \
    writable); 2 usage or configuration error (nothing was done); 130/143 stopped by \
    SIGINT/SIGTERM (what was read is counted and reported).";

#[derive(Args)]
pub struct ConfigArgs {
    /// Print each value with the layer that set it: default, file PATH, environment GMV__..., flag.
    #[arg(long)]
    pub show_origin: bool,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A command line that asks for something impossible (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Args)]
pub struct ReportArgs {
    /// The report JSON written by `gmv run --report`.
    #[arg(long)]
    pub run: PathBuf,
    /// A previous year's report (from `gmv run` or `gmv report`) for growth figures.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// Directory to write into (created if missing).
    #[arg(long, short, default_value = "gmv-report")]
    pub out: PathBuf,
}

/// Flags shared by every command that processes events.
#[derive(Args)]
pub struct EngineFlags {
    /// Worker threads (overrides engine.workers; 0 = one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Snapshot cadence, e.g. 500ms (overrides publish.interval).
    #[arg(long)]
    pub publish_interval: Option<String>,
    /// JSON-lines file for rejected records (sets dead_letter.path; default: beside the report).
    #[arg(long)]
    pub dead_letter: Option<PathBuf>,
    /// Where to write the final report JSON, `-` for stdout (default for `run`: stdout unless it is a terminal, then <input>.report.json; for `demo`: none).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write each threshold alert as a JSON line here.
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Serve the live feed and scoreboard on this address, e.g. 127.0.0.1:8080 (sets http.bind).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Progress line on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Always,
    Never,
}

#[derive(Args)]
pub struct RunArgs {
    /// Input file of newline-delimited JSON events, or `-` for stdin.
    #[arg(
        long,
        short,
        required_unless_present = "kafka",
        conflicts_with = "kafka"
    )]
    pub input: Option<PathBuf>,
    /// Consume the input topic from this Kafka cluster (`host:port,...`; sets kafka.brokers).
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Add to the dead-letter file instead of emptying it first.
    #[arg(long, alias = "append")]
    pub append_dead_letters: bool,
    /// Exit 0 even if the report covers only some of the topic's partitions
    /// (one process of a multi-process group; the report names the rest).
    #[arg(long, requires = "kafka")]
    pub allow_partial: bool,
    #[command(flatten)]
    pub kafka_flags: KafkaFlags,
    #[command(flatten)]
    pub engine: EngineFlags,
}

/// Flags of the Kafka commands (each overrides its `[kafka]` key).
#[derive(Args, Default)]
pub struct KafkaFlags {
    /// Consumer group (kafka.group_id).
    #[arg(long)]
    pub group: Option<String>,
    /// Checkpoint directory (kafka.checkpoint.dir).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Exit once every owned partition has been at its end this long, e.g. 5s (kafka.exit_when_idle).
    #[arg(long, value_name = "DURATION")]
    pub exit_when_idle: Option<String>,
    #[command(flatten)]
    pub connect: ConnectFlag,
}

/// How long a Kafka command waits for its cluster.
#[derive(Args, Default)]
pub struct ConnectFlag {
    /// Give up when the cluster has not answered in this long, e.g. 10s (kafka.connect_timeout).
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
}

impl ConnectFlag {
    /// The flag as a configuration layer over `figment`.
    pub fn over(&self, figment: Figment) -> Figment {
        set_flag(
            figment,
            "--connect-timeout",
            "kafka.connect_timeout",
            self.connect_timeout.as_ref(),
        )
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// The Kafka cluster whose snapshots topic to read (sets kafka.brokers).
    #[arg(long, value_name = "BROKERS")]
    pub from_kafka: String,
    /// Address to serve on (sets http.bind; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,
    /// Read what the topic holds now, print the assembled snapshot as JSON and exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub connect: ConnectFlag,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Records in all: the midnight rush takes what --rate and --rush ask, the rest of the day what is left.
    #[arg(long, default_value_t = 12_000_000)]
    pub events: u64,
    /// Peak transactions per second of event time in the midnight rush (2017: 256,000 at 00:00:05); 0 = no rush, and unless --time-lapse says otherwise the whole day as fast as it goes.
    #[arg(long, default_value_t = 256_000)]
    pub rate: u64,
    /// Seconds of event time from midnight played as the rush, second by second at up to --rate.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub rush: u64,
    /// Seconds of event time per second of wall time during the rush (1 = real time, 0.5 = slow motion); 0 = as fast as it goes.
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub rush_time_lapse: f64,
    /// Seconds of event time per second of wall time for the rest of the day [default: 1440, the day in a minute; with --rate 0: 0]; 0 = as fast as it goes.
    #[arg(long, value_name = "FACTOR")]
    pub time_lapse: Option<f64>,
    /// Do not serve the scoreboard (by default on http.bind, 127.0.0.1:8080).
    #[arg(long)]
    pub no_http: bool,
    /// Exit when the stream ends instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Seed of the synthetic stream.
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Feed the engine directly instead of through the embedded Kafka cluster.
    #[arg(long)]
    pub no_kafka: bool,
    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Records to write (including repeats and bad records).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Seed: the same seed and flags always give the same bytes.
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// Output file, or `-` for stdout.
    #[arg(long, short, default_value = "-")]
    pub output: PathBuf,
    /// Distinct merchants.
    #[arg(long, default_value_t = 140_000)]
    pub merchants: u64,
    /// Share of verbatim redeliveries.
    #[arg(long, default_value_t = 0.002)]
    pub duplicate_share: f64,
    /// Share of txn_id reuses with different content.
    #[arg(long, default_value_t = 0.0002)]
    pub conflict_share: f64,
    /// Share of malformed or invalid records.
    #[arg(long, default_value_t = 0.001)]
    pub malformed_share: f64,
    /// Share of events outside the festival window.
    #[arg(long, default_value_t = 0.001)]
    pub outside_window_share: f64,
    /// Share of events in a foreign currency.
    #[arg(long, default_value_t = 0.01)]
    pub foreign_share: f64,
    /// No repeats, bad records, foreign currency or out-of-window events.
    #[arg(long)]
    pub clean: bool,
    /// Produce into this Kafka cluster's input topic instead of writing a file (sets kafka.brokers).
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// With --kafka: records per second (0 = as fast as the cluster takes them).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    #[command(flatten)]
    pub connect: ConnectFlag,
}

impl EngineFlags {
    /// The flags as the top configuration layer.
    pub fn overrides(&self) -> Figment {
        let figment = set_flag(Figment::new(), "--workers", "engine.workers", self.workers);
        let figment = set_flag(
            figment,
            "--publish-interval",
            "publish.interval",
            self.publish_interval.as_ref(),
        );
        let figment = set_flag(
            figment,
            "--dead-letter",
            "dead_letter.path",
            self.dead_letter.as_ref(),
        );
        set_flag(figment, "--http", "http.bind", self.http.as_ref())
    }
}

impl KafkaFlags {
    /// The flags (and the cluster) as configuration overrides.
    pub fn overrides(&self, brokers: Option<&str>) -> Figment {
        let figment = set_flag(Figment::new(), "--kafka", "kafka.brokers", brokers);
        let figment = set_flag(figment, "--group", "kafka.group_id", self.group.as_ref());
        let figment = set_flag(
            figment,
            "--checkpoint-dir",
            "kafka.checkpoint.dir",
            self.checkpoint_dir.as_ref(),
        );
        let figment = set_flag(
            figment,
            "--exit-when-idle",
            "kafka.exit_when_idle",
            self.exit_when_idle.as_ref(),
        );
        self.connect.over(figment)
    }
}

/// Layers `key = value` over `figment` when a flag gave a value (a problem
/// with it is said to come from "a command-line flag"; [`set_flag`] names
/// the flag).
#[allow(dead_code)] // for a command's flags that need no name of their own
pub fn set_if<T: serde::Serialize>(figment: Figment, key: &str, value: Option<T>) -> Figment {
    set_flag(figment, "", key, value)
}

/// Layers `key = value` over `figment` when `flag` gave a value; a problem
/// with the value names the flag.
pub fn set_flag<T: serde::Serialize>(
    figment: Figment,
    flag: &str,
    key: &str,
    value: Option<T>,
) -> Figment {
    match value {
        Some(value) => figment.merge(crate::config::flag_layer(flag, key, value)),
        None => figment,
    }
}
