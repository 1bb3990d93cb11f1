//! The engine: decode → window → dedup → aggregate for each record, shared by
//! any number of worker threads, and the readers that turn its state into the
//! published shapes (snapshot, report, alerts).
//!
//! Sources (file, stdin, Kafka) own the I/O; they hand payload bytes to a
//! [`Worker`] and deal with the [`Rejection`]s it returns (dead letters).

use crate::aggregate::{Aggregator, Crossing, MerchantFigures, Summary};
use crate::config::Settings;
use crate::dedup::{DedupSet, Verdict};
use crate::event::Event;
use crate::money::{self, format_fen};
use crate::output::*;
use crate::prefetch::ReadAhead;
use crate::reject::{Reason, RejectCounters, RejectCounts, Rejection};
use crate::state::{self, Checkpoint, DedupPart, EngineState, StateError};
use crate::time::EpochMillis;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Minutes of data carried by each live snapshot.
const RECENT_MINUTES: usize = 30;

/// The shared state of one processing pipeline.
pub struct Engine {
    settings: Settings,
    dedup: DedupSet,
    aggregator: Aggregator,
    rejected: RejectCounters,
    consumed: AtomicU64,
    latency: Latency,
}

impl Engine {
    /// A fresh engine.
    pub fn new(settings: Settings) -> Self {
        Self {
            dedup: DedupSet::new(settings.dedup_max_ids, settings.dedup_retention),
            aggregator: Aggregator::new(settings.window, &settings.thresholds),
            settings,
            rejected: RejectCounters::default(),
            consumed: AtomicU64::new(0),
            latency: Latency::new(),
        }
    }

    /// A fresh engine that journals new dedup ids, for checkpoint deltas.
    pub fn with_journal(settings: Settings) -> Self {
        let engine = Self::new(settings);
        engine.dedup.enable_journal();
        engine
    }

