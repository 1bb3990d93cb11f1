//! The merchants of one partition: each merchant's running figures in a
//! plain table that only the partition's thread writes.
//!
//! An open-addressing table of cache-line-sized entries (id, hash, GMV,
//! mobile GMV, transactions, the next threshold to cross, change marks),
//! probed linearly from the slot the merchant's hash picks. A merchant's
//! figures live in the slot that finds it, so a lookup usually touches one
//! line, and since that slot's address follows from the hash alone, a batch
//! can prefetch it a few records ahead ([`MerchantTable::prefetch`]) while
//! it decodes the records between. The slots of merchants changed since
//! the last publish and checkpoint are listed, so neither has to read every
//! merchant.

use crate::money::Fen;
use crate::prefetch::prefetch;

/// Longest merchant id kept inside its entry (the usual `m-000123` is 8);
/// longer ones are boxed.
const INLINE_ID_BYTES: usize = 22;

/// A merchant id held by the table.
#[derive(Clone)]
enum MerchantId {
    Inline {
        len: u8,
        bytes: [u8; INLINE_ID_BYTES],
    },
    Boxed(Box<str>),
}

impl MerchantId {
    fn new(id: &str) -> Self {
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_ID_BYTES => {
                let mut bytes = [0; INLINE_ID_BYTES];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                MerchantId::Inline { len, bytes }
            }
            _ => MerchantId::Boxed(id.into()),
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            MerchantId::Inline { len, bytes } => &bytes[..usize::from(*len)],
            MerchantId::Boxed(text) => text.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // The bytes were copied from a `&str` in `new`.
            MerchantId::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            MerchantId::Boxed(text) => text,
        }
    }
}

/// Marks an entry carries: changed since the last publish, since the last
/// checkpoint.
pub(crate) const PUBLISH: u8 = 1;
pub(crate) const CHECKPOINT: u8 = 2;

/// A slot's hash when empty; a merchant's stored hash always has its low
/// bit set.
const EMPTY: u64 = 0;

/// The hash a merchant is stored under: never [`EMPTY`].
#[inline]
fn stored(hash: u64) -> u64 {
    hash | 1
}

/// The slot a probe for `stored` starts at (the bits above the forced one).
#[inline]
fn home(stored: u64, mask: usize) -> usize {
    (stored >> 1) as usize & mask
}

/// One merchant's running figures. One cache line.
#[repr(align(64))]
pub(crate) struct Merchant {
    id: MerchantId,
    /// The merchant hash with its low bit set ([`EMPTY`] for a free slot).
    hash: u64,
    /// Window GMV, fen.
    pub(crate) gmv: Fen,
    /// Window GMV on the mobile channel, fen.
    pub(crate) mobile_gmv: Fen,
    /// Counted transactions.
    pub(crate) transactions: u64,
    /// Index of the lowest threshold not yet reached.
    pub(crate) next_threshold: u8,
    /// [`PUBLISH`] and [`CHECKPOINT`] marks.
    pub(crate) changed: u8,
}

impl Merchant {
    fn vacant() -> Self {
        Self {
            id: MerchantId::Inline {
                len: 0,
                bytes: [0; INLINE_ID_BYTES],
            },
            hash: EMPTY,
            gmv: 0,
            mobile_gmv: 0,
            transactions: 0,
            next_threshold: 0,
            changed: 0,
        }
    }

    /// The merchant's id.
    pub(crate) fn id(&self) -> &str {
        self.id.as_str()
    }
}

/// The table of one partition's merchants.
#[derive(Default)]
pub(crate) struct MerchantTable {
    slots: Box<[Merchant]>,
    len: usize,
    /// Slots changed since the last publish / checkpoint.
    publish_changed: Vec<u32>,
    checkpoint_changed: Vec<u32>,
}

