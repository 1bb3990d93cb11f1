//! The engine's configuration sections (`[window]`, `[money]`, `[dedup]`,
//! `[engine]`) as serde types with defaults, and their validation into
//! [`Settings`]. The binary layers files, environment and flags over these;
//! every problem found is reported with its key and what is allowed.

use crate::event::{CurrencyTable, Decoder};
use crate::money::{self, Fen};
use crate::time::{Window, MAX_WINDOW_SECONDS};
use chrono::DateTime;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// `[window]`: which event times count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Inclusive start, RFC 3339 with offset.
    pub start: String,
    /// Exclusive end, RFC 3339 with offset.
    pub end: String,
}

impl Default for WindowConfig {
    fn default() -> Self {
        let w = Window::singles_day_2017();
        Self {
            start: w.start_rfc3339(),
            end: w.end_rfc3339(),
        }
    }
}

/// `[money]`: thresholds, currency rates and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoneyConfig {
    /// Merchant GMV thresholds in CNY, each announced once per merchant.
    pub thresholds_cny: Vec<String>,
    /// USD per CNY, for the headline USD figure.
    pub usd_per_cny: String,
    /// CNY per unit of each accepted foreign currency (ISO 4217 code → rate).
    pub rates_to_cny: BTreeMap<String, String>,
    /// Largest single transaction accepted, CNY; larger is `invalid_amount`.
    pub max_amount_cny: String,
}

impl Default for MoneyConfig {
    fn default() -> Self {
        Self {
            thresholds_cny: ["100000000.00", "500000000.00", "1000000000.00"]
                .map(String::from)
                .to_vec(),
            usd_per_cny: "0.1504".into(),
            rates_to_cny: [
                ("USD", "6.6490"),
                ("HKD", "0.8512"),
                ("EUR", "7.7350"),
                ("JPY", "0.0587"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            max_amount_cny: "100000000.00".into(),
        }
    }
}

/// `[dedup]`: the redelivery set's bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Hard bound on ids held; the tables take at most
    /// [`crate::dedup::max_allocated_bytes`] for it (28 to 42 bytes per id).
    pub max_ids: usize,
    /// Optional event-time retention, e.g. `"2h"`: ids are kept at least this long.
    #[serde(with = "humantime_serde")]
    pub retention: Option<Duration>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            max_ids: 20_000_000,
            retention: None,
        }
    }
}

/// `[engine]`: processing knobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Merchants listed in snapshots and reports.
    pub top_n: usize,
    /// Largest record accepted, bytes; larger is `oversize`.
    pub max_event_bytes: usize,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Partitions a file, stdin or the synthetic stream is split into by
    /// `merchant_id` (Kafka topics bring their own). Independent of
    /// `workers`, so a run's output never depends on the thread count.
    pub partitions: usize,
    /// Longest a stop on SIGINT/SIGTERM may take (final checkpoints,
    /// commits, report); past it the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            top_n: 20,
            max_event_bytes: 64 * 1024,
            workers: 0,
            partitions: 16,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// A configuration problem: the key and what is wrong or allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `money.thresholds_cny[1]`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Bytes an id of `dedup.max_ids` may take: 42 in the tables at their
/// fullest, twice in a Kafka run (the checkpoint writer keeps a copy).
const WORST_BYTES_PER_ID: u64 = 84;
/// Ids whatever the memory (the tables index slots with 32 bits).
const MAX_IDS: usize = 1 << 32;
/// Workers a core may have: more than one only helps tests and odd loads.
const WORKERS_PER_CORE: usize = 16;

/// This machine's memory, if the system says (Linux: `/proc/meminfo`).
fn machine_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Validated engine settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The festival window.
    pub window: Window,
    /// Thresholds, fen, ascending.
    pub thresholds: Vec<Fen>,
    /// USD per CNY.
    pub usd_per_cny: Decimal,
    /// The decoder (rates and maximum amount).
    pub decoder: Decoder,
    /// Dedup bound.
    pub dedup_max_ids: usize,
    /// Dedup event-time retention.
    pub dedup_retention: Option<Duration>,
    /// Merchants in top lists.
    pub top_n: usize,
    /// Largest record, bytes.
    pub max_event_bytes: usize,
    /// Worker threads (resolved: never 0).
    pub workers: usize,
    /// Partitions of a source the process splits itself.
    pub partitions: usize,
}

