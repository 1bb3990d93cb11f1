//! The dedup set's hash table: open addressing over 24-byte slots with one
//! control byte per slot, probed eight control bytes at a time (the SwissTable
//! layout that hashbrown uses).
//!
//! Written here rather than taken from hashbrown for one reason: the probe
//! for an id starts at an address computable from the id alone
//! ([`IdTable::probe_start`]), so a batch can prefetch it a few events before
//! it takes the shard lock. At production size the table is hundreds of MB
//! and each probe is a cache miss; with the prefetch, decoding the next
//! events overlaps the wait. Ids are never removed one by one (a generation
//! is dropped whole), so there are no tombstones.

/// Control bytes read per probe step.
const GROUP: usize = 8;
/// The mirrored control bytes every allocated table carries.
pub(super) const GROUP_BYTES: usize = GROUP;
/// Control byte of an empty bucket. A full one is `FULL | tag`.
const EMPTY: u8 = 0;
const FULL: u8 = 0x80;
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// One retained id. The key is kept as two halves rather than a `u128`,
/// whose 16-byte alignment would pad the slot to 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Zeroable)]
pub(super) struct Slot {
    /// Low half of the key: already a uniform hash, so it places the slot.
    pub(super) lo: u64,
    /// High half of the key; its low bits also pick the shard.
    pub(super) hi: u64,
    pub(super) fingerprint: u64,
}

impl Slot {
    pub(super) fn new(key: u128, fingerprint: u64) -> Self {
        Self {
            lo: key as u64,
            hi: (key >> 64) as u64,
            fingerprint,
        }
    }

    pub(super) fn key(&self) -> u128 {
        u128::from(self.hi) << 64 | u128::from(self.lo)
    }
}

/// The tag kept in a full bucket's control byte: 7 bits of the key that do
/// not place it (the top of `lo`; the bottom picks the bucket).
fn tag(key: u128) -> u8 {
    FULL | (key as u64 >> 57) as u8
}

/// The most ids a table of `buckets` holds before it grows: 7/8 of it, as
/// hashbrown (always at least one bucket stays empty, so probes end).
fn capacity(buckets: usize) -> usize {
    buckets / 8 * 7
}

/// The bucket count a table holding `items` ids has: the smallest power of
/// two, at least [`GROUP`], whose capacity is enough.
pub(super) fn buckets_for(items: usize) -> usize {
    let mut buckets = GROUP;
    while capacity(buckets) < items {
        buckets *= 2;
    }
    buckets
}

/// Bytes a table of `buckets` allocates: a slot and a control byte each, and
/// [`GROUP`] mirrored control bytes.
pub(super) fn bytes_for(buckets: usize) -> usize {
    buckets * (std::mem::size_of::<Slot>() + 1) + GROUP
}

/// Where a table's arrays are, to compute an id's first probe address
/// without the table itself (see `Hint` in the parent module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) control: *const u8,
    pub(super) slots: *const Slot,
    pub(super) mask: usize,
}

impl Layout {
    /// The control byte and the slot a probe for `key` reads first. Only
    /// ever prefetched, never read through: by then the table may have moved.
    pub(super) fn probe_start(&self, key: u128) -> (*const u8, *const Slot) {
        let at = key as usize & self.mask;
        (self.control.wrapping_add(at), self.slots.wrapping_add(at))
    }
}

/// A probe's steps: groups of [`GROUP`] buckets from the one the key's low
/// bits pick, each step [`GROUP`] buckets further than the last. Such
/// triangular steps visit every bucket of a power-of-two table (as in
/// hashbrown), and a table below capacity always has an empty one, so a
/// probe that stops at a group with an empty bucket always stops.
struct ProbeSeq {
    at: usize,
    stride: usize,
    mask: usize,
}

impl ProbeSeq {
    fn new(key: u128, mask: usize) -> Self {
        Self {
            at: key as usize & mask,
            stride: 0,
            mask,
        }
    }

    /// The bucket of the lowest flagged byte of this step's group.
    fn bucket(&self, flags: u64) -> usize {
        (self.at + flags.trailing_zeros() as usize / 8) & self.mask
    }

    fn advance(&mut self) {
        self.stride += GROUP;
        self.at = (self.at + self.stride) & self.mask;
    }
}

