//! Decode + validate + dedup + aggregate throughput of one partition on
//! typical ~150-byte events, one thread (events/s per core), with a
//! realistic merchant skew.
//! The records are built here (gmv-core depends on nothing of ours).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use gmv_core::partition::Partition;
use gmv_core::Settings;
use std::sync::Arc;

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

/// Counts `records` as the Kafka source does: a batch at a time, decoded
/// and counted on the partition's own thread.
fn run(partition: &mut Partition, records: &[Vec<u8>]) {
    let mut position = 0;
    for batch in records.chunks(4096) {
        partition.process_each(
            batch.iter().map(|r| {
                position += 1;
                ((), position, r.as_slice())
            }),
            |_, _, _| {},
        );
    }
}

fn fresh() -> Partition {
    Partition::new(Arc::new(Settings::defaults()), 20_000_000)
}

/// Times `pass`, each iteration on a partition made by `setup` (untimed, and
/// dropped untimed too).
fn on_partitions(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    setup: impl Fn() -> Partition,
    pass: impl Fn(&mut Partition),
) {
    group.bench_function(name, |b| {
        b.iter_batched(
            &setup,
            |mut partition| {
                pass(&mut partition);
                partition
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
    // A cold start: every merchant is new and the dedup set grows from empty.
    on_partitions(&mut group, "decode_aggregate_one_thread", fresh, |p| {
        run(p, &records)
    });
    // Steady state, as hours into the day: the merchants are known and the
    // dedup set already holds as many ids as are timed (untimed warm-up with
    // other ids), so what is timed is new events for known merchants.
    let warmed = || {
        let mut partition = fresh();
        run(&mut partition, &warm_up);
        partition
    };
    on_partitions(
        &mut group,
        "decode_aggregate_one_thread_warm",
        warmed,
        |p| run(p, &records),
    );
    let settings = Settings::defaults();
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            records
                .iter()
                .filter(|r| settings.decoder.decode(r).is_ok())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, decode_aggregate);
criterion_main!(benches);
