//! The global view: the whole day's figures rebuilt from the snapshots
//! topic alone, so the gala screen does not depend on any one processor.
//!
//! It is a source of the same run loop as the processors: one thread reads
//! the topic and turns each partition's records ([`crate::wire`]) back into
//! [`Delta`]s of that partition — totals and counters from its snapshot,
//! hours from its per-second and per-minute records, merchants from its
//! merchant records and top list — which the one publisher merges into the
//! same view, merchant index and screens as a processor's own partitions.
//! Totals add up (merchants are keyed to one partition, so none is counted
//! twice); the peak second is found on per-second counts summed over
//! partitions, so it is exact.

use crate::config::KafkaConfig;
use crate::outputs::{read_to_end, reader, wait_for_cluster};
use crate::wire::{MerchantFigures as WireMerchant, MinuteSales, PartitionSnapshot, SecondCounts};
use gmv_core::money::parse_minor_units;
use gmv_core::output::AlertRecord;
use gmv_core::partition::{Delta, Hour, MerchantFigures, MinuteCell, Totals, MINUTES_PER_HOUR};
use gmv_core::sink::LiveSink;
use gmv_core::time::parse_rfc3339_millis;
use gmv_core::view::{LiveState, PartitionKey};
use gmv_core::Settings;
use gmv_pipeline::{AlertOrder, Board, Handoff, Lifecycle, Source, StopCause, TaskError};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What one partition's records have said so far.
struct WirePartition {
    handoff: Handoff,
    /// The furthest snapshot seen (an old owner's late record must not roll
    /// a partition back).
    snapshot: Option<PartitionSnapshot>,
    hours: BTreeMap<u32, Box<Hour>>,
    changed_hours: BTreeSet<u32>,
    merchants: Vec<MerchantFigures>,
    /// Each merchant's most transactions heard of: a merchant's figures
    /// only grow along the log, so fewer are an older owner's late word
    /// (a member replaying from a checkpoint, or one that was frozen).
    transactions: HashMap<String, u64>,
    dirty: bool,
    /// A delta the publisher has not taken yet.
    pending: Option<Delta>,
}

/// The snapshots topic as a source (see the module docs).
pub struct SnapshotsSource {
    /// `[kafka]`.
    pub config: KafkaConfig,
    /// The settings the processors run with (window, thresholds).
    pub settings: Arc<Settings>,
    /// Read what the topic holds now, then end (instead of following it).
    pub once: bool,
    /// How often partitions hand their changes on.
    pub cadence: Duration,
}

impl Source for SnapshotsSource {
    fn alert_order(&self) -> AlertOrder {
        AlertOrder::Arrival
    }

    fn start(
        self: Box<Self>,
        lifecycle: &Lifecycle,
        board: Board,
        state: &Arc<LiveState>,
    ) -> Result<Vec<JoinHandle<()>>, TaskError> {
        wait_for_cluster(&self.config)?;
        let consumer = reader(&self.config, &self.config.snapshots_topic)?;
        let watch = lifecycle.clone();
        let state = state.clone();
        let handle = lifecycle.spawn("gmv-snapshots-reader", move || {
            let mut reader = Reader {
                settings: self.settings.clone(),
                board,
                partitions: BTreeMap::new(),
                state,
            };
            if self.once {
                // Everything the topic holds now (a fixed quiet time from
                // the start would end before a slow first fetch).
                read_to_end(&consumer, &self.config, &self.config.snapshots_topic, |m| {
                    reader.apply(m)
                })?;
                reader.hand_all();
            } else {
                let mut last_hand = Instant::now();
                while !watch.is_cancelled() {
                    poll_into(&consumer, &mut reader, Duration::from_millis(50), 10_000);
                    if last_hand.elapsed() >= self.cadence {
                        reader.hand_all();
                        last_hand = Instant::now();
                    }
                }
            }
            reader.close();
            if self.once {
                watch.cancel(StopCause::Finished);
            }
            Ok(())
        })?;
        Ok(vec![handle])
    }
}

/// Reads records and keeps each partition's state.
struct Reader {
    settings: Arc<Settings>,
    board: Board,
    partitions: BTreeMap<PartitionKey, WirePartition>,
    state: Arc<LiveState>,
}

