//! A realistic, deterministic synthetic 11.11 settled-transaction stream, so
//! that anyone can try gmv-stream in one command and tests and benchmarks
//! have data at any scale.
//!
//! - Merchants are Zipf-skewed (a few giants cross CNY 1B, a long tail sells little).
//! - Amounts are log-normal, scaled so the whole stream totals about
//!   `target_gmv_cny` (168.2 billion by default) whatever the event count.
//! - Event time follows the day's shape: a midnight surge, a morning and an
//!   evening peak and a last-hour rush; events arrive nearly in time order.
//! - About 90% mobile; configurable shares of redeliveries (verbatim repeats),
//!   conflicting reuses of a `txn_id`, malformed records, out-of-window
//!   events and foreign-currency events.
//! - The same [`SynthConfig`] (including `seed`) always gives the same bytes.
//! - Optionally a [`Schedule`] says how many records each stretch of event
//!   time holds (the demo's midnight rush at real scale), and a [`Replay`]
//!   plays event time on the wall clock for whoever sends the records.

pub mod replay;
pub mod schedule;

pub use replay::{Replay, Stage};
pub use schedule::{Schedule, Segment};

use chrono::{SecondsFormat, TimeZone};
use gmv_core::time::Window;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use std::collections::VecDeque;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Records to produce (including bad and repeated ones).
    pub events: u64,
    /// Distinct merchants the Zipf draw ranges over.
    pub merchants: u64,
    /// Zipf exponent: larger is more skewed.
    pub zipf_exponent: f64,
    /// Deterministic seed.
    pub seed: u64,
    /// Expected total of all amounts, CNY.
    pub target_gmv_cny: u64,
    /// Share of amounts on the mobile channel.
    pub mobile_share: f64,
    /// Share of records that repeat an earlier one verbatim.
    pub duplicate_share: f64,
    /// Share of records that reuse an earlier `txn_id` with a different amount.
    pub conflict_share: f64,
    /// Share of malformed or invalid records.
    pub malformed_share: f64,
    /// Share of events settled before the window.
    pub outside_window_share: f64,
    /// Share of events in USD or HKD.
    pub foreign_share: f64,
    /// The festival window the events fall in.
    pub window: Window,
    /// How the records are spread over event time, segment by segment from
    /// the window's start; the schedule's total is then the number of
    /// records, whatever `events` says. `None`: `events` records follow the
    /// day's shape over the whole window.
    pub schedule: Option<Schedule>,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            merchants: 140_000,
            zipf_exponent: 0.9,
            seed: 11,
            target_gmv_cny: 168_200_000_000,
            mobile_share: 0.9,
            duplicate_share: 0.002,
            conflict_share: 0.0002,
            malformed_share: 0.001,
            outside_window_share: 0.001,
            foreign_share: 0.01,
            window: Window::singles_day_2017(),
            schedule: None,
        }
    }
}

impl SynthConfig {
    /// A clean stream: no repeats, no bad records, everything in CNY and in the window.
    pub fn clean(mut self) -> Self {
        self.duplicate_share = 0.0;
        self.conflict_share = 0.0;
        self.malformed_share = 0.0;
        self.outside_window_share = 0.0;
        self.foreign_share = 0.0;
        self
    }

    /// The records spread by `schedule` (and `events` its total).
    pub fn scheduled(mut self, schedule: Schedule) -> Self {
        self.events = schedule.events();
        self.schedule = Some(schedule);
        self
    }
}

/// One generated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthRecord {
    /// The Kafka key: the merchant id (producers key by it).
    pub key: String,
    /// The record's bytes (JSON, except for deliberately broken records).
    pub payload: Vec<u8>,
}

/// Largest amount generated, fen (the engine's default per-transaction maximum).
const MAX_AMOUNT_FEN: u64 = 100_000_000 * 100;

/// Relative transaction intensity at second `s` of a day: the shape of 11.11.
fn intensity(s: f64) -> f64 {
    let hour = 3600.0;
    let bump = |centre: f64, width: f64, height: f64| {
        height * (-((s - centre) / width).powi(2) / 2.0).exp()
    };
    1.0 + 25.0 * (-s / 90.0).exp()
        + 6.0 * (-s / 1800.0).exp()
        + bump(10.0 * hour, 2.0 * hour, 1.5)
        + bump(21.0 * hour, 1.5 * hour, 2.5)
        + bump(23.8 * hour, 0.3 * hour, 3.0)
}

/// The next record's place in a [`Schedule`].
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Index of its segment.
    segment: usize,
    /// Records of that segment already made.
    index: u64,
    /// Where that segment starts, ms since the window's start.
    start_ms: u64,
}

