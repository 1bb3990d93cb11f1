//! A split run end to end in one process: the same input through any number
//! of workers and any chunk size gives the same report, alerts and dead
//! letters, byte for byte.

use super::*;
use crate::chunks::{BufferPool, FileChunks};
use crate::sinks::{AlertFile, DeadLetterFile, LinesMode};
use crate::split::SplitSource;
use gmv_core::sink::LiveSink;
use gmv_core::Settings;
use proptest::prelude::*;
use std::io::Write;

/// What a run wrote: the report's JSON, the alerts file, the dead letters.
/// Runs `dir/events.jsonl` (the same origin for every run in `dir`).
fn run_file(dir: &std::path::Path, workers: usize, chunk_bytes: usize) -> (String, String, String) {
    let events = dir.join("events.jsonl");
    let mut settings = Settings::defaults();
    settings.thresholds = vec![2_000, 10_000, 30_000];
    settings.partitions = 8;
    let settings = Arc::new(settings);
    let lifecycle = Lifecycle::new();
    let dead_path = dir.join(format!("dead-{workers}-{chunk_bytes}.jsonl"));
    let alerts_path = dir.join(format!("alerts-{workers}-{chunk_bytes}.jsonl"));
    let dead = Arc::new(DeadLetterFile::open(&dead_path, LinesMode::Truncate).unwrap());
    let alerts = AlertFile::open(&alerts_path, LinesMode::Truncate).unwrap();
    let source = SplitSource {
        settings: settings.clone(),
        chunks: Arc::new(
            FileChunks::open(&events, chunk_bytes, 1 << 20, lifecycle.token()).unwrap(),
        ),
        pool: Arc::new(BufferPool::default()),
        workers,
        dead_letters: dead,
    };
    let view = LiveView::new(settings);
    let state = Arc::new(LiveState::new(view.index()));
    let sinks: Vec<Box<dyn TickSink>> = vec![Box::new(LiveSinks(vec![
        alerts.clone() as Arc<dyn LiveSink>
    ]))];
    let outcome = run(
        &lifecycle,
        Box::new(source),
        view,
        RunOptions {
            interval: Duration::from_millis(2),
            sinks,
            state,
        },
    )
    .unwrap();
    alerts.finish().unwrap();
    assert_eq!(outcome.cause, StopCause::Running);
    (
        serde_json::to_string_pretty(&outcome.report).unwrap(),
        std::fs::read_to_string(alerts_path).unwrap(),
        std::fs::read_to_string(dead_path).unwrap(),
    )
}

/// A directory holding `events.jsonl` with `input`.
fn with_input(input: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join("events.jsonl"))
        .unwrap()
        .write_all(input)
        .unwrap();
    dir
}