impl Settings {
    /// Validates the four sections, collecting every problem.
    pub fn from_config(
        window: &WindowConfig,
        money_cfg: &MoneyConfig,
        dedup: &DedupConfig,
        engine: &EngineConfig,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut time = |key: &str, text: &str| match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(ConfigError::new(
                    key,
                    format!("{e}: expected an RFC 3339 time with offset, e.g. 2017-11-11T00:00:00+08:00"),
                ));
                None
            }
        };
        let start = time("window.start", &window.start);
        let end = time("window.end", &window.end);
        let window = match (start, end) {
            (Some(s), Some(e)) => Window::new(s, e).or_else(|| {
                errors.push(ConfigError::new(
                    "window.end",
                    format!(
                        "must be after window.start, both on whole seconds, at most {} days apart",
                        MAX_WINDOW_SECONDS / 86_400
                    ),
                ));
                None
            }),
            _ => None,
        };

        let mut thresholds = Vec::new();
        if money_cfg.thresholds_cny.is_empty() || money_cfg.thresholds_cny.len() > 16 {
            errors.push(ConfigError::new(
                "money.thresholds_cny",
                "allowed: 1 to 16 amounts",
            ));
        }
        for (i, text) in money_cfg.thresholds_cny.iter().enumerate() {
            match money::parse_cny(text) {
                // Merged silently, a repeat would hide a typo for the
                // threshold meant.
                Ok(fen) if thresholds.contains(&fen) => errors.push(ConfigError::new(
                    format!("money.thresholds_cny[{i}]"),
                    format!("`{text}` is listed before; allowed: each amount once"),
                )),
                Ok(fen) => thresholds.push(fen),
                Err(e) => errors.push(ConfigError::new(
                    format!("money.thresholds_cny[{i}]"),
                    format!(
                        "`{text}`: {e}; allowed: a positive CNY amount with at most 2 decimals"
                    ),
                )),
            }
        }
        thresholds.sort_unstable();

        let positive_decimal =
            |key: &str, text: &str, errors: &mut Vec<ConfigError>| match Decimal::from_str(
                text.trim(),
            ) {
                Ok(d) if d > Decimal::ZERO => Some(d),
                _ => {
                    errors.push(ConfigError::new(
                        key,
                        format!("`{text}`: allowed: a positive decimal number"),
                    ));
                    None
                }
            };
        let usd_per_cny =
            positive_decimal("money.usd_per_cny", &money_cfg.usd_per_cny, &mut errors);
        let mut rates = Vec::new();
        for (code, rate) in &money_cfg.rates_to_cny {
            let key = format!("money.rates_to_cny.{code}");
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) || code == "CNY" {
                errors.push(ConfigError::new(
                    key.clone(),
                    "allowed: a 3-letter upper-case ISO 4217 code other than CNY",
                ));
            }
            if let Some(r) = positive_decimal(&key, rate, &mut errors) {
                rates.push((code.clone(), r));
            }
        }
        let max_amount = money::parse_cny(&money_cfg.max_amount_cny)
            .map_err(|e| {
                errors.push(ConfigError::new(
                    "money.max_amount_cny",
                    format!(
                        "`{}`: {e}; allowed: a positive CNY amount",
                        money_cfg.max_amount_cny
                    ),
                ))
            })
            .ok();

        let memory = machine_memory_bytes();
        let most_ids = memory.map_or(MAX_IDS, |bytes| {
            usize::try_from(bytes / WORST_BYTES_PER_ID)
                .unwrap_or(usize::MAX)
                .clamp(1024, MAX_IDS)
        });
        if !(1024..=most_ids).contains(&dedup.max_ids) {
            errors.push(ConfigError::new(
                "dedup.max_ids",
                format!(
                    "allowed: 1024 to {most_ids} (an id may take up to {WORST_BYTES_PER_ID} bytes, the Kafka checkpoint writer's copy included, and this machine has {} GiB)",
                    memory.map_or(0, |b| b >> 30)
                ),
            ));
        }
        if dedup.retention.is_some_and(|r| r.is_zero()) {
            errors.push(ConfigError::new(
                "dedup.retention",
                "allowed: a positive duration such as \"2h\", or unset",
            ));
        }
        if !(256..=16 * 1024 * 1024).contains(&engine.max_event_bytes) {
            errors.push(ConfigError::new(
                "engine.max_event_bytes",
                "allowed: 256 to 16777216",
            ));
        }
        if engine.top_n > 10_000 {
            errors.push(ConfigError::new("engine.top_n", "allowed: 0 to 10000"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&engine.shutdown_grace) {
            errors.push(ConfigError::new(
                "engine.shutdown_grace",
                "allowed: 1s to 1h, e.g. \"20s\"",
            ));
        }
        if !(1..=4096).contains(&engine.partitions) {
            errors.push(ConfigError::new("engine.partitions", "allowed: 1 to 4096"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let most_workers = (cores * WORKERS_PER_CORE).clamp(WORKERS_PER_CORE, 1024);
        if engine.workers > most_workers {
            errors.push(ConfigError::new(
                "engine.workers",
                format!(
                    "allowed: 0 (one per core) to {most_workers} ({WORKERS_PER_CORE} per core on this machine's {cores}; more threads only take turns)"
                ),
            ));
        }

        match (window, usd_per_cny, max_amount) {
            (Some(window), Some(usd_per_cny), Some(max_amount)) if errors.is_empty() => Ok(Self {
                window,
                thresholds,
                usd_per_cny,
                decoder: Decoder::new(CurrencyTable::new(rates), max_amount),
                dedup_max_ids: dedup.max_ids,
                dedup_retention: dedup.retention,
                top_n: engine.top_n,
                max_event_bytes: engine.max_event_bytes,
                workers: if engine.workers == 0 {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    engine.workers
                },
                partitions: engine.partitions,
            }),
            _ => Err(errors),
        }
    }

    /// The defaults (the 11.11 2017 day, CNY 100M/500M/1B).
    pub fn defaults() -> Self {
        Self::from_config(
            &WindowConfig::default(),
            &MoneyConfig::default(),
            &DedupConfig::default(),
            &EngineConfig::default(),
        )
        .expect("the built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let s = Settings::defaults();
        assert_eq!(
            s.thresholds,
            vec![10_000_000_000, 50_000_000_000, 100_000_000_000]
        );
        assert_eq!(s.window.seconds(), 86_400);
    }

    #[test]
    fn every_problem_is_named_by_key() {
        let money_cfg = MoneyConfig {
            thresholds_cny: vec!["100".into(), "lots".into()],
            usd_per_cny: "-1".into(),
            rates_to_cny: [("usd".to_string(), "6.6".to_string())].into(),
            max_amount_cny: "0".into(),
        };
        let window = WindowConfig {
            start: "2017-11-12T00:00:00+08:00".into(),
            end: "2017-11-11T00:00:00+08:00".into(),
        };
        let errors = Settings::from_config(
            &window,
            &money_cfg,
            &DedupConfig::default(),
            &EngineConfig::default(),
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "window.end",
                "money.thresholds_cny[1]",
                "money.usd_per_cny",
                "money.rates_to_cny.usd",
                "money.max_amount_cny"
            ]
        );
        assert!(errors[1].to_string().contains("allowed"));
    }

    #[test]
    fn a_threshold_listed_twice_is_refused_not_merged() {
        let money_cfg = MoneyConfig {
            thresholds_cny: vec![
                "100000000".into(),
                "500000000".into(),
                "100000000.00".into(),
            ],
            ..MoneyConfig::default()
        };
        let errors = Settings::from_config(
            &WindowConfig::default(),
            &money_cfg,
            &DedupConfig::default(),
            &EngineConfig::default(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "money.thresholds_cny[2]");
        assert!(errors[0].message.contains("listed before"), "{}", errors[0]);
    }

    #[test]
    fn a_shutdown_grace_outside_a_second_to_an_hour_is_refused_by_key() {
        for (grace, refused) in [(0, true), (1, false), (3600, false), (3601, true)] {
            let engine = EngineConfig {
                shutdown_grace: Duration::from_secs(grace),
                ..EngineConfig::default()
            };
            let result = Settings::from_config(
                &WindowConfig::default(),
                &MoneyConfig::default(),
                &DedupConfig::default(),
                &engine,
            );
            let keys: Vec<String> = result
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.key)
                .collect();
            assert_eq!(
                keys.contains(&"engine.shutdown_grace".to_string()),
                refused,
                "{grace}s"
            );
        }
    }

    #[test]
    fn bounds_beyond_the_machine_are_refused_with_the_machine_named() {
        let dedup = DedupConfig {
            max_ids: usize::MAX / 2,
            ..DedupConfig::default()
        };
        let engine = EngineConfig {
            workers: 100_000,
            ..EngineConfig::default()
        };
        let errors = Settings::from_config(
            &WindowConfig::default(),
            &MoneyConfig::default(),
            &dedup,
            &engine,
        )
        .unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["dedup.max_ids", "engine.workers"]);
        assert!(errors[0].message.contains("GiB"), "{}", errors[0]);
        assert!(errors[1].message.contains("per core"), "{}", errors[1]);
        // What the defaults and the tests ask for stays allowed.
        let engine = EngineConfig {
            workers: 8,
            ..EngineConfig::default()
        };
        let dedup = DedupConfig {
            max_ids: 20_000_000,
            ..DedupConfig::default()
        };
        assert!(Settings::from_config(
            &WindowConfig::default(),
            &MoneyConfig::default(),
            &dedup,
            &engine
        )
        .is_ok());
    }
}
