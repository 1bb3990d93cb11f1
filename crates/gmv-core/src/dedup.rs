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

use crate::state::{DedupJournal, DedupShardState, DedupState, StateError};
use crate::time::EpochMillis;
use hashbrown::HashMap;
use parking_lot::Mutex;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;
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

/// Bytes one retained id costs in a full table: 16-byte key, 8-byte
/// fingerprint and 1 control byte, at hashbrown's 7/8 maximum load.
pub const BYTES_PER_ID_AT_FULL_LOAD: usize = (16 + 8 + 1) * 8 / 7;

const SHARDS: usize = 64;

/// The key is already a uniform hash: use its low bits as the table hash.
#[derive(Clone, Copy, Default)]
struct PassThrough;

#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u128 keys are hashed here; keep a sane fallback anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher::default()
    }
}

type IdTable = HashMap<u128, u64, PassThrough>;

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
    shards: Box<[Mutex<Generations>]>,
    generation_cap: usize,
    retention_ms: Option<i64>,
}

impl DedupSet {
    /// A set that holds at most `max_ids` ids and, if `retention` is set,
    /// rotates generations at least that often in event time.
    pub fn new(max_ids: usize, retention: Option<Duration>) -> Self {
        let generation_cap = (max_ids / SHARDS / 2).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Generations {
                    current: IdTable::with_hasher(PassThrough),
                    previous: IdTable::with_hasher(PassThrough),
                    current_since: None,
                    journal: None,
                })
            })
            .collect();
        Self {
            shards,
            generation_cap,
            retention_ms: retention.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// The key an id is stored under.
    pub fn key(txn_id: &str) -> u128 {
        xxh3_128(txn_id.as_bytes())
    }

    /// Records `txn_id` with `fingerprint` if new, and says whether it was.
    pub fn check_and_insert(&self, txn_id: &str, fingerprint: u64, at: EpochMillis) -> Verdict {
        self.check_and_insert_key(Self::key(txn_id), fingerprint, at)
    }

    /// [`Self::check_and_insert`] with a precomputed key.
    pub fn check_and_insert_key(&self, key: u128, fingerprint: u64, at: EpochMillis) -> Verdict {
        let shard = &self.shards[(key >> 64) as usize % SHARDS];
        let mut gens = shard.lock();
        if let Some(&seen) = gens.current.get(&key).or_else(|| gens.previous.get(&key)) {
            return if seen == fingerprint {
                Verdict::Duplicate
            } else {
                Verdict::Conflict
            };
        }
        self.insert_new(&mut gens, key, fingerprint, at);
        Verdict::New
    }

    /// The one insertion rule, shared by live inserts and journal replay so
    /// that a replay rebuilds the same generations.
    fn insert_new(&self, gens: &mut Generations, key: u128, fingerprint: u64, at: EpochMillis) {
        self.rotate_if_due(gens, at);
        gens.current.insert(key, fingerprint);
        if let Some(journal) = &mut gens.journal {
            journal.push((key, fingerprint, at));
        }
    }

    fn rotate_if_due(&self, gens: &mut Generations, at: EpochMillis) {
        let since = *gens.current_since.get_or_insert(at);
        let full = gens.current.len() >= self.generation_cap;
        let aged = self
            .retention_ms
            .is_some_and(|retention| at.saturating_sub(since) >= retention);
        if full || aged {
            // Reuse the dropped generation's allocation for the new one.
            let mut recycled =
                std::mem::replace(&mut gens.previous, IdTable::with_hasher(PassThrough));
            recycled.clear();
            gens.previous = std::mem::replace(&mut gens.current, recycled);
            gens.current_since = Some(at);
        }
    }

    /// Ids held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock();
                g.current.len() + g.previous.len()
            })
            .sum()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the tables have allocated (ids, fingerprints and control bytes).
    pub fn allocated_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock();
                g.current.allocation_size() + g.previous.allocation_size()
            })
            .sum()
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
        for (shard, entries) in self.shards.iter().zip(&journal.shards) {
            let mut gens = shard.lock();
            for &(key, fingerprint, at) in entries {
                self.insert_new(&mut gens, key, fingerprint, at);
            }
        }
        Ok(())
    }

    /// The whole set, for a base checkpoint.
    pub fn state(&self) -> DedupState {
        let copy = |t: &IdTable| t.iter().map(|(k, v)| (*k, *v)).collect();
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
        for (shard, saved) in self.shards.iter().zip(&state.shards) {
            let mut g = shard.lock();
            g.current.clear();
            g.current.extend(saved.current.iter().copied());
            g.previous.clear();
            g.previous.extend(saved.previous.iter().copied());
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
    fn second_sighting_is_duplicate_or_conflict() {
        let set = DedupSet::new(1000, None);
        assert_eq!(set.check_and_insert("t1", 7, 0), Verdict::New);
        assert_eq!(set.check_and_insert("t1", 7, 0), Verdict::Duplicate);
        assert_eq!(set.check_and_insert("t1", 8, 0), Verdict::Conflict);
        assert_eq!(set.check_and_insert("t2", 7, 0), Verdict::New);
        assert_eq!(set.len(), 2);
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
