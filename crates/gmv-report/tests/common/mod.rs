//! Fixtures for the integration tests: runs of the real engine (one
//! partition, its view) over the
//! deterministic synthetic stream, written where `write_report` can read them.

#![allow(dead_code)]

use gmv_core::config::{DedupConfig, EngineConfig, MoneyConfig, WindowConfig};
use gmv_core::output::Report;
use gmv_core::partition::{decode, Decoded, Partition};
use gmv_core::view::{LiveView, PartitionKey};
use gmv_core::Settings;
use gmv_report::{write_report, ReportOptions, ReportSummary};
use gmv_synth::{Generator, SynthConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The 11.11 window of `year`.
pub fn window(year: i32) -> WindowConfig {
    WindowConfig {
        start: format!("{year}-11-11T00:00:00+08:00"),
        end: format!("{year}-11-12T00:00:00+08:00"),
    }
}

/// A run of the engine over a synthetic 11.11 of `year`.
pub fn synthetic_run(year: i32, cfg: SynthConfig) -> Report {
    let settings = Settings::from_config(
        &window(year),
        &MoneyConfig::default(),
        &DedupConfig::default(),
        &EngineConfig::default(),
    )
    .expect("fixture settings are valid");
    let cfg = SynthConfig {
        window: settings.window,
        ..cfg
    };
    let settings = Arc::new(settings);
    let mut partition = Partition::new(settings.clone(), settings.dedup_max_ids);
    for (position, record) in Generator::new(cfg).enumerate() {
        // Rejections are counted by the partition; the fixture keeps no dead letters.
        let decoded = decode(&settings, &record.payload);
        let _ = partition.count(
            position as i64,
            decoded.as_ref().map(Decoded::txn).map_err(Clone::clone),
        );
    }
    let mut view = LiveView::new(settings);
    view.apply(&PartitionKey::split(0), "fixture", &partition.take_delta());
    view.report()
}

/// The report of `records` (each valid) through one partition.
pub fn report_of(records: &[String]) -> Report {
    let settings = Arc::new(Settings::defaults());
    let mut partition = Partition::new(settings.clone(), 1 << 16);
    for (i, record) in records.iter().enumerate() {
        let decoded = decode(&settings, record.as_bytes()).expect("a valid record");
        partition
            .count(i as i64, Ok(decoded.txn()))
            .expect("counted");
    }
    let mut view = LiveView::new(settings);
    view.apply(&PartitionKey::split(0), "fixture", &partition.take_delta());
    view.report()
}

/// This year's fixture: 20,000 records with every kind of trouble, 1,000
/// merchants; enough GMV per merchant that all three thresholds are passed.
pub fn run_2017() -> Report {
    synthetic_run(
        2017,
        SynthConfig {
            events: 20_000,
            merchants: 1_000,
            seed: 11,
            ..SynthConfig::default()
        },
    )
}

/// The previous year's fixture: less GMV, less mobile.
pub fn run_2016() -> Report {
    synthetic_run(
        2016,
        SynthConfig {
            events: 12_000,
            merchants: 1_000,
            seed: 10,
            target_gmv_cny: 120_700_000_000,
            mobile_share: 0.82,
            ..SynthConfig::default()
        },
    )
}

/// Writes `value` as pretty JSON to `dir/name`.
pub fn write_json(dir: &Path, name: &str, value: &impl serde::Serialize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(value).expect("fixtures serialise"),
    )
    .expect("temp dir is writable");
    path
}

/// Writes both fixture runs into `dir` and makes the report into `dir/out`.
pub fn make_report(dir: &Path) -> (ReportOptions, ReportSummary) {
    let opts = ReportOptions {
        run: write_json(dir, "run-2017.json", &run_2017()),
        compare: Some(write_json(dir, "run-2016.json", &run_2016())),
        out_dir: dir.join("out"),
    };
    let summary = write_report(&opts).expect("the fixture report is made");
    (opts, summary)
}

/// The report.json written by [`make_report`], parsed.
pub fn report_json(opts: &ReportOptions) -> serde_json::Value {
    let text =
        std::fs::read_to_string(opts.out_dir.join("report.json")).expect("report.json was written");
    serde_json::from_str(&text).expect("report.json is JSON")
}