    /// Rebuilds an engine from a chain of checkpoints: a base, then the deltas
    /// that follow it in order. Figures come from the last link; the dedup set
    /// from the base plus every delta's new ids. Journaling is on.
    pub fn restore(settings: Settings, chain: &[Checkpoint]) -> Result<Self, StateError> {
        let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
            return Err(StateError::Invalid("empty checkpoint chain"));
        };
        let engine = Self::with_journal(settings);
        for link in chain {
            match (&link.dedup, link.seq == first.seq) {
                (DedupPart::Base(state), true) => engine.dedup.restore(state)?,
                (DedupPart::Delta(journal), false) => engine.dedup.replay(journal)?,
                _ => return Err(StateError::Invalid("a chain is one base, then deltas")),
            }
        }
        // Replayed ids are already in the checkpoints, not new.
        let _ = engine.dedup.take_journal();
        engine.absorb(&last.engine)?;
        Ok(engine)
    }

    /// Everything but the dedup set, as plain data. Exact when no worker runs
    /// meanwhile.
    pub fn export(&self) -> EngineState {
        EngineState {
            consumed: self.consumed(),
            rejected: self.rejected(),
            aggregate: self.aggregator.export(),
        }
    }

    /// A checkpoint of this engine covering offsets `first_offset..next_offset`:
    /// a base with the whole dedup set if `extends` is `None`, else a delta
    /// with the ids first seen since the previous checkpoint, whose checksum
    /// `extends` is. Take it between batches, from the only thread that
    /// writes to this engine.
    pub fn checkpoint(
        &self,
        seq: u64,
        extends: Option<u64>,
        first_offset: i64,
        next_offset: i64,
    ) -> Checkpoint {
        let journal = self.dedup.take_journal();
        Checkpoint {
            seq,
            settings_hash: state::settings_hash(&self.settings),
            first_offset,
            next_offset,
            parent: extends,
            engine: self.export(),
            dedup: match extends {
                None => DedupPart::Base(self.dedup.state()),
                Some(_) => DedupPart::Delta(journal),
            },
        }
    }

    /// Adds another engine's figures (a restored checkpoint, or a partition
    /// folded into a merged view).
    pub fn absorb(&self, state: &EngineState) -> Result<(), StateError> {
        self.aggregator
            .absorb(&state.aggregate)
            .map_err(StateError::Invalid)?;
        self.consumed.fetch_add(state.consumed, Relaxed);
        for reason in Reason::ALL {
            let n = state.rejected.get(reason);
            if n > 0 {
                self.rejected.add(reason, n);
            }
        }
        Ok(())
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The aggregation state.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// The redelivery set.
    pub fn dedup(&self) -> &DedupSet {
        &self.dedup
    }

    /// The latency histogram that sources record into.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// A per-thread processing handle.
    pub fn worker(&self) -> Worker<'_> {
        Worker {
            engine: self,
            tally: self.aggregator.tally(),
            consumed: 0,
            rejected: RejectCounts::default(),
        }
    }

    /// Records read so far (flushed batches).
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Relaxed)
    }

    /// Rejections so far (flushed batches).
    pub fn rejected(&self) -> RejectCounts {
        self.rejected.load()
    }

    /// The contract figures now.
    pub fn figures(&self) -> Figures {
        let summary = self.aggregator.summary(self.settings.top_n);
        self.figures_from(&summary)
    }

    fn figures_from(&self, summary: &Summary) -> Figures {
        let window = self.aggregator.window();
        let rejected = self.rejected();
        Figures {
            window: WindowRange {
                start: window.start_rfc3339(),
                end: window.end_rfc3339(),
            },
            gmv_cny: format_fen(summary.gmv),
            gmv_usd: money::format_decimal_2dp(money::convert_from_fen(
                summary.gmv,
                self.settings.usd_per_cny,
            )),
            transactions: summary.transactions,
            mobile_gmv_cny: format_fen(summary.mobile_gmv),
            mobile_share: share(summary.mobile_gmv, summary.gmv),
            peak_tps: summary.peak_tps,
            peak_second: summary.peak_second.map(|t| window.format(t)),
            merchants: summary.merchants,
            thresholds: self
                .aggregator
                .thresholds()
                .iter()
                .zip(&summary.threshold_merchants)
                .map(|(&fen, &merchants)| ThresholdCount {
                    cny: format_fen(fen),
                    merchants,
                })
                .collect(),
            rejected,
            accounting: Accounting {
                consumed: self.consumed(),
                counted: summary.transactions,
                rejected: rejected.total(),
                partitions: Vec::new(),
            },
            top_merchants: summary.top.iter().map(top_merchant).collect(),
        }
    }

    /// A live snapshot.
    pub fn snapshot(&self, seq: u64, publish_interval_ms: u64) -> Snapshot {
        let summary = self.aggregator.summary(self.settings.top_n);
        let window = self.aggregator.window();
        let minutes = self.aggregator.per_minute();
        let last_with_data = minutes.iter().rposition(|m| m.transactions > 0);
        let recent_minutes = match last_with_data {
            Some(last) => minutes[last.saturating_sub(RECENT_MINUTES - 1)..=last]
                .iter()
                .filter(|m| m.transactions > 0)
                .map(|m| self.minute_record(m.minute, m.gmv, m.mobile_gmv, m.transactions))
                .collect(),
            None => Vec::new(),
        };
        Snapshot {
            seq,
            as_of: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            watermark: summary.watermark.map(|w| window.format(w)),
            publish_interval_ms,
            current_tps: summary.current_tps,
            figures: self.figures_from(&summary),
            recent_minutes,
            latency_ms: self.latency.percentiles(),
        }
    }

    fn minute_record(
        &self,
        minute: usize,
        gmv: u64,
        mobile_gmv: u64,
        transactions: u64,
    ) -> MinuteRecord {
        let window = self.aggregator.window();
        MinuteRecord {
            minute: window.format(window.start_millis() + minute as i64 * 60_000),
            gmv_cny: format_fen(gmv),
            mobile_gmv_cny: format_fen(mobile_gmv),
            transactions,
        }
    }

    /// The final report of a run.
    pub fn report(&self) -> Report {
        let window = self.aggregator.window();
        let mut per_second = self.aggregator.per_second();
        let used = per_second
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0, |last| last + 1);
        per_second.truncate(used);
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            figures: self.figures(),
            latency_ms: self.latency.percentiles(),
            dedup: DedupFigures {
                ids_held: self.dedup.len() as u64,
                bytes: self.dedup.allocated_bytes() as u64,
            },
            series: Series {
                per_second: PerSecond {
                    start: window.start_rfc3339(),
                    counts: per_second,
                },
                per_minute: self
                    .aggregator
                    .per_minute()
                    .into_iter()
                    .filter(|m| m.transactions > 0)
                    .map(|m| self.minute_record(m.minute, m.gmv, m.mobile_gmv, m.transactions))
                    .collect(),
            },
            alerts: self.alert_records(0),
            merchant_list: self.merchant_list(),
        }
    }

    /// Every merchant, biggest GMV first (ties by id).
    pub fn merchant_list(&self) -> Vec<MerchantRecord> {
        let mut merchants = self.aggregator.merchants();
        merchants.sort_unstable_by(|a, b| {
            b.gmv
                .cmp(&a.gmv)
                .then_with(|| a.merchant_id.cmp(&b.merchant_id))
        });
        merchants
            .into_iter()
            .map(|m| MerchantRecord {
                gmv_cny: format_fen(m.gmv),
                mobile_gmv_cny: format_fen(m.mobile_gmv),
                transactions: m.transactions,
                merchant_id: m.merchant_id,
            })
            .collect()
    }

    /// Threshold alerts from crossing index `from` on.
    pub fn alert_records(&self, from: usize) -> Vec<AlertRecord> {
        self.aggregator
            .crossings_since(from)
            .iter()
            .map(|c| self.alert_record(c))
            .collect()
    }

    /// One crossing as the published alert.
    pub fn alert_record(&self, crossing: &Crossing) -> AlertRecord {
        AlertRecord {
            merchant_id: crossing.merchant_id.clone(),
            threshold_cny: format_fen(crossing.threshold),
            gmv_cny: format_fen(crossing.gmv_at_crossing),
            settled_at: self.aggregator.window().format(crossing.settled_at),
        }
    }
}

