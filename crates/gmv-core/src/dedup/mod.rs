//! Redelivery detection for one partition: an exact set of recently seen
//! transaction ids with a hard memory bound, owned and written by the
//! partition's only thread (no locks, no atomics).
//!
//! Each id is stored as a 128-bit key: XXH3-128 of the `txn_id` seeded with
//! the hash of its `merchant_id` (a `txn_id` belongs to one merchant, so
//! redeliveries are recognised among that merchant's events; collision odds
//! about 1 in 10^20 even with 10^9 ids retained), beside a 64-bit fingerprint
//! of the event's content, which tells a redelivery (`duplicate`) from a
//! reused id with different content (`conflict`).
//!
//! Memory is bounded by two generations per shard: ids go into the current
//! generation; when it holds `max_ids / 2 / shards` ids, or (if an event-time
//! retention is set) when event time has moved `retention` past the
//! generation's start, the previous generation is dropped and the current one
//! becomes previous. So an id is always remembered for at least `max_ids / 2`
//! later ids (per shard, on average) and at least `retention` of event time,
//! and never more than `max_ids` ids are held in all. Shards keep each
//! table's growth (a rehash) and rotation small, so no single event waits
//! for a large one.

mod table;

use crate::prefetch::prefetch;
use crate::state::{DedupShardState, DedupState, StateError};
use crate::time::EpochMillis;
use std::time::Duration;
use table::{IdTable, Probe, Slot};
use xxhash_rust::xxh3::xxh3_128_with_seed;

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

/// Shards of one partition's set.
const SHARDS: usize = 64;

/// The most the id tables of a `DedupSet::new(max_ids, _)` can allocate: every
/// shard's two generations at the bucket count a full generation needs.
/// Bucket counts are powers of two, so this is between 1 and 2 times
/// `max_ids * BYTES_PER_ID_AT_FULL_LOAD` (20M ids: 800 MiB), plus one
/// smallest table per shard and generation when `max_ids` is tiny.
pub fn max_allocated_bytes(max_ids: usize) -> usize {
    SHARDS * 2 * table::bytes_for(table::buckets_for(generation_cap(max_ids)))
}

/// Bytes a set allocates beyond its share of [`max_allocated_bytes`] when a
/// process's bound is split among partitions: each table's copy of its
/// first control-byte group. (Bucket counts scale exactly with the share
/// when `max_ids` is a multiple of 128 × partitions.)
pub const PER_SET_OVERHEAD: usize = SHARDS * 2 * table::GROUP_BYTES;

/// Ids per generation per shard.
fn generation_cap(max_ids: usize) -> usize {
    (max_ids / SHARDS / 2).max(1)
}

/// A new id as journalled for checkpoint deltas: (key, fingerprint, event time).
pub type JournalEntry = (u128, u64, EpochMillis);

#[derive(Default)]
struct Generations {
    current: IdTable,
    previous: IdTable,
    /// Event time at which `current` began, for event-time retention.
    current_since: Option<EpochMillis>,
}

/// A sharded, bounded, exact set of recent transaction ids of one partition.
pub struct DedupSet {
    shards: Box<[Generations]>,
    generation_cap: usize,
    retention_ms: Option<i64>,
    /// New ids in arrival order since the journal was last taken, when
    /// journaling is on (checkpoint deltas). Arrival order is each shard's
    /// insertion order too, which is all a replay needs.
    journal: Option<Vec<JournalEntry>>,
}

