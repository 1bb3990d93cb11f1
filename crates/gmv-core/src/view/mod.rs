//! The readers' side of partitions: what the publisher builds from the
//! [`Delta`]s partitions hand over, and the published shapes it makes.
//!
//! - [`PartitionView`]: one partition's figures as of its latest delta,
//!   with its biggest merchants kept as they change.
//! - [`LiveView`]: every partition a process owns, their merchants in the
//!   shared [`MerchantIndex`], and their hours summed; it makes the live
//!   [`Snapshot`], each partition's own snapshot, and the final [`Report`].
//! - [`assemble`]: the one place partition figures become a snapshot, used
//!   for a partition, for a process, and for the global view a reader builds
//!   from the snapshots topic alone.

mod index;
mod series;
mod top;

pub use index::MerchantIndex;
pub use series::{minute_record, HourSeries, SeriesFigures, RECENT_MINUTES};
pub use top::TopMerchants;

use crate::config::Settings;
use crate::money::{self, format_fen, Fen};
use crate::output::*;
use crate::partition::{Crossing, Delta, MerchantFigures, Totals};
use crate::reject::RejectCounts;
use crate::time::EpochMillis;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Which partition: its topic (empty for a source split by the process
/// itself, such as a file) and number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The Kafka topic, or `""`.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl PartitionKey {
    /// A partition of a Kafka topic.
    pub fn kafka(topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
        }
    }

    /// Partition `partition` of a source the process splits itself.
    pub fn split(partition: u32) -> Self {
        Self {
            topic: String::new(),
            partition: partition as i32,
        }
    }

    /// Whether its positions are Kafka offsets (worth reporting).
    pub fn has_offsets(&self) -> bool {
        !self.topic.is_empty()
    }
}

/// A partition's additive figures, whatever they were read from: the input
/// of [`assemble`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionFigures {
    /// Sums over its merchants.
    pub totals: Totals,
    /// (threshold, merchants at or over it).
    pub thresholds: Vec<(Fen, u64)>,
    /// Records read.
    pub consumed: u64,
    /// Rejections per reason.
    pub rejected: RejectCounts,
    /// Its audit lines with offsets (Kafka partitions only).
    pub accounting: Vec<PartitionAccounting>,
    /// Its biggest merchants, biggest first.
    pub top: Vec<MerchantFigures>,
    /// Latest event time counted.
    pub watermark: Option<EpochMillis>,
}

/// Builds a snapshot from partitions' figures and the series over them.
pub fn assemble<'a>(
    settings: &Settings,
    seq: u64,
    publish_interval_ms: u64,
    parts: impl IntoIterator<Item = &'a PartitionFigures>,
    series: SeriesFigures,
    latency_ms: LatencyMs,
) -> Snapshot {
    let window = &settings.window;
    let mut totals = Totals::default();
    let mut rejected = RejectCounts::default();
    let mut accounting = Accounting::default();
    let mut thresholds: BTreeMap<Fen, u64> = settings.thresholds.iter().map(|&t| (t, 0)).collect();
    let mut top: Vec<&MerchantFigures> = Vec::new();
    let mut watermark: Option<EpochMillis> = None;
    for p in parts {
        totals.gmv += p.totals.gmv;
        totals.mobile_gmv += p.totals.mobile_gmv;
        totals.transactions += p.totals.transactions;
        totals.merchants += p.totals.merchants;
        rejected.merge(&p.rejected);
        accounting.consumed += p.consumed;
        accounting.rejected += p.rejected.total();
        accounting.partitions.extend(p.accounting.iter().cloned());
        for &(threshold, merchants) in &p.thresholds {
            *thresholds.entry(threshold).or_default() += merchants;
        }
        top.extend(p.top.iter());
        watermark = watermark.max(p.watermark);
    }
    accounting.counted = totals.transactions;
    accounting
        .partitions
        .sort_by(|a, b| a.topic.cmp(&b.topic).then(a.partition.cmp(&b.partition)));
    top.sort_by(|a, b| {
        b.gmv
            .cmp(&a.gmv)
            .then_with(|| a.merchant_id.cmp(&b.merchant_id))
    });
    top.truncate(settings.top_n);
    Snapshot {
        seq,
        as_of: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        watermark: watermark.map(|w| window.format(w)),
        publish_interval_ms,
        current_tps: series.current_tps,
        figures: Figures {
            window: WindowRange {
                start: window.start_rfc3339(),
                end: window.end_rfc3339(),
            },
            gmv_cny: format_fen(totals.gmv),
            gmv_usd: money::format_decimal_2dp(money::convert_from_fen(
                totals.gmv,
                settings.usd_per_cny,
            )),
            transactions: totals.transactions,
            mobile_gmv_cny: format_fen(totals.mobile_gmv),
            mobile_share: share(totals.mobile_gmv, totals.gmv),
            peak_tps: series.peak_tps,
            peak_second: series
                .peak_second
                .map(|s| window.format(window.start_millis() + s as i64 * 1000)),
            merchants: totals.merchants,
            thresholds: thresholds
                .into_iter()
                .map(|(t, merchants)| ThresholdCount {
                    cny: format_fen(t),
                    merchants,
                })
                .collect(),
            rejected,
            accounting,
            top_merchants: top.into_iter().map(top_merchant).collect(),
        },
        recent_minutes: series.recent_minutes,
        latency_ms,
    }
}

