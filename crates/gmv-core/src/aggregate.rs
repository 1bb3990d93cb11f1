//! The lock-free per-merchant aggregators: GMV, transactions and mobile GMV per
//! merchant in atomics inside a `DashMap`, per-second transaction counts and
//! per-minute GMV by event time, and threshold crossings.
//!
//! Any number of threads update concurrently through [`Tally`] handles; a
//! reader takes a [`Summary`] at any moment without stopping them. Totals are
//! not kept twice: they are summed from the merchants when read, so the sum of
//! per-merchant GMV equals the total GMV by construction.
//!
//! A threshold `T` is crossed by exactly the update whose `fetch_add` returns
//! `previous < T <= previous + amount`; atomics order those updates, so each
//! (merchant, threshold) is announced once however many threads race on it.

use crate::money::Fen;
use crate::time::{EpochMillis, Window};
use dashmap::DashMap;
use parking_lot::Mutex;
use std::borrow::{Borrow, Cow};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{
    AtomicI64, AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};

/// One merchant's running figures.
///
/// The channel split is kept as the GMV *not* on the mobile channel, so the
/// usual (mobile, about 90%) event costs two atomic adds rather than three:
/// on x86 each is a locked instruction that waits for earlier stores to
/// drain. Mobile GMV is `gmv - other_gmv` when read.
#[derive(Debug, Default)]
struct MerchantStats {
    /// Window GMV, fen.
    gmv: AtomicU64,
    /// Window GMV on every channel but mobile, fen. Added after `gmv` with
    /// release ordering and loaded before it with acquire ordering, so a
    /// reader never sees more of it than of `gmv`.
    other_gmv: AtomicU64,
    /// Counted transactions.
    transactions: AtomicU64,
}

impl MerchantStats {
    /// Counts one event and returns the GMV before it.
    #[inline]
    fn add(&self, fen: Fen, mobile: bool) -> Fen {
        let previous = self.gmv.fetch_add(fen, Relaxed);
        self.transactions.fetch_add(1, Relaxed);
        if !mobile {
            self.other_gmv.fetch_add(fen, Release);
        }
        previous
    }

    /// Adds figures counted elsewhere; `None` if they claim more mobile GMV
    /// than GMV.
    fn absorb(&self, gmv: Fen, mobile_gmv: Fen, transactions: u64) -> Option<()> {
        let other = gmv.checked_sub(mobile_gmv)?;
        self.gmv.fetch_add(gmv, Relaxed);
        self.other_gmv.fetch_add(other, Release);
        self.transactions.fetch_add(transactions, Relaxed);
        Some(())
    }

    /// (GMV, mobile GMV, transactions) now.
    fn load(&self) -> (Fen, Fen, u64) {
        let other = self.other_gmv.load(Acquire);
        let gmv = self.gmv.load(Relaxed);
        (
            gmv,
            gmv.saturating_sub(other),
            self.transactions.load(Relaxed),
        )
    }
}

/// A threshold crossing: announced once per (merchant, threshold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    /// The merchant.
    pub merchant_id: String,
    /// The threshold crossed, fen.
    pub threshold: Fen,
    /// The merchant's GMV right after the crossing event, fen.
    pub gmv_at_crossing: Fen,
    /// Event time of the crossing event.
    pub settled_at: EpochMillis,
}

/// Per-minute GMV cells.
#[derive(Debug, Default)]
struct MinuteCell {
    gmv: AtomicU64,
    mobile_gmv: AtomicU64,
    transactions: AtomicU64,
}

/// One minute of the per-minute series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteFigures {
    /// Minute index from the window start.
    pub minute: usize,
    /// GMV settled in that minute, fen.
    pub gmv: Fen,
    /// Mobile GMV settled in that minute, fen.
    pub mobile_gmv: Fen,
    /// Transactions settled in that minute.
    pub transactions: u64,
}

/// A merchant's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantFigures {
    /// The merchant.
    pub merchant_id: String,
    /// Window GMV, fen.
    pub gmv: Fen,
    /// Mobile GMV, fen.
    pub mobile_gmv: Fen,
    /// Counted transactions.
    pub transactions: u64,
}

