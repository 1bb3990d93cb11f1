//! The biggest merchants of a partition, kept as their figures change.
//!
//! A merchant's GMV only grows while its partition is owned, so the `n`
//! biggest can be kept from the merchants that changed alone: a merchant
//! left out stays below the `n` above it until it changes again.

use crate::money::Fen;
use crate::partition::MerchantFigures;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

/// The `n` biggest merchants by GMV (ties: smaller id first).
#[derive(Debug, Default, Clone)]
pub struct TopMerchants {
    n: usize,
    ranked: BTreeMap<(Reverse<Fen>, String), MerchantFigures>,
    gmv_of: HashMap<String, Fen>,
}

impl TopMerchants {
    /// Keeps the `n` biggest.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            ..Self::default()
        }
    }

    /// Takes a merchant's new figures (its GMV never smaller than before).
    pub fn update(&mut self, m: &MerchantFigures) {
        if self.n == 0 {
            return;
        }
        if let Some(old) = self.gmv_of.get_mut(&m.merchant_id) {
            self.ranked.remove(&(Reverse(*old), m.merchant_id.clone()));
            *old = m.gmv;
            self.ranked
                .insert((Reverse(m.gmv), m.merchant_id.clone()), m.clone());
            return;
        }
        let key = (Reverse(m.gmv), m.merchant_id.clone());
        let enters = self.ranked.len() < self.n
            || self
                .ranked
                .last_key_value()
                .is_some_and(|(last, _)| key < *last);
        if !enters {
            return;
        }
        self.gmv_of.insert(m.merchant_id.clone(), m.gmv);
        self.ranked.insert(key, m.clone());
        if self.ranked.len() > self.n {
            if let Some(((_, id), _)) = self.ranked.pop_last() {
                self.gmv_of.remove(&id);
            }
        }
    }

    /// The merchants, biggest first.
    pub fn iter(&self) -> impl Iterator<Item = &MerchantFigures> {
        self.ranked.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn figures(id: usize, gmv: Fen) -> MerchantFigures {
        MerchantFigures {
            merchant_id: format!("m-{id}"),
            gmv,
            mobile_gmv: 0,
            transactions: 1,
        }
    }

    proptest! {
        #[test]
        fn equals_a_full_sort_after_any_growing_updates(
            adds in proptest::collection::vec((0usize..30, 1u64..50), 0..200),
            n in 0usize..8,
        ) {
            let mut top = TopMerchants::new(n);
            let mut all: HashMap<usize, Fen> = HashMap::new();
            for (id, add) in adds {
                let gmv = all.entry(id).or_default();
                *gmv += add;
                top.update(&figures(id, *gmv));
            }
            let mut expected: Vec<(Fen, String)> =
                all.iter().map(|(id, gmv)| (*gmv, format!("m-{id}"))).collect();
            expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            expected.truncate(n);
            let got: Vec<(Fen, String)> =
                top.iter().map(|m| (m.gmv, m.merchant_id.clone())).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