/// One merchant as listed in top lists and the HTTP API.
pub fn top_merchant(m: &MerchantFigures) -> TopMerchant {
    TopMerchant {
        merchant_id: m.merchant_id.clone(),
        gmv_cny: format_fen(m.gmv),
        transactions: m.transactions,
        mobile_share: share(m.mobile_gmv, m.gmv),
        mobile_gmv_cny: Some(format_fen(m.mobile_gmv)),
    }
}

/// One merchant's record as in reports and the HTTP API.
pub fn merchant_record(m: &MerchantFigures) -> MerchantRecord {
    MerchantRecord {
        merchant_id: m.merchant_id.clone(),
        gmv_cny: format_fen(m.gmv),
        mobile_gmv_cny: format_fen(m.mobile_gmv),
        transactions: m.transactions,
    }
}

/// One partition's figures as of its latest delta.
#[derive(Debug, Clone)]
pub struct PartitionView {
    key: PartitionKey,
    /// Who owns it (`host/pid/thread` for Kafka members).
    pub member: String,
    /// Which hand-over of the partition the view holds: a partition
    /// restored again (moved to another member) starts a later one.
    generation: u64,
    totals: Totals,
    threshold_merchants: Vec<u64>,
    consumed: u64,
    rejected: RejectCounts,
    watermark: Option<EpochMillis>,
    first_position: i64,
    next_position: i64,
    /// Everything before this position of the partition's log is in the
    /// view (a source may vouch for more than the last record counted).
    progress: i64,
    hours: HourSeries,
    crossings: Vec<Crossing>,
    top: TopMerchants,
    dedup_ids: u64,
    dedup_bytes: u64,
    state_bytes: u64,
    /// Hours changed since the owner of the view last asked.
    hours_changed: Vec<u32>,
}

impl PartitionView {
    /// An empty view of `key`.
    pub fn new(settings: &Settings, key: PartitionKey, member: &str) -> Self {
        Self {
            key,
            member: member.to_owned(),
            generation: 0,
            totals: Totals::default(),
            threshold_merchants: vec![0; settings.thresholds.len()],
            consumed: 0,
            rejected: RejectCounts::default(),
            watermark: None,
            first_position: -1,
            next_position: -1,
            progress: -1,
            hours: HourSeries::new(settings.window.seconds()),
            crossings: Vec::new(),
            top: TopMerchants::new(settings.top_n),
            dedup_ids: 0,
            dedup_bytes: 0,
            state_bytes: 0,
            hours_changed: Vec::new(),
        }
    }

