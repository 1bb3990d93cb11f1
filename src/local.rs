//! What a run does on this machine around the pipeline: the signal
//! handling, the live view's HTTP feed, the alert file, the progress line,
//! and at the end the report, the summary, and (for the demo) serving on
//! until Ctrl-C.
//!
//! The report JSON goes to `--report FILE`; without it, to stdout when
//! stdout is not a terminal (a pipe or a file), and on a terminal to a file
//! the command chooses ([`ReportTo::choose`]), with a summary printed
//! instead. Every file written is said on stderr.

use crate::cli::{EngineFlags, Progress};
use crate::config::Loaded;
use crate::dead_letters::LazyDeadLetters;
use crate::term;
use crate::{http, Ended};
use anyhow::{Context, Result};
use gmv_core::output::{Report, Snapshot};
use gmv_core::sink::LiveSink;
use gmv_core::view::{LiveState, LiveView};
use gmv_pipeline::sinks::{write_output, AlertFile, LinesMode};
use gmv_pipeline::{Lifecycle, LiveSinks, Outcome, RunOptions, Source, StopCause, Tick, TickSink};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a report's JSON goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTo {
    /// A file (written whole, safely: see [`write_output`]).
    File(PathBuf),
    /// Standard output.
    Stdout,
}

impl ReportTo {
    /// `--report`; without it stdout, unless stdout is a terminal (20 MB of
    /// JSON help no one there): then `on_terminal`.
    pub fn choose(flag: Option<&Path>, on_terminal: impl FnOnce() -> PathBuf) -> Self {
        match flag {
            Some(path) if path.as_os_str() == "-" => ReportTo::Stdout,
            Some(path) => ReportTo::File(path.to_owned()),
            None if io::stdout().is_terminal() => ReportTo::File(on_terminal()),
            None => ReportTo::Stdout,
        }
    }
}

/// What the end of a run prints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The report JSON: see the module docs.
    Report,
    /// The day's figures in a few lines (the demo).
    Summary,
    /// Nothing (the command prints what it wants itself).
    Nothing,
}

/// The local side of one run.
pub struct Local {
    /// The run's shutdown state (signals cancel it).
    pub lifecycle: Lifecycle,
    /// What HTTP readers see; the publisher keeps it current.
    pub state: Arc<LiveState>,
    view: LiveView,
    alerts: Option<Arc<AlertFile>>,
    http: Option<http::Server>,
    progress: bool,
    report_to: Option<ReportTo>,
    expected_records: Option<u64>,
    /// A report of part of the input is fine (see `--allow-partial`).
    allow_partial: bool,
    dead_letters: Option<Arc<LazyDeadLetters>>,
}

impl Local {
    /// Installs the signal handlers, opens the alert file and starts the HTTP
    /// feed, per flags and config.
    pub fn open(loaded: &Loaded, flags: &EngineFlags) -> Result<Self> {
        let lifecycle = Lifecycle::new();
        lifecycle
            .cancel_on_signals(loaded.config.engine.shutdown_grace)
            .context("installing signal handlers")?;
        let view = LiveView::new(Arc::new(loaded.settings.clone()));
        let state = Arc::new(LiveState::new(view.index()));
        let alerts = flags
            .alerts
            .as_deref()
            .map(|path| AlertFile::open(path, LinesMode::Truncate))
            .transpose()?;
        let http = loaded
            .config
            .http
            .as_ref()
            .map(|config| http::Server::start(config, state.clone()))
            .transpose()?;
        Ok(Self {
            lifecycle,
            state,
            view,
            alerts,
            http,
            progress: match flags.progress {
                Progress::Always => true,
                Progress::Never => false,
                Progress::Auto => io::stderr().is_terminal(),
            },
            report_to: None,
            expected_records: None,
            allow_partial: false,
            dead_letters: None,
        })
    }

    /// Where the report goes, when the command has chosen (otherwise
    /// `--report`, or stdout).
    pub fn report_to(&mut self, to: ReportTo) {
        self.report_to = Some(to);
    }

    /// About how many records the input holds: the progress line shows a
    /// percentage and the time left.
    /// Accepts a report that covers only part of the input.
    pub fn allow_partial(&mut self, allow: bool) {
        self.allow_partial = allow;
    }

    /// Sets how many records the input holds, for the progress line.
    pub fn expect_records(&mut self, records: u64) {
        self.expected_records = Some(records).filter(|&n| n > 0);
    }

    /// The run's dead-letter file, said at the end with how many it kept.
    pub fn dead_letters(&mut self, dead_letters: Arc<LazyDeadLetters>) {
        self.dead_letters = Some(dead_letters);
    }

    /// The live feed, for a command that publishes to it directly.
    pub fn feed(&self) -> Option<Arc<dyn LiveSink>> {
        self.http.as_ref().map(|server| server.feed())
    }

