//! The merchants of one partition: each merchant's running figures in a
//! plain table that only the partition's thread writes.
//!
//! Figures live in an arena of cache-line-sized entries (id, hash, GMV,
//! mobile GMV, transactions, the next threshold to cross, change marks); a
//! compact hash index of `u32` positions finds an id's entry. A lookup
//! touches the index's control bytes and then the entry itself, whose line
//! it is about to update anyway; the arena also lets a publish or a
//! checkpoint find the merchants changed since the last one through a list
//! of positions, without a second lookup.

use crate::money::Fen;
use hashbrown::HashTable;

/// Longest merchant id kept inside its entry (the usual `m-000123` is 8);
/// longer ones are boxed.
const INLINE_ID_BYTES: usize = 22;

/// A merchant id held by the table.
#[derive(Clone)]
enum MerchantId {
    Inline { len: u8, bytes: [u8; INLINE_ID_BYTES] },
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

/// One merchant's running figures. One cache line.
#[repr(align(64))]
pub(crate) struct Merchant {
    id: MerchantId,
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
    /// The merchant's id.
    pub(crate) fn id(&self) -> &str {
        self.id.as_str()
    }
}

/// The table of one partition's merchants.
#[derive(Default)]
pub(crate) struct MerchantTable {
    index: HashTable<u32>,
    entries: Vec<Merchant>,
}

impl MerchantTable {
    /// Merchants held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The position of the merchant `id` (whose [hash](super::merchant_hash)
    /// is `hash`), adding it with zero figures if new.
    #[inline]
    pub(crate) fn position(&mut self, hash: u64, id: &str) -> usize {
        let entries = &self.entries;
        if let Some(&at) = self
            .index
            .find(hash, |&at| entries[at as usize].id.as_bytes() == id.as_bytes())
        {
            return at as usize;
        }
        self.insert(hash, id)
    }

    #[cold]
    fn insert(&mut self, hash: u64, id: &str) -> usize {
        let at = self.entries.len();
        self.entries.push(Merchant {
            id: MerchantId::new(id),
            hash,
            gmv: 0,
            mobile_gmv: 0,
            transactions: 0,
            next_threshold: 0,
            changed: 0,
        });
        let entries = &self.entries;
        // Positions fit in u32: a partition with 4 billion merchants would
        // need hundreds of GiB before this.
        self.index
            .insert_unique(hash, at as u32, |&i| entries[i as usize].hash);
        at
    }

    /// The entry at `position`.
    #[inline]
    pub(crate) fn at_mut(&mut self, position: usize) -> &mut Merchant {
        &mut self.entries[position]
    }

    /// The entry at `position`.
    pub(crate) fn at(&self, position: usize) -> &Merchant {
        &self.entries[position]
    }

    /// The merchant `id`, if held.
    pub(crate) fn get(&self, hash: u64, id: &str) -> Option<&Merchant> {
        self.index
            .find(hash, |&at| {
                self.entries[at as usize].id.as_bytes() == id.as_bytes()
            })
            .map(|&at| &self.entries[at as usize])
    }

    /// Every merchant, in the order first seen.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Merchant> {
        self.entries.iter()
    }

    /// Bytes held by the arena and the index (ids longer than the inline
    /// room add their own).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Merchant>()
            + self.index.capacity() * (std::mem::size_of::<u32>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(id: &str) -> u64 {
        super::super::merchant_hash(id)
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Merchant>(), 64);
    }

    #[test]
    fn ids_find_their_own_entry_whatever_their_length() {
        let mut table = MerchantTable::default();
        let long = "m-".repeat(40);
        let ids = ["m-1", "m-2", long.as_str(), "m-000123", ""];
        for (i, id) in ids.iter().enumerate() {
            let at = table.position(hash(id), id);
            table.at_mut(at).gmv += i as u64 + 1;
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(table.position(hash(id), id), i);
            assert_eq!(table.get(hash(id), id).map(|m| m.gmv), Some(i as u64 + 1));
            assert_eq!(table.at(i).id(), *id);
        }
        assert_eq!(table.len(), ids.len());
        assert!(table.get(hash("m-3"), "m-3").is_none());
    }

    #[test]
    fn a_hash_collision_is_told_apart_by_the_id() {
        let mut table = MerchantTable::default();
        let a = table.position(7, "a");
        let b = table.position(7, "b");
        assert_ne!(a, b);
        assert_eq!(table.position(7, "a"), a);
        assert_eq!(table.at(b).id(), "b");
    }
}
