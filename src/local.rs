//! What a run does on this machine around the pipeline: the signal
//! handling, the live view's HTTP feed, the alert file, the progress line,
//! and at the end the report, the summary, and (for the demo) serving on
//! until Ctrl-C.

use crate::cli::{EngineFlags, Progress};
use crate::config::Loaded;
use crate::http;
use crate::Ended;
use anyhow::{Context, Result};
use gmv_core::output::{Report, Snapshot};
use gmv_core::sink::LiveSink;
use gmv_core::view::{LiveState, LiveView};
use gmv_pipeline::sinks::{write_output, AlertFile, LinesMode};
use gmv_pipeline::{Lifecycle, LiveSinks, Outcome, RunOptions, Source, StopCause, Tick, TickSink};
use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the end of a run prints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The report JSON, to stdout unless `--report` names a file.
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
}

impl Local {
    /// Installs the signal handlers, opens the alert file and starts the HTTP
    /// feed, per flags and config.
    pub fn open(loaded: &Loaded, flags: &EngineFlags) -> Result<Self> {
        let lifecycle = Lifecycle::new();
        lifecycle
            .cancel_on_signals()
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
        })
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
            sinks.push(Box::new(ProgressLine::new()));
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
        if progress {
            eprintln!();
        }
        let outcome = match run {
            Ok(outcome) => outcome,
            Err(error) => {
                if let Some(server) = http {
                    server.stop()?;
                }
                return Err(anyhow::anyhow!(error));
            }
        };
        log_done(&outcome, &state);
        if let Some(alerts) = &alerts {
            alerts.finish().context("writing alerts")?;
        }
        match (&flags.report, output) {
            (Some(path), _) => write_report(&outcome.report, path)?,
            (None, Output::Report) => {
                let mut out = io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &outcome.report)
                    .context("writing the report to stdout")?;
                writeln!(out)?;
            }
            (None, Output::Summary | Output::Nothing) => {}
        }
        if output == Output::Summary {
            print!("{}", summary(&outcome.report, outcome.busy));
        }
        let mut ended = match outcome.cause {
            StopCause::Signal(signal) => {
                tracing::warn!("stopped by a signal; the report covers what was read");
                Ended::Signal(signal)
            }
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
fn write_report(report: &Report, path: &std::path::Path) -> Result<()> {
    write_output(path, |w| {
        serde_json::to_writer_pretty(&mut *w, report)?;
        w.write_all(b"\n")
    })?;
    tracing::info!(path = %path.display(), "report written");
    Ok(())
}

/// The progress line on stderr, at most once a second.
struct ProgressLine {
    last: Instant,
}

impl ProgressLine {
    fn new() -> Self {
        Self {
            last: Instant::now() - Duration::from_secs(1),
        }
    }
}

impl TickSink for ProgressLine {
    fn tick(&mut self, tick: &Tick<'_>) {
        if self.last.elapsed() < Duration::from_secs(1) && !tick.last {
            return;
        }
        self.last = Instant::now();
        print_progress(tick.snapshot, tick.elapsed);
    }
}

fn print_progress(snapshot: &Snapshot, elapsed: Duration) {
    let f = &snapshot.figures;
    let rate = f.accounting.consumed as f64 / elapsed.as_secs_f64().max(1e-9);
    let partitions = match f.accounting.partitions.len() {
        0 => String::new(),
        n => format!("  partitions {n}"),
    };
    eprint!(
        "\r{} records  {:.2}M/s  GMV CNY {}  rejected {}{partitions}   ",
        f.accounting.consumed,
        rate / 1e6,
        f.gmv_cny,
        f.accounting.rejected,
    );
}

/// The day's figures in a few lines, in the style of the 11.11 press release.
pub fn summary(report: &Report, busy: Duration) -> String {
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
        busy.as_secs_f64(),
        f.accounting.consumed as f64 / busy.as_secs_f64().max(1e-9) / 1e6
    );
    out
}