    /// Runs `source` with the local sinks plus `extra`, then writes what
    /// `output` says and, with `linger`, serves on until a signal.
    pub fn run(
        self,
        loaded: &Loaded,
        flags: &EngineFlags,
        source: Box<dyn Source>,
        extra: Vec<Box<dyn TickSink>>,
        output: Output,
        linger: bool,
    ) -> Result<Ended> {
        let Local {
            lifecycle,
            state,
            view,
            alerts,
            http,
            progress,
            report_to,
            expected_records,
            dead_letters,
            allow_partial,
        } = self;
        let mut live: Vec<Arc<dyn LiveSink>> = Vec::new();
        if let Some(alerts) = &alerts {
            live.push(alerts.clone());
        }
        if let Some(server) = &http {
            live.push(server.feed());
        }
        let mut sinks: Vec<Box<dyn TickSink>> = vec![Box::new(LiveSinks(live))];
        if progress {
            sinks.push(Box::new(ProgressLine::new(
                expected_records,
                lifecycle.clone(),
            )));
        }
        sinks.extend(extra);
        let run = gmv_pipeline::run(
            &lifecycle,
            source,
            view,
            RunOptions {
                interval: loaded.config.publish.interval,
                sinks,
                state: state.clone(),
            },
        );
        term::end_progress();
        let outcome = match run {
            Ok(outcome) => outcome,
            Err(error) => {
                if let Some(server) = http {
                    server.stop()?;
                }
                return Err(task_error(error));
            }
        };
        log_done(&outcome, &state);
        let partial = says_what_is_missing(&outcome.report, allow_partial);
        if let Some(alerts) = &alerts {
            alerts.finish().context("writing alerts")?;
        }
        let report_to = match output {
            Output::Report => Some(report_to.unwrap_or_else(|| {
                ReportTo::choose(flags.report.as_deref(), || PathBuf::from("gmv-report.json"))
            })),
            Output::Summary | Output::Nothing => flags.report.clone().map(ReportTo::File),
        };
        match &report_to {
            Some(ReportTo::File(path)) => write_report(&outcome.report, path)?,
            Some(ReportTo::Stdout) => {
                let mut out = io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &outcome.report)
                    .context("writing the report to stdout")?;
                writeln!(out).context("writing the report to stdout")?;
            }
            None => {}
        }
        let summarise = match output {
            Output::Summary => true,
            Output::Report => {
                matches!(report_to, Some(ReportTo::File(_))) && io::stdout().is_terminal()
            }
            Output::Nothing => false,
        };
        if summarise {
            print!("{}", summary(&outcome.report, outcome.busy));
        }
        if let Some(dead_letters) = &dead_letters {
            match dead_letters.kept() {
                0 => {}
                kept => term::say(&format!(
                    "{} rejected record(s) kept in {}",
                    term::grouped(kept),
                    dead_letters.path().display()
                )),
            }
        }
        let mut ended = match outcome.cause {
            StopCause::Signal(signal) => {
                tracing::warn!("stopped by a signal; the report covers what was read");
                Ended::Signal(signal)
            }
            _ if partial => Ended::Incomplete,
            _ => Ended::Done,
        };
        if let Some(server) = http {
            if linger && ended == Ended::Done {
                tracing::info!(url = %server.url(), "the stream has ended; still serving the scoreboard (Ctrl-C to stop)");
                while lifecycle.signal().is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                ended = Ended::Signal(lifecycle.signal().unwrap_or(2));
            }
            server.stop()?;
        }
        Ok(ended)
    }
}

/// Says on stderr which partitions of the input a report leaves out, if
/// any; returns whether that makes the run incomplete.
fn says_what_is_missing(report: &Report, allow_partial: bool) -> bool {
    let accounting = &report.figures.accounting;
    let missing = &accounting.missing_partitions;
    if missing.is_empty() {
        return false;
    }
    let names: Vec<String> = missing
        .iter()
        .map(|p| format!("{}/{}", p.topic, p.partition))
        .collect();
    let total = accounting.partitions.len() + missing.len();
    if allow_partial {
        tracing::info!(
            missing = %names.join(", "),
            "the report covers {} of {total} partitions (--allow-partial); the group's other members hold the rest",
            accounting.partitions.len()
        );
        false
    } else {
        tracing::error!(
            missing = %names.join(", "),
            "the report covers only {} of {total} partitions; other members of the group held the rest. Run one process per group to the end, or pass --allow-partial to each of several",
            accounting.partitions.len()
        );
        true
    }
}