/// Bits of the bytes of `group` that equal `byte`. May also flag a byte just
/// above a true match (a borrow), never misses one: callers check the key.
fn matching(group: u64, byte: u8) -> u64 {
    let x = group ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// Bits of the empty bytes of `group` (exact: full bytes have the high bit).
fn empties(group: u64) -> u64 {
    !group & HIGH
}

/// A table of ids, with a fingerprint each.
#[derive(Default)]
pub(super) struct IdTable {
    /// One byte per bucket, then the first [`GROUP`] again, so a probe step
    /// near the end reads eight bytes without wrapping. Empty when nothing
    /// has been allocated yet.
    control: Box<[u8]>,
    slots: Box<[Slot]>,
    len: usize,
}

/// What a probe found.
pub(super) enum Probe {
    /// The id is in this bucket.
    Found(usize),
    /// Not there; it would go in this bucket (if the table has room).
    Vacant(usize),
}

impl IdTable {
    fn buckets(&self) -> usize {
        self.slots.len()
    }

    /// Ids held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated.
    pub(super) fn allocated_bytes(&self) -> usize {
        if self.slots.is_empty() {
            0
        } else {
            bytes_for(self.buckets())
        }
    }

    /// Where the arrays are; `None` before the first allocation.
    pub(super) fn layout(&self) -> Option<Layout> {
        let mask = self.buckets().checked_sub(1)?;
        Some(Layout {
            control: self.control.as_ptr(),
            slots: self.slots.as_ptr(),
            mask,
        })
    }

    /// The group of control bytes from bucket `at`.
    fn group(&self, at: usize) -> u64 {
        let mut bytes = [0; GROUP];
        bytes.copy_from_slice(&self.control[at..at + GROUP]);
        u64::from_le_bytes(bytes)
    }

    /// Looks `key` up; where it would go if absent.
    pub(super) fn probe(&self, key: u128) -> Probe {
        let Some(mask) = self.buckets().checked_sub(1) else {
            // Never used: a table with no buckets is full, so
            // `insert_vacant` grows it and probes again.
            return Probe::Vacant(usize::MAX);
        };
        let tag = tag(key);
        let mut seq = ProbeSeq::new(key, mask);
        loop {
            let group = self.group(seq.at);
            let mut candidates = matching(group, tag);
            while candidates != 0 {
                let bucket = seq.bucket(candidates);
                let slot = &self.slots[bucket];
                if slot.lo == key as u64 && slot.hi == (key >> 64) as u64 {
                    return Probe::Found(bucket);
                }
                candidates &= candidates - 1;
            }
            let empty = empties(group);
            if empty != 0 {
                return Probe::Vacant(seq.bucket(empty));
            }
            seq.advance();
        }
    }

    /// The fingerprint stored in a bucket a probe [found](Probe::Found).
    pub(super) fn fingerprint_at(&self, bucket: usize) -> u64 {
        self.slots[bucket].fingerprint
    }

    /// The fingerprint stored under `key`, if any.
    pub(super) fn fingerprint(&self, key: u128) -> Option<u64> {
        match self.probe(key) {
            Probe::Found(bucket) => Some(self.slots[bucket].fingerprint),
            Probe::Vacant(_) => None,
        }
    }

    /// Whether the next new id makes the table grow.
    fn is_full(&self) -> bool {
        self.len >= capacity(self.buckets())
    }

    fn insert_at(&mut self, bucket: usize, key: u128, fingerprint: u64) {
        debug_assert!(!self.is_full());
        self.set_control(bucket, tag(key));
        self.slots[bucket] = Slot::new(key, fingerprint);
        self.len += 1;
    }

    /// Stores a new id in the bucket its [`Probe::Vacant`] named, unless the
    /// table must grow first (then wherever it goes after). Returns whether
    /// the table moved (see [`Self::layout`]).
    pub(super) fn insert_vacant(&mut self, bucket: usize, key: u128, fingerprint: u64) -> bool {
        if self.is_full() {
            return self.insert_new(key, fingerprint);
        }
        self.insert_at(bucket, key, fingerprint);
        false
    }

    /// Stores an id known to be absent, growing the table if needed (its
    /// probe only looks for an empty bucket: no key is compared). Returns
    /// whether the table moved (see [`Self::layout`]).
    pub(super) fn insert_new(&mut self, key: u128, fingerprint: u64) -> bool {
        debug_assert!(
            self.fingerprint(key).is_none(),
            "insert_new of an id already held"
        );
        let grows = self.is_full();
        if grows {
            self.grow();
        }
        let mut seq = ProbeSeq::new(key, self.buckets() - 1);
        loop {
            let empty = empties(self.group(seq.at));
            if empty != 0 {
                self.insert_at(seq.bucket(empty), key, fingerprint);
                return grows;
            }
            seq.advance();
        }
    }

    /// Stores `key` with `fingerprint`, replacing the fingerprint if the id
    /// is already held.
    pub(super) fn upsert(&mut self, key: u128, fingerprint: u64) {
        match self.probe(key) {
            Probe::Found(bucket) => self.slots[bucket].fingerprint = fingerprint,
            Probe::Vacant(bucket) => {
                self.insert_vacant(bucket, key, fingerprint);
            }
        }
    }

    /// Makes room for `items` ids without growing again.
    pub(super) fn reserve(&mut self, items: usize) {
        let buckets = buckets_for(items);
        if buckets > self.buckets() {
            self.resize(buckets);
        }
    }

    fn grow(&mut self) {
        self.resize((self.buckets() * 2).max(GROUP));
    }

    fn resize(&mut self, buckets: usize) {
        let old = std::mem::replace(
            self,
            IdTable {
                // Zeroed allocations (calloc): fresh pages are not written
                // here, only when a bucket is first used.
                control: vec![EMPTY; buckets + GROUP].into_boxed_slice(),
                slots: bytemuck::allocation::zeroed_slice_box(buckets),
                len: 0,
            },
        );
        for slot in old.iter() {
            self.insert_new(slot.key(), slot.fingerprint);
        }
    }

    fn set_control(&mut self, bucket: usize, byte: u8) {
        self.control[bucket] = byte;
        if bucket < GROUP {
            let buckets = self.buckets();
            self.control[buckets + bucket] = byte;
        }
    }

    /// Forgets every id, keeping the allocation.
    pub(super) fn clear(&mut self) {
        self.control.fill(EMPTY);
        self.len = 0;
    }

    /// The ids held, in table order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.control
            .iter()
            .zip(self.slots.iter())
            .filter(|(&control, _)| control & FULL != 0)
            .map(|(_, slot)| slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Keys that collide a lot: few distinct low bits (bucket), tags and
    /// shards, so probes wrap, chain across groups and meet false tag matches.
    fn crowded_key() -> impl Strategy<Value = u128> {
        (0u64..64, 0u64..4, any::<u64>())
            .prop_map(|(lo, top, hi)| u128::from(hi % 8) << 64 | u128::from(top << 57 | lo))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn behaves_as_a_map(
            ops in proptest::collection::vec((crowded_key(), 0u64..4, any::<bool>()), 0..400),
        ) {
            let mut table = IdTable::default();
            let mut model = HashMap::new();
            for (key, fingerprint, upsert) in ops {
                prop_assert_eq!(table.fingerprint(key), model.get(&key).copied());
                if upsert {
                    table.upsert(key, fingerprint);
                    model.insert(key, fingerprint);
                } else if let Probe::Vacant(_) = table.probe(key) {
                    table.insert_new(key, fingerprint);
                    model.insert(key, fingerprint);
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert!(table.len() <= capacity(table.buckets()));
            }
            let mut held: Vec<_> = table.iter().map(|s| (s.key(), s.fingerprint)).collect();
            let mut expected: Vec<_> = model.into_iter().collect();
            held.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(held, expected);
            table.clear();
            prop_assert_eq!(table.len(), 0);
            prop_assert_eq!(table.iter().count(), 0);
        }
    }

    #[test]
    fn a_probe_starts_where_the_prefetch_points() {
        let mut table = IdTable::default();
        assert!(table.layout().is_none());
        table.reserve(100);
        let key = 0xdead_beef_u128 << 64 | 0x1234_5678_9abc;
        let (control, slot) = table.layout().unwrap().probe_start(key);
        let Probe::Vacant(bucket) = table.probe(key) else {
            panic!("empty table")
        };
        // In an empty table the id goes exactly where its probe starts.
        assert_eq!(slot, &table.slots[bucket] as *const Slot);
        assert_eq!(control, table.control[bucket..].as_ptr());
    }

    #[test]
    fn sizes_follow_the_load_factor() {
        assert_eq!(buckets_for(0), 8);
        assert_eq!(buckets_for(7), 8);
        assert_eq!(buckets_for(8), 16);
        assert_eq!(buckets_for(7 * 1024), 8192);
        assert_eq!(buckets_for(7 * 1024 + 1), 16384);
        let mut table = IdTable::default();
        for i in 0..7 * 1024u128 {
            table.insert_new(i * 0x9e37_79b9_7f4a_7c15, 0);
        }
        assert_eq!(table.buckets(), 8192);
        assert_eq!(table.allocated_bytes(), bytes_for(8192));
    }
}