    /// Which partition.
    pub fn key(&self) -> &PartitionKey {
        &self.key
    }

    /// Takes a delta (see [`Delta`]); the merchants and crossings in it are
    /// for the caller to pass on.
    fn apply(&mut self, delta: &Delta) {
        self.totals = delta.totals;
        self.threshold_merchants
            .clone_from(&delta.threshold_merchants);
        self.consumed = delta.consumed;
        self.rejected = delta.rejected;
        self.watermark = delta.watermark;
        self.first_position = delta.first_position;
        self.next_position = delta.next_position;
        self.progress = self.progress.max(delta.next_position);
        for m in &delta.merchants {
            self.top.update(m);
        }
        for (hour, cells) in &delta.hours {
            if self.hours.set(*hour, cells.clone()) {
                self.hours_changed.push(*hour);
            }
        }
        self.crossings.extend(delta.crossings.iter().cloned());
        self.dedup_ids = delta.dedup_ids;
        self.dedup_bytes = delta.dedup_bytes;
        self.state_bytes = delta.state_bytes;
    }

    /// Vouches that everything before `position` of the log is in the view.
    pub fn advance(&mut self, position: i64) {
        self.progress = self.progress.max(position);
    }

    /// Everything before this position of the log is in the view.
    pub fn progress(&self) -> i64 {
        self.progress
    }

    /// The partition's audit line.
    pub fn accounting(&self) -> PartitionAccounting {
        PartitionAccounting {
            topic: self.key.topic.clone(),
            partition: self.key.partition,
            consumed: self.consumed,
            counted: self.totals.transactions,
            rejected: self.rejected.total(),
            first_offset: self.first_position,
            next_offset: self.next_position,
        }
    }

    /// Its additive figures.
    pub fn figures(&self, settings: &Settings) -> PartitionFigures {
        PartitionFigures {
            totals: self.totals,
            thresholds: settings
                .thresholds
                .iter()
                .copied()
                .zip(self.threshold_merchants.iter().copied())
                .collect(),
            consumed: self.consumed,
            rejected: self.rejected,
            accounting: if self.key.has_offsets() {
                vec![self.accounting()]
            } else {
                Vec::new()
            },
            top: self.top.iter().cloned().collect(),
            watermark: self.watermark,
        }
    }

    /// The partition's own snapshot (what a Kafka processor publishes for it).
    pub fn snapshot(
        &self,
        settings: &Settings,
        seq: u64,
        interval_ms: u64,
        latency: LatencyMs,
    ) -> Snapshot {
        let series = self.hours.figures(&settings.window, self.watermark);
        assemble(
            settings,
            seq,
            interval_ms,
            [&self.figures(settings)],
            series,
            latency,
        )
    }

    /// Its hours.
    pub fn hours(&self) -> &HourSeries {
        &self.hours
    }