/// A task's error for the binary's error report, keeping a Kafka error's
/// type so that its hint and exit code can be found (`anyhow!` on a boxed
/// error keeps only its text).
pub fn task_error(error: gmv_pipeline::TaskError) -> anyhow::Error {
    match error.downcast::<gmv_kafka::KafkaError>() {
        Ok(kafka) => anyhow::Error::new(*kafka),
        Err(other) => anyhow::anyhow!(other),
    }
}

fn log_done(outcome: &Outcome, state: &LiveState) {
    let a = &outcome.report.figures.accounting;
    let seconds = outcome.busy.as_secs_f64().max(1e-9);
    let latency = state.latency().percentiles();
    let memory = state.memory();
    tracing::info!(
        consumed = a.consumed,
        rejected = a.rejected,
        seconds = format!("{seconds:.3}"),
        events_per_second = (a.consumed as f64 / seconds) as u64,
        latency_p50_ms = latency.p50,
        latency_p99_ms = latency.p99,
        latency_p999_ms = latency.p999,
        dedup_ids = memory.dedup_ids,
        dedup_mib = memory.dedup_bytes >> 20,
        "done"
    );
}

/// Writes the report without harming what its path names (see
/// [`gmv_pipeline::sinks::OutputFile`]).
fn write_report(report: &Report, path: &Path) -> Result<()> {
    write_output(path, |w| {
        serde_json::to_writer_pretty(&mut *w, report)?;
        w.write_all(b"\n")
    })?;
    if path.as_os_str() != "-" {
        term::say(&format!("report written to {}", path.display()));
    }
    Ok(())
}

/// The progress line on stderr, at most once a second: records, and with
/// an expected size the share done and the time left.
struct ProgressLine {
    last: Instant,
    expected: Option<u64>,
    lifecycle: Lifecycle,
}

impl ProgressLine {
    fn new(expected: Option<u64>, lifecycle: Lifecycle) -> Self {
        Self {
            last: Instant::now() - Duration::from_secs(1),
            expected,
            lifecycle,
        }
    }
}

impl TickSink for ProgressLine {
    fn tick(&mut self, tick: &Tick<'_>) {
        if self.last.elapsed() < Duration::from_secs(1) && !tick.last {
            return;
        }
        self.last = Instant::now();
        // The last tick of an input read to its end is all of it, whatever
        // the estimate said; one cut short by a signal or a failure is not.
        let ended = tick.last
            && matches!(
                self.lifecycle.cause(),
                StopCause::Running | StopCause::Finished
            );
        term::show_progress(&progress_text(
            tick.snapshot,
            tick.elapsed,
            self.expected,
            ended,
        ));
    }
}

fn progress_text(
    snapshot: &Snapshot,
    elapsed: Duration,
    expected: Option<u64>,
    ended: bool,
) -> String {
    let f = &snapshot.figures;
    let consumed = f.accounting.consumed;
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let rate = consumed as f64 / seconds;
    let mut line = format!("{} records", term::grouped(consumed));
    if let Some(expected) = expected {
        // The size is an estimate: never claim done before the end.
        let done = if ended {
            1.0
        } else {
            (consumed as f64 / expected as f64).min(0.99)
        };
        line += &format!("  {:.0}%", done * 100.0);
        if !ended && done > 0.0 {
            line += &format!(
                "  {} left",
                term::short_duration(seconds * (1.0 - done) / done)
            );
        }
    }
    line += &format!(
        "  {:.2}M/s  GMV {}  rejected {}",
        rate / 1e6,
        term::cny_words(&f.gmv_cny),
        term::grouped(f.accounting.rejected)
    );
    if !f.accounting.partitions.is_empty() {
        line += &format!("  partitions {}", f.accounting.partitions.len());
    }
    line
}

/// The day's figures in a few lines, in the style of the 11.11 press release.
pub fn summary(report: &Report, busy: Duration) -> String {
    let f = &report.figures;
    let mut out = format!(
        "GMV {} from {} transactions; {:.1}% on mobile\n",
        term::cny_with_usd(&f.gmv_cny, &f.gmv_usd),
        term::grouped(f.transactions),
        f.mobile_share * 100.0
    );
    for t in &f.thresholds {
        out += &format!(
            "  merchants over {}: {}\n",
            term::cny_words(&t.cny),
            term::grouped(t.merchants)
        );
    }
    out += &format!(
        "peak {} transactions/s at {}; {} merchants\n",
        term::grouped(f.peak_tps),
        f.peak_second.as_deref().unwrap_or("-"),
        term::grouped(f.merchants)
    );
    out += &format!(
        "accounting: consumed {} = counted {} + rejected {} ({:.2}s, {:.2}M records/s)\n",
        term::grouped(f.accounting.consumed),
        term::grouped(f.accounting.counted),
        term::grouped(f.accounting.rejected),
        busy.as_secs_f64(),
        f.accounting.consumed as f64 / busy.as_secs_f64().max(1e-9) / 1e6
    );
    out
}
