//! Load: 1,000 concurrent `/api/live` readers on loopback while a partition
//! processes events. Checks that the processor's events/s drops by less than
//! 10% with the readers attached, that every reader keeps receiving ticks,
//! and that memory stays bounded, also with 100 readers that never read.
//!
//! Bounded in time (about a minute in release): run it with
//! `cargo test -p gmv-serve --release --test load -- --ignored --nocapture`.
//! The figures are printed. Readers, server and processor share this
//! process and its two cores, so the readers' own CPU counts against the
//! processor: the measured drop is an upper bound of the server's cost.

use gmv_core::output::{AlertRecord, Snapshot};
use gmv_core::partition::Partition;
use gmv_core::sink::LiveSink;
use gmv_core::view::{LiveState, LiveView, PartitionKey};
use gmv_core::Settings;
use gmv_serve::{LiveFeed, ServeConfig};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const READERS: usize = 1_000;
const STALLED: usize = 100;
/// Baseline/loaded pairs, alternated so drifts hit both alike.
const ROUNDS: usize = 4;
/// Passes over the payloads per phase, each into a fresh partition, so every
/// phase does exactly the same work.
const PASSES: usize = 2;
const INTERVAL: Duration = Duration::from_millis(500);
const PAYLOADS: u64 = 2_000_000;
const BATCH: usize = 4_096;
/// How long the memory stage streams to connected and stalled readers.
const SOAK: Duration = Duration::from_secs(10);

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The latest snapshot and alerts of the partition being fed, for the
/// publisher thread.
struct Current(Mutex<(Arc<Snapshot>, Vec<AlertRecord>)>);

/// Processes every payload `PASSES` times, each pass into a fresh partition
/// (so no pass sees redeliveries), and returns events/s.
fn process_phase(current: &Current, payloads: &[Vec<u8>]) -> f64 {
    let settings = Arc::new(Settings::defaults());
    let mut busy = Duration::ZERO;
    for _ in 0..PASSES {
        let mut partition = Partition::new(settings.clone(), 20_000_000);
        let start = Instant::now();
        let mut position = 0;
        for batch in payloads.chunks(BATCH) {
            partition.process_each(
                batch.iter().map(|p| {
                    position += 1;
                    ((), position, p.as_slice())
                }),
                |_, _, _| {},
            );
        }
        busy += start.elapsed();
        let mut view = LiveView::new(settings.clone());
        let applied = view.apply(&PartitionKey::split(0), "load", &partition.take_delta());
        let alerts = applied
            .crossings
            .iter()
            .take(2)
            .map(|c| view.alert_record(c))
            .collect();
        *current.0.lock() = (Arc::new(view.snapshot(0, 500, Default::default())), alerts);
    }
    (payloads.len() * PASSES) as f64 / busy.as_secs_f64()
}

struct Readers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Snapshot events received, per reader.
    snapshots: Arc<Vec<AtomicU64>>,
    bytes: Arc<AtomicU64>,
}

/// Opens `n` streams that read everything (with 8 KiB buffers), counting
/// snapshot events.
async fn connect_readers(addr: SocketAddr, n: usize) -> Readers {
    let stop = CancellationToken::new();
    let snapshots: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /api/live HTTP/1.1\r\nHost: load\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .unwrap();
        let (stop, snapshots, bytes) = (stop.clone(), snapshots.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            const NEEDLE: &[u8] = b"event: snapshot";
            let mut buf = vec![0u8; 8192];
            let mut carry = 0usize;
            loop {
                let n = tokio::select! {
                    () = stop.cancelled() => return,
                    read = socket.read(&mut buf[carry..]) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    },
                };
                bytes.fetch_add(n as u64, Relaxed);
                let filled = carry + n;
                let found = buf[..filled]
                    .windows(NEEDLE.len())
                    .filter(|w| *w == NEEDLE)
                    .count();
                snapshots[i].fetch_add(found as u64, Relaxed);
                // Keep a tail shorter than the needle, so a split match is
                // seen once and a whole one never twice.
                carry = (NEEDLE.len() - 1).min(filled);
                buf.copy_within(filled - carry..filled, 0);
            }
        }));
    }
    Readers {
        stop,
        tasks,
        snapshots,
        bytes,
    }
}