    /// Hours changed since the last call.
    pub fn take_hours_changed(&mut self) -> Vec<u32> {
        let mut changed = std::mem::take(&mut self.hours_changed);
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// (dedup ids held, dedup bytes, other state bytes) of the partition.
    pub fn memory(&self) -> (u64, u64, u64) {
        (self.dedup_ids, self.dedup_bytes, self.state_bytes)
    }

    /// Records read.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Next position to read.
    pub fn next_position(&self) -> i64 {
        self.next_position
    }
}

/// What a process's view gained from one delta.
#[derive(Debug, Default)]
pub struct Applied {
    /// Crossings not announced by this view before, in the partition's log order.
    pub crossings: Vec<Crossing>,
    /// Merchants last seen in another partition (a producer keying by
    /// something other than `merchant_id`).
    pub moved_merchants: Vec<String>,
    /// The delta came from an earlier hand-over of its partition than the
    /// view holds, and was set aside.
    pub stale: bool,
}

/// Every partition a process owns, merged (see the module docs).
pub struct LiveView {
    settings: Arc<Settings>,
    partitions: BTreeMap<PartitionKey, (u32, PartitionView)>,
    next_slot: u32,
    index: Arc<MerchantIndex>,
    global: HourSeries,
    /// (merchant, threshold) already handed on, so a partition restored
    /// elsewhere and re-reporting its crossings does not repeat them.
    announced: HashSet<(String, Fen)>,
}

impl LiveView {
    /// An empty view.
    pub fn new(settings: Arc<Settings>) -> Self {
        Self {
            global: HourSeries::new(settings.window.seconds()),
            settings,
            partitions: BTreeMap::new(),
            next_slot: 0,
            index: Arc::new(MerchantIndex::default()),
            announced: HashSet::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// The merchant index, for readers on other threads.
    pub fn index(&self) -> Arc<MerchantIndex> {
        self.index.clone()
    }

    /// Takes a delta of partition `key` (owned by `member`).
    pub fn apply(&mut self, key: &PartitionKey, member: &str, delta: &Delta) -> Applied {
        self.apply_from(key, member, 0, delta)
    }

    /// Takes a delta of partition `key` from hand-over `generation` (see
    /// `Board::register`). Within a process a partition can move from one
    /// member to another while the last deltas of the first are still on
    /// their way: a delta of an earlier hand-over than the view holds is set
    /// aside, and a later one replaces the partition whole (the first delta
    /// of a hand-over carries the partition's whole state). Merchants and
    /// hours only arrive when they change, so mixing two hand-overs would
    /// drop what only the replaced one had sent.
    pub fn apply_from(
        &mut self,
        key: &PartitionKey,
        member: &str,
        generation: u64,
        delta: &Delta,
    ) -> Applied {
        match self.partitions.get(key).map(|(_, view)| view.generation) {
            Some(held) if generation < held => {
                return Applied {
                    stale: true,
                    ..Applied::default()
                }
            }
            Some(held) if generation > held => self.forget(key),
            _ => {}
        }
        if !self.partitions.contains_key(key) {
            let slot = self.next_slot;
            self.next_slot += 1;
            let mut view = PartitionView::new(&self.settings, key.clone(), member);
            view.generation = generation;
            self.partitions.insert(key.clone(), (slot, view));
        }
        let Some((slot, view)) = self.partitions.get_mut(key) else {
            return Applied::default();
        };
        view.member = member.to_owned();
        view.apply(delta);
        let mut applied = Applied::default();
        for m in &delta.merchants {
            if self.index.update(*slot, m) {
                applied.moved_merchants.push(m.merchant_id.clone());
            }
        }
        for (hour, _) in &delta.hours {
            self.resum_hour(*hour as usize);
        }
        for c in &delta.crossings {
            if self.announced.insert((c.merchant_id.clone(), c.threshold)) {
                applied.crossings.push(c.clone());
            }
        }
        applied
    }

    /// Vouches that partition `key` has everything before `position` (see
    /// [`PartitionView::advance`]).
    pub fn advance(&mut self, key: &PartitionKey, position: i64) {
        if let Some((_, view)) = self.partitions.get_mut(key) {
            view.advance(position);
        }
    }

    /// How far partition `key` has vouched (see [`PartitionView::progress`]).
    pub fn progress(&self, key: &PartitionKey) -> Option<i64> {
        self.partitions.get(key).map(|(_, v)| v.progress())
    }

    /// Forgets a partition that `member` let go of (it moved elsewhere),
    /// unless another member has reported it since: within one process a
    /// partition can reach its next member before its last one has closed,
    /// and the newcomer's figures must stay.
    pub fn remove(&mut self, key: &PartitionKey, member: &str) {
        self.forget_if(key, |view| view.member == member);
    }

    /// Forgets a partition whose hand-over `generation` ended (it moved
    /// elsewhere), unless a later hand-over of it has reported since.
    pub fn remove_from(&mut self, key: &PartitionKey, generation: u64) {
        self.forget_if(key, |view| view.generation == generation);
    }

    fn forget_if(&mut self, key: &PartitionKey, still_theirs: impl Fn(&PartitionView) -> bool) {
        if self
            .partitions
            .get(key)
            .is_some_and(|(_, view)| still_theirs(view))
        {
            self.forget(key);
        }
    }

    fn forget(&mut self, key: &PartitionKey) {
        if let Some((slot, view)) = self.partitions.remove(key) {
            self.index.remove_slot(slot);
            for h in 0..view.hours.len() {
                if view.hours.get(h).is_some() {
                    self.resum_hour(h);
                }
            }
        }
    }

    fn resum_hour(&mut self, hour: usize) {
        let mut sum = crate::partition::Hour::boxed();
        for (_, view) in self.partitions.values() {
            if let Some(cells) = view.hours.get(hour) {
                sum.add(cells);
            }
        }
        self.global.set(hour as u32, sum);
    }

    /// The partitions, by key.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionView> {
        self.partitions.values().map(|(_, v)| v)
    }

    /// The partitions, by key, to update their publishing marks.
    pub fn partitions_mut(&mut self) -> impl Iterator<Item = &mut PartitionView> {
        self.partitions.values_mut().map(|(_, v)| v)
    }

    /// The summed hours.
    pub fn hours(&self) -> &HourSeries {
        &self.global
    }

    /// The latest event time over the partitions.
    pub fn watermark(&self) -> Option<EpochMillis> {
        self.partitions().filter_map(|v| v.watermark).max()
    }

    /// The live snapshot of every partition together.
    pub fn snapshot(&self, seq: u64, interval_ms: u64, latency: LatencyMs) -> Snapshot {
        let figures: Vec<PartitionFigures> = self
            .partitions()
            .map(|v| v.figures(&self.settings))
            .collect();
        let series = self.global.figures(&self.settings.window, self.watermark());
        assemble(&self.settings, seq, interval_ms, &figures, series, latency)
    }

    /// A crossing as the published alert.
    pub fn alert_record(&self, crossing: &Crossing) -> AlertRecord {
        alert_record(&self.settings, crossing)
    }

    /// The whole window minute by minute.
    pub fn day_series(&self) -> DaySeries {
        let window = &self.settings.window;
        DaySeries {
            window: Some(WindowRange {
                start: window.start_rfc3339(),
                end: window.end_rfc3339(),
            }),
            watermark: self.watermark().map(|w| window.format(w)),
            minutes: self
                .global
                .minutes()
                .map(|(minute, cell)| minute_record(window, minute, &cell))
                .collect(),
        }
    }

    /// Records read over every partition.
    pub fn consumed(&self) -> u64 {
        self.partitions().map(|v| v.consumed).sum()
    }

    /// The final report over every partition: the day's figures, a function
    /// of the input alone (the same records give the same bytes whatever
    /// the number of threads or partitions; memory and latency are run
    /// measurements, in the log and `/metrics`).
    pub fn report(&self) -> Report {
        let snapshot = self.snapshot(0, 0, LatencyMs::default());
        let window = &self.settings.window;
        let mut crossings: Vec<&Crossing> =
            self.partitions().flat_map(|v| v.crossings.iter()).collect();
        crossings.sort_by(|a, b| Crossing::canonical_order(a, b));
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            figures: snapshot.figures,
            latency_ms: LatencyMs::default(),
            dedup: DedupFigures::default(),
            series: Series {
                per_second: PerSecond {
                    start: window.start_rfc3339(),
                    counts: self.global.per_second(),
                },
                per_minute: self
                    .global
                    .minutes()
                    .map(|(minute, cell)| minute_record(window, minute, &cell))
                    .collect(),
            },
            alerts: crossings
                .into_iter()
                .map(|c| alert_record(&self.settings, c))
                .collect(),
            merchant_list: self
                .index
                .all_sorted()
                .iter()
                .map(merchant_record)
                .collect(),
        }
    }
}

/// A process's memory for its partitions, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Partitions held.
    pub partitions: u64,
    /// Redelivery ids held.
    pub dedup_ids: u64,
    /// Bytes the dedup sets have allocated.
    pub dedup_bytes: u64,
    /// Bytes of merchant tables and series.
    pub state_bytes: u64,
}

