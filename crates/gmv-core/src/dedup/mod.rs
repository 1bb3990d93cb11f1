//! Redelivery detection: an exact set of recently seen `txn_id`s with a hard
//! memory bound.
//!
//! Each id is stored as its 128-bit XXH3 hash (collision odds about 1 in 10^20
//! even with 10^9 ids retained) beside a 64-bit fingerprint of the event's
//! content, which tells a redelivery (`duplicate`) from a reused id with
//! different content (`conflict`).
//!
//! Memory is bounded by two generations per shard: ids go into the current
//! generation; when it holds `max_ids / 2 / shards` ids, or (if an event-time
//! retention is set) when event time has moved `retention` past the
//! generation's start, the previous generation is dropped and the current one
//! becomes previous. So an id is always remembered for at least `max_ids / 2`
//! later ids (per shard, on average) and at least `retention` of event time,
//! and never more than `max_ids` ids are held in all.

mod table;

use crate::prefetch::prefetch;
use crate::spin::SpinLock;
use crate::state::{DedupJournal, DedupShardState, DedupState, StateError};
use crate::time::EpochMillis;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use table::{IdTable, Layout, Probe, Slot};
use xxhash_rust::xxh3::xxh3_128;

/// What the set says about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First sighting: count it.
    New,
    /// Seen before with the same content.
    Duplicate,
    /// Seen before with different content.
    Conflict,
}

/// Bytes one retained id costs in a full table: a 24-byte slot (the 16-byte
/// key as two `u64`s, so the slot needs no 16-byte alignment, and the 8-byte
/// fingerprint) and 1 control byte, at the tables' 7/8 maximum load.
pub const BYTES_PER_ID_AT_FULL_LOAD: usize = (std::mem::size_of::<Slot>() + 1) * 8 / 7;

const SHARDS: usize = 64;

/// The most the id tables of a `DedupSet::new(max_ids, _)` can allocate: every
/// shard's two generations at the bucket count a full generation needs.
/// Bucket counts are powers of two, so this is between 1 and 2 times
/// `max_ids * BYTES_PER_ID_AT_FULL_LOAD` (20M ids: 800 MiB).
pub fn max_allocated_bytes(max_ids: usize) -> usize {
    SHARDS * 2 * table::bytes_for(table::buckets_for(generation_cap(max_ids)))
}

/// Ids per generation per shard.
fn generation_cap(max_ids: usize) -> usize {
    (max_ids / SHARDS / 2).max(1)
}

/// Where one table of a shard is, readable without the shard's lock so that
/// [`DedupSet::prefetch`] can compute an id's probe address early. Updated
/// under the lock whenever the table moves (growth, rotation, restore). A
/// reader may see a stale or half-updated layout; it only prefetches from it,
/// which never faults and changes nothing, so the worst case is a useless
/// prefetch.
#[derive(Default)]
struct Hint {
    control: AtomicPtr<u8>,
    slots: AtomicPtr<Slot>,
    mask: AtomicUsize,
}

impl Hint {
    fn publish(&self, table: &IdTable) {
        let layout = table.layout();
        self.control.store(
            layout.map_or(ptr::null_mut(), |l| l.control.cast_mut()),
            Relaxed,
        );
        self.slots.store(
            layout.map_or(ptr::null_mut(), |l| l.slots.cast_mut()),
            Relaxed,
        );
        self.mask.store(layout.map_or(0, |l| l.mask), Relaxed);
    }

    fn layout(&self) -> Option<Layout> {
        let control = self.control.load(Relaxed).cast_const();
        (!control.is_null()).then(|| Layout {
            control,
            slots: self.slots.load(Relaxed).cast_const(),
            mask: self.mask.load(Relaxed),
        })
    }
}

/// The hints of one shard's two tables.
#[derive(Default)]
struct ShardHints {
    current: Hint,
    previous: Hint,
}

struct Generations {
    current: IdTable,
    previous: IdTable,
    /// Event time at which `current` began, for event-time retention.
    current_since: Option<EpochMillis>,
    /// New ids since the journal was last taken, when journaling is on
    /// (checkpoint deltas).
    journal: Option<Vec<(u128, u64, EpochMillis)>>,
}

/// A sharded, bounded, exact set of recent transaction ids.
pub struct DedupSet {
    shards: Box<[SpinLock<Generations>]>,
    hints: Box<[ShardHints]>,
    generation_cap: usize,
    retention_ms: Option<i64>,
}

