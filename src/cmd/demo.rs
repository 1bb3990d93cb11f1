//! `gmv demo`: the night of 11.11 replayed at real scale. The synthetic
//! stream is produced into an embedded Kafka cluster (librdkafka's mock
//! cluster, in process) and consumed by the same consumer group,
//! checkpoints and publisher as a real run, with the scoreboard served; or,
//! with `--no-kafka`, fed straight to the workers.
//!
//! Event time and wall time are separate. The generator's [`Schedule`] puts
//! the records in event time: the first minute second by second at 2017's
//! rate (256,000 a second at 00:00:05), the rest of the day thinly sampled
//! by the day's shape. A [`Replay`] decides how fast that time passes on
//! the wall: the rush in real time, the rest as a time-lapse. So the
//! screen's transactions per second (counted by `settled_at`) reach the
//! night's real figures within seconds, and the whole day's curve follows
//! in a minute or two, without pushing 256,000 records a second through
//! the machine for longer than the rush.

use crate::cli::{DemoArgs, UsageError};
use crate::cmd::run::{kafka_source, split_source};
use crate::config::{Config, Loaded};
use crate::local::{summary, Local, Output};
use crate::term::grouped;
use crate::Ended;
use anyhow::{Context, Result};
use gmv_kafka::config::{KafkaConfig, StoreKind};
use gmv_kafka::generate::{GenerateOptions, Generated, Pacing};
use gmv_pipeline::chunks::{BufferPool, SynthChunks, DEFAULT_CHUNK_BYTES};
use gmv_pipeline::{Lifecycle, StopCause, Tick, TickSink};
use gmv_synth::{Replay, Schedule, Stage, SynthConfig};
use parking_lot::Mutex;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long every partition must be at its end, once the producer is done,
/// before the stream counts as ended.
const IDLE_AT_END: Duration = Duration::from_secs(2);

/// The rest of the day's default time-lapse: 86,400 s of event time in 60 s.
const DAY_IN_A_MINUTE: f64 = 1440.0;

/// Runs `gmv demo`.
pub fn execute(args: &DemoArgs, config_file: Option<&Path>) -> Result<Ended> {
    let mut loaded = Config::load(config_file, &args.engine.overrides())?;
    let window_seconds = loaded.settings.window.seconds() as u64;
    let night = Night::new(args, window_seconds)?;
    if args.no_http {
        loaded.config.http = None;
    } else if loaded.config.http.is_none() {
        loaded.config.http = Some(gmv_serve::ServeConfig::default());
    }
    let schedule = night.schedule(window_seconds);
    let synth = SynthConfig {
        seed: args.seed,
        window: loaded.settings.window,
        ..SynthConfig::default()
    }
    .scheduled(schedule);
    let linger = loaded.config.http.is_some() && !args.exit_when_done;
    night.announce(window_seconds, args.no_kafka);
    if args.no_kafka {
        let local = Local::open(&loaded, &args.engine)?;
        let pool = Arc::new(BufferPool::default());
        let chunks = Arc::new(SynthChunks::replayed(
            synth,
            night.replay(window_seconds),
            DEFAULT_CHUNK_BYTES,
            local.lifecycle.token(),
        ));
        let source = split_source(&loaded, chunks, pool)?;
        // The split source starts at once and ends with the stream, so the
        // run's own summary is printed then, over the busy time.
        return local.run(
            &loaded,
            &args.engine,
            source,
            Vec::new(),
            Output::Summary,
            linger,
        );
    }
    let cluster = embedded_cluster(&mut loaded)?;
    // The stream ends once the producer is done and the group has read it
    // all: the day's figures are printed then, not at Ctrl-C.
    loaded.config.kafka.exit_when_idle = Some(IDLE_AT_END);
    let local = Local::open(&loaded, &args.engine)?;
    // The run may not end as idle while the producer is still at it.
    let producing = Arc::new(AtomicBool::new(true));
    let (source, mut sinks) = kafka_source(&loaded, Some(producing.clone()))?;
    // The run's own summary would count the group join and the idle wait
    // at the end as busy: this one prints it instead.
    let first = Arc::new(OnceLock::new());
    let producer_report = Arc::new(Mutex::new(None));
    sinks.push(Box::new(Closing {
        first: first.clone(),
        rush_events: night.rush_events,
        events: args.events,
        consumed: 0,
        last_counted: None,
        rush_counted: None,
        producer: producer_report.clone(),
        lifecycle: local.lifecycle.clone(),
    }));
    let producer = {
        let mut config = loaded.config.kafka.clone();
        // The cluster keeps ~5 MiB per partition: compressed, that is about
        // five times the records (JSON compresses well), so a consumer a
        // moment behind in the rush still finds them.
        config
            .producer
            .entry("compression.type".into())
            .or_insert_with(|| "lz4".into());
        let unread = unread_limit(&config);
        let state = local.state.clone();
        let lifecycle = local.lifecycle.clone();
        let replay = night.replay(window_seconds);
        std::thread::Builder::new()
            .name("gmv-demo-producer".into())
            .spawn(move || {
                // Produce once the group is consuming every partition.
                let partitions = config.partitions as u64;
                let deadline = Instant::now() + Duration::from_secs(30);
                while state.status().partitions < partitions
                    && Instant::now() < deadline
                    && !lifecycle.is_cancelled()
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // Never more unread records than the cluster keeps: the
                // consumer's count comes from the latest snapshot, which only
                // lags what it has read.
                let may_send = Box::new(move |sent: u64| {
                    let read = state.latest().map_or(0, |s| s.figures.accounting.consumed);
                    sent.saturating_sub(read) <= unread
                });
                let _ = first.set(Instant::now());
                let generated = gmv_kafka::generate::produce_paced(
                    GenerateOptions {
                        config,
                        synth,
                        rate: None,
                        stop: lifecycle,
                        progress: None,
                    },
                    Pacing {
                        replay: Some(replay),
                        may_send: Some(may_send),
                    },
                );
                if let Ok(generated) = &generated {
                    *producer_report.lock() = Some(*generated);
                }
                producing.store(false, Ordering::SeqCst);
                generated
            })
            .context("starting the demo producer")?
    };
    let ended = local.run(
        &loaded,
        &args.engine,
        source,
        sinks,
        Output::Nothing,
        linger,
    );
    match producer.join() {
        Ok(Ok(generated)) => tracing::info!(
            delivered = generated.delivered,
            failed = generated.failed,
            slipped_s = format!("{:.2}", generated.slipped.as_secs_f64()),
            held_s = format!("{:.2}", generated.held.as_secs_f64()),
            "demo producer finished"
        ),
        Ok(Err(e)) => tracing::warn!("demo producer: {e:#}"),
        Err(_) => tracing::warn!("demo producer panicked"),
    }
    let _ = std::fs::remove_dir_all(&loaded.config.kafka.checkpoint.dir);
    drop(cluster);
    ended
}

