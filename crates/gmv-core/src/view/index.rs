//! The live merchant index: every merchant of the partitions a view covers,
//! in a `DashMap` that HTTP handlers read while the publisher writes it.
//! This is where threads really meet (many readers, one writer per tick),
//! unlike the partitions themselves, which only their owner touches.

use crate::money::Fen;
use crate::partition::MerchantFigures;
use dashmap::DashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A merchant in the index: its figures and the partition slot they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    slot: u32,
    gmv: Fen,
    mobile_gmv: Fen,
    transactions: u64,
}

/// Every merchant of a view, by id.
#[derive(Default)]
pub struct MerchantIndex {
    map: DashMap<String, Entry, ahash::RandomState>,
}

impl MerchantIndex {
    /// Stores a merchant's latest figures from partition slot `slot`; says
    /// whether the merchant was last seen in another partition (producers
    /// must key events by `merchant_id`, so that is a producer's mistake).
    pub fn update(&self, slot: u32, m: &MerchantFigures) -> bool {
        let entry = Entry {
            slot,
            gmv: m.gmv,
            mobile_gmv: m.mobile_gmv,
            transactions: m.transactions,
        };
        match self.map.get_mut(m.merchant_id.as_str()) {
            Some(mut held) => {
                let moved = held.slot != slot;
                *held = entry;
                moved
            }
            None => {
                self.map.insert(m.merchant_id.clone(), entry);
                false
            }
        }
    }

    /// Drops the merchants of partition slot `slot` (the partition moved).
    pub fn remove_slot(&self, slot: u32) {
        self.map.retain(|_, e| e.slot != slot);
    }

    /// One merchant's figures.
    pub fn get(&self, merchant_id: &str) -> Option<MerchantFigures> {
        self.map.get(merchant_id).map(|e| MerchantFigures {
            merchant_id: merchant_id.to_owned(),
            gmv: e.gmv,
            mobile_gmv: e.mobile_gmv,
            transactions: e.transactions,
        })
    }

    /// Merchants held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no merchant is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The `n` biggest by GMV, biggest first (ties: smaller id first).
    pub fn top(&self, n: usize) -> Vec<MerchantFigures> {
        if n == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Reverse<(Fen, Reverse<String>)>> =
            BinaryHeap::with_capacity(n + 1);
        for item in self.map.iter() {
            let candidate = (item.gmv, Reverse(item.key().clone()));
            if heap.len() < n {
                heap.push(Reverse(candidate));
            } else if heap.peek().is_some_and(|Reverse(least)| candidate > *least) {
                heap.pop();
                heap.push(Reverse(candidate));
            }
        }
        let mut top: Vec<(Fen, String)> = heap
            .into_iter()
            .map(|Reverse((gmv, Reverse(id)))| (gmv, id))
            .collect();
        top.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        top.into_iter()
            .filter_map(|(_, id)| self.get(&id))
            .collect()
    }

    /// How many merchants have more GMV than `gmv` (a rank is this plus one).
    pub fn count_above(&self, gmv: Fen) -> usize {
        self.map.iter().filter(|e| e.gmv > gmv).count()
    }

    /// Every merchant, biggest first (ties: smaller id first).
    pub fn all_sorted(&self) -> Vec<MerchantFigures> {
        let mut all: Vec<MerchantFigures> = self
            .map
            .iter()
            .map(|e| MerchantFigures {
                merchant_id: e.key().clone(),
                gmv: e.gmv,
                mobile_gmv: e.mobile_gmv,
                transactions: e.transactions,
            })
            .collect();
        all.sort_unstable_by(|a, b| {
            b.gmv
                .cmp(&a.gmv)
                .then_with(|| a.merchant_id.cmp(&b.merchant_id))
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, gmv: Fen) -> MerchantFigures {
        MerchantFigures {
            merchant_id: id.into(),
            gmv,
            mobile_gmv: gmv / 2,
            transactions: 1,
        }
    }

    #[test]
    fn top_ranks_by_gmv_then_id_and_removal_follows_the_partition() {
        let index = MerchantIndex::default();
        for (slot, id, gmv) in [(0, "b", 5), (0, "a", 5), (1, "c", 9), (1, "d", 1)] {
            assert!(!index.update(slot, &m(id, gmv)));
        }
        let ids: Vec<String> = index.top(3).into_iter().map(|m| m.merchant_id).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        assert_eq!(index.count_above(5), 1);
        index.remove_slot(1);
        assert_eq!(index.len(), 2);
        assert!(index.get("c").is_none());
        assert!(
            index.update(1, &m("a", 6)),
            "a merchant seen in two partitions is reported"
        );
    }
}