type MerchantMap = DashMap<MerchantKey, MerchantStats, ahash::RandomState>;

/// Longest merchant id kept inside the map slot itself.
const INLINE_ID_BYTES: usize = 22;

/// A merchant id as the map's key. Ids up to [`INLINE_ID_BYTES`] (the usual
/// `m-000123` is 8) live in the slot, so the per-event lookup compares bytes
/// already in the cache line it probed instead of following a pointer to a
/// separate allocation (one cache miss less for a cold merchant, and no
/// allocation per merchant). Longer ids are boxed. Keys are looked up by
/// their bytes: they were `&str`, so the bytes are always UTF-8.
#[derive(Clone)]
enum MerchantKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_ID_BYTES],
    },
    Boxed(Box<[u8]>),
}

impl MerchantKey {
    fn new(id: &str) -> Self {
        let id = id.as_bytes();
        match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_ID_BYTES => {
                let mut bytes = [0; INLINE_ID_BYTES];
                bytes[..id.len()].copy_from_slice(id);
                MerchantKey::Inline { len, bytes }
            }
            _ => MerchantKey::Boxed(id.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            MerchantKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            MerchantKey::Boxed(bytes) => bytes,
        }
    }

    /// The id as text (always borrowed: the bytes came from a `&str`).
    fn to_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl Borrow<[u8]> for MerchantKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Hashes as its bytes, as `Borrow<[u8]>` requires.
impl Hash for MerchantKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for MerchantKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MerchantKey {}

/// Byte order, which is `str` order for UTF-8.
impl Ord for MerchantKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for MerchantKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The shared aggregation state of one engine (or one Kafka partition).
pub struct Aggregator {
    window: Window,
    thresholds: Box<[Fen]>,
    merchants: MerchantMap,
    per_second: Box<[AtomicU32]>,
    per_minute: Box<[MinuteCell]>,
    /// Latest event time counted; `i64::MIN` before the first.
    watermark: AtomicI64,
    crossings: Mutex<Vec<Crossing>>,
}

impl Aggregator {
    /// An empty aggregator over `window` with ascending `thresholds` in fen.
    pub fn new(window: Window, thresholds: &[Fen]) -> Self {
        let mut thresholds = thresholds.to_vec();
        thresholds.sort_unstable();
        thresholds.dedup();
        Self {
            window,
            thresholds: thresholds.into(),
            merchants: MerchantMap::with_hasher(ahash::RandomState::new()),
            per_second: (0..window.seconds()).map(|_| AtomicU32::new(0)).collect(),
            per_minute: (0..window.minutes())
                .map(|_| MinuteCell::default())
                .collect(),
            watermark: AtomicI64::new(i64::MIN),
            crossings: Mutex::new(Vec::new()),
        }
    }

    /// The festival window.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Thresholds in fen, ascending.
    pub fn thresholds(&self) -> &[Fen] {
        &self.thresholds
    }

    /// A per-thread handle that batches the shared time-series updates.
    pub fn tally(&self) -> Tally<'_> {
        Tally {
            agg: self,
            second: usize::MAX,
            second_count: 0,
            minute: usize::MAX,
            minute_delta: MinuteFigures::default(),
            watermark: i64::MIN,
        }
    }

    /// Adds to a merchant and reports the thresholds this update crossed.
    fn add_to_merchant(&self, merchant_id: &str, fen: Fen, mobile: bool, at: EpochMillis) {
        let previous = match self.merchants.get(merchant_id.as_bytes()) {
            Some(stats) => stats.add(fen, mobile),
            // First sighting of a merchant.
            None => self
                .merchants
                .entry(MerchantKey::new(merchant_id))
                .or_default()
                .add(fen, mobile),
        };
        let after = previous + fen;
        for &threshold in self.thresholds.iter() {
            if previous < threshold && threshold <= after {
                self.crossings.lock().push(Crossing {
                    merchant_id: merchant_id.to_owned(),
                    threshold,
                    gmv_at_crossing: after,
                    settled_at: at,
                });
            }
        }
    }

    /// Every crossing so far, in the order they happened.
    pub fn crossings(&self) -> Vec<Crossing> {
        self.crossings.lock().clone()
    }

