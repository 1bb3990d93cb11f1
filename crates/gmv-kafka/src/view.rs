//! The global view: the whole day's figures assembled from the snapshots
//! topic alone, so the gala screen does not depend on any one processor.
//!
//! A reader keeps the latest [`PartitionSnapshot`] per partition and the
//! latest [`SecondCounts`] per (partition, minute), and sums them: totals,
//! threshold counts and rejections add up (merchants are keyed to one
//! partition, so no merchant is counted twice); the peak second is found on
//! the per-second counts summed over partitions, so it is exact; the top
//! merchants are the best of every partition's top list.

use crate::wire::{PartitionSnapshot, SecondCounts};
use gmv_core::money::{self, format_fen, parse_minor_units};
use gmv_core::output::{
    share, Accounting, Figures, LatencyMs, MinuteRecord, Snapshot, ThresholdCount, TopMerchant,
    WindowRange,
};
use gmv_core::reject::RejectCounts;
use gmv_core::Settings;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::time::Duration;

/// The latest records of the snapshots topic.
#[derive(Debug, Default, Clone)]
pub struct GlobalView {
    partitions: BTreeMap<(String, i32), PartitionSnapshot>,
    seconds: BTreeMap<(String, i32, u32), Vec<u32>>,
}

impl GlobalView {
    /// Folds in one record of the snapshots topic; records of other kinds
    /// (or not JSON) are ignored and reported as `false`.
    pub fn apply(&mut self, payload: &[u8]) -> bool {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return false;
        };
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("partition") => serde_json::from_value::<PartitionSnapshot>(value)
                .map(|p| self.insert_partition(p))
                .is_ok(),
            Some("seconds") => serde_json::from_value::<SecondCounts>(value)
                .map(|s| self.insert_seconds(&s))
                .is_ok(),
            _ => false,
        }
    }

    /// Folds in a partition's snapshot, keeping the furthest one: an old
    /// owner's late record must not roll a partition back.
    pub fn insert_partition(&mut self, p: PartitionSnapshot) {
        let key = (p.topic.clone(), p.partition);
        let newer = self
            .partitions
            .get(&key)
            .is_none_or(|old| next_offset(&p) >= next_offset(old));
        if newer {
            self.partitions.insert(key, p);
        }
    }

    /// Folds in a minute of per-second counts (counts only grow: the larger
    /// of each second wins).
    pub fn insert_seconds(&mut self, s: &SecondCounts) {
        let key = (s.topic.clone(), s.partition, s.minute);
        let entry = self.seconds.entry(key).or_default();
        if entry.len() < s.counts.len() {
            entry.resize(s.counts.len(), 0);
        }
        for (have, new) in entry.iter_mut().zip(&s.counts) {
            *have = (*have).max(*new);
        }
    }

    /// Partitions seen.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// The assembled snapshot; `seq` is the reader's own counter.
    pub fn assemble(&self, settings: &Settings, seq: u64) -> Snapshot {
        let window = &settings.window;
        let mut gmv = 0u64;
        let mut mobile = 0u64;
        let mut transactions = 0u64;
        let mut merchants = 0u64;
        let mut rejected = RejectCounts::default();
        let mut accounting = Accounting::default();
        let mut thresholds: BTreeMap<u64, u64> =
            settings.thresholds.iter().map(|&t| (t, 0)).collect();
        let mut top: Vec<TopMerchant> = Vec::new();
        let mut minutes: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut watermark: Option<String> = None;
        let mut latency = LatencyMs::default();
        let mut interval = 0;
        for p in self.partitions.values() {
            let f = &p.snapshot.figures;
            gmv += fen(&f.gmv_cny);
            mobile += fen(&f.mobile_gmv_cny);
            transactions += f.transactions;
            merchants += f.merchants;
            rejected.merge(&f.rejected);
            accounting.consumed += f.accounting.consumed;
            accounting.counted += f.accounting.counted;
            accounting.rejected += f.accounting.rejected;
            accounting
                .partitions
                .extend(f.accounting.partitions.iter().cloned());
            for t in &f.thresholds {
                *thresholds.entry(fen(&t.cny)).or_default() += t.merchants;
            }
            top.extend(f.top_merchants.iter().cloned());
            for m in &p.snapshot.recent_minutes {
                let cell = minutes.entry(m.minute.clone()).or_default();
                cell.0 += fen(&m.gmv_cny);
                cell.1 += fen(&m.mobile_gmv_cny);
                cell.2 += m.transactions;
            }
            // RFC 3339 in one offset: text order is time order.
            if p.snapshot.watermark > watermark {
                watermark = p.snapshot.watermark.clone();
            }
            let l = &p.snapshot.latency_ms;
            latency.p50 = latency.p50.max(l.p50);
            latency.p99 = latency.p99.max(l.p99);
            latency.p999 = latency.p999.max(l.p999);
            latency.max = latency.max.max(l.max);
            latency.count = latency.count.max(l.count);
            interval = interval.max(p.snapshot.publish_interval_ms);
        }
        top.sort_by(|a, b| {
            fen(&b.gmv_cny)
                .cmp(&fen(&a.gmv_cny))
                .then_with(|| a.merchant_id.cmp(&b.merchant_id))
        });
        top.truncate(settings.top_n);

        let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
        for ((_, _, minute), counts) in &self.seconds {
            for (s, &n) in counts.iter().enumerate() {
                if n > 0 {
                    *per_second
                        .entry(u64::from(*minute) * 60 + s as u64)
                        .or_default() += u64::from(n);
                }
            }
        }
        let (peak_tps, peak_second) =
            per_second.iter().fold(
                (0, None),
                |best, (&s, &n)| if n > best.0 { (n, Some(s)) } else { best },
            );
        let watermark_second = watermark
            .as_deref()
            .and_then(gmv_core::time::parse_rfc3339_millis)
            .map(|w| (w - window.start_millis()) / 1000 - 1);
        let current_tps = watermark_second
            .and_then(|s| u64::try_from(s).ok())
            .and_then(|s| per_second.get(&s).copied())
            .unwrap_or(0);

        let recent_minutes = minutes
            .into_iter()
            .rev()
            .take(30)
            .rev()
            .map(|(minute, (g, m, t))| MinuteRecord {
                minute,
                gmv_cny: format_fen(g),
                mobile_gmv_cny: format_fen(m),
                transactions: t,
            })
            .collect();
        Snapshot {
            seq,
            as_of: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            watermark,
            publish_interval_ms: interval,
            current_tps,
            figures: Figures {
                window: WindowRange {
                    start: window.start_rfc3339(),
                    end: window.end_rfc3339(),
                },
                gmv_cny: format_fen(gmv),
                gmv_usd: money::format_decimal_2dp(money::convert_from_fen(
                    gmv,
                    settings.usd_per_cny,
                )),
                transactions,
                mobile_gmv_cny: format_fen(mobile),
                mobile_share: share(mobile, gmv),
                peak_tps,
                peak_second: peak_second
                    .map(|s| window.format(window.start_millis() + s as i64 * 1000)),
                merchants,
                thresholds: thresholds
                    .into_iter()
                    .map(|(t, merchants)| ThresholdCount {
                        cny: format_fen(t),
                        merchants,
                    })
                    .collect(),
                rejected,
                accounting,
                top_merchants: top,
            },
            recent_minutes,
            latency_ms: latency,
        }
    }
}

