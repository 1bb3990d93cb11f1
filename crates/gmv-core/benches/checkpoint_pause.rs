//! How long a checkpoint stops a partition's owner, and what the writer
//! beside it does, at festival scale: the process holds `IDS` dedup ids and
//! `MERCHANTS` merchants over `PARTITIONS` partitions; one partition is
//! built to its share, then takes one second of traffic at `TPS` (its
//! share) between checkpoints, several times.
//!
//! Per checkpoint it prints the owner's pause (capturing a delta), the
//! writer's work (extending its shadow, encoding, writing with fsync) and,
//! every `DELTAS_PER_BASE` checkpoints, the base the writer makes from its
//! shadow and what restoring from it costs a new owner; and, for
//! comparison, what capturing a base on the owner's thread would cost.
//!
//! `cargo bench -p gmv-core --bench checkpoint_pause [-- IDS MERCHANTS PARTITIONS TPS]`

use gmv_core::partition::{merchant_hash, Partition, Txn};
use gmv_core::state::{Checkpoint, CheckpointKind};
use gmv_core::Settings;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IDS: usize = 20_000_000;
const MERCHANTS: usize = 1_000_000;
const PARTITIONS: usize = 4;
/// The 2017 peak, records/s.
const TPS: usize = 256_000;
const CHECKPOINTS: usize = 6;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Writes `bytes` to a file and fsyncs it, as the directory store does.
fn write_durably(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Duration {
    let started = Instant::now();
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(bytes).expect("write");
    file.sync_all().expect("fsync");
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(path);
    elapsed
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let arg = |i: usize, default: usize| numbers.get(i).copied().unwrap_or(default);
    let (ids, merchants, partitions, tps) = (
        arg(0, IDS),
        arg(1, MERCHANTS),
        arg(2, PARTITIONS).max(1),
        arg(3, TPS),
    );
    let (ids, merchants, per_second) = (ids / partitions, merchants / partitions, tps / partitions);
    let names: Vec<String> = (0..merchants).map(|i| format!("m-{i:07}")).collect();
    let hashes: Vec<u64> = names.iter().map(|n| merchant_hash(n)).collect();
    let settings = Arc::new(Settings::defaults());
    let start = settings.window.start_millis();
    let cap = ids + per_second * (CHECKPOINTS + 1);
    let mut live = Partition::new(settings.clone(), cap * 2).journaled();
    let mut shadow = Partition::new(settings.clone(), cap * 2);
    let mut next = 0usize;
    let mut feed = |live: &mut Partition, n: usize| {
        for _ in 0..n {
            let i = next;
            next += 1;
            let m = i.wrapping_mul(2_654_435_761) % merchants;
            let txn = Txn {
                merchant_id: &names[m],
                merchant_hash: hashes[m],
                key: u128::from(hashes[m]) << 64 | i as u128,
                fingerprint: i as u64,
                fen: 1 + (i % 50_000) as u64,
                mobile: !i.is_multiple_of(10),
                settled_at: start + (i % 86_400_000) as i64,
            };
            let _ = live.count(i as i64, Ok(txn));
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "one partition of {partitions}: {ids} dedup ids, {merchants} merchants, then {per_second} records/s between checkpoints"
    );
    let built = Instant::now();
    feed(&mut live, ids);
    let first = live.capture(1, CheckpointKind::Delta);
    shadow.extend(&first).expect("extends");
    drop(first);
    println!("built in {:.1} s", built.elapsed().as_secs_f64());

    let mut pauses = Vec::new();
    for seq in 2..2 + CHECKPOINTS as u64 {
        feed(&mut live, per_second);
        let captured = Instant::now();
        let delta = live.capture(seq, CheckpointKind::Delta);
        let pause = captured.elapsed();
        pauses.push(pause);
        let extended = Instant::now();
        shadow.extend(&delta).expect("extends");
        let extend = extended.elapsed();
        let encoded = Instant::now();
        let bytes = delta.encode();
        let encode = encoded.elapsed();
        let write = write_durably(dir.path(), "delta", &bytes);
        println!(
            "delta {seq}: owner paused {:.2} ms | writer: shadow {:.1} ms, encode {:.1} ms, {:.1} MiB written+fsync {:.1} ms",
            ms(pause),
            ms(extend),
            ms(encode),
            mib(bytes.len()),
            ms(write)
        );
    }
    let based = Instant::now();
    let base = shadow.capture(99, CheckpointKind::Base);
    let capture = based.elapsed();
    let encoded = Instant::now();
    let bytes = base.encode();
    let encode = encoded.elapsed();
    let write = write_durably(dir.path(), "base", &bytes);
    println!(
        "base from the shadow (writer): capture {:.0} ms, encode {:.0} ms, {:.1} MiB written+fsync {:.0} ms",
        ms(capture),
        ms(encode),
        mib(bytes.len()),
        ms(write)
    );
    drop(base);
    // What a new owner pays before fetching: decode the base, rebuild.
    let decoded = Instant::now();
    let chain = [Checkpoint::decode(&bytes).expect("decodes")];
    let decode = decoded.elapsed();
    let restored = Instant::now();
    let partition = Partition::restore(settings.clone(), cap * 2, &chain).expect("restores");
    let restore = restored.elapsed();
    let held = ids + per_second * CHECKPOINTS;
    println!(
        "restore from that base (a new owner): decode {:.0} ms, rebuild {:.0} ms = {:.0} ms per million ids ({} merchants)",
        ms(decode),
        ms(restore),
        ms(decode + restore) * 1e6 / held as f64,
        partition.merchant_figures().count()
    );
    drop((chain, partition, bytes));
    let on_owner = Instant::now();
    let base = live.capture(100, CheckpointKind::Base);
    println!(
        "a base captured on the owner's thread instead would pause it {:.0} ms ({} merchants)",
        ms(on_owner.elapsed()),
        base.merchants.len()
    );
    let worst = pauses.iter().max().copied().unwrap_or_default();
    println!(
        "owner's pause per checkpoint: max {:.2} ms over {CHECKPOINTS} checkpoints",
        ms(worst)
    );
}
