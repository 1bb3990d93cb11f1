//! Cache prefetch hints, for batches that know a few events ahead which
//! memory they will read: a record's own bytes ([`ReadAhead`]) and its dedup
//! probe (see `Worker::process_each`).

use crate::scan::BLOCK_RECORD_BYTES;

/// Asks the CPU to start loading the cache line at `ptr`. Only a hint: it
/// reads nothing architecturally, never faults (a stale or dangling address
/// is fine), and is a no-op on targets without one.
#[inline(always)]
pub(crate) fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 performs no architectural memory access and cannot
    // fault, whatever the address (Intel SDM, "PREFETCHh"); SSE, which it
    // needs, is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Cache line size assumed by [`prefetch_bytes`] (x86_64 and most others).
const LINE: usize = 64;

/// Prefetches every cache line of the first bytes of `bytes` that the
/// decoder's block path reads (longer records are rare and slow anyway).
#[inline(always)]
fn prefetch_bytes(bytes: &[u8]) {
    let start = bytes.as_ptr() as usize;
    let end = start + bytes.len().min(BLOCK_RECORD_BYTES);
    // From the line `bytes` starts in, so a record across a line boundary
    // gets its last line too.
    let mut line = start & !(LINE - 1);
    while line < end {
        prefetch(line as *const u8);
        line += LINE;
    }
}

/// How many records [`ReadAhead`] holds back.
pub(crate) const READ_AHEAD: usize = 4;

/// Yields the records of an iterator in order, each [`READ_AHEAD`] records
/// after it was pulled, having prefetched its bytes when it was pulled.
///
/// Records in a batch sit in memory that is usually not in cache (a fetch
/// buffer, a file chunk), and decoding starts by reading every byte; without
/// this the first load of each record waited for memory (the block scan
/// was ~12% of the engine's time, three quarters of it on that load). The
/// ring is on the stack: no allocation.
///
/// `Worker::process_each` keeps its own ring of decoded records rather than
/// sharing one generic delay ring with this: both shared forms tried (an
/// iterator adapter, and a ring with make-room and push calls) ran the cold
/// engine pass slower, pair by pair (the adapter by 2–7%, the ring by 2%
/// median).
pub(crate) struct ReadAhead<'p, T, I> {
    records: I,
    held: [Option<(T, &'p [u8])>; READ_AHEAD],
    /// Records pulled so far; `pulled % READ_AHEAD` is the oldest held.
    pulled: usize,
    exhausted: bool,
}

impl<'p, T, I: Iterator<Item = (T, &'p [u8])>> ReadAhead<'p, T, I> {
    pub(crate) fn new(records: I) -> Self {
        Self {
            records,
            held: std::array::from_fn(|_| None),
            pulled: 0,
            exhausted: false,
        }
    }
}

impl<'p, T, I: Iterator<Item = (T, &'p [u8])>> Iterator for ReadAhead<'p, T, I> {
    type Item = (T, &'p [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        while !self.exhausted {
            let Some(record) = self.records.next() else {
                self.exhausted = true;
                break;
            };
            prefetch_bytes(record.1);
            let slot = self.pulled % READ_AHEAD;
            self.pulled += 1;
            if let Some(oldest) = self.held[slot].replace(record) {
                return Some(oldest);
            }
        }
        // Drain the ones still held, oldest first (with fewer records than
        // READ_AHEAD, some slots from the oldest position on are empty).
        for _ in 0..READ_AHEAD {
            let slot = self.pulled % READ_AHEAD;
            self.pulled += 1;
            if let Some(oldest) = self.held[slot].take() {
                return Some(oldest);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_yields_every_record_once_in_order() {
        for count in 0..3 * READ_AHEAD + 2 {
            let payloads: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; i % 200]).collect();
            let records = payloads.iter().enumerate().map(|(i, p)| (i, p.as_slice()));
            let seen: Vec<(usize, &[u8])> = ReadAhead::new(records).collect();
            let expected: Vec<(usize, &[u8])> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.as_slice()))
                .collect();
            assert_eq!(seen, expected, "{count} records");
        }
    }

    #[test]
    fn read_ahead_stays_finished() {
        let payload = [1u8; 3];
        let mut records = ReadAhead::new(std::iter::once(((), &payload[..])));
        assert_eq!(records.next(), Some(((), &payload[..])));
        assert_eq!(records.next(), None);
        assert_eq!(records.next(), None);
    }
}