    /// Crossings from index `from` on (for publishers that keep a cursor).
    pub fn crossings_since(&self, from: usize) -> Vec<Crossing> {
        self.crossings
            .lock()
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// How many crossings have happened.
    pub fn crossing_count(&self) -> usize {
        self.crossings.lock().len()
    }

    /// Latest event time counted.
    pub fn watermark(&self) -> Option<EpochMillis> {
        Some(self.watermark.load(Relaxed)).filter(|&w| w != i64::MIN)
    }

    /// Transactions per second of the window, by event time.
    pub fn per_second(&self) -> Vec<u32> {
        self.per_second.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The per-minute series (every minute of the window).
    pub fn per_minute(&self) -> Vec<MinuteFigures> {
        self.per_minute
            .iter()
            .enumerate()
            .map(|(minute, c)| MinuteFigures {
                minute,
                gmv: c.gmv.load(Relaxed),
                mobile_gmv: c.mobile_gmv.load(Relaxed),
                transactions: c.transactions.load(Relaxed),
            })
            .collect()
    }

    /// One merchant's figures.
    pub fn merchant(&self, merchant_id: &str) -> Option<MerchantFigures> {
        self.merchants
            .get(merchant_id.as_bytes())
            .map(|s| figures_of(merchant_id, &s))
    }

    /// Every merchant's figures (for reports).
    pub fn merchants(&self) -> Vec<MerchantFigures> {
        self.merchants
            .iter()
            .map(|e| figures_of(&e.key().to_text(), e.value()))
            .collect()
    }

    /// Copies out everything but the crossings' cursor: merchants, the
    /// non-empty series cells, the watermark and the crossings. Exact when no
    /// writer runs meanwhile (a partition's own thread takes it between
    /// batches).
    pub fn export(&self) -> AggregateState {
        AggregateState {
            merchants: self.merchants(),
            per_second: self
                .per_second
                .iter()
                .enumerate()
                .filter_map(|(s, c)| {
                    let n = c.load(Relaxed);
                    (n > 0).then_some((s as u32, n))
                })
                .collect(),
            per_minute: self
                .per_minute()
                .into_iter()
                .filter(|m| m.transactions > 0)
                .collect(),
            watermark: self.watermark(),
            crossings: self.crossings(),
        }
    }

    /// Adds figures counted elsewhere (a checkpoint being restored, or another
    /// partition in a merged view). Crossings are appended as they were
    /// announced where they happened, not re-detected.
    pub fn absorb(&self, part: &AggregateState) -> Result<(), &'static str> {
        for m in &part.merchants {
            self.merchants
                .entry(MerchantKey::new(&m.merchant_id))
                .or_default()
                .absorb(m.gmv, m.mobile_gmv, m.transactions)
                .ok_or("a merchant's mobile GMV exceeds its GMV")?;
        }
        for &(second, count) in &part.per_second {
            self.per_second
                .get(second as usize)
                .ok_or("per-second index outside the window")?
                .fetch_add(count, Relaxed);
        }
        for m in &part.per_minute {
            let cell = self
                .per_minute
                .get(m.minute)
                .ok_or("minute index outside the window")?;
            cell.gmv.fetch_add(m.gmv, Relaxed);
            cell.mobile_gmv.fetch_add(m.mobile_gmv, Relaxed);
            cell.transactions.fetch_add(m.transactions, Relaxed);
        }
        if let Some(w) = part.watermark {
            self.watermark.fetch_max(w, Relaxed);
        }
        self.crossings.lock().extend(part.crossings.iter().cloned());
        Ok(())
    }

    /// Reads totals, threshold counts, peak and the `top_n` merchants without
    /// stopping writers.
    pub fn summary(&self, top_n: usize) -> Summary {
        let mut summary = Summary {
            threshold_merchants: vec![0; self.thresholds.len()],
            ..Summary::default()
        };
        let mut top: BinaryHeap<Reverse<(Fen, MerchantKey)>> = BinaryHeap::with_capacity(top_n + 1);
        for entry in self.merchants.iter() {
            let (gmv, mobile_gmv, transactions) = entry.value().load();
            summary.gmv += gmv;
            summary.mobile_gmv += mobile_gmv;
            summary.transactions += transactions;
            summary.merchants += 1;
            for (count, &threshold) in summary
                .threshold_merchants
                .iter_mut()
                .zip(self.thresholds.iter())
            {
                *count += u64::from(gmv >= threshold);
            }
            if top_n > 0
                && (top.len() < top_n || top.peek().is_some_and(|Reverse((min, _))| gmv > *min))
            {
                top.push(Reverse((gmv, entry.key().clone())));
                if top.len() > top_n {
                    top.pop();
                }
            }
        }
        let mut top: Vec<_> = top.into_iter().map(|Reverse(pair)| pair).collect();
        top.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        summary.top = top
            .into_iter()
            .filter_map(|(_, id)| self.merchant(&id.to_text()))
            .collect();
        let (peak_tps, peak_second) = peak(&self.per_second);
        summary.peak_tps = peak_tps;
        summary.peak_second = peak_second.map(|s| self.window.start_millis() + s as i64 * 1000);
        summary.watermark = self.watermark();
        summary.current_tps = summary
            .watermark
            .and_then(|w| self.second_index(w - 1000))
            .map_or(0, |s| u64::from(self.per_second[s].load(Relaxed)));
        summary
    }

    fn second_index(&self, at: EpochMillis) -> Option<usize> {
        let offset = at.checked_sub(self.window.start_millis())?;
        usize::try_from(offset / 1000)
            .ok()
            .filter(|&s| s < self.per_second.len())
    }
}

fn figures_of(merchant_id: &str, stats: &MerchantStats) -> MerchantFigures {
    let (gmv, mobile_gmv, transactions) = stats.load();
    MerchantFigures {
        merchant_id: merchant_id.to_owned(),
        gmv,
        mobile_gmv,
        transactions,
    }
}

/// The busiest second: (transactions, index); the earliest wins a tie.
fn peak(per_second: &[AtomicU32]) -> (u64, Option<usize>) {
    let mut best = (0u64, None);
    for (second, count) in per_second.iter().enumerate() {
        let count = u64::from(count.load(Relaxed));
        if count > best.0 {
            best = (count, Some(second));
        }
    }
    best
}

/// An aggregator's contents as plain data (see [`Aggregator::export`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateState {
    /// Every merchant's figures.
    pub merchants: Vec<MerchantFigures>,
    /// Non-zero per-second counts: (second index, transactions).
    pub per_second: Vec<(u32, u32)>,
    /// Non-empty minutes.
    pub per_minute: Vec<MinuteFigures>,
    /// Latest event time counted.
    pub watermark: Option<EpochMillis>,
    /// Crossings announced, in order.
    pub crossings: Vec<Crossing>,
}

