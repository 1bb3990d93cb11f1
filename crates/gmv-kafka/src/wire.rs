//! The records of the snapshots topic, as `gmv serve --from-kafka` and any
//! other reader find them.
//!
//! Each processor publishes, for each partition it owns:
//! - at the publish cadence, a [`PartitionSnapshot`] under key
//!   `partition/TOPIC/PARTITION`: the contract's snapshot of that
//!   partition's figures (totals, thresholds, top merchants, rejections,
//!   accounting with the offsets covered), plus where it came from;
//! - for each minute whose per-second counts changed, a [`SecondCounts`]
//!   under `seconds/TOPIC/PARTITION/MINUTE`, so that a reader can sum them
//!   over partitions and find the exact global peak second;
//! - for each hour whose minutes changed, a [`MinuteSales`] under
//!   `minutes/TOPIC/PARTITION/HOUR`: the day's curve, minute by minute;
//! - every few seconds, a [`MerchantFigures`] under `merchant/ID` for each
//!   merchant that changed, so a reader can look any merchant up.
//!
//! All are "latest wins" per key: a reader keeps the last record of each
//! key (the topic may be compacted).

use gmv_core::output::{MinuteRecord, Snapshot};
use serde::{Deserialize, Serialize};

/// One partition's live snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// Always `"partition"`.
    pub kind: String,
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// The group member that published it (`host/pid/thread`).
    pub member: String,
    /// The contract snapshot of this partition alone.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// Transactions per second of one minute of the window, for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondCounts {
    /// Always `"seconds"`.
    pub kind: String,
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// Minute index from the window start.
    pub minute: u32,
    /// Transactions settled in each second of that minute (60 values; fewer
    /// at the window's end).
    pub counts: Vec<u32>,
}

/// Sales per minute of one hour of the window, for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteSales {
    /// Always `"minutes"`.
    pub kind: String,
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// Hour index from the window start.
    pub hour: u32,
    /// The hour's minutes with sales.
    pub minutes: Vec<MinuteRecord>,
}

/// One merchant's figures as one partition counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantFigures {
    /// Always `"merchant"`.
    pub kind: String,
    /// The input topic.
    pub topic: String,
    /// The input partition.
    pub partition: i32,
    /// The merchant.
    pub merchant_id: String,
    /// Window GMV, CNY.
    pub gmv_cny: String,
    /// Mobile GMV, CNY.
    pub mobile_gmv_cny: String,
    /// Counted transactions.
    pub transactions: u64,
}

impl PartitionSnapshot {
    /// The record key.
    pub fn key(topic: &str, partition: i32) -> String {
        format!("partition/{topic}/{partition}")
    }
}

impl SecondCounts {
    /// The record key.
    pub fn key(topic: &str, partition: i32, minute: u32) -> String {
        format!("seconds/{topic}/{partition}/{minute}")
    }
}

impl MinuteSales {
    /// The record key.
    pub fn key(topic: &str, partition: i32, hour: u32) -> String {
        format!("minutes/{topic}/{partition}/{hour}")
    }
}

impl MerchantFigures {
    /// The record key.
    pub fn key(merchant_id: &str) -> String {
        format!("merchant/{merchant_id}")
    }
}
