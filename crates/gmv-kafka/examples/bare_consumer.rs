//! The baseline for the Kafka benchmark: consumer-group members that only
//! count messages (and, with `--latency`, time them), with the client
//! settings gmv's members use, on the same broker and topic. What it reaches
//! is the ceiling for gmv's consumption on that box: `scripts/bench-kafka.sh`
//! prints gmv's rates as a ratio to it, and its latency beside gmv's.
//!
//! ```text
//! cargo run --release -p gmv-kafka --example bare_consumer -- \
//!     [--latency] [-X KEY=VALUE]... BROKERS TOPIC GROUP [THREADS] [IDLE_SECS] [MAX_SECS]
//! ```
//!
//! - `THREADS` members in one process, one `BaseConsumer` each (default 1;
//!   0 = one per core, as `gmv run --workers 0`).
//! - Stops once every member that can hold a partition has been assigned,
//!   messages have arrived, and no member has had a message or an assignment
//!   for `IDLE_SECS` (default 3); or after `MAX_SECS` (default 3600) in all.
//!   Every member stops at once: a member leaving early would hand its
//!   partitions to one still running, which would read them again.
//! - `--latency`: also records, per message, now − the message's timestamp
//!   (Kafka CreateTime, as gmv reads it) into an HDR histogram.
//! - `-X KEY=VALUE`: a librdkafka setting laid over the defaults below (the
//!   benchmark passes gmv's `kafka.client` and `kafka.consumer` tables);
//!   `-X debug=cgrp` prints librdkafka's group protocol log on stderr.
//!
//! On stderr: one line per assignment, and `bare consumer: ready` once every
//! member that can hold a partition has been assigned (the benchmark waits
//! for it before producing). On stdout, one JSON line: distinct messages,
//! seconds from the first message to the last and messages/s over that span,
//! the rate between 10% and 90% of the messages (`null` if the run is too
//! short to tell), messages fetched again after a rebalance (not counted),
//! why it stopped, and with `--latency` the percentiles in milliseconds.

use hdrhistogram::Histogram;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance,
};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage: bare_consumer [--latency] [-X KEY=VALUE]... BROKERS TOPIC GROUP [THREADS] [IDLE_SECS] [MAX_SECS]";

/// Messages a member counts locally before adding them to the shared count.
const FLUSH_EVERY: u64 = 1_000;
/// The shared count is sampled (time, count) each time it passes a multiple.
const SAMPLE_EVERY: u64 = 10_000;

/// The command line, checked.
struct Args {
    brokers: String,
    topic: String,
    group: String,
    threads: usize,
    idle: Duration,
    max: Duration,
    latency: bool,
    /// `-X` settings, applied after the defaults.
    overrides: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut latency = false;
    let mut overrides = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--latency" => latency = true,
            "-X" => {
                let setting = args.next().ok_or("-X needs KEY=VALUE")?;
                let (key, value) = setting
                    .split_once('=')
                    .ok_or_else(|| format!("-X {setting}: expected KEY=VALUE"))?;
                overrides.push((key.to_string(), value.to_string()));
            }
            "-h" | "--help" => return Err(String::new()),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            _ => positional.push(arg),
        }
    }
    if !(3..=6).contains(&positional.len()) {
        return Err(format!(
            "expected 3 to 6 arguments, got {}",
            positional.len()
        ));
    }
    let number = |index: usize, name: &str, default: u64| -> Result<u64, String> {
        positional.get(index).map_or(Ok(default), |text| {
            text.parse()
                .map_err(|_| format!("{name} must be a whole number, got `{text}`"))
        })
    };
    let threads = match number(3, "THREADS", 1)? {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => usize::try_from(n).map_err(|_| "THREADS is too large".to_string())?,
    };
    Ok(Args {
        brokers: positional[0].clone(),
        topic: positional[1].clone(),
        group: positional[2].clone(),
        threads,
        idle: Duration::from_secs(number(4, "IDLE_SECS", 3)?),
        max: Duration::from_secs(number(5, "MAX_SECS", 3600)?),
        latency,
        overrides,
    })
}