fn fen(text: &str) -> u64 {
    parse_minor_units(text).unwrap_or(0)
}

fn next_offset(p: &PartitionSnapshot) -> i64 {
    p.snapshot
        .figures
        .accounting
        .partitions
        .iter()
        .map(|a| a.next_offset)
        .max()
        .unwrap_or(-1)
}

/// Reads whatever has arrived, up to `max` records or `wait` for the first.
pub fn poll_into(
    consumer: &BaseConsumer,
    view: &mut GlobalView,
    wait: Duration,
    max: usize,
) -> usize {
    let mut applied = 0;
    let mut timeout = wait;
    for _ in 0..max {
        match consumer.poll(timeout) {
            Some(Ok(message)) => {
                if let Some(payload) = message.payload() {
                    applied += usize::from(view.apply(payload));
                }
            }
            Some(Err(error)) => {
                tracing::warn!(%error, "reading the snapshots topic");
                break;
            }
            None => break,
        }
        timeout = Duration::ZERO;
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmv_core::Engine;

    fn partial(partition: i32, events: &[(&str, &str, &str)]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let engine = Engine::new(Settings::defaults());
        let mut w = engine.worker();
        for (i, (merchant, amount, at)) in events.iter().enumerate() {
            let e = format!(
                r#"{{"txn_id":"p{partition}-{i}","merchant_id":"{merchant}","amount":"{amount}","channel":"mobile","settled_at":"{at}"}}"#
            );
            w.process(e.as_bytes()).unwrap();
        }
        drop(w);
        let snapshot = PartitionSnapshot {
            kind: "partition".into(),
            topic: "t".into(),
            partition,
            member: "m".into(),
            snapshot: engine.snapshot(1, 500),
        };
        let seconds = engine.aggregator().per_second();
        let minutes = seconds
            .chunks(60)
            .enumerate()
            .filter(|(_, c)| c.iter().any(|&n| n > 0))
            .map(|(minute, counts)| {
                serde_json::to_vec(&SecondCounts {
                    kind: "seconds".into(),
                    topic: "t".into(),
                    partition,
                    minute: minute as u32,
                    counts: counts.to_vec(),
                })
                .unwrap()
            })
            .collect();
        (serde_json::to_vec(&snapshot).unwrap(), minutes)
    }

    #[test]
    fn the_global_peak_is_found_on_summed_seconds() {
        // Partition 0 peaks at second 1 (2 events), partition 1 at second 2
        // (2 events); summed, second 2 has 3.
        let (p0, s0) = partial(
            0,
            &[
                ("a", "1.00", "2017-11-11T00:00:01+08:00"),
                ("a", "1.00", "2017-11-11T00:00:01.5+08:00"),
                ("a", "1.00", "2017-11-11T00:00:02+08:00"),
            ],
        );
        let (p1, s1) = partial(
            1,
            &[
                ("b", "2.50", "2017-11-11T00:00:02+08:00"),
                ("b", "2.50", "2017-11-11T00:00:02.5+08:00"),
            ],
        );
        let mut view = GlobalView::default();
        for record in [p0, p1].iter().chain(s0.iter()).chain(s1.iter()) {
            assert!(view.apply(record));
        }
        assert!(!view.apply(b"not json"));
        let s = view.assemble(&Settings::defaults(), 1);
        assert_eq!(s.figures.gmv_cny, "8.00");
        assert_eq!(s.figures.transactions, 5);
        assert_eq!(s.figures.merchants, 2);
        assert_eq!(s.figures.peak_tps, 3);
        assert_eq!(
            s.figures.peak_second.as_deref(),
            Some("2017-11-11T00:00:02+08:00")
        );
        assert_eq!(s.figures.top_merchants[0].merchant_id, "b");
    }
}
