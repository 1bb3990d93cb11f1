//! The baseline for the Kafka benchmark: a consumer-group member that only
//! counts messages, with the client settings gmv's members use, on the same
//! broker and topic. What it reaches is the ceiling for gmv's consumption
//! on that box (`scripts/bench-kafka.sh` prints gmv's rates as a ratio to it).
//!
//! `cargo run --release -p gmv-kafka --example bare_consumer -- BROKERS TOPIC GROUP [THREADS] [IDLE_SECS]`
//!
//! Prints one JSON line: messages, seconds from the first message to the
//! last, and messages/s over that span, plus the rate in the middle half.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bare_consumer BROKERS TOPIC GROUP [THREADS] [IDLE_SECS]");
        std::process::exit(2);
    }
    let (brokers, topic, group) = (&args[1], &args[2], &args[3]);
    let threads: usize = args.get(4).and_then(|t| t.parse().ok()).unwrap_or(1);
    let idle = Duration::from_secs(args.get(5).and_then(|t| t.parse().ok()).unwrap_or(3));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // (time since start, count) samples, for the first/last message and the middle.
    let samples = Arc::new(parking_lot::Mutex::new(Vec::<(f64, u64)>::new()));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (brokers, topic, group) = (brokers.clone(), topic.clone(), group.clone());
            let (count, samples) = (count.clone(), samples.clone());
            std::thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("group.id", &group)
                    .set("client.id", format!("bare-{i}"))
                    .set("enable.auto.commit", "false")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.wait.max.ms", "10")
                    .set("fetch.queue.backoff.ms", "10")
                    .set("session.timeout.ms", "10000")
                    .set("heartbeat.interval.ms", "1000")
                    .set("queued.max.messages.kbytes", "32768")
                    .create()
                    .expect("consumer");
                consumer.subscribe(&[&topic]).expect("subscribe");
                let mut last = Instant::now();
                let mut bytes = 0usize;
                loop {
                    match consumer.poll(Duration::from_millis(50)) {
                        Some(Ok(m)) => {
                            bytes += m.payload().map_or(0, <[u8]>::len);
                            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                            if n % 50_000 == 0 {
                                samples.lock().push((start.elapsed().as_secs_f64(), n));
                            }
                            last = Instant::now();
                        }
                        Some(Err(e)) => eprintln!("bare consumer: {e}"),
                        None if last.elapsed() > idle && count.load(Ordering::Relaxed) > 0 => break,
                        None => {}
                    }
                }
                bytes
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let samples = samples.lock().clone();
    let n = count.load(Ordering::Relaxed);
    let (first, last) = (samples.first().copied(), samples.last().copied());
    let span = match (first, last) {
        (Some((a, _)), Some((b, _))) if b > a => b - a,
        _ => 0.0,
    };
    let rate = match (first, last) {
        (Some((a, na)), Some((b, nb))) if b > a => (nb - na) as f64 / (b - a),
        _ => 0.0,
    };
    let mid = if samples.len() >= 4 {
        let (a, b) = (samples[samples.len() / 4], samples[samples.len() * 3 / 4]);
        (b.1 - a.1) as f64 / (b.0 - a.0).max(1e-9)
    } else {
        rate
    };
    println!(
        "{{\"messages\":{n},\"seconds\":{span:.3},\"messages_per_second\":{rate:.0},\"mid_run_per_second\":{mid:.0}}}"
    );
}
