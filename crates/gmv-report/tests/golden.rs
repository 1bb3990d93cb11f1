//! Golden tests: a fixed generated run (and a fixed previous year) always
//! makes the same report.json and merchants.csv, byte for byte, and those
//! bytes are the ones stored under `tests/golden/`.
//!
//! After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p gmv-report --test golden` and review the diff.

mod common;

use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0") {
        std::fs::create_dir_all(golden_dir()).expect("golden dir is writable");
        std::fs::write(&path, actual).expect("golden file is writable");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             If the change is intended, run UPDATE_GOLDEN=1 cargo test -p gmv-report --test golden and review the diff.",
            path.display(),
            line + 1,
            expected.lines().nth(line).unwrap_or("<end of file>"),
            actual.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn fixed_run_makes_the_golden_report_json_and_merchants_csv() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (opts, _) = common::make_report(dir.path());
    let read =
        |name: &str| std::fs::read_to_string(opts.out_dir.join(name)).expect("output was written");
    check_golden("report.json", &read("report.json"));
    check_golden("merchants.csv", &read("merchants.csv"));
}

#[test]
fn the_same_inputs_make_the_same_bytes_every_time() {
    let first = tempfile::tempdir().expect("temp dir");
    let second = tempfile::tempdir().expect("temp dir");
    let (a, summary_a) = common::make_report(first.path());
    let (b, summary_b) = common::make_report(second.path());
    assert_eq!(summary_a.headline, summary_b.headline);
    for name in ["report.json", "merchants.csv", "report.html"] {
        let bytes = |dir: &PathBuf| std::fs::read(dir.join(name)).expect("output was written");
        assert!(
            bytes(&a.out_dir) == bytes(&b.out_dir),
            "{name} differs between two runs"
        );
    }
    let names: Vec<_> = summary_a
        .files
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(String::from))
        .collect();
    assert_eq!(names, ["report.json", "merchants.csv", "report.html"]);
}

#[test]
fn report_json_keeps_the_contract_and_adds_the_story() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (opts, _) = common::make_report(dir.path());
    let json = common::report_json(&opts);
    // The contract of EVENTS.md, unchanged from the run.
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&opts.run).expect("run")).expect("run JSON");
    for field in [
        "window",
        "gmv_cny",
        "gmv_usd",
        "transactions",
        "mobile_gmv_cny",
        "mobile_share",
        "peak_tps",
        "peak_second",
        "merchants",
        "thresholds",
        "rejected",
        "accounting",
        "top_merchants",
    ] {
        assert_eq!(json[field], run[field], "{field}");
    }
    let accounting = &json["accounting"];
    assert_eq!(
        accounting["consumed"].as_u64(),
        Some(
            accounting["counted"].as_u64().unwrap_or(0)
                + accounting["rejected"].as_u64().unwrap_or(0)
        )
    );
    // The additions.
    assert_eq!(json["title"], "11.11 2017");
    assert_eq!(json["hourly"].as_array().map(Vec::len), Some(24));
    assert_eq!(json["comparison"]["previous_title"], "11.11 2016");
    let growth = json["comparison"]["gmv_growth"].as_f64().expect("growth");
    assert!((0.2..0.6).contains(&growth), "{growth}");
    let ladder = json["threshold_ladder"].as_array().expect("ladder");
    assert_eq!(ladder.len(), 3);
    for (step, threshold) in ladder
        .iter()
        .zip(json["thresholds"].as_array().expect("thresholds"))
    {
        let crossings = step["crossings"].as_array().expect("crossings");
        assert!(!crossings.is_empty(), "nobody passed {}", step["cny"]);
        assert_eq!(step["merchants"], threshold["merchants"]);
        assert_eq!(
            Some(crossings.len() as u64),
            threshold["merchants"].as_u64()
        );
    }
    // This year's report.json is a valid comparison input for next year.
    gmv_report::read_baseline(&opts.out_dir.join("report.json"))
        .expect("report.json reads as a baseline");
}
