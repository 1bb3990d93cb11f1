//! The publisher's sink for the snapshots topic: at each tick, every owned
//! partition's snapshot, the per-second counts and per-minute sales that
//! changed, and every few seconds the merchants that changed (see [`wire`]
//! for the records). From these alone `gmv serve --from-kafka` rebuilds the
//! whole day on any machine.
//!
//! [`wire`]: crate::wire

use crate::outputs::Outputs;
use crate::wire::{MerchantFigures, MinuteSales, PartitionSnapshot, SecondCounts};
use gmv_core::money::format_fen;
use gmv_core::partition::{MINUTES_PER_HOUR, SECONDS_PER_HOUR};
use gmv_core::view::{minute_record, PartitionKey};
use gmv_core::Settings;
use gmv_pipeline::{Tick, TickSink};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often changed merchants are published: a reader's merchant look-up
/// is at most this old, and a busy partition's merchants are sent once per
/// period rather than at every tick.
const MERCHANTS_EVERY: Duration = Duration::from_secs(5);

/// Publishes each tick to the snapshots topic (see the module docs).
pub struct SnapshotsTopic {
    outputs: Arc<Outputs>,
    settings: Arc<Settings>,
    interval_ms: u64,
    /// Per (partition, window minute): transactions as last published.
    minutes_sent: HashMap<(PartitionKey, usize), u64>,
    /// Merchants changed since they were last published, latest figures.
    merchants: HashMap<String, (PartitionKey, gmv_core::partition::MerchantFigures)>,
    merchants_sent: Instant,
}

impl SnapshotsTopic {
    /// A sink producing through `outputs`.
    pub fn new(outputs: Arc<Outputs>, settings: Arc<Settings>, interval: Duration) -> Self {
        Self {
            outputs,
            settings,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            minutes_sent: HashMap::new(),
            merchants: HashMap::new(),
            merchants_sent: Instant::now(),
        }
    }

    fn send(&self, key: &str, record: &impl Serialize) {
        match serde_json::to_vec(record) {
            Ok(json) => self.outputs.snapshot(key, &json),
            Err(error) => tracing::error!(%error, key, "serialising a snapshots-topic record"),
        }
    }

    fn publish_merchants(&mut self) {
        for (id, (key, m)) in self.merchants.drain() {
            let record = MerchantFigures {
                kind: "merchant".into(),
                topic: key.topic,
                partition: key.partition,
                merchant_id: id,
                gmv_cny: format_fen(m.gmv),
                mobile_gmv_cny: format_fen(m.mobile_gmv),
                transactions: m.transactions,
            };
            let key = MerchantFigures::key(&record.merchant_id);
            match serde_json::to_vec(&record) {
                Ok(json) => self.outputs.snapshot(&key, &json),
                Err(error) => tracing::error!(%error, "serialising a merchant record"),
            }
        }
        self.merchants_sent = Instant::now();
    }
}

impl TickSink for SnapshotsTopic {
    fn wants_merchants(&self) -> bool {
        true
    }

    fn tick(&mut self, tick: &Tick<'_>) {
        let window = &self.settings.window;
        for view in tick.view.partitions() {
            let key = view.key();
            if !key.has_offsets() {
                continue;
            }
            let snapshot = view.snapshot(
                &self.settings,
                tick.seq,
                self.interval_ms,
                tick.snapshot.latency_ms.clone(),
            );
            let record = PartitionSnapshot {
                kind: "partition".into(),
                topic: key.topic.clone(),
                partition: key.partition,
                member: view.member.clone(),
                snapshot,
            };
            self.send(&PartitionSnapshot::key(&key.topic, key.partition), &record);
            let hours = view.hours();
            for hour in 0..hours.len() {
                let Some(cells) = hours.get(hour) else {
                    continue;
                };
                let mut hour_changed = false;
                for (m, cell) in cells.minutes.iter().enumerate() {
                    let minute = hour * MINUTES_PER_HOUR + m;
                    let sent = self.minutes_sent.get(&(key.clone(), minute)).copied();
                    if cell.transactions == 0 || sent == Some(cell.transactions) {
                        continue;
                    }
                    hour_changed = true;
                    self.minutes_sent
                        .insert((key.clone(), minute), cell.transactions);
                    let from = m * 60;
                    let to = (from + 60).min(SECONDS_PER_HOUR);
                    let record = SecondCounts {
                        kind: "seconds".into(),
                        topic: key.topic.clone(),
                        partition: key.partition,
                        minute: minute as u32,
                        counts: cells.seconds[from..to].to_vec(),
                    };
                    self.send(
                        &SecondCounts::key(&key.topic, key.partition, minute as u32),
                        &record,
                    );
                }
                if hour_changed {
                    let record = MinuteSales {
                        kind: "minutes".into(),
                        topic: key.topic.clone(),
                        partition: key.partition,
                        hour: hour as u32,
                        minutes: cells
                            .minutes
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| c.transactions > 0)
                            .map(|(m, c)| minute_record(window, hour * MINUTES_PER_HOUR + m, c))
                            .collect(),
                    };
                    self.send(
                        &MinuteSales::key(&key.topic, key.partition, hour as u32),
                        &record,
                    );
                }
            }
        }
        for (key, merchants) in tick.merchants {
            if !key.has_offsets() {
                continue;
            }
            for m in merchants {
                self.merchants
                    .insert(m.merchant_id.clone(), (key.clone(), m.clone()));
            }
        }
        if tick.last || self.merchants_sent.elapsed() >= MERCHANTS_EVERY {
            self.publish_merchants();
        }
    }
}