impl Reader {
    fn partition(&mut self, topic: &str, partition: i32) -> &mut WirePartition {
        let key = PartitionKey::kafka(topic, partition);
        let board = &self.board;
        self.partitions
            .entry(key.clone())
            .or_insert_with(|| WirePartition {
                handoff: board.register(key, "snapshots topic"),
                snapshot: None,
                hours: BTreeMap::new(),
                changed_hours: BTreeSet::new(),
                merchants: Vec::new(),
                transactions: HashMap::new(),
                dirty: false,
                pending: None,
            })
    }

    /// Folds in one record of the snapshots topic; records of other kinds
    /// (or not JSON) are skipped.
    fn apply(&mut self, message: &BorrowedMessage<'_>) {
        let Some(payload) = message.payload() else {
            return;
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return;
        };
        match value.get("kind").and_then(|k| k.as_str()) {
            Some("partition") => {
                if let Ok(p) = serde_json::from_value::<PartitionSnapshot>(value) {
                    let wire = self.partition(&p.topic, p.partition);
                    let newer = wire
                        .snapshot
                        .as_ref()
                        .is_none_or(|old| next_offset(&p) >= next_offset(old));
                    if newer {
                        wire.snapshot = Some(p);
                        wire.dirty = true;
                    }
                }
            }
            Some("seconds") => {
                if let Ok(s) = serde_json::from_value::<SecondCounts>(value) {
                    let hour = s.minute / MINUTES_PER_HOUR as u32;
                    let from = (s.minute as usize % MINUTES_PER_HOUR) * 60;
                    let wire = self.partition(&s.topic, s.partition);
                    let cells = wire.hours.entry(hour).or_insert_with(Hour::boxed);
                    for (have, new) in cells.seconds[from..].iter_mut().zip(&s.counts) {
                        // Counts only grow: the larger of each second wins.
                        *have = (*have).max(*new);
                    }
                    wire.changed_hours.insert(hour);
                    wire.dirty = true;
                }
            }
            Some("minutes") => {
                if let Ok(m) = serde_json::from_value::<MinuteSales>(value) {
                    let start = self.settings.window.start_millis();
                    let wire = self.partition(&m.topic, m.partition);
                    let cells = wire.hours.entry(m.hour).or_insert_with(Hour::boxed);
                    for record in &m.minutes {
                        let Some(at) = parse_rfc3339_millis(&record.minute) else {
                            continue;
                        };
                        let minute = ((at - start) / 60_000) as usize % MINUTES_PER_HOUR;
                        let cell = MinuteCell {
                            gmv: fen(&record.gmv_cny),
                            mobile_gmv: fen(&record.mobile_gmv_cny),
                            transactions: record.transactions,
                        };
                        if cell.transactions >= cells.minutes[minute].transactions {
                            cells.minutes[minute] = cell;
                        }
                    }
                    wire.changed_hours.insert(m.hour);
                    wire.dirty = true;
                }
            }
            Some("merchant") => {
                if let Ok(m) = serde_json::from_value::<WireMerchant>(value) {
                    let figures = MerchantFigures {
                        gmv: fen(&m.gmv_cny),
                        mobile_gmv: fen(&m.mobile_gmv_cny),
                        transactions: m.transactions,
                        merchant_id: m.merchant_id,
                    };
                    let wire = self.partition(&m.topic, m.partition);
                    if wire.newest(&figures) {
                        wire.merchants.push(figures);
                        wire.dirty = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// Hands each changed partition's delta to the publisher.
    fn hand_all(&mut self) {
        let partitions = self.partitions.len() as u64;
        self.state.set_status(|s| {
            s.partitions = partitions;
            s.ready = true;
        });
        for wire in self.partitions.values_mut() {
            if wire.dirty {
                let delta = wire.delta(&self.settings);
                wire.pending = Some(match wire.pending.take() {
                    Some(older) => merge(older, delta),
                    None => delta,
                });
                wire.dirty = false;
            }
            if let Some(delta) = wire.pending.take() {
                wire.pending = wire.handoff.hand(delta);
            }
        }
    }

    /// Hands the last deltas, waiting for the publisher, and closes.
    fn close(mut self) {
        self.hand_all();
        let start = Instant::now();
        while self.partitions.values().any(|w| w.pending.is_some())
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
            for wire in self.partitions.values_mut() {
                if let Some(delta) = wire.pending.take() {
                    wire.pending = wire.handoff.hand(delta);
                }
            }
        }
        for wire in self.partitions.into_values() {
            wire.handoff.finish();
        }
    }
}

impl WirePartition {
    /// Whether `figures` are as new as any heard of for their merchant
    /// (and remembers them if so).
    fn newest(&mut self, figures: &MerchantFigures) -> bool {
        let most = self
            .transactions
            .entry(figures.merchant_id.clone())
            .or_insert(0);
        if figures.transactions < *most {
            return false;
        }
        *most = figures.transactions;
        true
    }

    /// The partition as a delta: totals and counters whole, the hours and
    /// merchants heard of since the last one.
    fn delta(&mut self, settings: &Settings) -> Delta {
        let mut delta = Delta {
            first_position: -1,
            next_position: -1,
            threshold_merchants: vec![0; settings.thresholds.len()],
            ..Delta::default()
        };
        let mut tops = Vec::new();
        if let Some(p) = &self.snapshot {
            let f = &p.snapshot.figures;
            delta.totals = Totals {
                gmv: fen(&f.gmv_cny),
                mobile_gmv: fen(&f.mobile_gmv_cny),
                transactions: f.transactions,
                merchants: f.merchants,
            };
            for (count, &threshold) in delta
                .threshold_merchants
                .iter_mut()
                .zip(&settings.thresholds)
            {
                *count = f
                    .thresholds
                    .iter()
                    .find(|t| fen(&t.cny) == threshold)
                    .map_or(0, |t| t.merchants);
            }
            delta.consumed = f.accounting.consumed;
            delta.rejected = f.rejected;
            delta.watermark = p
                .snapshot
                .watermark
                .as_deref()
                .and_then(parse_rfc3339_millis);
            if let Some(a) = f.accounting.partitions.first() {
                delta.first_position = a.first_offset;
                delta.next_position = a.next_offset;
            }
            tops.extend(f.top_merchants.iter().map(|t| MerchantFigures {
                merchant_id: t.merchant_id.clone(),
                gmv: fen(&t.gmv_cny),
                mobile_gmv: t.mobile_gmv_cny.as_deref().map_or(0, fen),
                transactions: t.transactions,
            }));
        }
        for top in tops {
            if self.newest(&top) {
                delta.merchants.push(top);
            }
        }
        delta.merchants.append(&mut self.merchants);
        delta.hours = std::mem::take(&mut self.changed_hours)
            .into_iter()
            .filter_map(|h| self.hours.get(&h).map(|cells| (h, cells.clone())))
            .collect();
        delta
    }
}

/// One delta carrying both: the later's whole figures, every hour and
/// merchant of either (the later winning).
fn merge(mut older: Delta, newer: Delta) -> Delta {
    let mut merchants = std::mem::take(&mut older.merchants);
    merchants.extend(newer.merchants.iter().cloned());
    let mut hours = std::mem::take(&mut older.hours);
    hours.extend(newer.hours.iter().cloned());
    Delta {
        merchants,
        hours,
        ..newer
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
fn poll_into(consumer: &BaseConsumer, reader: &mut Reader, wait: Duration, max: usize) {
    let mut timeout = wait;
    for _ in 0..max {
        match consumer.poll(timeout) {
            Some(Ok(message)) => reader.apply(&message),
            Some(Err(error)) => {
                tracing::warn!(%error, "reading the snapshots topic");
                break;
            }
            None => break,
        }
        timeout = Duration::ZERO;
    }
}

/// Hands every alert of the alerts topic, from its beginning and as they
/// come, to `sink` until the run stops.
pub fn follow_alerts(
    config: &KafkaConfig,
    lifecycle: &Lifecycle,
    sink: Arc<dyn LiveSink>,
) -> Result<JoinHandle<()>, TaskError> {
    let consumer = reader(config, &config.alerts_topic)?;
    let watch = lifecycle.clone();
    Ok(lifecycle.spawn("gmv-alerts-reader", move || {
        while !watch.is_cancelled() {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                if let Some(alert) = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<AlertRecord>(p).ok())
                {
                    sink.alert(&alert);
                }
            }
        }
        Ok(())
    })?)
}