impl DedupSet {
    /// A set that holds at most `max_ids` ids and, if `retention` is set,
    /// rotates generations at least that often in event time.
    pub fn new(max_ids: usize, retention: Option<Duration>) -> Self {
        let generation_cap = generation_cap(max_ids);
        let shards = (0..SHARDS)
            .map(|_| {
                SpinLock::new(Generations {
                    current: IdTable::default(),
                    previous: IdTable::default(),
                    current_since: None,
                    journal: None,
                })
            })
            .collect();
        Self {
            shards,
            hints: (0..SHARDS).map(|_| ShardHints::default()).collect(),
            generation_cap,
            retention_ms: retention.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// The key an id is stored under.
    pub fn key(txn_id: &str) -> u128 {
        xxh3_128(txn_id.as_bytes())
    }

    /// Starts loading into cache what checking `key` will read first: a
    /// batch calls this a few events ahead of the check, so the probe (a
    /// cache miss in a large table) overlaps decoding the events between.
    #[inline]
    pub fn prefetch(&self, key: u128) {
        let hints = &self.hints[Self::shard_of(key)];
        if let Some(layout) = hints.current.layout() {
            let (control, slot) = layout.probe_start(key);
            prefetch(control);
            prefetch(slot);
        }
        if let Some(layout) = hints.previous.layout() {
            prefetch(layout.probe_start(key).0);
        }
    }

    fn shard_of(key: u128) -> usize {
        (key >> 64) as usize % SHARDS
    }

    /// Records `txn_id` with `fingerprint` if new, and says whether it was.
    pub fn check_and_insert(&self, txn_id: &str, fingerprint: u64, at: EpochMillis) -> Verdict {
        self.check_count_insert(Self::key(txn_id), fingerprint, at, || {})
    }

    /// [`Self::check_and_insert`] for an id's [key](Self::key), that also
    /// runs `count` for a new id, before the id is stored and while its shard
    /// is still locked: no other thread can decide about the same id
    /// meanwhile, so the id is counted exactly once, and the store into the
    /// table (usually a cache miss) is left to finish after `count` rather
    /// than delay its atomic updates, each of which would wait for it.
    ///
    /// Marked for inlining: the engine's per-record count calls it once, and
    /// whether LLVM inlined it on its own changed with unrelated edits to
    /// this crate (codegen units are split differently), costing ~2% of the
    /// cold engine pass when it did not.
    #[inline]
    pub fn check_count_insert(
        &self,
        key: u128,
        fingerprint: u64,
        at: EpochMillis,
        count: impl FnOnce(),
    ) -> Verdict {
        let verdict = |seen: u64| {
            if seen == fingerprint {
                Verdict::Duplicate
            } else {
                Verdict::Conflict
            }
        };
        let shard = Self::shard_of(key);
        let mut guard = self.shards[shard].lock();
        let gens = &mut *guard;
        if self.rotation_due(gens, at) {
            // Rare: look up without reserving room in a table about to
            // become the previous generation, then take the general path.
            if let Some(seen) = gens
                .current
                .fingerprint(key)
                .or_else(|| gens.previous.fingerprint(key))
            {
                return verdict(seen);
            }
            count();
            self.insert_new(shard, gens, key, fingerprint, at);
            return Verdict::New;
        }
        // Usual case: one probe of `current` finds the id or the slot it goes in.
        match gens.current.probe(key) {
            Probe::Found(bucket) => verdict(gens.current.fingerprint_at(bucket)),
            Probe::Vacant(bucket) => {
                if let Some(seen) = gens.previous.fingerprint(key) {
                    return verdict(seen);
                }
                count();
                if gens.current.insert_vacant(bucket, key, fingerprint) {
                    self.hints[shard].current.publish(&gens.current);
                }
                self.debug_check_hints(shard, gens);
                gens.current_since.get_or_insert(at);
                if let Some(journal) = &mut gens.journal {
                    journal.push((key, fingerprint, at));
                }
                Verdict::New
            }
        }
    }

    /// The one insertion rule, shared by live inserts and journal replay so
    /// that a replay rebuilds the same generations. (The fast path in
    /// [`Self::check_count_insert`] is this rule when no rotation is due.)
    fn insert_new(
        &self,
        shard: usize,
        gens: &mut Generations,
        key: u128,
        fingerprint: u64,
        at: EpochMillis,
    ) {
        if self.rotation_due(gens, at) {
            // Reuse the dropped generation's allocation for the new one.
            let mut recycled = std::mem::take(&mut gens.previous);
            recycled.clear();
            gens.previous = std::mem::replace(&mut gens.current, recycled);
            gens.current_since = Some(at);
            self.hints[shard].previous.publish(&gens.previous);
            self.hints[shard].current.publish(&gens.current);
        }
        gens.current_since.get_or_insert(at);
        if gens.current.insert_new(key, fingerprint) {
            self.hints[shard].current.publish(&gens.current);
        }
        self.debug_check_hints(shard, gens);
        if let Some(journal) = &mut gens.journal {
            journal.push((key, fingerprint, at));
        }
    }

    /// The hints a shard publishes describe its tables (checked under the
    /// shard's lock, in debug builds).
    fn debug_check_hints(&self, shard: usize, gens: &Generations) {
        let hints = &self.hints[shard];
        debug_assert_eq!(hints.current.layout(), gens.current.layout());
        debug_assert_eq!(hints.previous.layout(), gens.previous.layout());
    }

    /// Whether inserting a new id at event time `at` first rotates the
    /// generations: `current` is full, or has aged past the retention.
    fn rotation_due(&self, gens: &Generations, at: EpochMillis) -> bool {
        let since = gens.current_since.unwrap_or(at);
        gens.current.len() >= self.generation_cap
            || self
                .retention_ms
                .is_some_and(|retention| at.saturating_sub(since) >= retention)
    }

    /// `measure` summed over every shard's two tables.
    fn sum_over_tables(&self, measure: impl Fn(&IdTable) -> usize) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock();
                measure(&g.current) + measure(&g.previous)
            })
            .sum()
    }

    /// Ids held now.
    pub fn len(&self) -> usize {
        self.sum_over_tables(IdTable::len)
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the tables have allocated (ids, fingerprints and control bytes).
    pub fn allocated_bytes(&self) -> usize {
        self.sum_over_tables(IdTable::allocated_bytes)
    }

    /// Starts recording new ids for [`DedupSet::take_journal`].
    pub fn enable_journal(&self) {
        for shard in self.shards.iter() {
            shard.lock().journal.get_or_insert_with(Vec::new);
        }
    }

    /// The ids first seen since the last call, per shard in arrival order
    /// (empty unless journaling is on).
    pub fn take_journal(&self) -> DedupJournal {
        DedupJournal {
            shards: self
                .shards
                .iter()
                .map(|s| {
                    s.lock()
                        .journal
                        .as_mut()
                        .map(std::mem::take)
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// Replays a journal taken from a set with the same bounds.
    pub fn replay(&self, journal: &DedupJournal) -> Result<(), StateError> {
        if journal.shards.len() != self.shards.len() {
            return Err(StateError::Invalid("dedup shard count differs"));
        }
        for (shard, entries) in self.shards.iter().enumerate().zip(&journal.shards) {
            let mut gens = shard.1.lock();
            for &(key, fingerprint, at) in entries {
                self.insert_new(shard.0, &mut gens, key, fingerprint, at);
            }
        }
        Ok(())
    }

    /// The whole set, for a base checkpoint.
    pub fn state(&self) -> DedupState {
        let copy = |t: &IdTable| t.iter().map(|s| (s.key(), s.fingerprint)).collect();
        DedupState {
            shards: self
                .shards
                .iter()
                .map(|s| {
                    let g = s.lock();
                    DedupShardState {
                        current: copy(&g.current),
                        previous: copy(&g.previous),
                        current_since: g.current_since,
                    }
                })
                .collect(),
        }
    }

    /// Replaces the contents with a saved state (journals are kept on/off).
    pub fn restore(&self, state: &DedupState) -> Result<(), StateError> {
        if state.shards.len() != self.shards.len() {
            return Err(StateError::Invalid("dedup shard count differs"));
        }
        for ((shard, hints), saved) in self.shards.iter().zip(&self.hints).zip(&state.shards) {
            let mut guard = shard.lock();
            let g = &mut *guard;
            for (table, saved, hint) in [
                (&mut g.current, &saved.current, &hints.current),
                (&mut g.previous, &saved.previous, &hints.previous),
            ] {
                table.clear();
                table.reserve(saved.len());
                for &(key, fingerprint) in saved {
                    // A repeated key keeps its last fingerprint, as a map's `extend` would.
                    table.upsert(key, fingerprint);
                }
                hint.publish(table);
            }
            g.current_since = saved.current_since;
            if let Some(journal) = &mut g.journal {
                journal.clear();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retained_id_costs_what_the_docs_say() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(BYTES_PER_ID_AT_FULL_LOAD, 28);
    }

    #[test]
    fn second_sighting_is_duplicate_or_conflict() {
        let set = DedupSet::new(1000, None);
        assert_eq!(set.check_and_insert("t1", 7, 0), Verdict::New);
        assert_eq!(set.check_and_insert("t1", 7, 0), Verdict::Duplicate);
        assert_eq!(set.check_and_insert("t1", 8, 0), Verdict::Conflict);
        assert_eq!(set.check_and_insert("t2", 7, 0), Verdict::New);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn allocation_stays_within_the_stated_bound_when_full() {
        for max_ids in [1, 64 * 7, 64 * 100, 64 * 2_000 + 77] {
            let set = DedupSet::new(max_ids, None);
            for i in 0..max_ids * 3 {
                set.check_and_insert(&format!("txn-{i}"), 1, 0);
            }
            let bound = max_allocated_bytes(max_ids);
            assert!(
                set.allocated_bytes() <= bound,
                "{max_ids} ids: {} > {bound}",
                set.allocated_bytes()
            );
            // The bound is not loose beyond the power-of-two rounding.
            if max_ids >= 64 * 100 {
                assert!(set.allocated_bytes() * 2 >= bound, "{max_ids} ids");
            }
        }
    }

    #[test]
    fn memory_stays_bounded_by_max_ids() {
        let max_ids = 64 * 100;
        let set = DedupSet::new(max_ids, None);
        for i in 0..100_000 {
            set.check_and_insert(&format!("txn-{i}"), 1, 0);
        }
        assert!(set.len() <= max_ids, "{} > {max_ids}", set.len());
        assert!(set.len() >= max_ids / 4, "kept too few: {}", set.len());
    }

    #[test]
    fn recent_ids_are_remembered_after_rotations() {
        let set = DedupSet::new(64 * 1000, None);
        for i in 0..200_000 {
            set.check_and_insert(&format!("txn-{i}"), 1, 0);
        }
        // The last 10k are far inside the guaranteed max_ids/2 horizon.
        for i in 190_000..200_000 {
            assert_eq!(
                set.check_and_insert(&format!("txn-{i}"), 1, 0),
                Verdict::Duplicate
            );
        }
    }

    #[test]
    fn event_time_retention_forgets_old_generations() {
        let set = DedupSet::new(1_000_000, Some(Duration::from_secs(60)));
        assert_eq!(set.check_and_insert("early", 1, 0), Verdict::New);
        assert_eq!(set.check_and_insert("early", 1, 30_000), Verdict::Duplicate);
        // Two rotations later the id is gone (from every shard it could be in).
        for (i, at) in [61_000, 122_000, 183_000].into_iter().enumerate() {
            for s in 0..5000 {
                set.check_and_insert(&format!("filler-{i}-{s}"), 1, at);
            }
        }
        assert_eq!(set.check_and_insert("early", 1, 183_000), Verdict::New);
    }

    #[test]
    fn base_plus_replayed_journal_rebuilds_the_same_generations() {
        let live = DedupSet::new(64 * 40, Some(Duration::from_secs(60)));
        live.enable_journal();
        for i in 0..3000 {
            live.check_and_insert(&format!("a-{i}"), i, i as i64 * 40);
        }
        let base = live.state();
        let _ = live.take_journal();
        for i in 0..5000 {
            live.check_and_insert(&format!("b-{i}"), i, 120_000 + i as i64 * 40);
        }
        let journal = live.take_journal();

        let restored = DedupSet::new(64 * 40, Some(Duration::from_secs(60)));
        restored.restore(&base).unwrap();
        restored.replay(&journal).unwrap();
        let sorted = |s: DedupState| {
            s.shards
                .into_iter()
                .map(|mut sh| {
                    sh.current.sort_unstable();
                    sh.previous.sort_unstable();
                    sh
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sorted(restored.state()), sorted(live.state()));
        assert!(live.take_journal().is_empty());
    }
}