/// One merchant as listed in top lists and the HTTP API.
pub fn top_merchant(m: &MerchantFigures) -> TopMerchant {
    TopMerchant {
        merchant_id: m.merchant_id.clone(),
        gmv_cny: format_fen(m.gmv),
        transactions: m.transactions,
        mobile_share: share(m.mobile_gmv, m.gmv),
    }
}

/// A thread's processing handle. Counters are kept locally and published by
/// [`Worker::flush`] (call it after each batch; dropping the worker flushes).
pub struct Worker<'e> {
    engine: &'e Engine,
    tally: crate::aggregate::Tally<'e>,
    consumed: u64,
    rejected: RejectCounts,
}

/// How many records [`Worker::process_each`] decodes ahead of the one it
/// counts. Counting waits on memory (the dedup table's probe, usually a cache
/// miss); decoding is pure computation. Staging a record this far ahead
/// prefetches its probe while the records between are decoded.
const LOOKAHEAD: usize = 8;

/// A record decoded, its dedup probe prefetched, waiting to be counted.
struct Staged<'p, T> {
    item: T,
    payload: &'p [u8],
    decoded: Result<Decoded<'p>, Rejection>,
}

/// A valid in-window event and its dedup key.
struct Decoded<'p> {
    event: Event<'p>,
    key: u128,
}