impl LiveView {
    /// The partitions' memory, summed.
    pub fn memory(&self) -> Memory {
        self.partitions().fold(Memory::default(), |m, v| Memory {
            partitions: m.partitions + 1,
            dedup_ids: m.dedup_ids + v.dedup_ids,
            dedup_bytes: m.dedup_bytes + v.dedup_bytes,
            state_bytes: m.state_bytes + v.state_bytes,
        })
    }
}

/// How the source of a live view is doing, for operators (`/metrics`,
/// `/readyz`, the operator view). Sources that split their input
/// themselves leave most of it at its default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// Whether the source has its partitions and has restored their state.
    pub ready: bool,
    /// Partitions held.
    pub partitions: u64,
    /// Per partition: (topic, partition, records between the next offset to
    /// read and the partition's end).
    pub lag: Vec<(String, i32, i64)>,
    /// Rebalances (assignments and revocations) seen.
    pub rebalances: u64,
    /// When the newest checkpoint became durable (ms since the epoch).
    pub last_checkpoint_ms: Option<i64>,
}

/// What readers on other threads (HTTP handlers) see of a live view: the
/// merchant index, the latest snapshot, the day's series, the memory
/// figures, the latency histogram and the source's status. The publisher
/// writes it once per tick (the source its status); readers never wait on
/// a partition.
#[derive(Default)]
pub struct LiveState {
    index: Arc<MerchantIndex>,
    latest: parking_lot::RwLock<Option<Arc<Snapshot>>>,
    day: parking_lot::RwLock<Arc<DaySeries>>,
    memory: parking_lot::RwLock<Memory>,
    status: parking_lot::RwLock<SourceStatus>,
    latency: Arc<crate::latency::Latency>,
}