impl DedupSet {
    /// A set that holds at most `max_ids` ids and, if `retention` is set,
    /// rotates generations at least that often in event time.
    pub fn new(max_ids: usize, retention: Option<Duration>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Generations::default()).collect(),
            generation_cap: generation_cap(max_ids),
            retention_ms: retention.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            journal: None,
        }
    }

    /// The key a merchant's `txn_id` is stored under; `merchant_hash` is
    /// [`crate::partition::merchant_hash`] of its `merchant_id`.
    #[inline]
    pub fn key(merchant_hash: u64, txn_id: &str) -> u128 {
        xxh3_128_with_seed(txn_id.as_bytes(), merchant_hash)
    }

    fn shard_of(key: u128) -> usize {
        (key >> 64) as usize % SHARDS
    }

    /// Starts loading into cache what checking `key` will read first: a
    /// batch calls this a few events ahead of the check, so the probe (a
    /// cache miss in a large table) overlaps decoding the events between.
    #[inline]
    pub fn prefetch(&self, key: u128) {
        let gens = &self.shards[Self::shard_of(key)];
        if let Some(layout) = gens.current.layout() {
            let (control, slot) = layout.probe_start(key);
            prefetch(control);
            prefetch(slot);
        }
        if let Some(layout) = gens.previous.layout() {
            prefetch(layout.probe_start(key).0);
        }
    }

    /// Records `key` with `fingerprint` if new, and says whether it was.
    #[inline]
    pub fn check_insert(&mut self, key: u128, fingerprint: u64, at: EpochMillis) -> Verdict {
        let verdict = |seen: u64| {
            if seen == fingerprint {
                Verdict::Duplicate
            } else {
                Verdict::Conflict
            }
        };
        let (cap, retention) = (self.generation_cap, self.retention_ms);
        let gens = &mut self.shards[Self::shard_of(key)];
        if rotation_due(gens, cap, retention, at) {
            // Rare: look up without reserving room in a table about to
            // become the previous generation, then take the general path.
            if let Some(seen) = gens
                .current
                .fingerprint(key)
                .or_else(|| gens.previous.fingerprint(key))
            {
                return verdict(seen);
            }
            self.insert_new(key, fingerprint, at);
            return Verdict::New;
        }
        // Usual case: one probe of `current` finds the id or the slot it goes in.
        match gens.current.probe(key) {
            Probe::Found(bucket) => verdict(gens.current.fingerprint_at(bucket)),
            Probe::Vacant(bucket) => {
                if let Some(seen) = gens.previous.fingerprint(key) {
                    return verdict(seen);
                }
                gens.current.insert_vacant(bucket, key, fingerprint);
                gens.current_since.get_or_insert(at);
                if let Some(journal) = &mut self.journal {
                    journal.push((key, fingerprint, at));
                }
                Verdict::New
            }
        }
    }

    /// Records `key` with `fingerprint` as a plain [`Self::check_insert`] of
    /// `(merchant_hash, txn_id)`, for tests and tools.
    pub fn check_and_insert(
        &mut self,
        merchant_hash: u64,
        txn_id: &str,
        fingerprint: u64,
        at: EpochMillis,
    ) -> Verdict {
        self.check_insert(Self::key(merchant_hash, txn_id), fingerprint, at)
    }

    /// The one insertion rule, shared by live inserts and journal replay so
    /// that a replay rebuilds the same generations. (The fast path in
    /// [`Self::check_insert`] is this rule when no rotation is due.)
    fn insert_new(&mut self, key: u128, fingerprint: u64, at: EpochMillis) {
        let (cap, retention) = (self.generation_cap, self.retention_ms);
        let gens = &mut self.shards[Self::shard_of(key)];
        if rotation_due(gens, cap, retention, at) {
            // Reuse the dropped generation's allocation for the new one.
            let mut recycled = std::mem::take(&mut gens.previous);
            recycled.clear();
            gens.previous = std::mem::replace(&mut gens.current, recycled);
            gens.current_since = Some(at);
        }
        gens.current_since.get_or_insert(at);
        gens.current.insert_new(key, fingerprint);
        if let Some(journal) = &mut self.journal {
            journal.push((key, fingerprint, at));
        }
    }

    /// `measure` summed over every shard's two tables.
    fn sum_over_tables(&self, measure: impl Fn(&IdTable) -> usize) -> usize {
        self.shards
            .iter()
            .map(|g| measure(&g.current) + measure(&g.previous))
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
    pub fn enable_journal(&mut self) {
        self.journal.get_or_insert_with(Vec::new);
    }

    /// The ids first seen since the last call, in arrival order (empty
    /// unless journaling is on).
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Replays a journal taken from a set with the same bounds; the ids are
    /// not journalled again.
    pub fn replay(&mut self, journal: &[JournalEntry]) {
        let saved = self.journal.take();
        for &(key, fingerprint, at) in journal {
            self.insert_new(key, fingerprint, at);
        }
        self.journal = saved;
    }

    /// The whole set, for a base checkpoint.
    pub fn state(&self) -> DedupState {
        let copy = |t: &IdTable| t.iter().map(|s| (s.key(), s.fingerprint)).collect();
        DedupState {
            shards: self
                .shards
                .iter()
                .map(|g| DedupShardState {
                    current: copy(&g.current),
                    previous: copy(&g.previous),
                    current_since: g.current_since,
                })
                .collect(),
        }
    }

    /// Replaces the contents with a saved state (journaling stays as it was,
    /// emptied).
    pub fn restore(&mut self, state: &DedupState) -> Result<(), StateError> {
        if state.shards.len() != self.shards.len() {
            return Err(StateError::Invalid("dedup shard count differs"));
        }
        for (g, saved) in self.shards.iter_mut().zip(&state.shards) {
            for (table, saved) in [
                (&mut g.current, &saved.current),
                (&mut g.previous, &saved.previous),
            ] {
                table.clear();
                table.reserve(saved.len());
                for &(key, fingerprint) in saved {
                    // A repeated key keeps its last fingerprint, as a map's `extend` would.
                    table.upsert(key, fingerprint);
                }
            }
            g.current_since = saved.current_since;
        }
        if let Some(journal) = &mut self.journal {
            journal.clear();
        }
        Ok(())
    }
}

