//! `gmv generate`: the synthetic 11.11 stream, written as newline-delimited
//! JSON or produced into the input topic.

use crate::cli::{GenerateArgs, KafkaFlags, UsageError};
use crate::config::{check_kafka_properties, Config, ConfigProblems, Loaded, PropertyCheck};
use crate::{term, Ended};
use anyhow::{Context, Result};
use gmv_pipeline::Lifecycle;
use gmv_synth::SynthConfig;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;

/// Runs `gmv generate`.
pub fn execute(args: &GenerateArgs, config_file: Option<&Path>) -> Result<Ended> {
    let loaded = Config::load(
        config_file,
        &args
            .connect
            .over(KafkaFlags::default().overrides(args.kafka.as_deref())),
    )?;
    for (name, share) in [
        ("--duplicate-share", args.duplicate_share),
        ("--conflict-share", args.conflict_share),
        ("--malformed-share", args.malformed_share),
        ("--outside-window-share", args.outside_window_share),
        ("--foreign-share", args.foreign_share),
    ] {
        if !(0.0..=0.5).contains(&share) {
            return Err(
                UsageError(format!("{name} must be between 0 and 0.5, got {share}")).into(),
            );
        }
    }
    if args.merchants == 0 {
        return Err(UsageError("--merchants must be at least 1".into()).into());
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
        let refused = check_kafka_properties(&loaded.config.kafka, PropertyCheck::NamesAndValues);
        if !refused.is_empty() {
            return Err(ConfigProblems::from_errors(refused).into());
        }
        let lifecycle = Lifecycle::new();
        lifecycle
            .cancel_on_signals(loaded.config.engine.shutdown_grace)
            .context("installing signal handlers")?;
        let generated = produce(
            &loaded,
            synth,
            Some(args.rate),
            &lifecycle,
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
        if generated.failed > 0 {
            anyhow::bail!("{} records could not be produced", generated.failed);
        }
        return Ok(match lifecycle.signal() {
            Some(signal) => Ended::Signal(signal),
            None => Ended::Done,
        });
    }
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && io::stdout().is_terminal() {
        return Err(UsageError(
            "will not write the generated stream to a terminal: pass -o FILE, \
             or pipe it, e.g. `gmv generate | gmv run --input -`"
                .into(),
        )
        .into());
    }
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.output)
                .with_context(|| format!("creating {}", args.output.display()))?,
        )
    };
    let mut out = CountingWriter {
        inner: BufWriter::with_capacity(1 << 20, sink),
        bytes: 0,
    };
    let mut records = 0u64;
    let written: io::Result<()> = (|| {
        for record in gmv_synth::Generator::new(synth) {
            out.write_all(&record.payload)?;
            out.write_all(b"\n")?;
            records += 1;
        }
        out.flush()
    })();
    match written {
        // A reader that has seen enough (`| head`) is not a failure.
        Err(e) if to_stdout && e.kind() == io::ErrorKind::BrokenPipe => return Ok(Ended::Done),
        other => other.with_context(|| format!("writing {}", args.output.display()))?,
    }
    if !to_stdout {
        term::say(&format!(
            "wrote {} records ({} bytes) to {}",
            term::grouped(records),
            term::grouped(out.bytes),
            args.output.display()
        ));
    }
    Ok(Ended::Done)
}

/// Counts the bytes written through it, for the closing summary.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Produces the synthetic stream into `loaded.config.kafka.input_topic`.
pub fn produce(
    loaded: &Loaded,
    synth: SynthConfig,
    rate: Option<u64>,
    stop: &Lifecycle,
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
        rate: rate.filter(|&r| r > 0),
        stop: stop.clone(),
        progress,
    })
    .context("producing the synthetic stream")?;
    Ok(generated)
}
