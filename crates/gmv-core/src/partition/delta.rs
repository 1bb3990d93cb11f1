//! What a partition hands its readers: plain data, owned, immutable once
//! made. A [`Delta`] carries a partition's figures as of one moment of its
//! log: totals and counters whole, merchants and hours only where they
//! changed since the previous delta (whole values: the latest wins), and the
//! threshold crossings that are new.

use super::series::Hour;
use crate::money::Fen;
use crate::reject::RejectCounts;
use crate::time::EpochMillis;

/// A threshold crossing: announced once per (merchant, threshold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// The merchant.
    pub merchant_id: String,
    /// The threshold crossed, fen.
    pub threshold: Fen,
    /// The merchant's GMV right after the crossing event, fen.
    pub gmv_at_crossing: Fen,
    /// Event time of the crossing event.
    pub settled_at: EpochMillis,
    /// The crossing event's position in its partition's log (a Kafka offset,
    /// or a record's place in a file).
    pub position: i64,
}

impl Crossing {
    /// The order alerts are listed in wherever all of them are known (the
    /// report): by event time, then merchant, then threshold. It depends only
    /// on the crossings, never on which thread found them first.
    pub fn canonical_order(a: &Crossing, b: &Crossing) -> std::cmp::Ordering {
        a.settled_at
            .cmp(&b.settled_at)
            .then_with(|| a.merchant_id.cmp(&b.merchant_id))
            .then_with(|| a.threshold.cmp(&b.threshold))
    }
}

/// A merchant's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantFigures {
    /// The merchant.
    pub merchant_id: String,
    /// Window GMV, fen.
    pub gmv: Fen,
    /// Mobile GMV, fen.
    pub mobile_gmv: Fen,
    /// Counted transactions.
    pub transactions: u64,
}

/// A partition's sums over its merchants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Window GMV, fen.
    pub gmv: Fen,
    /// Mobile GMV, fen.
    pub mobile_gmv: Fen,
    /// Counted transactions.
    pub transactions: u64,
    /// Merchants with counted GMV.
    pub merchants: u64,
}

/// One hand-over from a partition to a reader (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Delta {
    /// Totals now.
    pub totals: Totals,
    /// Merchants at or over each threshold now (the thresholds' order).
    pub threshold_merchants: Vec<u64>,
    /// Records read now (counted + rejected).
    pub consumed: u64,
    /// Rejections per reason now.
    pub rejected: RejectCounts,
    /// Latest event time counted.
    pub watermark: Option<EpochMillis>,
    /// First position of the log covered (-1: none yet).
    pub first_position: i64,
    /// Next position to read: the figures cover exactly the records before it.
    pub next_position: i64,
    /// Merchants changed since the previous delta.
    pub merchants: Vec<MerchantFigures>,
    /// Hours changed since the previous delta, whole.
    pub hours: Vec<(u32, Box<Hour>)>,
    /// Crossings since the previous delta, in log order.
    pub crossings: Vec<Crossing>,
    /// Ids held by the partition's dedup set now.
    pub dedup_ids: u64,
    /// Bytes its dedup set has allocated now.
    pub dedup_bytes: u64,
    /// Bytes its merchant table and series hold now.
    pub state_bytes: u64,
}