/// The deterministic record stream; an `Iterator` of [`SynthRecord`].
pub struct Generator {
    cfg: SynthConfig,
    rng: ChaCha8Rng,
    zipf: Zipf<f64>,
    amounts: LogNormal<f64>,
    /// Cumulative intensity per second of the window, normalised to 1.
    time_cdf: Vec<f64>,
    mean_amount_fen: f64,
    produced: u64,
    /// Where the next record goes when a schedule is set.
    slot: Slot,
    next_txn: u64,
    /// Recent valid records, for redeliveries and conflicts.
    recent: VecDeque<(String, String, Vec<u8>)>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(mut cfg: SynthConfig) -> Self {
        if let Some(schedule) = &cfg.schedule {
            cfg.events = schedule.events();
        }
        let seconds = cfg.window.seconds();
        let mut time_cdf = Vec::with_capacity(seconds);
        let mut total = 0.0;
        for s in 0..seconds {
            // The shape is a day's; longer windows repeat it.
            total += intensity((s % 86_400) as f64);
            time_cdf.push(total);
        }
        time_cdf.iter_mut().for_each(|c| *c /= total);
        let sigma = 1.0;
        let good_share = 1.0
            - cfg.malformed_share
            - cfg.duplicate_share
            - cfg.conflict_share
            - cfg.outside_window_share;
        let counted = (cfg.events as f64 * good_share.max(0.01)).max(1.0);
        Self {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            zipf: Zipf::new(cfg.merchants.max(1), cfg.zipf_exponent)
                .expect("zipf parameters are positive"),
            amounts: LogNormal::new(-sigma * sigma / 2.0, sigma).expect("sigma is positive"),
            time_cdf,
            mean_amount_fen: cfg.target_gmv_cny as f64 * 100.0 / counted,
            produced: 0,
            slot: Slot::default(),
            next_txn: 0,
            recent: VecDeque::with_capacity(1024),
            cfg,
        }
    }

    /// The next slot: (its event time, ms since the window's start, which
    /// never goes back; the `settled_at` of its record, epoch ms, which
    /// jitter may put a little either side of it).
    fn event_time(&mut self) -> (u64, i64) {
        if self.cfg.schedule.is_some() {
            return self.scheduled_time();
        }
        let u = (self.produced as f64 + self.rng.gen::<f64>()) / self.cfg.events.max(1) as f64;
        let second = self
            .time_cdf
            .partition_point(|&c| c < u)
            .min(self.time_cdf.len() - 1);
        let jitter: i64 = self.rng.gen_range(-150..150);
        let at = self.cfg.window.start_millis()
            + second as i64 * 1000
            + self.rng.gen_range(0..1000)
            + jitter;
        let at = at.clamp(
            self.cfg.window.start_millis(),
            self.cfg.window.end_millis() - 1,
        );
        (second as u64 * 1000, at)
    }

    /// The next slot's event time under the schedule: the segment's share
    /// of the day's shape, cut into as many equal parts as it has records,
    /// one record in each (with a little jitter, never leaving the segment).
    fn scheduled_time(&mut self) -> (u64, i64) {
        let window_ms = self.cfg.window.seconds() as u64 * 1000;
        let segments = self.cfg.schedule.as_ref().map_or(&[][..], |s| s.segments());
        while let Some(segment) = segments.get(self.slot.segment) {
            if self.slot.index < segment.events {
                break;
            }
            self.slot.start_ms += segment.millis;
            self.slot.segment += 1;
            self.slot.index = 0;
        }
        let (millis, events) = segments
            .get(self.slot.segment)
            .map_or((0, 1), |s| (s.millis, s.events));
        let start = self.slot.start_ms.min(window_ms.saturating_sub(1));
        let end = (self.slot.start_ms + millis).clamp(start + 1, window_ms.max(1));
        let u = (self.slot.index as f64 + self.rng.gen::<f64>()) / events.max(1) as f64;
        self.slot.index += 1;
        let (from, to) = (self.cdf_at(start), self.cdf_at(end));
        let slot = self.time_at(from + u * (to - from)).clamp(start, end - 1);
        let jitter: i64 = self.rng.gen_range(-150..150);
        let at = (slot as i64 + jitter).clamp(start as i64, end as i64 - 1);
        (slot, self.cfg.window.start_millis() + at)
    }