/// Totals read from an [`Aggregator`] at one moment, in fen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Window GMV.
    pub gmv: Fen,
    /// Mobile GMV.
    pub mobile_gmv: Fen,
    /// Counted transactions.
    pub transactions: u64,
    /// Merchants with counted GMV.
    pub merchants: u64,
    /// Merchants at or over each threshold (same order as the thresholds).
    pub threshold_merchants: Vec<u64>,
    /// The most transactions in one second of event time.
    pub peak_tps: u64,
    /// Start of that second.
    pub peak_second: Option<EpochMillis>,
    /// Transactions in the last whole second before the watermark.
    pub current_tps: u64,
    /// Latest event time counted.
    pub watermark: Option<EpochMillis>,
    /// The biggest merchants by GMV, biggest first (ties by id).
    pub top: Vec<MerchantFigures>,
}

/// A thread's handle for updating an [`Aggregator`]. Merchant figures and
/// crossings are updated at once; the per-second and per-minute series are
/// run-length batched (events mostly arrive in time order) so that threads do
/// not fight over the same counter's cache line. Call [`Tally::flush`] at the
/// end of each batch; dropping the handle flushes too.
pub struct Tally<'a> {
    agg: &'a Aggregator,
    second: usize,
    second_count: u32,
    minute: usize,
    minute_delta: MinuteFigures,
    watermark: EpochMillis,
}