/// Whether inserting a new id at event time `at` first rotates the
/// generations: `current` is full, or has aged past the retention.
#[inline]
fn rotation_due(
    gens: &Generations,
    cap: usize,
    retention_ms: Option<i64>,
    at: EpochMillis,
) -> bool {
    let since = gens.current_since.unwrap_or(at);
    gens.current.len() >= cap
        || retention_ms.is_some_and(|retention| at.saturating_sub(since) >= retention)
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
        let mut set = DedupSet::new(1000, None);
        assert_eq!(set.check_and_insert(1, "t1", 7, 0), Verdict::New);
        assert_eq!(set.check_and_insert(1, "t1", 7, 0), Verdict::Duplicate);
        assert_eq!(set.check_and_insert(1, "t1", 8, 0), Verdict::Conflict);
        assert_eq!(set.check_and_insert(1, "t2", 7, 0), Verdict::New);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn the_same_txn_id_of_another_merchant_is_another_transaction() {
        let mut set = DedupSet::new(1000, None);
        assert_eq!(set.check_and_insert(1, "t1", 7, 0), Verdict::New);
        assert_eq!(set.check_and_insert(2, "t1", 7, 0), Verdict::New);
        assert_eq!(set.check_and_insert(2, "t1", 7, 0), Verdict::Duplicate);
    }

    #[test]
    fn allocation_stays_within_the_stated_bound_when_full() {
        for max_ids in [1, 64 * 7, 64 * 100, 64 * 2_000 + 77] {
            let mut set = DedupSet::new(max_ids, None);
            for i in 0..max_ids * 3 {
                set.check_and_insert(0, &format!("txn-{i}"), 1, 0);
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
        let mut set = DedupSet::new(max_ids, None);
        for i in 0..100_000 {
            set.check_and_insert(0, &format!("txn-{i}"), 1, 0);
        }
        assert!(set.len() <= max_ids, "{} > {max_ids}", set.len());
        assert!(set.len() >= max_ids / 4, "kept too few: {}", set.len());
    }

    #[test]
    fn recent_ids_are_remembered_after_rotations() {
        let mut set = DedupSet::new(64 * 1000, None);
        for i in 0..200_000 {
            set.check_and_insert(0, &format!("txn-{i}"), 1, 0);
        }
        // The last 2k are far inside the guaranteed max_ids/2 horizon.
        for i in 198_000..200_000 {
            assert_eq!(
                set.check_and_insert(0, &format!("txn-{i}"), 1, 0),
                Verdict::Duplicate
            );
        }
    }

    #[test]
    fn event_time_retention_forgets_old_generations() {
        let mut set = DedupSet::new(1_000_000, Some(Duration::from_secs(60)));
        assert_eq!(set.check_and_insert(0, "early", 1, 0), Verdict::New);
        assert_eq!(
            set.check_and_insert(0, "early", 1, 30_000),
            Verdict::Duplicate
        );
        // Two rotations later the id is gone (from every shard it could be in).
        for (i, at) in [61_000, 122_000, 183_000].into_iter().enumerate() {
            for s in 0..2000 {
                set.check_and_insert(0, &format!("filler-{i}-{s}"), 1, at);
            }
        }
        assert_eq!(set.check_and_insert(0, "early", 1, 183_000), Verdict::New);
    }

    #[test]
    fn base_plus_replayed_journal_rebuilds_the_same_generations() {
        let mut live = DedupSet::new(64 * 40, Some(Duration::from_secs(60)));
        live.enable_journal();
        for i in 0..3000 {
            live.check_and_insert(0, &format!("a-{i}"), i, i as i64 * 40);
        }
        let base = live.state();
        let _ = live.take_journal();
        for i in 0..5000 {
            live.check_and_insert(0, &format!("b-{i}"), i, 120_000 + i as i64 * 40);
        }
        let journal = live.take_journal();

        let mut restored = DedupSet::new(64 * 40, Some(Duration::from_secs(60)));
        restored.restore(&base).unwrap();
        restored.replay(&journal);
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