impl MerchantTable {
    /// Merchants held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Starts loading the slot a lookup of `hash` reads first.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[home(stored(hash), self.mask())]);
        }
    }

    /// The slot of the merchant `id` (whose [hash](super::merchant_hash) is
    /// `hash`), adding it with zero figures if new.
    #[inline]
    pub(crate) fn slot(&mut self, hash: u64, id: &str) -> usize {
        let stored = stored(hash);
        if !self.slots.is_empty() {
            let mask = self.mask();
            let mut at = home(stored, mask);
            loop {
                let slot = &self.slots[at];
                if slot.hash == stored && slot.id.as_bytes() == id.as_bytes() {
                    return at;
                }
                if slot.hash == EMPTY {
                    if (self.len + 1) * 4 <= self.slots.len() * 3 {
                        return self.fill(at, stored, id);
                    }
                    break;
                }
                at = (at + 1) & mask;
            }
        }
        self.grow();
        let at = self.vacant_slot(stored);
        self.fill(at, stored, id)
    }

    #[cold]
    fn fill(&mut self, at: usize, stored: u64, id: &str) -> usize {
        let slot = &mut self.slots[at];
        slot.id = MerchantId::new(id);
        slot.hash = stored;
        self.len += 1;
        at
    }

    /// The first free slot from where `stored` hashes to.
    fn vacant_slot(&self, stored: u64) -> usize {
        let mask = self.mask();
        let mut at = home(stored, mask);
        while self.slots[at].hash != EMPTY {
            at = (at + 1) & mask;
        }
        at
    }

    /// Doubles the table (at most 3/4 full), rebuilding the change lists
    /// from the marks since every merchant moves.
    #[cold]
    fn grow(&mut self) {
        let buckets = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(
            &mut self.slots,
            (0..buckets).map(|_| Merchant::vacant()).collect(),
        );
        self.publish_changed.clear();
        self.checkpoint_changed.clear();
        for merchant in old.into_vec() {
            if merchant.hash != EMPTY {
                let at = self.vacant_slot(merchant.hash);
                if merchant.changed & PUBLISH != 0 {
                    self.publish_changed.push(at as u32);
                }
                if merchant.changed & CHECKPOINT != 0 {
                    self.checkpoint_changed.push(at as u32);
                }
                self.slots[at] = merchant;
            }
        }
    }

    /// The entry in slot `at`.
    #[inline]
    pub(crate) fn at_mut(&mut self, at: usize) -> &mut Merchant {
        &mut self.slots[at]
    }

    /// The entry in slot `at`.
    pub(crate) fn at(&self, at: usize) -> &Merchant {
        &self.slots[at]
    }

    /// Marks slot `at` changed for both readers (listing it where it is not
    /// yet marked).
    #[inline]
    pub(crate) fn mark_changed(&mut self, at: usize) {
        let marks = self.slots[at].changed;
        if marks != PUBLISH | CHECKPOINT {
            self.slots[at].changed = PUBLISH | CHECKPOINT;
            if marks & PUBLISH == 0 {
                self.publish_changed.push(at as u32);
            }
            if marks & CHECKPOINT == 0 {
                self.checkpoint_changed.push(at as u32);
            }
        }
    }

    /// The merchants changed since the last call for `mark` ([`PUBLISH`] or
    /// [`CHECKPOINT`]), their marks cleared.
    pub(crate) fn take_changed(&mut self, mark: u8) -> Vec<&Merchant> {
        let list = if mark == PUBLISH {
            std::mem::take(&mut self.publish_changed)
        } else {
            std::mem::take(&mut self.checkpoint_changed)
        };
        for &at in &list {
            self.slots[at as usize].changed &= !mark;
        }
        list.into_iter()
            .map(|at| &self.slots[at as usize])
            .collect()
    }

    /// Marks every merchant changed for publishing, keeping what the next
    /// checkpoint is owed (a reader lost track and needs them all again).
    pub(crate) fn mark_all_for_publish(&mut self) {
        for (at, slot) in self.slots.iter_mut().enumerate() {
            if slot.hash != EMPTY && slot.changed & PUBLISH == 0 {
                slot.changed |= PUBLISH;
                self.publish_changed.push(at as u32);
            }
        }
    }

    /// Marks every merchant changed for publishing only (after a restore:
    /// everything is new to a reader, nothing to the checkpoints).
    pub(crate) fn mark_all_published(&mut self) {
        self.publish_changed.clear();
        for (at, slot) in self.slots.iter_mut().enumerate() {
            if slot.hash != EMPTY {
                slot.changed = PUBLISH;
                self.publish_changed.push(at as u32);
            }
        }
        self.checkpoint_changed.clear();
    }

    /// The merchant `id`, if held.
    pub(crate) fn get(&self, hash: u64, id: &str) -> Option<&Merchant> {
        if self.slots.is_empty() {
            return None;
        }
        let (stored, mask) = (stored(hash), self.mask());
        let mut at = home(stored, mask);
        loop {
            let slot = &self.slots[at];
            if slot.hash == EMPTY {
                return None;
            }
            if slot.hash == stored && slot.id.as_bytes() == id.as_bytes() {
                return Some(slot);
            }
            at = (at + 1) & mask;
        }
    }

    /// Every merchant, in table order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Merchant> {
        self.slots.iter().filter(|m| m.hash != EMPTY)
    }

    /// Every merchant, to change.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Merchant> {
        self.slots.iter_mut().filter(|m| m.hash != EMPTY)
    }

    /// Bytes held by the slots and the change lists (ids longer than the
    /// inline room add their own).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Merchant>()
            + (self.publish_changed.capacity() + self.checkpoint_changed.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::merchant_hash as hash;

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Merchant>(), 64);
    }

    #[test]
    fn ids_find_their_own_entry_whatever_their_length_across_growth() {
        let mut table = MerchantTable::default();
        let long = "m-".repeat(40);
        let mut ids: Vec<String> = (0..100).map(|i| format!("m-{i}")).collect();
        ids.push(long);
        ids.push(String::new());
        for (i, id) in ids.iter().enumerate() {
            let at = table.slot(hash(id), id);
            table.at_mut(at).gmv += i as u64 + 1;
            table.mark_changed(at);
        }
        for (i, id) in ids.iter().enumerate() {
            let at = table.slot(hash(id), id);
            assert_eq!(table.at(at).id(), id);
            assert_eq!(table.get(hash(id), id).map(|m| m.gmv), Some(i as u64 + 1));
        }
        assert_eq!(table.len(), ids.len());
        assert!(table.get(hash("m-x"), "m-x").is_none());
        let changed: Vec<String> = table
            .take_changed(PUBLISH)
            .iter()
            .map(|m| m.id().to_owned())
            .collect();
        assert_eq!(changed.len(), ids.len(), "change lists survive growth");
        assert!(table.take_changed(PUBLISH).is_empty());
        assert_eq!(table.take_changed(CHECKPOINT).len(), ids.len());
    }

    #[test]
    fn a_hash_collision_is_told_apart_by_the_id() {
        let mut table = MerchantTable::default();
        let a = table.slot(7, "a");
        let b = table.slot(7, "b");
        assert_ne!(a, b);
        assert_eq!(table.slot(7, "a"), a);
        assert_eq!(table.at(b).id(), "b");
    }
}
