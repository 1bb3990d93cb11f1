//! Decode + validate + dedup + aggregate throughput on typical ~150-byte
//! events, one thread (events/s per core), with a realistic merchant skew.
//! The records are built here (gmv-core depends on nothing of ours).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use gmv_core::{Engine, Settings};

const EVENTS: usize = 200_000;

/// ~150-byte events over 20k merchants, skewed so a few dominate. `round`
/// numbers the transaction ids, so each round's ids are new to the others.
fn records(round: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ round as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..EVENTS)
        .map(|i| {
            let r = next();
            // Squaring a uniform draw skews towards small merchant numbers.
            let u = (r % 10_000) as f64 / 10_000.0;
            let merchant = (u * u * 20_000.0) as u64;
            let fen = 100 + r % 2_000_000;
            let second = i * 86_400 / EVENTS;
            let channel = if r % 10 == 0 { "pc" } else { "mobile" };
            format!(
                r#"{{"txn_id":"20171111{round:02}{i:010}","merchant_id":"m-{merchant:06}","amount":"{}.{:02}","currency":"CNY","channel":"{channel}","settled_at":"2017-11-11T{:02}:{:02}:{:02}.{:03}+08:00"}}"#,
                fen / 100,
                fen % 100,
                second / 3600,
                second / 60 % 60,
                second % 60,
                r % 1000
            )
            .into_bytes()
        })
        .collect()
}

/// Counts `records` as the file and Kafka sources do: a batch at a time.
fn run(engine: &Engine, records: &[Vec<u8>]) {
    let mut worker = engine.worker();
    for batch in records.chunks(4096) {
        worker.process_each(batch.iter().map(|r| ((), r.as_slice())), |_, _, _| {});
        worker.flush();
    }
}

/// Times `pass`, each iteration on an engine made by `setup` (untimed, and
/// dropped untimed too).
fn on_engines(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    setup: impl Fn() -> Engine,
    pass: impl Fn(&Engine),
) {
    group.bench_function(name, |b| {
        b.iter_batched(
            &setup,
            |engine| {
                pass(&engine);
                engine
            },
            BatchSize::PerIteration,
        )
    });
}

fn decode_aggregate(c: &mut Criterion) {
    let warm_up = records(1);
    let records = records(0);
    let bytes: usize = records.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);
    eprintln!("mean record size {} bytes", bytes / records.len());
    let fresh = || Engine::new(Settings::defaults());
    // A cold start: every merchant is new and the dedup set grows from empty.
    on_engines(&mut group, "decode_aggregate_one_thread", fresh, |engine| {
        run(engine, &records)
    });
    // Steady state, as hours into the day: the merchants are known and the
    // dedup set already holds as many ids as are timed (untimed warm-up with
    // other ids), so what is timed is new events for known merchants.
    let warmed = || {
        let engine = fresh();
        run(&engine, &warm_up);
        engine
    };
    on_engines(
        &mut group,
        "decode_aggregate_one_thread_warm",
        warmed,
        |engine| run(engine, &records),
    );
    // The two stages the issue's target names, without the dedup stage
    // between them: what one core does when redeliveries are not checked.
    on_engines(
        &mut group,
        "decode_aggregate_without_dedup",
        fresh,
        |engine| {
            let settings = engine.settings();
            let mut tally = engine.aggregator().tally();
            for batch in records.chunks(4096) {
                for record in batch {
                    if let Ok(event) = settings.decoder.decode(record) {
                        if settings.window.contains(event.settled_at) {
                            tally.add(
                                &event.merchant_id,
                                event.amount_fen,
                                event.mobile,
                                event.settled_at,
                            );
                        }
                    }
                }
                tally.flush();
            }
        },
    );
    let engine = Engine::new(Settings::defaults());
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            let decoder = &engine.settings().decoder;
            records.iter().filter(|r| decoder.decode(r).is_ok()).count()
        })
    });
    group.finish();
}

criterion_group!(benches, decode_aggregate);
criterion_main!(benches);
