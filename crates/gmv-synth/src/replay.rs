//! Playing event time on the wall clock: when a record whose event time is
//! `at` should be sent.
//!
//! Event time and wall time are separate: the generator decides each
//! record's `settled_at`, a [`Replay`] decides how fast that time passes
//! for the one sending. Each [`Stage`] of event time has its own speed: the
//! demo plays the midnight rush at 1× (a second of the night per second on
//! the wall) and the rest of the day as a time-lapse.
//!
//! A sender that cannot keep up (a busy machine, a consumer holding it
//! back) makes the replay clock slip rather than burst to catch up: a
//! record more than [`SLACK`] late moves the clock's anchor to now, so the
//! rest of the stage keeps its speed from there. [`Replay::slipped`] says
//! how far the clock fell behind in all.

use std::time::{Duration, Instant};

/// How late a record may be before the clock slips instead of catching up.
pub const SLACK: Duration = Duration::from_millis(100);

/// A stretch of event time played at one speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Where it ends: milliseconds of event time since the window's start.
    pub until_ms: u64,
    /// Milliseconds of event time per millisecond of wall time (1.0 is real
    /// time, 1440.0 a day in a minute); `None` is as fast as the sender goes.
    pub speed: Option<f64>,
}

/// The replay clock (see the module docs).
#[derive(Debug, Clone)]
pub struct Replay {
    stages: Vec<Stage>,
    stage: usize,
    /// (wall instant, event ms) the current stage's clock runs from.
    anchor: Option<(Instant, u64)>,
    /// The latest event time asked about: one earlier than it is due at
    /// once, and never moves the clock back.
    latest: u64,
    slipped: Duration,
}

impl Replay {
    /// Plays `stages` in order; event time after the last one is played at
    /// the last one's speed.
    pub fn new(stages: Vec<Stage>) -> Self {
        Self {
            stages,
            stage: 0,
            anchor: None,
            latest: 0,
            slipped: Duration::ZERO,
        }
    }

    /// When the record at `at` (ms of event time since the window's start)
    /// is due, given that it is `now`: `None` to send it at once.
    pub fn due(&mut self, at: u64, now: Instant) -> Option<Instant> {
        let at = at.max(self.latest);
        self.latest = at;
        while self.stage + 1 < self.stages.len() && at >= self.stages[self.stage].until_ms {
            // The next stage starts from where this one's clock says its end is.
            let end = self.stages[self.stage].until_ms;
            let next = match (self.anchor, self.stages[self.stage].speed) {
                (Some((wall, from)), Some(speed)) => {
                    Some((wall + wall_time(end, from, speed), end))
                }
                _ => None,
            };
            self.anchor = next;
            self.stage += 1;
        }
        let speed = self.stages.get(self.stage).and_then(|s| s.speed)?;
        if !(speed.is_finite() && speed > 0.0) {
            return None;
        }
        let (wall, from) = *self.anchor.get_or_insert((now, at));
        let due = wall + wall_time(at, from, speed);
        if let Some(late) = now.checked_duration_since(due) {
            if late > SLACK {
                self.slipped += late;
                self.anchor = Some((now, at));
                return None;
            }
        }
        Some(due)
    }

    /// How far the clock has fallen behind the wall, in all.
    pub fn slipped(&self) -> Duration {
        self.slipped
    }
}

/// Wall time for event time to go from `from` to `at` at `speed`.
fn wall_time(at: u64, from: u64, speed: f64) -> Duration {
    Duration::from_secs_f64(at.saturating_sub(from) as f64 / 1000.0 / speed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn real_time_then_time_lapse() {
        let mut replay = Replay::new(vec![
            Stage {
                until_ms: 2_000,
                speed: Some(1.0),
            },
            Stage {
                until_ms: 86_400_000,
                speed: Some(1_000.0),
            },
        ]);
        let t0 = Instant::now();
        assert_eq!(replay.due(0, t0), Some(t0));
        assert_eq!(replay.due(1_500, t0), Some(t0 + ms(1_500)));
        // The time-lapse starts where the real-time stage ends on the wall.
        assert_eq!(replay.due(2_000, t0 + ms(1_600)), Some(t0 + ms(2_000)));
        assert_eq!(replay.due(12_000, t0 + ms(1_700)), Some(t0 + ms(2_010)));
        assert_eq!(replay.slipped(), Duration::ZERO);
    }

    #[test]
    fn a_late_sender_slips_the_clock_instead_of_bursting() {
        let mut replay = Replay::new(vec![Stage {
            until_ms: 10_000,
            speed: Some(1.0),
        }]);
        let t0 = Instant::now();
        assert_eq!(replay.due(0, t0), Some(t0));
        // A little late: catch up.
        assert_eq!(replay.due(1_000, t0 + ms(1_050)), Some(t0 + ms(1_000)));
        // Half a second late: the clock moves on from here.
        assert_eq!(replay.due(2_000, t0 + ms(2_500)), None);
        assert_eq!(replay.slipped(), ms(500));
        assert_eq!(replay.due(3_000, t0 + ms(2_600)), Some(t0 + ms(3_500)));
        // A record from before the latest is due with it, and moves nothing.
        assert_eq!(replay.due(100, t0 + ms(3_000)), Some(t0 + ms(3_500)));
        assert_eq!(replay.slipped(), ms(500));
    }

    #[test]
    fn an_unpaced_stage_sends_at_once_and_the_next_starts_when_reached() {
        let mut replay = Replay::new(vec![
            Stage {
                until_ms: 1_000,
                speed: None,
            },
            Stage {
                until_ms: 2_000,
                speed: Some(2.0),
            },
        ]);
        let t0 = Instant::now();
        assert_eq!(replay.due(500, t0), None);
        assert_eq!(replay.due(1_200, t0 + ms(10)), Some(t0 + ms(10)));
        assert_eq!(replay.due(1_400, t0 + ms(10)), Some(t0 + ms(110)));
        // Past the last stage: its speed goes on.
        assert_eq!(replay.due(3_200, t0 + ms(20)), Some(t0 + ms(1_010)));
    }
}
