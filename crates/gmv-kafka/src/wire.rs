//! The records of the snapshots topic, as `gmv serve --from-kafka` and any
//! other reader find them.
//!
//! Each processor publishes, per partition it owns and at the publish
//! cadence:
//! - a [`PartitionSnapshot`] under key `partition/TOPIC/PARTITION`: the
//!   contract's snapshot of that partition's figures (totals, thresholds,
//!   top merchants, rejections, accounting with the offsets covered), plus
//!   where it came from;
//! - a [`SecondCounts`] under key `seconds/TOPIC/PARTITION/MINUTE` for each
//!   minute whose per-second counts changed since the last publication, so
//!   that a reader can sum them over partitions and find the exact global
//!   peak second.
//!
//! Both are "latest wins" per key: a reader keeps the last record of each key
//! (the topic may be compacted).

use gmv_core::output::Snapshot;
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