impl Worker<'_> {
    /// Processes one record: counts it, or returns why not. The caller keeps
    /// the payload of a rejection (dead letter).
    pub fn process(&mut self, payload: &[u8]) -> Result<(), Rejection> {
        let decoded = self.decode(payload);
        self.count(decoded)
    }

    /// Processes records in order, exactly as [`Self::process`] would one by
    /// one, handing each refused record's item, payload and rejection to
    /// `refused` in input order. Faster: each record's bytes are prefetched
    /// [`READ_AHEAD`](crate::prefetch::READ_AHEAD) records before it is
    /// decoded, and it is decoded [`LOOKAHEAD`] records before it is
    /// counted, with the memory its count will probe prefetched meanwhile.
    pub fn process_each<'p, T>(
        &mut self,
        records: impl IntoIterator<Item = (T, &'p [u8])>,
        mut refused: impl FnMut(T, &'p [u8], Rejection),
    ) {
        let mut ring: [Option<Staged<'p, T>>; LOOKAHEAD] = std::array::from_fn(|_| None);
        let mut next = 0;
        for (item, payload) in ReadAhead::new(records.into_iter()) {
            let slot = next % LOOKAHEAD;
            if let Some(staged) = ring[slot].take() {
                self.finish(staged, &mut refused);
            }
            let decoded = self.decode(payload);
            if let Ok(d) = &decoded {
                self.engine.dedup.prefetch(d.key);
            }
            ring[slot] = Some(Staged {
                item,
                payload,
                decoded,
            });
            next += 1;
        }
        for k in 0..LOOKAHEAD {
            if let Some(staged) = ring[(next + k) % LOOKAHEAD].take() {
                self.finish(staged, &mut refused);
            }
        }
    }

    fn finish<'p, T>(
        &mut self,
        staged: Staged<'p, T>,
        refused: &mut impl FnMut(T, &'p [u8], Rejection),
    ) {
        if let Err(rejection) = self.count(staged.decoded) {
            refused(staged.item, staged.payload, rejection);
        }
    }

    /// The first stage, which reads nothing shared: size, decoding, window,
    /// dedup key.
    fn decode<'p>(&self, payload: &'p [u8]) -> Result<Decoded<'p>, Rejection> {
        let settings = &self.engine.settings;
        if payload.len() > settings.max_event_bytes {
            return Err(Rejection::new(
                Reason::Oversize,
                "record exceeds engine.max_event_bytes",
            ));
        }
        let event = settings.decoder.decode(payload)?;
        if !settings.window.contains(event.settled_at) {
            return Err(Rejection::new(
                Reason::OutsideWindow,
                "settled_at is outside the festival window",
            ));
        }
        let key = DedupSet::key(&event.txn_id);
        Ok(Decoded { event, key })
    }

    /// The second stage: dedup, then the aggregates; counts the record as
    /// consumed and, if refused, under its reason.
    fn count(&mut self, decoded: Result<Decoded<'_>, Rejection>) -> Result<(), Rejection> {
        self.consumed += 1;
        let outcome = decoded.and_then(|d| self.dedup_and_add(&d));
        if let Err(rejection) = &outcome {
            self.rejected.bump(rejection.reason);
        }
        outcome
    }

    fn dedup_and_add(&mut self, decoded: &Decoded<'_>) -> Result<(), Rejection> {
        let event = &decoded.event;
        let tally = &mut self.tally;
        let verdict = self.engine.dedup.check_count_insert(
            decoded.key,
            event.fingerprint,
            event.settled_at,
            || {
                tally.add(
                    &event.merchant_id,
                    event.amount_fen,
                    event.mobile,
                    event.settled_at,
                )
            },
        );
        match verdict {
            Verdict::New => Ok(()),
            Verdict::Duplicate => Err(Rejection::new(
                Reason::Duplicate,
                "txn_id already counted with the same content",
            )),
            Verdict::Conflict => Err(Rejection::new(
                Reason::Conflict,
                "txn_id already counted with different content",
            )),
        }
    }

    /// Publishes this worker's batched counters.
    pub fn flush(&mut self) {
        self.tally.flush();
        if self.consumed > 0 {
            for reason in Reason::ALL {
                let n = self.rejected.get(reason);
                if n > 0 {
                    self.engine.rejected.add(reason, n);
                }
            }
            self.engine.consumed.fetch_add(self.consumed, Relaxed);
            self.consumed = 0;
            self.rejected = RejectCounts::default();
        }
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A latency histogram in microseconds; sources record once per batch with
/// the batch's event count, so the hot path pays nothing per event.
pub struct Latency {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            // 1 µs to 1 h at 3 significant digits.
            histogram: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("static histogram bounds are valid"),
            ),
        }
    }

    /// Records `count` events that each took `micros`.
    pub fn record(&self, micros: u64, count: u64) {
        let _ = self.histogram.lock().record_n(micros.max(1), count);
    }

    /// Records latency from an event-time-like wall clock (ms) to now.
    pub fn record_since(&self, since: EpochMillis, now: EpochMillis, count: u64) {
        let micros = u64::try_from(now.saturating_sub(since)).unwrap_or(0) * 1000;
        self.record(micros, count);
    }

    /// Records, for each start time (ms), the time from it to `now`: one lock
    /// for a whole publish tick's worth of events.
    pub fn record_all_since(&self, starts: &[EpochMillis], now: EpochMillis) {
        let mut h = self.histogram.lock();
        for &since in starts {
            let micros = u64::try_from(now.saturating_sub(since)).unwrap_or(0) * 1000;
            let _ = h.record(micros.max(1));
        }
    }

    /// Percentiles so far, milliseconds.
    pub fn percentiles(&self) -> LatencyMs {
        let h = self.histogram.lock();
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencyMs {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            count: h.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(txn: &str, merchant: &str, amount: &str, channel: &str, at: &str) -> String {
        format!(
            r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"{channel}","settled_at":"{at}"}}"#
        )
    }

    #[test]
    fn duplicate_txn_is_counted_once_and_conflict_never() {
        let engine = Engine::new(Settings::defaults());
        let mut w = engine.worker();
        let e = event("t1", "m1", "10.00", "mobile", "2017-11-11T00:00:01+08:00");
        assert!(w.process(e.as_bytes()).is_ok());
        assert_eq!(
            w.process(e.as_bytes()).unwrap_err().reason,
            Reason::Duplicate
        );
        let changed = event("t1", "m1", "11.00", "mobile", "2017-11-11T00:00:01+08:00");
        assert_eq!(
            w.process(changed.as_bytes()).unwrap_err().reason,
            Reason::Conflict
        );
        let outside = event("t2", "m1", "10.00", "pc", "2017-11-12T00:00:00+08:00");
        assert_eq!(
            w.process(outside.as_bytes()).unwrap_err().reason,
            Reason::OutsideWindow
        );
        drop(w);
        let f = engine.figures();
        assert_eq!(f.gmv_cny, "10.00");
        assert_eq!(f.accounting.consumed, 4);
        assert_eq!(f.accounting.counted, 1);
        assert_eq!(f.accounting.rejected, 3);
        assert_eq!(f.rejected.get(Reason::Duplicate), 1);
        assert_eq!(f.rejected.get(Reason::Conflict), 1);
    }

    #[test]
    fn engine_restored_from_base_and_deltas_continues_exactly() {
        let settings = Settings::defaults;
        let events: Vec<String> = (0..300)
            .map(|i| {
                event(
                    &format!("t{}", i % 250),
                    &format!("m{}", i % 7),
                    "40000000.00",
                    if i % 3 == 0 { "pc" } else { "mobile" },
                    &format!("2017-11-11T00:{:02}:{:02}+08:00", i / 60, i % 60),
                )
            })
            .collect();
        let run = |engine: &Engine, range: std::ops::Range<usize>| {
            let mut w = engine.worker();
            for e in &events[range] {
                let _ = w.process(e.as_bytes());
            }
        };
        let whole = Engine::new(settings());
        run(&whole, 0..300);

        let live = Engine::with_journal(settings());
        run(&live, 0..100);
        let (base, base_checksum) = live.checkpoint(1, None, 0, 100).encode_with_checksum();
        run(&live, 100..200);
        let delta = live.checkpoint(2, Some(base_checksum), 0, 200);
        let bytes = [base, delta.encode()];
        drop(live);

        let chain: Vec<Checkpoint> = bytes
            .iter()
            .map(|b| Checkpoint::decode(b).unwrap())
            .collect();
        let resumed = Engine::restore(settings(), &chain).unwrap();
        run(&resumed, 200..300);
        let (a, b) = (whole.report(), resumed.report());
        assert_eq!(
            serde_json::to_value(&a.figures).unwrap(),
            serde_json::to_value(&b.figures).unwrap()
        );
        assert_eq!(a.alerts, b.alerts);
        assert_eq!(a.series, b.series);
        assert!(
            a.figures.rejected.get(Reason::Conflict) > 0,
            "the run must exercise the restored dedup set"
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_refused() {
        let engine = Engine::with_journal(Settings::defaults());
        engine
            .worker()
            .process(event("t1", "m1", "1.00", "mobile", "2017-11-11T00:00:01+08:00").as_bytes())
            .unwrap();
        let bytes = engine.checkpoint(1, None, 0, 1).encode();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            Checkpoint::decode(&flipped),
            Err(StateError::ChecksumMismatch)
        );
        assert_eq!(
            Checkpoint::decode(&bytes[..bytes.len() - 3]),
            Err(StateError::Truncated)
        );
        assert_eq!(Checkpoint::decode(b"{}"), Err(StateError::BadMagic));
        assert_eq!(Checkpoint::decode(&bytes).unwrap().next_offset, 1);
    }

    #[test]
    fn oversize_records_are_refused_before_parsing() {
        let engine = Engine::new(Settings::defaults());
        let huge = vec![b' '; engine.settings().max_event_bytes + 1];
        assert_eq!(
            engine.worker().process(&huge).unwrap_err().reason,
            Reason::Oversize
        );
    }

    #[test]
    fn report_figures_match_contract_shape() {
        let engine = Engine::new(Settings::defaults());
        let mut w = engine.worker();
        for txn in ["t1", "t2"] {
            w.process(
                event(
                    txn,
                    "m1",
                    "60000000.00",
                    "mobile",
                    "2017-11-11T00:00:05+08:00",
                )
                .as_bytes(),
            )
            .unwrap();
        }
        drop(w);
        let report = serde_json::to_value(engine.report()).unwrap();
        assert_eq!(report["gmv_cny"], "120000000.00");
        assert_eq!(report["gmv_usd"], "18048000.00");
        assert_eq!(report["peak_second"], "2017-11-11T00:00:05+08:00");
        assert_eq!(report["thresholds"][0]["merchants"], 1);
        assert_eq!(report["alerts"][0]["threshold_cny"], "100000000.00");
        assert_eq!(
            report["series"]["per_second"]["counts"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
    }
}
