//! The published shapes (the contract in `../shared/EVENTS.md`): the report,
//! the live snapshot and the threshold alert, as serde types. Money is a
//! decimal string in CNY with two places; shares are fractions 0..1; times are
//! RFC 3339 in the window's offset. These types only grow by optional fields.

use crate::reject::RejectCounts;
use serde::{Deserialize, Serialize};

/// The version of the report layout; bumped only for incompatible changes.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The festival window as printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRange {
    /// Inclusive start.
    pub start: String,
    /// Exclusive end.
    pub end: String,
}

/// Merchants at or over one threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdCount {
    /// The threshold, CNY.
    pub cny: String,
    /// Merchants whose window GMV is at least that.
    pub merchants: u64,
}

/// The audit line: `consumed == counted + rejected`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    /// Records read.
    pub consumed: u64,
    /// Records counted in GMV.
    pub counted: u64,
    /// Records rejected, for any reason.
    pub rejected: u64,
    /// Per Kafka partition, with the offsets covered (absent for files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionAccounting>,
    /// Partitions of the input topic this run did not cover (another
    /// member of its group held them): a partial report says so here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_partitions: Vec<PartitionId>,
}

/// A partition of a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionId {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// The audit line of one Kafka partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionAccounting {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Records read from it.
    pub consumed: u64,
    /// Of which counted.
    pub counted: u64,
    /// Of which rejected.
    pub rejected: u64,
    /// First offset covered.
    pub first_offset: i64,
    /// Next offset to read (one past the last covered).
    pub next_offset: i64,
}

/// One merchant in a top list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopMerchant {
    /// The merchant.
    pub merchant_id: String,
    /// Window GMV, CNY.
    pub gmv_cny: String,
    /// Counted transactions.
    pub transactions: u64,
    /// Mobile GMV / GMV.
    #[serde(default)]
    pub mobile_share: f64,
    /// Mobile GMV, CNY (the exact figure behind the share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_gmv_cny: Option<String>,
}

/// The figures shared by the report and the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The festival window.
    pub window: WindowRange,
    /// Window GMV, CNY.
    pub gmv_cny: String,
    /// Window GMV at the configured USD rate.
    pub gmv_usd: String,
    /// Counted transactions.
    pub transactions: u64,
    /// Mobile GMV, CNY.
    pub mobile_gmv_cny: String,
    /// Mobile GMV / GMV.
    pub mobile_share: f64,
    /// Most transactions settled in one second.
    pub peak_tps: u64,
    /// That second.
    pub peak_second: Option<String>,
    /// Merchants with counted GMV.
    pub merchants: u64,
    /// Merchants over each threshold.
    pub thresholds: Vec<ThresholdCount>,
    /// Rejections by reason (every reason present).
    pub rejected: RejectCounts,
    /// The audit line.
    pub accounting: Accounting,
    /// Biggest merchants, biggest first.
    pub top_merchants: Vec<TopMerchant>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest seen.
    pub max: f64,
    /// Samples (events) recorded.
    pub count: u64,
}

impl LatencyMs {
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One minute of the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteRecord {
    /// Start of the minute.
    pub minute: String,
    /// GMV settled in it, CNY.
    pub gmv_cny: String,
    /// Mobile GMV settled in it, CNY.
    pub mobile_gmv_cny: String,
    /// Transactions settled in it.
    #[serde(default)]
    pub transactions: u64,
}

/// A live snapshot (published at a fixed cadence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Increases by one per publish.
    pub seq: u64,
    /// Wall clock at publish.
    pub as_of: String,
    /// Latest event time counted.
    pub watermark: Option<String>,
    /// The publish cadence, so a reader can tell a stale feed.
    pub publish_interval_ms: u64,
    /// Transactions in the last whole second before the watermark.
    pub current_tps: u64,
    /// The totals.
    #[serde(flatten)]
    pub figures: Figures,
    /// The latest minutes with data (up to 30).
    pub recent_minutes: Vec<MinuteRecord>,
    /// Latency percentiles.
    pub latency_ms: LatencyMs,
}

/// The whole window's sales minute by minute, for a chart of the day that
/// survives a page reload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySeries {
    /// The festival window.
    pub window: Option<WindowRange>,
    /// Latest event time counted: its minute is still filling.
    pub watermark: Option<String>,
    /// Every minute with sales, oldest first.
    pub minutes: Vec<MinuteRecord>,
}

/// A threshold crossing, announced once per (merchant, threshold).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The merchant.
    pub merchant_id: String,
    /// The threshold crossed, CNY.
    pub threshold_cny: String,
    /// The merchant's GMV right after the crossing event, CNY.
    pub gmv_cny: String,
    /// Event time of the crossing event.
    pub settled_at: String,
}

/// Transactions per second over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerSecond {
    /// Time of `counts[0]`.
    pub start: String,
    /// One count per second from `start`, up to the last second with data.
    pub counts: Vec<u32>,
}

/// Time series kept for the post-event report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// Transactions per second.
    pub per_second: PerSecond,
    /// GMV per minute by channel (minutes with data).
    pub per_minute: Vec<MinuteRecord>,
}

/// Dedup set figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupFigures {
    /// Ids held at the end.
    pub ids_held: u64,
    /// Bytes the set had allocated at the end.
    pub bytes: u64,
}

impl DedupFigures {
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.ids_held == 0 && self.bytes == 0
    }
}

/// The final report of a run (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Layout version.
    pub schema_version: u32,
    /// The totals.
    #[serde(flatten)]
    pub figures: Figures,
    /// Latency percentiles over the run. A report is the day's figures, a
    /// function of the input alone, so runs leave this empty (latency is in
    /// the log and `/metrics`); reports of earlier versions may carry it.
    #[serde(default, skip_serializing_if = "LatencyMs::is_empty")]
    pub latency_ms: LatencyMs,
    /// Dedup set figures, in reports of earlier versions (a run's memory is
    /// in its log and `/metrics`).
    #[serde(default, skip_serializing_if = "DedupFigures::is_empty")]
    pub dedup: DedupFigures,
    /// Time series, so a report can be drawn after the run.
    pub series: Series,
    /// Every threshold crossing, by event time (then merchant, then threshold).
    pub alerts: Vec<AlertRecord>,
    /// Every merchant with counted GMV, biggest first (ties by id).
    #[serde(default)]
    pub merchant_list: Vec<MerchantRecord>,
}

/// One merchant's final figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRecord {
    /// The merchant.
    pub merchant_id: String,
    /// Window GMV, CNY.
    pub gmv_cny: String,
    /// Mobile GMV, CNY.
    pub mobile_gmv_cny: String,
    /// Counted transactions.
    pub transactions: u64,
}

/// `numerator / denominator` as a fraction; 0 when there is nothing.
pub fn share(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}