/// What the demo plays, from its flags.
struct Night {
    /// Records in all.
    events: u64,
    /// Peak records per second of event time in the rush.
    peak_tps: u64,
    /// Seconds of event time in the rush (none without a rate).
    rush_seconds: u64,
    /// Records the rush takes.
    rush_events: u64,
    /// Event-time speeds of the rush and of the rest; `None` is unpaced.
    rush_speed: Option<f64>,
    rest_speed: Option<f64>,
}

impl Night {
    fn new(args: &DemoArgs, window_seconds: u64) -> Result<Self> {
        let speed = |name: &str, factor: f64| {
            if factor.is_finite() && factor >= 0.0 {
                Ok((factor > 0.0).then_some(factor))
            } else {
                Err(UsageError(format!(
                    "{name} must be a factor of 0 (as fast as it goes) or more, got {factor}"
                )))
            }
        };
        // Without a rush there is nothing to watch in real time: the day
        // goes as fast as it can unless a time-lapse is asked for.
        let default_lapse = if args.rate == 0 { 0.0 } else { DAY_IN_A_MINUTE };
        let rush_seconds = if args.rate == 0 {
            0
        } else {
            args.rush.min(window_seconds)
        };
        Ok(Self {
            events: args.events,
            peak_tps: args.rate,
            rush_seconds,
            rush_events: Schedule::rush_events(args.rate, rush_seconds).min(args.events),
            rush_speed: speed("--rush-time-lapse", args.rush_time_lapse)?,
            rest_speed: speed("--time-lapse", args.time_lapse.unwrap_or(default_lapse))?,
        })
    }

    fn schedule(&self, window_seconds: u64) -> Schedule {
        Schedule::midnight_rush(
            self.peak_tps,
            self.rush_seconds,
            self.events,
            window_seconds,
        )
    }

    fn replay(&self, window_seconds: u64) -> Replay {
        let rush_ms = self.rush_seconds * 1000;
        Replay::new(vec![
            Stage {
                until_ms: rush_ms,
                speed: self.rush_speed,
            },
            Stage {
                until_ms: window_seconds * 1000,
                speed: self.rest_speed,
            },
        ])
    }

    fn announce(&self, window_seconds: u64, no_kafka: bool) {
        let pace = |speed: Option<f64>| match speed {
            Some(1.0) => "in real time".to_string(),
            Some(s) => format!("at {s}x"),
            None => "as fast as it goes".to_string(),
        };
        let rest_seconds = window_seconds.saturating_sub(self.rush_seconds);
        let rest_events = self.events - self.rush_events;
        let rest = match self.rest_speed {
            _ if rest_events == 0 => "none left".to_string(),
            Some(s) => format!(
                "{rest_events} records over {rest_seconds} s of event time {} (~{:.0} s)",
                pace(Some(s)),
                rest_seconds as f64 / s
            ),
            None => format!(
                "{rest_events} records over {rest_seconds} s of event time {}",
                pace(None)
            ),
        };
        tracing::info!(
            rush = format!(
                "the first {} s of event time, {} records at up to {}/s, {}",
                self.rush_seconds,
                self.rush_events,
                self.peak_tps,
                pace(self.rush_speed)
            ),
            rest,
            path = if no_kafka {
                "straight to the workers"
            } else {
                "through the embedded Kafka"
            },
            "demo: the night of 11.11"
        );
    }
}