impl Tally<'_> {
    /// Counts one in-window event. Events outside the window must have been
    /// rejected before; they are ignored here.
    pub fn add(&mut self, merchant_id: &str, fen: Fen, mobile: bool, at: EpochMillis) {
        let Some(second) = self.agg.second_index(at) else {
            debug_assert!(false, "event outside the window reached the aggregator");
            return;
        };
        self.agg.add_to_merchant(merchant_id, fen, mobile, at);
        if second != self.second {
            self.flush_second();
            self.second = second;
        }
        self.second_count += 1;
        let minute = second / 60;
        if minute != self.minute {
            self.flush_minute();
            self.minute = minute;
        }
        self.minute_delta.gmv += fen;
        self.minute_delta.transactions += 1;
        if mobile {
            self.minute_delta.mobile_gmv += fen;
        }
        self.watermark = self.watermark.max(at);
    }

    fn flush_second(&mut self) {
        if self.second_count > 0 {
            self.agg.per_second[self.second].fetch_add(self.second_count, Relaxed);
            self.second_count = 0;
        }
    }

    fn flush_minute(&mut self) {
        if self.minute_delta.transactions > 0 {
            let cell = &self.agg.per_minute[self.minute];
            cell.gmv.fetch_add(self.minute_delta.gmv, Relaxed);
            cell.mobile_gmv
                .fetch_add(self.minute_delta.mobile_gmv, Relaxed);
            cell.transactions
                .fetch_add(self.minute_delta.transactions, Relaxed);
            self.minute_delta = MinuteFigures::default();
        }
    }

    /// Publishes the batched series updates and the watermark.
    pub fn flush(&mut self) {
        self.flush_second();
        self.flush_minute();
        if self.watermark != i64::MIN {
            self.agg.watermark.fetch_max(self.watermark, Relaxed);
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YUAN: Fen = 100;

    fn agg() -> Aggregator {
        Aggregator::new(Window::singles_day_2017(), &[100 * YUAN, 500 * YUAN])
    }

    #[test]
    fn totals_are_sums_of_merchants() {
        let a = agg();
        let t0 = a.window().start_millis();
        let mut t = a.tally();
        t.add("m1", 150, true, t0);
        t.add("m1", 50, false, t0 + 10);
        t.add("m2", 7, true, t0 + 2000);
        t.flush();
        let s = a.summary(10);
        assert_eq!(
            (s.gmv, s.mobile_gmv, s.transactions, s.merchants),
            (207, 157, 3, 2)
        );
        assert_eq!(s.top[0].merchant_id, "m1");
        assert_eq!(s.peak_tps, 2);
        assert_eq!(s.peak_second, Some(t0));
        assert_eq!(s.watermark, Some(t0 + 2000));
        assert_eq!(s.current_tps, 0);
    }

    #[test]
    fn a_crossing_is_reported_once_even_when_one_event_jumps_two_thresholds() {
        let a = agg();
        let t0 = a.window().start_millis();
        let mut t = a.tally();
        t.add("m1", 99 * YUAN, true, t0);
        t.add("m1", 600 * YUAN, true, t0 + 1);
        t.add("m1", 1000 * YUAN, true, t0 + 2);
        let crossings = a.crossings();
        assert_eq!(crossings.len(), 2);
        assert_eq!(crossings[0].threshold, 100 * YUAN);
        assert_eq!(crossings[1].threshold, 500 * YUAN);
        assert_eq!(crossings[1].gmv_at_crossing, 699 * YUAN);
        assert_eq!(a.summary(0).threshold_merchants, vec![1, 1]);
    }

    #[test]
    fn racing_threads_announce_each_crossing_once() {
        let a = agg();
        let t0 = a.window().start_millis();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let mut t = a.tally();
                    for i in 0..10_000 {
                        t.add("hot", 1, i % 2 == 0, t0 + i);
                    }
                });
            }
        });
        // 40,000 fen in all: over the 100-yuan line, under the 500-yuan one.
        assert_eq!(a.crossings().len(), 1);
        let s = a.summary(1);
        assert_eq!(s.gmv, 40_000);
        assert_eq!(
            a.per_second().iter().map(|&c| u64::from(c)).sum::<u64>(),
            40_000
        );
        assert_eq!(a.per_minute().iter().map(|m| m.gmv).sum::<u64>(), 40_000);
    }
}
