//! Time series by event time: transactions per second and GMV per minute,
//! kept an hour at a time.
//!
//! An [`Hour`] holds its 3,600 per-second counts and 60 minute cells (15.8
//! KiB); hours are allocated when their first event arrives, so a window of
//! up to 31 days costs only the hours that have sales. Hours are also the
//! unit of change: a partition hands a publish or a checkpoint the hours
//! that changed since the last one, whole (latest wins), so a reader never
//! has to apply increments in order.

use crate::money::Fen;

/// Seconds in an [`Hour`].
pub const SECONDS_PER_HOUR: usize = 3_600;
/// Minutes in an [`Hour`].
pub const MINUTES_PER_HOUR: usize = 60;

/// One minute's sales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinuteCell {
    /// GMV settled in the minute, fen.
    pub gmv: Fen,
    /// Of which on the mobile channel, fen.
    pub mobile_gmv: Fen,
    /// Transactions settled in the minute.
    pub transactions: u64,
}

impl MinuteCell {
    /// Adds another cell's figures.
    pub fn add(&mut self, other: &MinuteCell) {
        self.gmv += other.gmv;
        self.mobile_gmv += other.mobile_gmv;
        self.transactions += other.transactions;
    }
}

/// One hour of the window (hour `h` covers window seconds `3600h..3600h+3600`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hour {
    /// Transactions per second.
    pub seconds: [u32; SECONDS_PER_HOUR],
    /// Sales per minute.
    pub minutes: [MinuteCell; MINUTES_PER_HOUR],
}

impl Default for Hour {
    fn default() -> Self {
        Self {
            seconds: [0; SECONDS_PER_HOUR],
            minutes: [MinuteCell::default(); MINUTES_PER_HOUR],
        }
    }
}

impl Hour {
    /// A new, empty hour on the heap.
    pub fn boxed() -> Box<Self> {
        Box::default()
    }

    /// Adds another hour's figures (a partition's hour into a sum).
    pub fn add(&mut self, other: &Hour) {
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            *a += b;
        }
        for (a, b) in self.minutes.iter_mut().zip(&other.minutes) {
            a.add(b);
        }
    }

    /// Whether no event is counted in it.
    pub fn is_empty(&self) -> bool {
        self.minutes.iter().all(|m| m.transactions == 0)
    }
}

/// The series of one partition, with change marks per hour.
#[derive(Default)]
pub(crate) struct Series {
    hours: Vec<Option<Box<Hour>>>,
    /// [`super::merchants::PUBLISH`] / [`super::merchants::CHECKPOINT`] marks per hour.
    changed: Vec<u8>,
    publish_changed: Vec<u32>,
    checkpoint_changed: Vec<u32>,
}

impl Series {
    /// An empty series over a window of `seconds`.
    pub(crate) fn new(seconds: usize) -> Self {
        let hours = seconds.div_ceil(SECONDS_PER_HOUR);
        Self {
            hours: (0..hours).map(|_| None).collect(),
            changed: vec![0; hours],
            publish_changed: Vec::new(),
            checkpoint_changed: Vec::new(),
        }
    }

    /// Counts one event settled in window second `second` (which the caller
    /// has checked is inside the window).
    #[inline]
    pub(crate) fn add(&mut self, second: usize, fen: Fen, mobile: bool) {
        let hour = second / SECONDS_PER_HOUR;
        let within = second % SECONDS_PER_HOUR;
        if self.changed[hour] != super::merchants::PUBLISH | super::merchants::CHECKPOINT {
            self.mark(hour);
        }
        let cells = self.hours[hour].get_or_insert_with(Hour::boxed);
        cells.seconds[within] += 1;
        let minute = &mut cells.minutes[within / 60];
        minute.gmv += fen;
        minute.transactions += 1;
        if mobile {
            minute.mobile_gmv += fen;
        }
    }

    #[cold]
    fn mark(&mut self, hour: usize) {
        let marks = &mut self.changed[hour];
        if *marks & super::merchants::PUBLISH == 0 {
            self.publish_changed.push(hour as u32);
        }
        if *marks & super::merchants::CHECKPOINT == 0 {
            self.checkpoint_changed.push(hour as u32);
        }
        *marks = super::merchants::PUBLISH | super::merchants::CHECKPOINT;
    }

    /// Copies of the hours changed since the last call (marks `mark`, one
    /// of the two kinds), oldest hour first.
    pub(crate) fn take_changed(&mut self, mark: u8) -> Vec<(u32, Box<Hour>)> {
        let list = if mark == super::merchants::PUBLISH {
            std::mem::take(&mut self.publish_changed)
        } else {
            std::mem::take(&mut self.checkpoint_changed)
        };
        let mut out: Vec<(u32, Box<Hour>)> = list
            .into_iter()
            .filter_map(|hour| {
                self.changed[hour as usize] &= !mark;
                self.hours[hour as usize]
                    .as_ref()
                    .map(|cells| (hour, cells.clone()))
            })
            .collect();
        out.sort_unstable_by_key(|(hour, _)| *hour);
        out
    }

    /// Every hour with sales, oldest first.
    pub(crate) fn all(&self) -> Vec<(u32, Box<Hour>)> {
        self.hours
            .iter()
            .enumerate()
            .filter_map(|(h, cells)| cells.as_ref().map(|c| (h as u32, c.clone())))
            .collect()
    }

    /// Puts a whole hour in place (a restore); `false` if it is outside the
    /// window.
    pub(crate) fn set(&mut self, hour: u32, cells: Box<Hour>) -> bool {
        match self.hours.get_mut(hour as usize) {
            Some(slot) => {
                *slot = Some(cells);
                true
            }
            None => false,
        }
    }

    /// Marks every hour with sales as changed for publishing, keeping what
    /// the next checkpoint is owed.
    pub(crate) fn mark_all_for_publish(&mut self) {
        for hour in 0..self.hours.len() {
            let marks = &mut self.changed[hour];
            if self.hours[hour].is_some() && *marks & super::merchants::PUBLISH == 0 {
                *marks |= super::merchants::PUBLISH;
                self.publish_changed.push(hour as u32);
            }
        }
    }

    /// Marks every hour with sales as changed, for both kinds (after a
    /// restore, everything is new to a publisher).
    pub(crate) fn mark_all(&mut self) {
        for hour in 0..self.hours.len() {
            if self.hours[hour].is_some() {
                self.mark(hour);
            }
        }
    }

    /// Bytes held by the hours.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.hours.iter().flatten().count() * std::mem::size_of::<Hour>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::merchants::{CHECKPOINT, PUBLISH};

    #[test]
    fn changed_hours_are_handed_once_to_each_kind_of_reader() {
        let mut series = Series::new(86_400);
        series.add(5, 100, true);
        series.add(3_601, 7, false);
        let published = series.take_changed(PUBLISH);
        assert_eq!(
            published.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(published[0].1.seconds[5], 1);
        assert_eq!(published[0].1.minutes[0].mobile_gmv, 100);
        assert_eq!(published[1].1.minutes[0].gmv, 7);
        assert!(series.take_changed(PUBLISH).is_empty());
        series.add(6, 1, true);
        assert_eq!(series.take_changed(PUBLISH).len(), 1);
        // The checkpoint kind still sees both hours.
        assert_eq!(series.take_changed(CHECKPOINT).len(), 2);
    }

    #[test]
    fn a_partial_last_hour_is_still_an_hour() {
        let mut series = Series::new(3_601);
        series.add(3_600, 1, true);
        let all = series.all();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].0, all[0].1.seconds[0]), (1, 1));
    }
}
