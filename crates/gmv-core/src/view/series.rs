//! A view's time series: hours whole (as partitions hand them over), with
//! each hour's busiest second kept beside it so the peak is found without
//! reading every second of the window at each publish.

use crate::output::MinuteRecord;
use crate::partition::{Hour, MINUTES_PER_HOUR, SECONDS_PER_HOUR};
use crate::time::{EpochMillis, Window};

/// The time-based figures of a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesFigures {
    /// The most transactions in one second.
    pub peak_tps: u64,
    /// Window second index of that second (the earliest on a tie).
    pub peak_second: Option<usize>,
    /// Transactions in the last whole second before the watermark.
    pub current_tps: u64,
    /// The latest minutes with data, oldest first.
    pub recent_minutes: Vec<MinuteRecord>,
}

/// Minutes of data carried by each live snapshot.
pub const RECENT_MINUTES: usize = 30;

/// Hours of a window, some with data.
#[derive(Debug, Clone, Default)]
pub struct HourSeries {
    hours: Vec<Option<Box<Hour>>>,
    /// Per hour: (most transactions in one of its seconds, that second).
    peaks: Vec<(u32, u32)>,
}

impl HourSeries {
    /// No data over a window of `seconds`.
    pub fn new(seconds: usize) -> Self {
        let hours = seconds.div_ceil(SECONDS_PER_HOUR);
        Self {
            hours: vec![None; hours],
            peaks: vec![(0, 0); hours],
        }
    }

    /// Puts an hour in place; `false` if it is outside the window.
    pub fn set(&mut self, hour: u32, cells: Box<Hour>) -> bool {
        let h = hour as usize;
        if h >= self.hours.len() {
            return false;
        }
        self.peaks[h] = peak_of(&cells);
        self.hours[h] = Some(cells);
        true
    }

    /// Hour `hour`, if it has data.
    pub fn get(&self, hour: usize) -> Option<&Hour> {
        self.hours.get(hour).and_then(|h| h.as_deref())
    }

    /// How many hours the window has.
    pub fn len(&self) -> usize {
        self.hours.len()
    }

    /// Whether the window has no hours (never: a window is at least a second).
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// Transactions in window second `second`.
    pub fn count_at(&self, second: usize) -> u64 {
        self.get(second / SECONDS_PER_HOUR)
            .map_or(0, |h| u64::from(h.seconds[second % SECONDS_PER_HOUR]))
    }

    /// The busiest second: (transactions, window second); earliest on a tie.
    pub fn peak(&self) -> (u64, Option<usize>) {
        let mut best = (0u64, None);
        for (h, &(count, second)) in self.peaks.iter().enumerate() {
            if u64::from(count) > best.0 {
                best = (
                    u64::from(count),
                    Some(h * SECONDS_PER_HOUR + second as usize),
                );
            }
        }
        best
    }

    /// Every minute with data, oldest first: (window minute, figures).
    pub fn minutes(
        &self,
    ) -> impl DoubleEndedIterator<Item = (usize, crate::partition::MinuteCell)> + '_ {
        self.hours.iter().enumerate().flat_map(|(h, cells)| {
            cells.iter().flat_map(move |cells| {
                cells
                    .minutes
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.transactions > 0)
                    .map(move |(m, cell)| (h * MINUTES_PER_HOUR + m, *cell))
            })
        })
    }

    /// Transactions per second from the window's start to its last second
    /// with data.
    pub fn per_second(&self) -> Vec<u32> {
        let last = self
            .hours
            .iter()
            .rposition(Option::is_some)
            .and_then(|h| {
                let cells = self.hours[h].as_deref()?;
                let s = cells.seconds.iter().rposition(|&n| n > 0)?;
                Some(h * SECONDS_PER_HOUR + s + 1)
            })
            .unwrap_or(0);
        let mut out = vec![0; last];
        for (h, cells) in self.hours.iter().enumerate() {
            if let Some(cells) = cells {
                let start = h * SECONDS_PER_HOUR;
                let end = (start + SECONDS_PER_HOUR).min(last);
                if start < end {
                    out[start..end].copy_from_slice(&cells.seconds[..end - start]);
                }
            }
        }
        out
    }

    /// The snapshot's time figures, as of `watermark`.
    pub fn figures(&self, window: &Window, watermark: Option<EpochMillis>) -> SeriesFigures {
        let (peak_tps, peak_second) = self.peak();
        let current_tps = watermark
            .and_then(|w| w.checked_sub(window.start_millis() + 1000))
            .and_then(|ms| usize::try_from(ms / 1000).ok())
            .map_or(0, |second| self.count_at(second));
        let mut recent: Vec<MinuteRecord> = self
            .minutes()
            .rev()
            .take(RECENT_MINUTES)
            .map(|(minute, cell)| minute_record(window, minute, &cell))
            .collect();
        recent.reverse();
        SeriesFigures {
            peak_tps,
            peak_second,
            current_tps,
            recent_minutes: recent,
        }
    }
}

/// One minute of the series as published.
pub fn minute_record(
    window: &Window,
    minute: usize,
    cell: &crate::partition::MinuteCell,
) -> MinuteRecord {
    MinuteRecord {
        minute: window.format(window.start_millis() + minute as i64 * 60_000),
        gmv_cny: crate::money::format_fen(cell.gmv),
        mobile_gmv_cny: crate::money::format_fen(cell.mobile_gmv),
        transactions: cell.transactions,
    }
}

fn peak_of(hour: &Hour) -> (u32, u32) {
    let mut best = (0, 0);
    for (s, &count) in hour.seconds.iter().enumerate() {
        if count > best.0 {
            best = (count, s as u32);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_earliest_busiest_second_across_hours() {
        let mut series = HourSeries::new(86_400);
        let mut a = Hour::boxed();
        a.seconds[10] = 3;
        a.seconds[20] = 3;
        let mut b = Hour::boxed();
        b.seconds[5] = 3;
        series.set(2, b);
        series.set(1, a);
        assert_eq!(series.peak(), (3, Some(3_600 + 10)));
        let per_second = series.per_second();
        assert_eq!(per_second.len(), 2 * 3_600 + 6);
        assert_eq!(per_second[3_610], 3);
        assert_eq!(series.count_at(7_205), 3);
    }
}