/// gmv's member settings (`consumer_config` in `src/source/member.rs`), plus
/// the cooperative-sticky assignor gmv is moving to, then the overrides.
fn consumer_config(args: &Args, client_id: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("queued.max.messages.kbytes", "32768")
        .set("partition.assignment.strategy", "cooperative-sticky");
    for (key, value) in &args.overrides {
        cfg.set(key, value);
        if key == "debug" {
            // rdkafka passes on only what the `log` crate would show (nothing
            // here) unless told otherwise.
            cfg.set_log_level(RDKafkaLogLevel::Debug);
        }
    }
    cfg
}

/// An `AtomicI64` on its own cache line: each partition's next offset is
/// written by the member that owns the partition, on every message.
#[repr(align(64))]
struct Padded(AtomicI64);

/// What the members share; written in batches, never per message except
/// the owned partition's next offset.
struct Shared {
    start: Instant,
    threads: usize,
    /// Members that can hold a partition: min(threads, partitions).
    can_hold: usize,
    /// Distinct messages counted so far (members add theirs in batches).
    count: AtomicU64,
    /// Microseconds since `start` of the latest message any member has had.
    last_message_us: AtomicU64,
    /// Microseconds since `start` of the latest assignment: idle time counts
    /// from it too (a member joining late still has its partitions to read).
    last_assigned_us: AtomicU64,
    /// Every member that can hold a partition has been assigned one.
    ready: AtomicBool,
    seen_any: AtomicBool,
    /// Set once: every member leaves its loop.
    stop: AtomicBool,
    stopped_by_max: AtomicBool,
    /// The next offset to count per partition (a rebalance can hand a
    /// partition over before its position was committed; what is fetched
    /// again is skipped, as gmv skips it).
    next_offset: Vec<Padded>,
    /// (seconds since start, count) each time the count passes a multiple
    /// of `SAMPLE_EVERY`.
    samples: parking_lot::Mutex<Vec<(f64, u64)>>,
    assigned: parking_lot::Mutex<HashSet<usize>>,
}

impl Shared {
    fn since_start_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Adds a member's pending messages and latest message time.
    fn flush(&self, pending: &mut u64, last_us: u64) {
        if *pending > 0 {
            let before = self.count.fetch_add(*pending, Ordering::Relaxed);
            let after = before + *pending;
            if after / SAMPLE_EVERY > before / SAMPLE_EVERY {
                let at = self.start.elapsed().as_secs_f64();
                self.samples.lock().push((at, after));
            }
            *pending = 0;
            self.seen_any.store(true, Ordering::Relaxed);
        }
        self.last_message_us.fetch_max(last_us, Ordering::Relaxed);
    }
}

/// One member's group callbacks: commits positions on revoke (so the next
/// owner starts where this one stopped) and reports assignments.
struct Member {
    index: usize,
    shared: Arc<Shared>,
}

/// librdkafka's own log lines (`-X debug=cgrp` and the like) and client
/// errors go to stderr: the example installs no `log` logger.
impl ClientContext for Member {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!(
            "bare consumer: member {} librdkafka {level:?} {fac}: {log_message}",
            self.index
        );
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        eprintln!(
            "bare consumer: member {} librdkafka error: {error}: {reason}",
            self.index
        );
    }
}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let revoked: HashSet<(String, i32)> = revoked
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let positions = match consumer.position() {
            Ok(positions) => positions,
            Err(error) => {
                eprintln!("bare consumer: member {} position: {error}", self.index);
                return;
            }
        };
        let mut commit = TopicPartitionList::new();
        for e in positions.elements() {
            if let Offset::Offset(offset) = e.offset() {
                if revoked.contains(&(e.topic().to_string(), e.partition())) {
                    let _ = commit.add_partition_offset(
                        e.topic(),
                        e.partition(),
                        Offset::Offset(offset),
                    );
                }
            }
        }
        if commit.count() > 0 {
            if let Err(error) = consumer.commit(&commit, CommitMode::Sync) {
                eprintln!(
                    "bare consumer: member {} commit on revoke: {error}",
                    self.index
                );
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                eprintln!(
                    "bare consumer: member {} assigned {partitions:?} at +{:.3}s",
                    self.index,
                    self.shared.start.elapsed().as_secs_f64()
                );
                self.shared
                    .last_assigned_us
                    .fetch_max(self.shared.since_start_us(), Ordering::Relaxed);
                let mut assigned = self.shared.assigned.lock();
                let was = assigned.len();
                if !partitions.is_empty() {
                    assigned.insert(self.index);
                }
                if was < self.shared.can_hold && assigned.len() >= self.shared.can_hold {
                    self.shared.ready.store(true, Ordering::Relaxed);
                    eprintln!(
                        "bare consumer: ready ({} of {} members assigned)",
                        assigned.len(),
                        self.shared.threads
                    );
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                eprintln!("bare consumer: member {} rebalance: {error}", self.index);
            }
        }
    }
}

