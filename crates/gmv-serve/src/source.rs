//! What the HTTP side reads beyond snapshots: merchant look-ups and the
//! figures behind `/metrics`. A local [`Engine`] is a [`FeedSource`] as it is;
//! a view assembled from Kafka partitions implements the same trait.
//!
//! Calls may take milliseconds (a top list walks every merchant), so the
//! server makes them on tokio's blocking pool, never on a reactor thread.

use gmv_core::engine::top_merchant;
use gmv_core::money::format_fen;
use gmv_core::output::{LatencyMs, MerchantRecord, TopMerchant};
use gmv_core::reject::RejectCounts;
use gmv_core::Engine;

/// The live state the HTTP side can query.
pub trait FeedSource: Send + Sync + 'static {
    /// The `n` merchants with the most GMV, biggest first (ties by id).
    fn top_merchants(&self, n: usize) -> Vec<TopMerchant>;
    /// One merchant's figures, `None` if it has sold nothing in the window.
    fn merchant(&self, merchant_id: &str) -> Option<MerchantRecord>;
    /// The figures exported at `/metrics`.
    fn metrics(&self) -> Metrics;
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

impl FeedSource for Engine {
    fn top_merchants(&self, n: usize) -> Vec<TopMerchant> {
        self.aggregator()
            .summary(n)
            .top
            .iter()
            .map(top_merchant)
            .collect()
    }

    fn merchant(&self, merchant_id: &str) -> Option<MerchantRecord> {
        self.aggregator()
            .merchant(merchant_id)
            .map(|m| MerchantRecord {
                merchant_id: m.merchant_id,
                gmv_cny: format_fen(m.gmv),
                mobile_gmv_cny: format_fen(m.mobile_gmv),
                transactions: m.transactions,
            })
    }

    fn metrics(&self) -> Metrics {
        let figures = self.figures();
        Metrics {
            consumed: figures.accounting.consumed,
            counted: figures.accounting.counted,
            rejected: figures.rejected,
            gmv_cny: figures.gmv_cny,
            mobile_gmv_cny: figures.mobile_gmv_cny,
            merchants: figures.merchants,
            peak_tps: figures.peak_tps,
            dedup_ids: self.dedup().len() as u64,
            dedup_bytes: self.dedup().allocated_bytes() as u64,
            latency_ms: self.latency().percentiles(),
            consumer_lag: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmv_core::Settings;

    #[test]
    fn engine_answers_top_merchant_and_metrics() {
        let engine = Engine::new(Settings::defaults());
        let mut worker = engine.worker();
        for (txn, merchant, amount) in [
            ("t1", "m-1", "10.00"),
            ("t2", "m-2", "30.00"),
            ("t3", "m-1", "5.50"),
        ] {
            let record = format!(
                r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"mobile","settled_at":"2017-11-11T00:00:01+08:00"}}"#
            );
            worker.process(record.as_bytes()).unwrap();
        }
        assert!(worker.process(b"{").is_err());
        drop(worker);
        let top = engine.top_merchants(1);
        assert_eq!(top.len(), 1);
        assert_eq!(
            (top[0].merchant_id.as_str(), top[0].gmv_cny.as_str()),
            ("m-2", "30.00")
        );
        let m1 = engine.merchant("m-1").unwrap();
        assert_eq!((m1.gmv_cny.as_str(), m1.transactions), ("15.50", 2));
        assert!(engine.merchant("m-3").is_none());
        let metrics = engine.metrics();
        assert_eq!((metrics.consumed, metrics.counted), (4, 3));
        assert_eq!(metrics.rejected.total(), 1);
        assert_eq!(metrics.gmv_cny, "45.50");
        assert_eq!(metrics.dedup_ids, 3);
    }
}
