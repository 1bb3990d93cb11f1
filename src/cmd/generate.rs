//! `gmv generate`: the synthetic 11.11 stream, written as newline-delimited
//! JSON or produced into the input topic.

use crate::cli::{GenerateArgs, KafkaFlags, UsageError};
use crate::config::{Config, Loaded};
use crate::Ended;
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
        &KafkaFlags::default().overrides(args.kafka.as_deref()),
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
        let lifecycle = Lifecycle::new();
        lifecycle
            .cancel_on_signals()
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
    let sink: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.output)
                .with_context(|| format!("creating {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    for record in gmv_synth::Generator::new(synth) {
        out.write_all(&record.payload)?;
        out.write_all(b"\n")?;
    }
    out.flush().context("writing the generated stream")?;
    Ok(Ended::Done)
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
