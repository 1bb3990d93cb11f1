//! What the HTTP side reads beyond snapshots: merchant look-ups, readiness
//! and the figures behind `/metrics`. The [`LiveState`] a publisher keeps
//! (the live merchant index, the latest snapshot, the latency histogram,
//! the source's status) is a [`FeedSource`] as it is, for a processor and
//! for the global view read from Kafka alike.
//!
//! Calls may take milliseconds (a top list walks every merchant), so the
//! server makes them on tokio's blocking pool, never on a reactor thread.

use gmv_core::latency::Latency;
use gmv_core::output::{MerchantRecord, TopMerchant};
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
    /// Whether the source has its input (partitions assigned, their state
    /// restored), and if not, what is missing, for `/readyz`. A source with
    /// no partitions of its own to wait for is always ready.
    fn readiness(&self) -> Result<(), String> {
        Ok(())
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
    /// Bytes of the other per-partition state (merchant tables, series).
    pub state_bytes: u64,
    /// Publish latency as histogram buckets; `None` for a source that keeps
    /// no histogram (the global view only sees other processes' percentiles,
    /// and percentiles cannot be turned back into buckets).
    pub latency: Option<LatencyBuckets>,
    /// The same latency as percentiles (the operator view's p50/p99).
    pub latency_ms: gmv_core::output::LatencyMs,
    /// Consumer lag per partition (empty when not reading Kafka).
    pub consumer_lag: Vec<PartitionLag>,
    /// Partitions the source holds now.
    pub partitions_assigned: u64,
    /// Rebalances (assignments and revocations) the source has seen.
    pub rebalances: u64,
    /// When the newest checkpoint became durable, ms since the epoch; `None`
    /// before the first (or for a source that does not checkpoint).
    pub last_checkpoint_ms: Option<i64>,
}

/// Upper bounds of the publish-latency buckets, microseconds: 5 ms to 30 s.
/// Dense around the publish interval (500 ms by default), where a healthy
/// pipeline's latency sits, so `histogram_quantile` interpolates over
/// narrow buckets there. Fixed, so that series stay comparable across
/// restarts and processes (Prometheus sums buckets by `le`).
pub const LATENCY_BOUNDS_MICROS: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 750_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];

/// A latency histogram as Prometheus exposes one: cumulative counts at the
/// fixed [`LATENCY_BOUNDS_MICROS`], the sum and the count. Integers in
/// microseconds, so rendering them in seconds is exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyBuckets {
    /// Events at or below each bound of [`LATENCY_BOUNDS_MICROS`] (same
    /// length, non-decreasing).
    pub cumulative: Vec<u64>,
    /// Sum of the events' latencies, microseconds.
    pub sum_micros: u64,
    /// Events recorded (the `+Inf` bucket).
    pub count: u64,
}