/// Records the embedded cluster can be trusted to hold unread: half its
/// ~5 MiB per partition, at ~180 bytes a record as produced, four times
/// more when the producer compresses (lz4 takes these batches to a fifth).
fn unread_limit(config: &KafkaConfig) -> u64 {
    const KEPT_PER_PARTITION: u64 = 5 << 20;
    const RECORD_BYTES: u64 = 180;
    let compressed = config
        .producer
        .get("compression.type")
        .is_some_and(|c| c != "none");
    let per_partition = KEPT_PER_PARTITION / 2 / RECORD_BYTES * if compressed { 4 } else { 1 };
    per_partition * u64::from(config.partitions.max(1).unsigned_abs())
}

/// Prints the day's figures when the stream ends (or is stopped), with
/// rates over the busy time: from the first record sent to the last one
/// counted, not the group join before it nor the serving after it.
struct Closing {
    /// When the first record was sent.
    first: Arc<OnceLock<Instant>>,
    /// Records of the rush, and in all.
    rush_events: u64,
    events: u64,
    /// Records counted as of the latest tick.
    consumed: u64,
    /// The tick that first showed the latest count.
    last_counted: Option<Instant>,
    /// The tick that first showed the whole rush counted.
    rush_counted: Option<Instant>,
    /// What the producer reported, once it is done.
    producer: Arc<Mutex<Option<Generated>>>,
    /// The run's, to tell a stream that ended from one that was stopped.
    lifecycle: Lifecycle,
}

impl TickSink for Closing {
    fn tick(&mut self, tick: &Tick<'_>) {
        let consumed = tick.snapshot.figures.accounting.consumed;
        let now = Instant::now();
        if consumed > self.consumed {
            self.consumed = consumed;
            self.last_counted = Some(now);
        }
        if self.rush_counted.is_none() && self.rush_events > 0 && consumed >= self.rush_events {
            self.rush_counted = Some(now);
        }
        if !tick.last {
            return;
        }
        let since_first = |at: Option<Instant>| match (self.first.get(), at) {
            (Some(first), Some(at)) => at.saturating_duration_since(*first),
            _ => Duration::ZERO,
        };
        let busy = since_first(self.last_counted);
        let mut out = summary(&tick.view.report(), busy);
        if let Some(rush) = self.rush_counted.map(|at| since_first(Some(at))) {
            out += &format!(
                "night: the rush's {} records counted {:.1}s after the first was sent ({} records/s)",
                grouped(self.rush_events),
                rush.as_secs_f64(),
                grouped((self.rush_events as f64 / rush.as_secs_f64().max(1e-9)) as u64),
            );
            let rest = self.events.saturating_sub(self.rush_events);
            if rest > 0 {
                out += &format!(
                    "; the rest of the day's {} in {:.1}s",
                    grouped(rest),
                    busy.saturating_sub(rush).as_secs_f64()
                );
            }
            out.push('\n');
        }
        if let Some(produced) = *self.producer.lock() {
            out += &format!(
                "producer: delivered {} ({} failed); the replay clock slipped {:.1}s; held {:.1}s for the consumer\n",
                grouped(produced.delivered),
                grouped(produced.failed),
                produced.slipped.as_secs_f64(),
                produced.held.as_secs_f64()
            );
            if produced.delivered > consumed {
                let why = if matches!(self.lifecycle.cause(), StopCause::Signal(_)) {
                    "not read before the stop"
                } else {
                    "never read: the embedded cluster keeps ~5 MiB per partition"
                };
                out += &format!(
                    "  {} records delivered were {why}\n",
                    grouped(produced.delivered - consumed)
                );
            }
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// Starts the embedded cluster and points `loaded` at it, with its topics
/// and a checkpoint directory of its own (its checkpoints must not outlive
/// it).
fn embedded_cluster(loaded: &mut Loaded) -> Result<gmv_kafka::mock::EmbeddedCluster> {
    let cluster =
        gmv_kafka::mock::EmbeddedCluster::start().context("starting the embedded Kafka")?;
    let config = &mut loaded.config.kafka;
    config.brokers = cluster.bootstrap();
    // The mock cluster has no CreateTopics API: make every topic here.
    cluster.create_topic(&config.input_topic, config.partitions)?;
    cluster.create_topic(&config.dead_letter_topic, config.partitions)?;
    cluster.create_topic(&config.snapshots_topic, 1)?;
    cluster.create_topic(&config.alerts_topic, 1)?;
    if config.checkpoint.store == StoreKind::Topic {
        cluster.create_topic(&config.checkpoint.topic, config.partitions)?;
    }
    config.checkpoint.dir = std::env::temp_dir().join(format!("gmv-demo-{}", std::process::id()));
    tracing::info!(brokers = %config.brokers, "embedded Kafka (librdkafka mock cluster) started");
    Ok(cluster)
}
