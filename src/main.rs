//! `gmv`: the gmv-stream binary. It parses the command line, loads the
//! configuration and hands each command to its module; the work happens in
//! the library crates.
//!
//! # Layout
//! - [`cli`]: the commands and their flags.
//! - [`config`]: the layered configuration tree and its validation.
//! - [`cmd`]: one module per command (`run`, `demo`, `generate`, `serve`,
//!   `report`, `config`).
//! - [`local`]: what a run writes on this machine besides the engine's
//!   work: the alert file, the HTTP feed, the progress line, the report and
//!   the summary.
//! - [`http`]: the live feed server on a runtime of its own.
//! - [`dead_letters`]: the dead-letter file, created at the first rejection.
//! - [`term`]: the progress line, and numbers and money for reading.
//! - [`supervise`]: a Kafka run's worker process, and the parent that
//!   turns a crash of the Kafka client into a plain error.
//!
//! # Exit codes
//! 0: done. 1: a runtime failure (input unreadable, cluster unreachable,
//! output not writable, a Kafka run's worker process crashed). 2: a usage or configuration error (nothing was
//! done): a bad flag or flag value, a configuration problem, a property
//! librdkafka refuses, a run report `gmv report` cannot take.
//! 130 / 143: stopped by SIGINT / SIGTERM (what was read is counted and
//! reported). The same for every command.

mod cli;
mod cmd;
mod config;
mod dead_letters;
mod http;
mod local;
mod supervise;
mod term;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use std::io::IsTerminal;
use std::process::ExitCode;

/// Exit code for invalid configuration or usage.
pub const EXIT_USAGE: u8 = 2;

/// How a command ended, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Done.
    Done,
    /// Stopped by a signal (its number).
    Signal(i32),
    /// Done, but the report covers only part of the input (exit 1).
    Incomplete,
    /// A worker process's own exit code, passed on.
    Exit(u8),
}

impl Ended {
    fn code(self) -> ExitCode {
        match self {
            Ended::Done => ExitCode::SUCCESS,
            Ended::Signal(signal) => ExitCode::from(128u8.saturating_add(signal as u8)),
            Ended::Incomplete => ExitCode::FAILURE,
            Ended::Exit(code) => ExitCode::from(code),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    init_logging(cli.log_format);
    let result = execute(cli);
    term::end_progress();
    match result {
        Ok(ended) => ended.code(),
        Err(e) => {
            if let Some(problems) = e.downcast_ref::<config::ConfigProblems>() {
                eprint!("gmv: {problems}");
                return ExitCode::from(EXIT_USAGE);
            }
            if let Some(usage) = e.downcast_ref::<cli::UsageError>() {
                eprintln!("gmv: {usage}");
                return ExitCode::from(EXIT_USAGE);
            }
            let (message, usage) = render_error(&e);
            eprintln!("gmv: error: {message}");
            if usage {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error as one line: each cause once (a message that ends with its
/// cause's text is not followed by that text again, as librdkafka's errors
/// would be three times over), then what to check for a Kafka error; and
/// whether it is the user's to fix before anything runs (exit 2).
fn render_error(e: &anyhow::Error) -> (String, bool) {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() {
            continue;
        }
        if let Some(last) = parts.last_mut() {
            if let Some(head) = last.strip_suffix(&format!(": {text}")) {
                *last = head.to_owned();
            } else if parts.iter().any(|p| p.contains(&text)) {
                continue;
            }
        }
        parts.push(text);
    }
    let mut message = parts.join(": ");
    let mut usage = false;
    // anyhow's own downcast also sees through a boxed task error, which
    // `chain` yields as its wrapper.
    let kafka = e.downcast_ref::<gmv_kafka::KafkaError>().or_else(|| {
        e.chain()
            .find_map(|cause| cause.downcast_ref::<gmv_kafka::KafkaError>())
    });
    if let Some(kafka) = kafka {
        let (hint, refused) = kafka_hint(kafka);
        usage = refused;
        if let Some(hint) = hint {
            message += &format!("; check {hint}");
        }
    }
    (message, usage)
}

/// What to check for a Kafka error, and whether it is a property
/// librdkafka refused (a configuration error).
fn kafka_hint(e: &gmv_kafka::KafkaError) -> (Option<&'static str>, bool) {
    use gmv_kafka::KafkaError as K;
    match e {
        K::Unreachable { .. } => (
            Some(
                "that the brokers given (--kafka, kafka.brokers) are up and reachable from here \
                 (host, port, firewall) and that [kafka.client] has the cluster's security \
                 settings; a slow cluster may need a longer --connect-timeout",
            ),
            false,
        ),
        K::Client {
            source: rdkafka::error::KafkaError::ClientConfig(..),
            ..
        } => (
            Some("the librdkafka properties in [kafka.client], [kafka.consumer] and [kafka.producer]"),
            true,
        ),
        K::Timeout { .. } => (
            Some("the brokers' health; a slow cluster may need a longer --connect-timeout"),
            false,
        ),
        K::Checkpoint { .. } => (
            Some("that the checkpoint directory (--checkpoint-dir, kafka.checkpoint.dir) can be written"),
            false,
        ),
        K::OutputsLost(_) => (
            Some("that the output topics exist and this client may write to them"),
            false,
        ),
        _ => (None, false),
    }
}

fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to a file or a collector stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(term::LogWriter);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => {
            term::use_json_logs();
            builder.json().init()
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<Ended> {
    let config_file = cli.config.as_deref();
    match cli.command {
        Command::Config(args) => cmd::config::print(&args, config_file),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "gmv",
                &mut std::io::stdout(),
            );
            Ok(Ended::Done)
        }
        Command::Generate(args) => cmd::generate::execute(&args, config_file),
        Command::Report(args) => cmd::report::execute(args),
        Command::Serve(args) => cmd::serve::execute(&args, config_file),
        Command::Run(args) => cmd::run::execute(&args, config_file),
        Command::Demo(args) => cmd::demo::execute(&args, config_file),
    }
}
