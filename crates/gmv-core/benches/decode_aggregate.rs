//! Decode + validate + dedup + aggregate throughput on typical ~150-byte
//! events, one thread (events/s per core), with a realistic merchant skew.
//! The records are built here (gmv-core depends on nothing of ours).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gmv_core::{Engine, Settings};

const EVENTS: usize = 200_000;

/// ~150-byte events over 20k merchants, skewed so a few dominate.
fn records() -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
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
                r#"{{"txn_id":"2017111100{i:010}","merchant_id":"m-{merchant:06}","amount":"{}.{:02}","currency":"CNY","channel":"{channel}","settled_at":"2017-11-11T{:02}:{:02}:{:02}.{:03}+08:00"}}"#,
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

fn decode_aggregate(c: &mut Criterion) {
    let records = records();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);
    eprintln!("mean record size {} bytes", bytes / records.len());
    group.bench_function("decode_aggregate_one_thread", |b| {
        b.iter_batched(
            || Engine::new(Settings::defaults()),
            |engine| {
                let mut worker = engine.worker();
                for record in &records {
                    let _ = worker.process(record);
                }
                worker.flush();
                drop(worker);
                engine
            },
            BatchSize::PerIteration,
        )
    });
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
