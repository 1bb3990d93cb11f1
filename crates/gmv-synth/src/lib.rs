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
    next_txn: u64,
    /// Recent valid records, for redeliveries and conflicts.
    recent: VecDeque<(String, String, Vec<u8>)>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: SynthConfig) -> Self {
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
            next_txn: 0,
            recent: VecDeque::with_capacity(1024),
            cfg,
        }
    }

    fn event_time(&mut self) -> i64 {
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
        at.clamp(
            self.cfg.window.start_millis(),
            self.cfg.window.end_millis() - 1,
        )
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

impl Iterator for Generator {
    type Item = SynthRecord;

    fn next(&mut self) -> Option<SynthRecord> {
        if self.produced >= self.cfg.events {
            return None;
        }
        let settled_at = self.event_time();
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
            return Some(SynthRecord { key, payload });
        }
        let at = if roll >= malformed && roll < outside {
            self.cfg.window.start_millis() - self.rng.gen_range(1_000..3_600_000)
        } else {
            settled_at
        };
        let (key, txn_id, payload) = self.valid_record(at);
        if roll >= conflict && roll < malformed {
            let broken = self.broken_record(&key, &payload);
            return Some(SynthRecord {
                key,
                payload: broken,
            });
        }
        if self.recent.len() == 1024 {
            self.recent.pop_front();
        }
        self.recent
            .push_back((key.clone(), txn_id, payload.clone()));
        Some(SynthRecord { key, payload })
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