impl Readers {
    async fn close(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[test]
#[ignore = "load test, ~1 min in release: cargo test -p gmv-serve --release --test load -- --ignored --nocapture"]
fn a_thousand_live_readers_cost_the_processor_under_ten_percent() {
    let payloads: Vec<Vec<u8>> = gmv_synth::Generator::new(gmv_synth::SynthConfig {
        events: PAYLOADS,
        seed: 2017,
        ..Default::default()
    })
    .map(|r| r.payload)
    .collect();
    let empty = LiveView::new(Arc::new(Settings::defaults()));
    let current = Arc::new(Current(Mutex::new((
        Arc::new(empty.snapshot(0, 500, Default::default())),
        Vec::new(),
    ))));
    let state = Arc::new(LiveState::new(empty.index()));
    let feed = Arc::new(LiveFeed::new(&ServeConfig {
        max_clients: READERS + STALLED + 10,
        ..ServeConfig::default()
    }));

    // The server on one runtime, the readers on another, a worker thread each.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let readers_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("readers")
        .enable_all()
        .build()
        .unwrap();
    let shutdown = CancellationToken::new();
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server_rt.spawn(gmv_serve::serve(
        listener,
        feed.clone(),
        state,
        shutdown.clone(),
    ));

    // The publisher thread, as in the binary.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (current, feed, stop) = (current.clone(), feed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seq = 0;
            let mut publish_time = Duration::ZERO;
            while !stop.load(Relaxed) {
                std::thread::sleep(INTERVAL);
                let started = Instant::now();
                let (snapshot, alerts) = current.0.lock().clone();
                for alert in &alerts {
                    feed.alert(alert);
                }
                seq += 1;
                let mut snapshot = Snapshot::clone(&snapshot);
                snapshot.seq = seq;
                feed.snapshot(&Arc::new(snapshot));
                publish_time += started.elapsed();
            }
            (seq, publish_time)
        })
    };

    // Warm up caches, the allocator and the page cache.
    process_phase(&current, &payloads);

    // Stage 1: the processor alone, then with READERS live readers.
    let mut baseline = Vec::new();
    let mut loaded = Vec::new();
    let mut per_reader_min = u64::MAX;
    for round in 0..ROUNDS {
        baseline.push(process_phase(&current, &payloads));

        let connect_started = Instant::now();
        let readers = readers_rt.block_on(connect_readers(addr, READERS));
        let connect_time = connect_started.elapsed();
        std::thread::sleep(INTERVAL);
        let before: Vec<u64> = readers.snapshots.iter().map(|c| c.load(Relaxed)).collect();
        let phase_started = Instant::now();
        loaded.push(process_phase(&current, &payloads));
        let phase = phase_started.elapsed();
        let ticks: Vec<u64> = readers
            .snapshots
            .iter()
            .zip(&before)
            .map(|(c, b)| c.load(Relaxed) - b)
            .collect();
        let (min, max) = (
            ticks.iter().min().copied().unwrap_or(0),
            ticks.iter().max().copied().unwrap_or(0),
        );
        let expected = (phase.as_millis() / INTERVAL.as_millis()) as u64;
        assert!(
            min + 2 >= expected,
            "a reader fell behind: {min} ticks of ~{expected}"
        );
        per_reader_min = per_reader_min.min(min);
        println!(
            "round {round}: alone {:.0} ev/s, with {READERS} readers {:.0} ev/s; connected in {:.2}s; \
             ticks per reader in {:.1}s: {min}..={max}",
            baseline[round],
            loaded[round],
            connect_time.as_secs_f64(),
            phase.as_secs_f64(),
        );
        readers_rt.block_on(readers.close());
        std::thread::sleep(INTERVAL);
    }

    // Stage 2: memory while streaming to READERS readers and STALLED that
    // never read (their socket buffers fill, then the server holds only a cursor).
    let rss_idle = rss_mib();
    let readers = readers_rt.block_on(connect_readers(addr, READERS));
    let stalled: Vec<std::net::TcpStream> = (0..STALLED)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api/live HTTP/1.1\r\nHost: stalled\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(INTERVAL * 4);
    assert_eq!(feed.clients(), READERS + STALLED, "every stream is open");
    let rss_connected = rss_mib();
    let bytes_before = readers.bytes.load(Relaxed);
    std::thread::sleep(SOAK);
    let rss_soaked = rss_mib();
    let streamed = readers.bytes.load(Relaxed) - bytes_before;
    readers_rt.block_on(readers.close());
    drop(stalled);

    stop.store(true, Relaxed);
    let (ticks, publish_time) = publisher.join().unwrap();
    shutdown.cancel();
    server_rt.block_on(server).unwrap().unwrap();

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    let (base, load) = (median(&mut baseline), median(&mut loaded));
    let drop_pct = (1.0 - load / base) * 100.0;
    let frame = feed.latest_published_len();
    println!(
        "processor (median of {ROUNDS}): {base:.0} ev/s alone, {load:.0} ev/s with {READERS} live readers: {drop_pct:.1}% drop"
    );
    println!(
        "memory (VmRSS of the whole process, readers' 8 KiB buffers included): {rss_idle:.0} MiB idle, \
         {rss_connected:.0} MiB with {READERS} readers + {STALLED} stalled ({:.1} KiB per stream), \
         {rss_soaked:.0} MiB after {:.0}s more of streaming ({:.1} MiB sent)",
        (rss_connected - rss_idle) * 1024.0 / (READERS + STALLED) as f64,
        SOAK.as_secs_f64(),
        streamed as f64 / (1024.0 * 1024.0),
    );
    println!(
        "publisher: {ticks} ticks, {:.2} ms each on average (snapshot {frame} B); slowest reader got {per_reader_min} ticks in a phase",
        publish_time.as_secs_f64() * 1000.0 / ticks.max(1) as f64,
    );
    assert!(drop_pct < 10.0, "events/s dropped {drop_pct:.1}%");
    assert!(
        rss_soaked - rss_connected < 16.0,
        "memory grew {:.0} MiB while streaming",
        rss_soaked - rss_connected
    );
}

trait FrameLen {
    fn latest_published_len(&self) -> usize;
}

impl FrameLen for LiveFeed {
    fn latest_published_len(&self) -> usize {
        self.latest()
            .and_then(|s| serde_json::to_vec(&*s).ok())
            .map_or(0, |j| j.len())
    }
}