impl LiveState {
    /// A state reading `index`, with a fresh latency histogram.
    pub fn new(index: Arc<MerchantIndex>) -> Self {
        Self {
            index,
            ..Self::default()
        }
    }

    /// A state reading `index` whose latency histogram is `latency`.
    pub fn with_latency(index: Arc<MerchantIndex>, latency: Arc<crate::latency::Latency>) -> Self {
        Self {
            index,
            latency,
            ..Self::default()
        }
    }

    /// The merchant index.
    pub fn index(&self) -> &MerchantIndex {
        &self.index
    }

    /// The latest snapshot published.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.latest.read().clone()
    }

    /// The day's series as of the latest snapshot.
    pub fn day_series(&self) -> Arc<DaySeries> {
        self.day.read().clone()
    }

    /// The memory figures as of the latest snapshot.
    pub fn memory(&self) -> Memory {
        *self.memory.read()
    }

    /// The latency histogram (record start → snapshot published).
    pub fn latency(&self) -> &Arc<crate::latency::Latency> {
        &self.latency
    }

    /// The source's status.
    pub fn status(&self) -> SourceStatus {
        self.status.read().clone()
    }

    /// Updates the source's status.
    pub fn set_status(&self, update: impl FnOnce(&mut SourceStatus)) {
        update(&mut self.status.write());
    }

    /// Publishes a new snapshot and memory figures.
    pub fn publish(&self, snapshot: Arc<Snapshot>, memory: Memory) {
        *self.latest.write() = Some(snapshot);
        *self.memory.write() = memory;
    }

    /// Publishes the day's series.
    pub fn publish_day(&self, day: DaySeries) {
        *self.day.write() = Arc::new(day);
    }
}

/// A crossing as the published alert.
pub fn alert_record(settings: &Settings, crossing: &Crossing) -> AlertRecord {
    AlertRecord {
        merchant_id: crossing.merchant_id.clone(),
        threshold_cny: format_fen(crossing.threshold),
        gmv_cny: format_fen(crossing.gmv_at_crossing),
        settled_at: settings.window.format(crossing.settled_at),
    }
}

#[cfg(test)]
mod tests;