/// What one member saw.
#[derive(Default)]
struct Seen {
    first: Option<f64>,
    last: Option<f64>,
    refetched: u64,
    errors: u64,
    untimed: u64,
    latency: Option<Histogram<u64>>,
}

fn latency_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 1 h at 3 significant digits, as gmv's own.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

fn now_epoch_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn run_member(args: &Args, shared: &Arc<Shared>, index: usize) -> Seen {
    let context = Member {
        index,
        shared: shared.clone(),
    };
    let consumer: BaseConsumer<Member> = consumer_config(args, &format!("bare-{index}"))
        .create_with_context(context)
        .expect("creating the consumer");
    consumer
        .subscribe(&[&args.topic])
        .expect("subscribing to the topic");
    let mut seen = Seen {
        latency: args.latency.then(latency_histogram),
        ..Seen::default()
    };
    let mut pending = 0u64;
    let mut last_us = 0u64;
    let mut last_warning: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                if let Some(next) = usize::try_from(m.partition())
                    .ok()
                    .and_then(|p| shared.next_offset.get(p))
                {
                    if m.offset() < next.0.load(Ordering::Relaxed) {
                        seen.refetched += 1;
                        continue;
                    }
                    next.0.store(m.offset() + 1, Ordering::Relaxed);
                }
                if let Some(histogram) = &mut seen.latency {
                    match m.timestamp().to_millis() {
                        Some(created_ms) => {
                            let micros =
                                now_epoch_us().saturating_sub(created_ms.saturating_mul(1000));
                            histogram.saturating_record(u64::try_from(micros).unwrap_or(0).max(1));
                        }
                        None => seen.untimed += 1,
                    }
                }
                last_us = shared.since_start_us();
                if seen.first.is_none() {
                    seen.first = Some(last_us as f64 / 1e6);
                }
                pending += 1;
                if pending >= FLUSH_EVERY {
                    shared.flush(&mut pending, last_us);
                    check_max(args, shared);
                }
            }
            Some(Err(error)) => {
                seen.errors += 1;
                // The client retries by itself; say so now and then.
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    eprintln!("bare consumer: member {index}: {error}; retrying");
                    last_warning = Some(Instant::now());
                }
            }
            None => {
                shared.flush(&mut pending, last_us);
                let busy_us = shared
                    .last_message_us
                    .load(Ordering::Relaxed)
                    .max(shared.last_assigned_us.load(Ordering::Relaxed));
                let quiet_us = shared.since_start_us().saturating_sub(busy_us);
                if shared.seen_any.load(Ordering::Relaxed)
                    && shared.ready.load(Ordering::Relaxed)
                    && quiet_us > u64::try_from(args.idle.as_micros()).unwrap_or(u64::MAX)
                {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                check_max(args, shared);
            }
        }
    }
    shared.flush(&mut pending, last_us);
    seen.last = (last_us > 0).then(|| last_us as f64 / 1e6);
    seen
}

fn check_max(args: &Args, shared: &Shared) {
    if shared.start.elapsed() >= args.max && !shared.stop.swap(true, Ordering::Relaxed) {
        shared.stopped_by_max.store(true, Ordering::Relaxed);
    }
}

