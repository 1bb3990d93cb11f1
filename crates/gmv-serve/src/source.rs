//! What the HTTP side reads beyond snapshots: merchant look-ups and the
//! figures behind `/metrics`. The [`LiveState`] a publisher keeps (the live
//! merchant index, the latest snapshot) is a [`FeedSource`] as it is, for a
//! processor and for the global view read from Kafka alike.
//!
//! Calls may take milliseconds (a top list walks every merchant), so the
//! server makes them on tokio's blocking pool, never on a reactor thread.

use gmv_core::output::{LatencyMs, MerchantRecord, TopMerchant};
use gmv_core::reject::RejectCounts;
use gmv_core::view::{merchant_record, top_merchant, LiveState};

/// The live state the HTTP side can query.
pub trait FeedSource: Send + Sync + 'static {
    /// The `n` merchants with the most GMV, biggest first (ties by id).
    fn top_merchants(&self, n: usize) -> Vec<TopMerchant>;
    /// One merchant's figures, `None` if it has sold nothing in the window.
    fn merchant(&self, merchant_id: &str) -> Option<MerchantRecord>;
    /// The figures exported at `/metrics`.
    fn metrics(&self) -> Metrics;
    /// The whole window's sales minute by minute (for the day's chart).
    fn day_series(&self) -> std::sync::Arc<gmv_core::output::DaySeries> {
        std::sync::Arc::default()
    }
}

/// The processor's figures for `/metrics`: plain values, read at scrape time.
/// Money stays a decimal string (as in the contract) until it is rendered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Records read (counted + rejected).
    pub consumed: u64,
    /// Records counted in GMV.
    pub counted: u64,
    /// Records rejected, by reason.
    pub rejected: RejectCounts,
    /// Window GMV, CNY.
    pub gmv_cny: String,
    /// Mobile GMV, CNY.
    pub mobile_gmv_cny: String,
    /// Merchants with counted GMV.
    pub merchants: u64,
    /// Most transactions settled in one second.
    pub peak_tps: u64,
    /// `txn_id`s held by the dedup set.
    pub dedup_ids: u64,
    /// Bytes the dedup set has allocated.
    pub dedup_bytes: u64,
    /// Processing latency percentiles.
    pub latency_ms: LatencyMs,
    /// Consumer lag per partition (empty when not reading Kafka).
    pub consumer_lag: Vec<PartitionLag>,
}

/// How far a consumer is behind one partition's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Messages between the committed position and the high watermark.
    pub lag: u64,
}

impl FeedSource for LiveState {
    fn top_merchants(&self, n: usize) -> Vec<TopMerchant> {
        self.index().top(n).iter().map(top_merchant).collect()
    }

    fn merchant(&self, merchant_id: &str) -> Option<MerchantRecord> {
        self.index().get(merchant_id).map(|m| merchant_record(&m))
    }

    fn metrics(&self) -> Metrics {
        let memory = self.memory();
        let mut metrics = match self.latest() {
            Some(snapshot) => {
                let f = &snapshot.figures;
                Metrics {
                    consumed: f.accounting.consumed,
                    counted: f.accounting.counted,
                    rejected: f.rejected,
                    gmv_cny: f.gmv_cny.clone(),
                    mobile_gmv_cny: f.mobile_gmv_cny.clone(),
                    merchants: f.merchants,
                    peak_tps: f.peak_tps,
                    latency_ms: snapshot.latency_ms.clone(),
                    ..Metrics::default()
                }
            }
            None => Metrics::default(),
        };
        metrics.dedup_ids = memory.dedup_ids;
        metrics.dedup_bytes = memory.dedup_bytes;
        metrics.consumer_lag = self
            .status()
            .lag
            .into_iter()
            .map(|(topic, partition, lag)| PartitionLag {
                topic,
                partition,
                lag: lag.max(0) as u64,
            })
            .collect();
        metrics
    }

    fn day_series(&self) -> std::sync::Arc<gmv_core::output::DaySeries> {
        LiveState::day_series(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmv_core::partition::{decode, Partition};
    use gmv_core::view::{LiveView, PartitionKey};
    use gmv_core::Settings;
    use std::sync::Arc;

    #[test]
    fn a_live_state_answers_top_merchant_and_metrics() {
        let settings = Arc::new(Settings::defaults());
        let mut partition = Partition::new(settings.clone(), 1 << 16);
        for (i, (txn, merchant, amount)) in [
            ("t1", "m-1", "10.00"),
            ("t2", "m-2", "30.00"),
            ("t3", "m-1", "5.50"),
        ]
        .into_iter()
        .enumerate()
        {
            let record = format!(
                r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"mobile","settled_at":"2017-11-11T00:00:01+08:00"}}"#
            );
            let d = decode(&settings, record.as_bytes()).unwrap();
            partition.count(i as i64, Ok(d.txn())).unwrap();
        }
        let refused = decode(&settings, b"{").map(|_| ()).unwrap_err();
        assert!(partition.count(3, Err(refused)).is_err());
        let mut view = LiveView::new(settings);
        let state = LiveState::new(view.index());
        view.apply(&PartitionKey::split(0), "t", &partition.take_delta());
        state.publish(
            Arc::new(view.snapshot(1, 500, Default::default())),
            view.memory(),
        );
        let top = state.top_merchants(1);
        assert_eq!(top.len(), 1);
        assert_eq!(
            (top[0].merchant_id.as_str(), top[0].gmv_cny.as_str()),
            ("m-2", "30.00")
        );
        let m1 = state.merchant("m-1").unwrap();
        assert_eq!((m1.gmv_cny.as_str(), m1.transactions), ("15.50", 2));
        assert!(state.merchant("m-3").is_none());
        let metrics = state.metrics();
        assert_eq!((metrics.consumed, metrics.counted), (4, 3));
        assert_eq!(metrics.rejected.total(), 1);
        assert_eq!(metrics.gmv_cny, "45.50");
        assert_eq!(metrics.dedup_ids, 3);
    }
}
