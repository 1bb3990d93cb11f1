//! Memory per merchant of a partition's merchant table (at most 256 bytes
//! is the target). A counting global allocator tracks live heap bytes while
//! `MERCHANTS` distinct merchants (`m-0000123`, ...) each get one event; the
//! figure is the growth over an empty partition, less what its dedup set
//! and hours hold (bounded and reported on their own), divided by the
//! number of merchants.
//!
//! Run with `cargo bench -p gmv-core --bench merchant_memory`
//! (`-- 250000` for another merchant count).

use gmv_core::partition::{merchant_hash, Partition, Txn};
use gmv_core::Settings;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Merchants inserted unless a count is given on the command line.
const MERCHANTS: usize = 1_000_000;

/// Allocations up to this size are counted as merchant ids (each id is one
/// small `Box<str>`); larger ones are the map's tables.
const SMALL: usize = 64;

/// Live bytes as requested by the program.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Live bytes in allocations of at most [`SMALL`] bytes.
static LIVE_SMALL: AtomicUsize = AtomicUsize::new(0);
/// Live bytes as glibc malloc hands them out: every chunk carries an 8-byte
/// header and is a multiple of 16 bytes, at least 32.
static LIVE_CHUNKS: AtomicUsize = AtomicUsize::new(0);
/// Live allocations.
static LIVE_COUNT: AtomicUsize = AtomicUsize::new(0);

fn chunk_bytes(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

fn track(size: usize, live: bool) {
    let apply = |counter: &AtomicUsize, n: usize| {
        if live {
            counter.fetch_add(n, Relaxed);
        } else {
            counter.fetch_sub(n, Relaxed);
        }
    };
    apply(&LIVE, size);
    apply(&LIVE_CHUNKS, chunk_bytes(size));
    apply(&LIVE_COUNT, 1);
    if size <= SMALL {
        apply(&LIVE_SMALL, size);
    }
}

/// The system allocator, counting what is live.
struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            track(layout.size(), true);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            track(layout.size(), true);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        track(layout.size(), false);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            track(layout.size(), false);
            track(new_size, true);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Usage {
    live: usize,
    small: usize,
    chunks: usize,
    count: usize,
}

fn usage() -> Usage {
    Usage {
        live: LIVE.load(Relaxed),
        small: LIVE_SMALL.load(Relaxed),
        chunks: LIVE_CHUNKS.load(Relaxed),
        count: LIVE_COUNT.load(Relaxed),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a plain number sets the merchant count.
    let merchants = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(MERCHANTS);
    let ids: Vec<String> = (0..merchants).map(|i| format!("m-{i:07}")).collect();

    let before = usage();
    let settings = Arc::new(Settings::defaults());
    let start = settings.window.start_millis();
    let mut partition = Partition::new(settings, merchants * 2);
    let empty = usage();
    for (i, id) in ids.iter().enumerate() {
        let hash = merchant_hash(id);
        let txn = Txn {
            merchant_id: id,
            merchant_hash: hash,
            key: u128::from(hash) << 64 | i as u128,
            fingerprint: 0,
            fen: 100,
            mobile: i % 2 == 0,
            settled_at: start + (i % 86_400_000) as i64,
        };
        let _ = partition.count(i as i64, Ok(txn));
    }
    let mut full = usage();
    assert_eq!(partition.totals().merchants, merchants as u64);
    // The dedup set and the hours are bounded on their own: leave them out.
    let others = partition.allocated_bytes() - partition.merchant_table_bytes();
    full.live -= others;
    full.chunks -= others;
    let per = |a: usize, b: usize| (b - a) as f64 / merchants as f64;
    let id_len = ids[merchants / 2].len();
    println!(
        "merchant table memory for {merchants} merchants (ids like {:?}, {id_len} bytes):",
        ids[merchants / 2]
    );
    println!(
        "  requested heap:      {:7.1} B/merchant",
        per(empty.live, full.live)
    );
    println!(
        "    table and index:   {:7.1} B/merchant",
        per(empty.live - empty.small, full.live - full.small)
    );
    println!(
        "    boxed long ids:    {:7.1} B/merchant",
        per(empty.small, full.small)
    );
    println!(
        "  malloc chunks:       {:7.1} B/merchant (glibc headers and rounding, {:.2} allocations/merchant)",
        per(empty.chunks, full.chunks),
        per(empty.count, full.count)
    );
    println!("  (dedup set and hours, left out: {others} B)");
    println!("  empty partition:     {:7} B", empty.live - before.live);
}