/// Waits until `topic` exists (gmv creates it when started alongside);
/// returns its partition count.
fn wait_for_topic(args: &Args) -> Result<usize, String> {
    let probe: BaseConsumer<DefaultConsumerContext> = consumer_config(args, "bare-probe")
        .create()
        .map_err(|e| format!("creating a metadata client: {e}"))?;
    let deadline = Instant::now() + args.max;
    loop {
        let problem = match probe.fetch_metadata(Some(&args.topic), Duration::from_secs(5)) {
            Ok(metadata) => match metadata.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return Ok(t.partitions().len());
                }
                Some(t) => format!("topic not ready: {:?}", t.error()),
                None => "topic missing from metadata".into(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!("topic `{}` not available: {problem}", args.topic));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The rate between the samples at 10% and at 90% of the messages: the
/// steady state, without the group join and the tail.
fn mid_run_rate(samples: &[(f64, u64)], messages: u64) -> Option<f64> {
    let inside: Vec<_> = samples
        .iter()
        .filter(|(_, n)| *n * 10 >= messages && *n * 10 <= messages * 9)
        .collect();
    let (a, b) = (inside.first()?, inside.last()?);
    (b.0 > a.0).then(|| (b.1 - a.1) as f64 / (b.0 - a.0))
}

fn json_number(value: Option<f64>) -> String {
    value.map_or_else(|| "null".into(), |v| format!("{v:.0}"))
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("bare_consumer: {problem}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let partitions = match wait_for_topic(&args) {
        Ok(n) => n,
        Err(problem) => {
            eprintln!("bare_consumer: {problem}");
            std::process::exit(1);
        }
    };
    let shared = Arc::new(Shared {
        start,
        threads: args.threads,
        can_hold: args.threads.min(partitions),
        count: AtomicU64::new(0),
        last_message_us: AtomicU64::new(0),
        last_assigned_us: AtomicU64::new(0),
        ready: AtomicBool::new(false),
        seen_any: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        stopped_by_max: AtomicBool::new(false),
        next_offset: (0..partitions).map(|_| Padded(AtomicI64::new(0))).collect(),
        samples: parking_lot::Mutex::new(Vec::new()),
        assigned: parking_lot::Mutex::new(HashSet::new()),
    });
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.threads)
            .map(|index| {
                let (args, shared) = (&args, &shared);
                scope.spawn(move || run_member(args, shared, index))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let messages = shared.count.load(Ordering::Relaxed);
    let first = seen.iter().filter_map(|s| s.first).reduce(f64::min);
    let last = seen.iter().filter_map(|s| s.last).reduce(f64::max);
    let span = match (first, last) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => 0.0,
    };
    let rate = (span > 0.0).then(|| messages as f64 / span);
    let samples = shared.samples.lock().clone();
    let mid = mid_run_rate(&samples, messages);
    let stopped = if shared.stopped_by_max.load(Ordering::Relaxed) {
        "max_seconds"
    } else {
        "idle"
    };
    let refetched: u64 = seen.iter().map(|s| s.refetched).sum();
    let errors: u64 = seen.iter().map(|s| s.errors).sum();
    let mut line = format!(
        "{{\"mode\":\"{}\",\"threads\":{},\"partitions\":{partitions},\"messages\":{messages},\
         \"seconds\":{span:.3},\"messages_per_second\":{},\"mid_run_per_second\":{},\
         \"first_message_s\":{:.3},\"last_message_s\":{:.3},\"wall_s\":{:.3},\
         \"refetched\":{refetched},\"errors\":{errors},\"stopped\":\"{stopped}\"",
        if args.latency { "latency" } else { "count" },
        args.threads,
        json_number(rate),
        json_number(mid),
        first.unwrap_or(0.0),
        last.unwrap_or(0.0),
        start.elapsed().as_secs_f64(),
    );
    if args.latency {
        let mut histogram = latency_histogram();
        for s in &seen {
            if let Some(h) = &s.latency {
                // Same bounds: adding cannot fail.
                let _ = histogram.add(h);
            }
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        let untimed: u64 = seen.iter().map(|s| s.untimed).sum();
        line.push_str(&format!(
            ",\"latency_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3},\"count\":{},\"untimed\":{untimed}}}",
            ms(histogram.value_at_quantile(0.5)),
            ms(histogram.value_at_quantile(0.99)),
            ms(histogram.value_at_quantile(0.999)),
            ms(histogram.max()),
            histogram.len(),
        ));
    }
    line.push('}');
    println!("{line}");
}