impl LatencyBuckets {
    /// The buckets of `latency`'s histogram so far.
    ///
    /// The histogram keeps 3 significant digits: each recorded value stands
    /// for a range about 0.1% wide. A value is counted at its range's lowest
    /// value, as `Histogram::count_between` does, so values recorded at the
    /// histogram's precision (all of those below 2 ms, and whole
    /// milliseconds below 16 ms) land in exactly the right bucket and sum.
    pub fn from_latency(latency: &Latency) -> Self {
        let histogram = latency.histogram();
        let mut per_bucket = [0u64; LATENCY_BOUNDS_MICROS.len()];
        let mut sum_micros = 0u64;
        let mut count = 0u64;
        for recorded in histogram.iter_recorded() {
            let events = recorded.count_at_value();
            let micros = histogram.lowest_equivalent(recorded.value_iterated_to());
            count = count.saturating_add(events);
            sum_micros = sum_micros.saturating_add(micros.saturating_mul(events));
            // Above the last bound, an event is only in `+Inf` (the count).
            let bucket = LATENCY_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
            if let Some(slot) = per_bucket.get_mut(bucket) {
                *slot = slot.saturating_add(events);
            }
        }
        let cumulative = per_bucket
            .iter()
            .scan(0u64, |total, &events| {
                *total = total.saturating_add(events);
                Some(*total)
            })
            .collect();
        Self {
            cumulative,
            sum_micros,
            count,
        }
    }
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
        let status = self.status();
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
                    ..Metrics::default()
                }
            }
            None => Metrics::default(),
        };
        metrics.dedup_ids = memory.dedup_ids;
        metrics.dedup_bytes = memory.dedup_bytes;
        metrics.state_bytes = memory.state_bytes;
        metrics.latency = Some(LatencyBuckets::from_latency(self.latency()));
        metrics.latency_ms = self.latency().percentiles();
        metrics.partitions_assigned = status.partitions;
        metrics.rebalances = status.rebalances;
        metrics.last_checkpoint_ms = status.last_checkpoint_ms;
        metrics.consumer_lag = status
            .lag
            .into_iter()
            .map(|(topic, partition, lag)| PartitionLag {
                topic,
                partition,
                // A position past the end reads as negative: nothing to catch up.
                lag: lag.max(0) as u64,
            })
            .collect();
        metrics
    }

    fn readiness(&self) -> Result<(), String> {
        let status = self.status();
        if status.ready {
            Ok(())
        } else if status.partitions == 0 {
            Err("the source has no partitions assigned".into())
        } else {
            Err(format!(
                "the source holds {} partitions but has not restored their state yet",
                status.partitions
            ))
        }
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

    #[test]
    fn latency_buckets_are_cumulative_at_the_fixed_bounds() {
        let latency = Latency::new();
        // Whole milliseconds below 16 ms are exact in the histogram; so are
        // 256 ms and 40.96 s (multiples of their ranges' widths).
        for (micros, events) in [
            (4_000, 3),
            (5_000, 2),
            (7_000, 1),
            (256_000, 4),
            (40_960_000, 1),
        ] {
            latency.record(micros, events);
        }
        let buckets = LatencyBuckets::from_latency(&latency);
        assert_eq!(buckets.count, 11);
        assert_eq!(buckets.sum_micros, 42_013_000);
        assert_eq!(buckets.cumulative.len(), LATENCY_BOUNDS_MICROS.len());
        let at = |bound: u64| {
            let i = LATENCY_BOUNDS_MICROS.iter().position(|&b| b == bound);
            buckets.cumulative[i.unwrap()]
        };
        // A value on a bound is in that bound's bucket (`le`).
        assert_eq!(at(5_000), 5);
        assert_eq!(at(10_000), 6);
        assert_eq!(at(250_000), 6);
        assert_eq!(at(500_000), 10);
        assert_eq!(at(30_000_000), 10, "40.96 s is only in +Inf");
        assert!(buckets.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            LatencyBuckets::from_latency(&Latency::new()),
            LatencyBuckets {
                cumulative: vec![0; LATENCY_BOUNDS_MICROS.len()],
                sum_micros: 0,
                count: 0,
            }
        );
    }

    #[test]
    fn a_live_state_is_ready_when_its_source_says_so_and_reports_its_status() {
        let view = LiveView::new(Arc::new(Settings::defaults()));
        let state = LiveState::new(view.index());
        assert!(state.readiness().unwrap_err().contains("no partitions"));
        state.set_status(|s| {
            s.partitions = 3;
            s.lag = vec![("t".into(), 2, 40), ("t".into(), 0, -1)];
            s.rebalances = 2;
            s.last_checkpoint_ms = Some(1_700_000_000_000);
        });
        assert!(state.readiness().unwrap_err().contains("3 partitions"));
        state.set_status(|s| s.ready = true);
        assert_eq!(state.readiness(), Ok(()));
        let metrics = state.metrics();
        assert_eq!(
            (
                metrics.partitions_assigned,
                metrics.rebalances,
                metrics.last_checkpoint_ms
            ),
            (3, 2, Some(1_700_000_000_000))
        );
        let lags: Vec<u64> = metrics.consumer_lag.iter().map(|p| p.lag).collect();
        assert_eq!(lags, [40, 0]);
        assert!(metrics.latency.is_some());
    }
}