fn line(txn: usize, merchant: usize, fen: u64, second: u32) -> String {
    format!(
        r#"{{"txn_id":"t{txn}","merchant_id":"m{merchant}","amount":"{}.{:02}","channel":"mobile","settled_at":"2017-11-11T00:{:02}:{:02}+08:00"}}"#,
        fen / 100,
        fen % 100,
        second / 60 % 60,
        second % 60
    )
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (0usize..80, 0usize..12, 1u64..5_000, 0u32..600, 0u8..20),
        1..300,
    )
    .prop_map(|specs| {
        let mut out = Vec::new();
        for (txn, merchant, fen, second, kind) in specs {
            let record = match kind {
                0 => "{broken".to_owned(),
                1 => String::new(),
                2 => line(txn, merchant, fen, second) + "\r",
                _ => line(txn, merchant, fen, second),
            };
            out.extend_from_slice(record.as_bytes());
            out.push(b'\n');
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn the_output_does_not_depend_on_workers_or_chunk_size(
        input in input(),
        workers in 2usize..5,
        chunk_bytes in 64usize..2048,
    ) {
        let dir = with_input(&input);
        let one = run_file(dir.path(), 1, 1 << 20);
        let many = run_file(dir.path(), workers, chunk_bytes);
        prop_assert_eq!(&one.0, &many.0);
        prop_assert_eq!(&one.1, &many.1);
        prop_assert_eq!(&one.2, &many.2);
    }
}

#[test]
fn alerts_come_out_in_input_order_and_dead_letters_name_their_lines() {
    let mut input = String::new();
    for i in 0..200 {
        input += &line(i, i % 5, 700, i as u32);
        input.push('\n');
        if i == 50 {
            input += "not json\n";
        }
    }
    let dir = with_input(input.as_bytes());
    let (report, alerts, dead) = run_file(dir.path(), 3, 300);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["accounting"]["consumed"], 201);
    assert_eq!(report["accounting"]["rejected"], 1);
    assert!(dead.contains("events.jsonl:52\""), "{dead}");
    let alert_times: Vec<String> = alerts
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["settled_at"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        alert_times.len(),
        report["alerts"].as_array().unwrap().len()
    );
    let mut sorted = alert_times.clone();
    sorted.sort();
    assert_eq!(alert_times, sorted, "input order here is time order");
}

#[test]
fn a_cancelled_run_ends_with_what_it_read() {
    let settings = Arc::new(Settings::defaults());
    let lifecycle = Lifecycle::new();
    let synth = gmv_synth::SynthConfig {
        events: 10_000_000,
        ..gmv_synth::SynthConfig::default()
    };
    let source = SplitSource {
        settings: settings.clone(),
        chunks: Arc::new(crate::chunks::SynthChunks::new(
            synth,
            Some(50_000),
            1 << 20,
            lifecycle.token(),
        )),
        pool: Arc::new(BufferPool::default()),
        workers: 2,
        dead_letters: Arc::new(NullSink),
    };
    let canceller = {
        let lifecycle = lifecycle.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            lifecycle.cancel(StopCause::Signal(2));
        })
    };
    let view = LiveView::new(settings);
    let state = Arc::new(LiveState::new(view.index()));
    let started = Instant::now();
    let outcome = run(
        &lifecycle,
        Box::new(source),
        view,
        RunOptions {
            interval: Duration::from_millis(50),
            sinks: Vec::new(),
            state: state.clone(),
        },
    )
    .unwrap();
    canceller.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(outcome.cause, StopCause::Signal(2));
    let consumed = outcome.report.figures.accounting.consumed;
    assert!(consumed > 0 && consumed < 10_000_000, "{consumed}");
    assert_eq!(
        consumed,
        outcome.report.figures.accounting.counted + outcome.report.figures.accounting.rejected
    );
    let last = state.latest().unwrap();
    assert_eq!(last.figures.accounting.consumed, consumed);
}

struct NullSink;

impl gmv_core::sink::DeadLetterSink for NullSink {
    fn keep(&self, _: gmv_core::sink::DeadLetter<'_>) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_burst_on_a_pipe_then_silence_is_all_counted_live() {
    // Many chunks at once, then nothing: every worker may be waiting on the
    // pipe while the others' parts of the burst wait for it.
    let mut settings = Settings::defaults();
    settings.partitions = 16;
    let settings = Arc::new(settings);
    let lifecycle = Lifecycle::new();
    let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
    let pool = Arc::new(BufferPool::default());
    let linger = Duration::from_millis(30);
    let interval = Duration::from_millis(100);
    let chunks = crate::chunks::StreamChunks::spawn(
        "stdin",
        reader,
        crate::chunks::StreamOptions {
            chunk_bytes: 4096,
            hold: 1 << 20,
            linger,
        },
        lifecycle.token(),
        pool.clone(),
    )
    .unwrap();
    let source = SplitSource {
        settings: settings.clone(),
        chunks: Arc::new(chunks),
        pool,
        workers: 2,
        dead_letters: Arc::new(NullSink),
    };
    let view = LiveView::new(settings);
    let state = Arc::new(LiveState::new(view.index()));
    let running = {
        let (lifecycle, state) = (lifecycle.clone(), state.clone());
        std::thread::spawn(move || {
            run(
                &lifecycle,
                Box::new(source),
                view,
                RunOptions {
                    interval,
                    sinks: Vec::new(),
                    state,
                },
            )
        })
    };
    let burst: String = (0..1000)
        .map(|i| line(i, i % 97, 100 + i as u64, 1) + "\n")
        .collect();
    writer.write_all(burst.as_bytes()).unwrap();
    let written = Instant::now();
    let consumed = || state.latest().map_or(0, |s| s.figures.accounting.consumed);
    while consumed() < 1000 && written.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen_after = written.elapsed();
    let seen = consumed();
    drop(writer);
    let outcome = running.join().unwrap().unwrap();
    assert_eq!(outcome.report.figures.accounting.consumed, 1000);
    assert_eq!(
        seen, 1000,
        "the live view showed {seen} of 1000 records 3 s after a burst on an idle pipe"
    );
    // One publish interval plus the linger, with room for a busy machine.
    assert!(
        seen_after < 4 * (interval + linger),
        "the burst took {seen_after:?} to show (interval {interval:?}, linger {linger:?})"
    );
}