    /// The share of the window's records before `ms` (since its start).
    fn cdf_at(&self, ms: u64) -> f64 {
        let second = (ms / 1000) as usize;
        let Some(&through) = self.time_cdf.get(second) else {
            return 1.0;
        };
        let before = second
            .checked_sub(1)
            .and_then(|s| self.time_cdf.get(s))
            .copied()
            .unwrap_or(0.0);
        before + (through - before) * (ms % 1000) as f64 / 1000.0
    }

    /// The inverse of [`Self::cdf_at`]: ms since the window's start.
    fn time_at(&self, share: f64) -> u64 {
        let last = self.time_cdf.len().saturating_sub(1);
        let second = self.time_cdf.partition_point(|&c| c < share).min(last);
        let through = self.time_cdf.get(second).copied().unwrap_or(1.0);
        let before = second
            .checked_sub(1)
            .and_then(|s| self.time_cdf.get(s))
            .copied()
            .unwrap_or(0.0);
        let within = if through > before {
            ((share - before) / (through - before)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        second as u64 * 1000 + ((within * 1000.0) as u64).min(999)
    }

    fn format_time(&self, at: i64) -> String {
        match self.cfg.window.offset().timestamp_millis_opt(at).single() {
            Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => String::from("1970-01-01T00:00:00.000Z"),
        }
    }

    fn amount_fen(&mut self) -> u64 {
        let draw = self.amounts.sample(&mut self.rng) * self.mean_amount_fen;
        (draw.round() as u64).clamp(1, MAX_AMOUNT_FEN)
    }

    fn valid_record(&mut self, settled_at: i64) -> (String, String, Vec<u8>) {
        let merchant = self.zipf.sample(&mut self.rng) as u64;
        let merchant_id = format!("m-{merchant:06}");
        let txn_id = format!("{:04}{:016}", self.cfg.seed % 10_000, self.next_txn);
        self.next_txn += 1;
        let channel = if self.rng.gen_bool(self.cfg.mobile_share) {
            "mobile"
        } else if self.rng.gen_bool(0.7) {
            "pc"
        } else {
            "offline"
        };
        let fen = self.amount_fen();
        let (amount, currency) = if self.rng.gen_bool(self.cfg.foreign_share) {
            // A foreign amount of roughly the same value; the engine converts it at its rate.
            let (code, per_unit_fen) = if self.rng.gen_bool(0.5) {
                ("USD", 665)
            } else {
                ("HKD", 85)
            };
            (fen_text((fen / per_unit_fen).max(1)), code)
        } else {
            (fen_text(fen), "CNY")
        };
        let time = self.format_time(settled_at);
        let json = match self.rng.gen_range(0..20) {
            // Some producers send the amount as a JSON number, some omit the default currency.
            0 => format!(
                r#"{{"txn_id":"{txn_id}","merchant_id":"{merchant_id}","amount":{amount},"currency":"{currency}","channel":"{channel}","settled_at":"{time}"}}"#
            ),
            1 if currency == "CNY" => format!(
                r#"{{"txn_id":"{txn_id}","merchant_id":"{merchant_id}","amount":"{amount}","channel":"{channel}","settled_at":"{time}"}}"#
            ),
            _ => format!(
                r#"{{"txn_id":"{txn_id}","merchant_id":"{merchant_id}","amount":"{amount}","currency":"{currency}","channel":"{channel}","settled_at":"{time}"}}"#
            ),
        };
        (merchant_id, txn_id, json.into_bytes())
    }

    fn broken_record(&mut self, merchant_id: &str, good: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(good).into_owned();
        match self.rng.gen_range(0..9) {
            0 => good[..good.len() / 2].to_vec(),
            1 => text
                .replacen(&format!(r#""{merchant_id}""#), "12345", 1)
                .into_bytes(),
            2 => replace_amount(&text, "-12.00"),
            3 => replace_amount(&text, "12.345"),
            4 => replace_amount(&text, "0.00"),
            5 => text.replacen(r#""channel":"#, r#""chan":"#, 1).into_bytes(),
            6 => text
                .replacen(r#""settled_at":"2"#, r#""settled_at":"yesterday 2"#, 1)
                .into_bytes(),
            7 => {
                let mut bytes = good.to_vec();
                let at = bytes.len() / 3;
                bytes[at] = 0xff;
                bytes
            }
            _ => replace_amount(&text, "1e400"),
        }
    }
}

/// Fen as a two-place decimal string.
fn fen_text(fen: u64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// Replaces the amount's value (string or number) in a generated record.
fn replace_amount(json: &str, amount: &str) -> Vec<u8> {
    let Some(start) = json.find(r#""amount":"#).map(|i| i + 9) else {
        return json.as_bytes().to_vec();
    };
    let rest = &json[start..];
    let end = rest.find(",\"").map_or(json.len(), |e| start + e);
    format!(r#"{}"{amount}"{}"#, &json[..start], &json[end..]).into_bytes()
}

impl Generator {
    /// The next record and its slot's event time, ms since the window's
    /// start. Slots never go back in time; a record's `settled_at` is its
    /// slot's time give or take some jitter (or before the window, for the
    /// records made to fall outside it). A sender paces by it (see
    /// [`Replay`]).
    pub fn next_timed(&mut self) -> Option<(SynthRecord, u64)> {
        if self.produced >= self.cfg.events {
            return None;
        }
        let (slot, settled_at) = self.event_time();
        Some((self.record(settled_at), slot))
    }

    fn record(&mut self, settled_at: i64) -> SynthRecord {
        self.produced += 1;
        let roll: f64 = self.rng.gen();
        let c = &self.cfg;
        let (dup, conflict, malformed, outside) = (
            c.duplicate_share,
            c.duplicate_share + c.conflict_share,
            c.duplicate_share + c.conflict_share + c.malformed_share,
            c.duplicate_share + c.conflict_share + c.malformed_share + c.outside_window_share,
        );
        if roll < conflict && !self.recent.is_empty() {
            let pick = self.rng.gen_range(0..self.recent.len());
            let (key, _, payload) = self.recent[pick].clone();
            let payload = if roll < dup {
                payload
            } else {
                // Same txn_id, one fen more: a conflicting reuse.
                let text = String::from_utf8_lossy(&payload).into_owned();
                let start = text.find(r#""amount":"#).map_or(0, |i| i + 9);
                let digits = text[start..].trim_start_matches('"');
                let value: String = digits
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let bumped = gmv_core::money::parse_minor_units(&value).map_or(1, |u| u + 1);
                replace_amount(&text, &fen_text(bumped))
            };
            return SynthRecord { key, payload };
        }
        let at = if roll >= malformed && roll < outside {
            self.cfg.window.start_millis() - self.rng.gen_range(1_000..3_600_000)
        } else {
            settled_at
        };
        let (key, txn_id, payload) = self.valid_record(at);
        if roll >= conflict && roll < malformed {
            let broken = self.broken_record(&key, &payload);
            return SynthRecord {
                key,
                payload: broken,
            };
        }
        if self.recent.len() == 1024 {
            self.recent.pop_front();
        }
        self.recent
            .push_back((key.clone(), txn_id, payload.clone()));
        SynthRecord { key, payload }
    }
}

impl Iterator for Generator {
    type Item = SynthRecord;

    fn next(&mut self) -> Option<SynthRecord> {
        self.next_timed().map(|(record, _)| record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmv_core::partition::{decode, Decoded, Partition};
    use gmv_core::view::{LiveView, PartitionKey};
    use gmv_core::{Reason, Settings};
    use std::sync::Arc;

    fn run(cfg: SynthConfig) -> gmv_core::output::Report {
        let settings = Arc::new(Settings::defaults());
        let mut partition = Partition::new(settings.clone(), 1 << 22);
        for (i, record) in Generator::new(cfg).enumerate() {
            let decoded = decode(&settings, &record.payload);
            let txn = decoded.as_ref().map(Decoded::txn).map_err(Clone::clone);
            let _ = partition.count(i as i64, txn);
        }
        let mut view = LiveView::new(settings);
        view.apply(&PartitionKey::split(0), "test", &partition.take_delta());
        view.report()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let cfg = SynthConfig {
            events: 2_000,
            ..SynthConfig::default()
        };
        let a: Vec<_> = Generator::new(cfg.clone()).collect();
        let b: Vec<_> = Generator::new(cfg.clone()).collect();
        let c: Vec<_> = Generator::new(SynthConfig { seed: 12, ..cfg }).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 2_000);
    }

    /// FNV-1a over the records as `gmv generate` writes them (one per line).
    fn fingerprint(cfg: SynthConfig) -> (u64, usize) {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        let mut bytes = 0;
        for record in Generator::new(cfg) {
            for &b in record.payload.iter().chain(b"\n") {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
                bytes += 1;
            }
        }
        (hash, bytes)
    }

    #[test]
    fn an_unscheduled_stream_keeps_its_bytes() {
        // `gmv generate --events 1000 --seed 11`: a stream written once must
        // be made again byte for byte, so its fingerprint is fixed here.
        let cfg = SynthConfig {
            events: 1_000,
            ..SynthConfig::default()
        };
        assert_eq!(fingerprint(cfg), (0xe09a_ac1a_755c_98ff, 162_413));
    }

    #[test]
    fn a_schedule_puts_each_segments_records_in_it() {
        let schedule = Schedule::new(vec![
            Segment {
                millis: 1_000,
                events: 3_000,
            },
            Segment {
                millis: 1_000,
                events: 7_000,
            },
            Segment {
                millis: 3_000,
                events: 0,
            },
            Segment {
                millis: 86_395_000,
                events: 5_000,
            },
        ]);
        let cfg = SynthConfig {
            events: 1,
            ..SynthConfig::default()
        }
        .clean()
        .scheduled(schedule.clone());
        assert_eq!(cfg.events, 15_000);
        let start = cfg.window.start_millis();
        let mut per_second = vec![0u64; 86_400];
        let mut slots = Vec::new();
        for (record, slot) in std::iter::from_fn({
            let mut generator = Generator::new(cfg.clone());
            move || generator.next_timed()
        }) {
            let text = String::from_utf8(record.payload).unwrap();
            let at = text.split(r#""settled_at":""#).nth(1).unwrap();
            let at = gmv_core::time::parse_rfc3339_millis(&at[..at.len() - 2]).unwrap();
            assert!((at - start - slot as i64).abs() <= 150, "{at} vs {slot}");
            per_second[((at - start) / 1000) as usize] += 1;
            slots.push(slot);
        }
        assert_eq!(slots.len(), 15_000);
        assert_eq!(&per_second[..5], &[3_000, 7_000, 0, 0, 0]);
        assert_eq!(per_second[5..].iter().sum::<u64>(), 5_000);
        assert!(slots.windows(2).all(|w| w[1] >= w[0]));
        // The rest still has the day's shape: the evening outsells the small hours.
        let hour = |h: usize| per_second[h * 3_600..(h + 1) * 3_600].iter().sum::<u64>();
        assert!(hour(21) > 2 * hour(4), "{} vs {}", hour(21), hour(4));
        // And the same seed gives the same bytes.
        let again: Vec<_> = Generator::new(cfg.clone()).collect();
        assert_eq!(again, Generator::new(cfg).collect::<Vec<_>>());
    }

    #[test]
    fn the_midnight_rush_peaks_at_its_rate_in_the_fifth_second() {
        let report = run(SynthConfig::default()
            .clean()
            .scheduled(Schedule::midnight_rush(20_000, 10, 200_000, 86_400)));
        let counts = &report.series.per_second.counts;
        assert_eq!(report.figures.peak_tps, 20_000);
        assert_eq!(
            report.figures.peak_second.as_deref(),
            Some("2017-11-11T00:00:05+08:00")
        );
        assert_eq!(counts[0], 7_000);
        assert_eq!(
            counts[10..].iter().map(|&c| u64::from(c)).sum::<u64>(),
            200_000 - Schedule::rush_events(20_000, 10)
        );
    }

    #[test]
    fn stream_has_each_kind_of_trouble_and_the_day_shape() {
        let cfg = SynthConfig {
            events: 200_000,
            merchants: 20_000,
            duplicate_share: 0.01,
            conflict_share: 0.002,
            malformed_share: 0.01,
            outside_window_share: 0.005,
            foreign_share: 0.02,
            ..SynthConfig::default()
        };
        let report = run(cfg);
        let r = &report.figures.rejected;
        for reason in [
            Reason::Duplicate,
            Reason::Conflict,
            Reason::OutsideWindow,
            Reason::Malformed,
            Reason::InvalidAmount,
        ] {
            assert!(r.get(reason) > 0, "no {reason} in the stream");
        }
        assert!(
            (0.85..0.95).contains(&report.figures.mobile_share),
            "{}",
            report.figures.mobile_share
        );
        // The midnight surge: the peak second is in the first minutes.
        let peak = report
            .series
            .per_second
            .counts
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .unwrap()
            .0;
        assert!(peak < 600, "peak at second {peak}");
        // A few giants cross the top threshold; many more the lowest one.
        let t = &report.figures.thresholds;
        assert!(
            t[2].merchants >= 1 && t[0].merchants > t[2].merchants,
            "{t:?}"
        );
    }

    #[test]
    fn clean_stream_totals_about_the_target() {
        let report = run(SynthConfig {
            events: 50_000,
            merchants: 5_000,
            ..SynthConfig::default()
        }
        .clean());
        assert_eq!(report.figures.accounting.rejected, 0);
        let gmv: f64 = report.figures.gmv_cny.parse().unwrap();
        assert!((gmv / 168.2e9 - 1.0).abs() < 0.1, "{gmv}");
    }
}
