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
//!
//! # Exit codes
//! 0: done. 1: a runtime failure (input unreadable, cluster unreachable,
//! output not writable). 2: a usage or configuration error (nothing was
//! done). 130 / 143: stopped by SIGINT / SIGTERM (what was read is counted
//! and reported).

mod cli;
mod cmd;
mod config;
mod http;
mod local;

use clap::Parser;
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
}

impl Ended {
    fn code(self) -> ExitCode {
        match self {
            Ended::Done => ExitCode::SUCCESS,
            Ended::Signal(signal) => ExitCode::from(128u8.saturating_add(signal as u8)),
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
    match execute(cli) {
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
            eprintln!("gmv: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: logs piped to a file or a collector stay plain.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}

fn execute(cli: Cli) -> anyhow::Result<Ended> {
    let config_file = cli.config.as_deref();
    match cli.command {
        Command::Config => cmd::config::print(config_file),
        Command::Generate(args) => cmd::generate::execute(&args, config_file),
        Command::Report(args) => cmd::report::execute(args),
        Command::Serve(args) => cmd::serve::execute(&args, config_file),
        Command::Run(args) => cmd::run::execute(&args, config_file),
        Command::Demo(args) => cmd::demo::execute(&args, config_file),
    }
}
