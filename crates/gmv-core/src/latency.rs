//! Latency histograms: how long records take from a start (a producer's
//! timestamp, or when a file's chunk was read) to a point of the pipeline
//! (counted, published). Sources record once per batch or per publish
//! tick, never per event on the hot path.

use crate::output::LatencyMs;
use crate::time::EpochMillis;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// A latency histogram in microseconds, 1 µs to 1 h at 3 significant digits.
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

    /// Records, for each (start in ms, events) run, the time from its start
    /// to `now`: one lock for a whole publish tick's worth of events.
    pub fn record_runs_since(&self, runs: &[(EpochMillis, u32)], now: EpochMillis) {
        let mut h = self.histogram.lock();
        for &(since, count) in runs {
            let micros = u64::try_from(now.saturating_sub(since)).unwrap_or(0) * 1000;
            let _ = h.record_n(micros.max(1), u64::from(count));
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

    /// A copy of the histogram (for exposition as buckets).
    pub fn histogram(&self) -> Histogram<u64> {
        self.histogram.lock().clone()
    }
}

/// Start times of records, run-length encoded: (start ms, records). Records
/// arrive nearly in order of their start, so a tick's worth is a few runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartRuns(pub Vec<(EpochMillis, u32)>);

impl StartRuns {
    /// Adds one record that started at `at`.
    #[inline]
    pub fn push(&mut self, at: EpochMillis) {
        self.push_n(at, 1);
    }

    /// Adds `n` records that started at `at`.
    #[inline]
    pub fn push_n(&mut self, at: EpochMillis, n: u32) {
        match self.0.last_mut() {
            Some((last, count)) if *last == at => *count += n,
            _ => self.0.push((at, n)),
        }
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Moves another run list's records into this one.
    pub fn append(&mut self, other: &mut StartRuns) {
        self.0.append(&mut other.0);
    }
}
