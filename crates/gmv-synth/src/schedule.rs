//! How many records fall in each stretch of event time: a [`Schedule`] of
//! [`Segment`]s laid end to end from the window's start.
//!
//! Without a schedule the generator spreads its records over the whole
//! window by the day's shape, so a few million records make a few hundred
//! transactions per second of event time. A schedule says instead how many
//! records a given stretch holds, which is how the demo puts 11.11's real
//! midnight rate (256,000 payments in one second in 2017) into the first
//! minute and samples the rest of the day more thinly. Inside a segment,
//! records still follow the day's shape.

/// One stretch of event time and the records in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Its length, milliseconds of event time.
    pub millis: u64,
    /// Records in it, bad and repeated ones included (each record takes one
    /// slot of event time, whatever it turns out to be).
    pub events: u64,
}

/// Segments laid end to end from the window's start; time after the last
/// one has no records, and segments past the window's end are cut off at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    segments: Vec<Segment>,
}

/// The second of the rush with the most records: 00:00:05, when 2017's
/// payments peaked at 256,000 a second.
pub const RUSH_PEAK_SECOND: u64 = 5;

/// Share of the peak rate in second `second` of the midnight rush: a climb
/// from a third of it to the peak at [`RUSH_PEAK_SECOND`], then easing off
/// towards three tenths over the following minutes, the shape of the real
/// night's first minutes.
pub fn rush_share(second: u64) -> f64 {
    if second < RUSH_PEAK_SECOND {
        let climb = second as f64 / RUSH_PEAK_SECOND as f64;
        0.35 + 0.65 * climb
    } else {
        let after = (second - RUSH_PEAK_SECOND) as f64;
        0.3 + 0.7 * (-after / 30.0).exp()
    }
}

impl Schedule {
    /// The given segments, in order from the window's start.
    pub fn new(segments: Vec<Segment>) -> Self {
        Self { segments }
    }

    /// The night of 11.11 at real scale, `events` records in all: the first
    /// `rush_seconds` of the window second by second at up to `peak_tps`
    /// records a second (shaped by [`rush_share`]), then the rest of the
    /// window (`window_seconds` long) as one segment holding what is left.
    /// The rush stops early if `events` runs out; when the rush fills the
    /// whole window, what is left joins its last second.
    pub fn midnight_rush(
        peak_tps: u64,
        rush_seconds: u64,
        events: u64,
        window_seconds: u64,
    ) -> Self {
        let rush_seconds = rush_seconds.min(window_seconds);
        let mut left = events;
        let mut segments = Vec::new();
        for second in 0..rush_seconds {
            if left == 0 {
                break;
            }
            let wanted = (peak_tps as f64 * rush_share(second)).round() as u64;
            let take = wanted.min(left);
            segments.push(Segment {
                millis: 1000,
                events: take,
            });
            left -= take;
        }
        let rush_millis = segments.len() as u64 * 1000;
        let window_millis = window_seconds * 1000;
        if left > 0 {
            if rush_millis < window_millis {
                segments.push(Segment {
                    millis: window_millis - rush_millis,
                    events: left,
                });
            } else if let Some(last) = segments.last_mut() {
                last.events += left;
            } else {
                // A window of no seconds: the records share its start.
                segments.push(Segment {
                    millis: 0,
                    events: left,
                });
            }
        }
        Self { segments }
    }

    /// The records a full rush of `rush_seconds` at `peak_tps` takes.
    pub fn rush_events(peak_tps: u64, rush_seconds: u64) -> u64 {
        (0..rush_seconds)
            .map(|second| (peak_tps as f64 * rush_share(second)).round() as u64)
            .sum()
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Records in all.
    pub fn events(&self) -> u64 {
        self.segments.iter().map(|s| s.events).sum()
    }

    /// Milliseconds of event time the segments cover.
    pub fn millis(&self) -> u64 {
        self.segments.iter().map(|s| s.millis).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rush_climbs_to_its_peak_at_five_seconds_then_eases() {
        let shares: Vec<f64> = (0..60).map(rush_share).collect();
        let peak = shares
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(s, _)| s);
        assert_eq!(peak, Some(5));
        assert!((shares[5] - 1.0).abs() < 1e-12);
        assert!(shares.windows(2).take(5).all(|w| w[0] < w[1]));
        assert!(shares.windows(2).skip(5).all(|w| w[0] > w[1]));
        assert!(shares[59] > 0.3 && shares[59] < 0.45, "{}", shares[59]);
    }

    #[test]
    fn midnight_rush_holds_every_event_and_the_rest_of_the_day() {
        let schedule = Schedule::midnight_rush(256_000, 60, 12_000_000, 86_400);
        assert_eq!(schedule.events(), 12_000_000);
        assert_eq!(schedule.millis(), 86_400_000);
        let segments = schedule.segments();
        assert_eq!(segments.len(), 61);
        assert_eq!(segments[5].events, 256_000);
        assert_eq!(
            segments[..60].iter().map(|s| s.events).sum::<u64>(),
            Schedule::rush_events(256_000, 60)
        );
        assert_eq!(segments[60].millis, 86_340_000);
    }

    #[test]
    fn a_short_stream_ends_within_the_rush() {
        let schedule = Schedule::midnight_rush(100_000, 60, 100_000, 86_400);
        assert_eq!(schedule.events(), 100_000);
        let counts: Vec<u64> = schedule.segments().iter().map(|s| s.events).collect();
        assert_eq!(counts, vec![35_000, 48_000, 17_000]);
    }

    #[test]
    fn a_rush_as_long_as_the_window_keeps_the_leftover_in_its_last_second() {
        let schedule = Schedule::midnight_rush(10, 3, 100, 3);
        assert_eq!(schedule.events(), 100);
        assert_eq!(schedule.millis(), 3_000);
        assert_eq!(Schedule::midnight_rush(10, 3, 100, 0).events(), 100);
    }
}
