//! End to end: `gmv generate` a stream with every kind of bad record, `gmv
//! run` it on several workers, and compare every field of the report with the
//! independent answer of `common` (see there).

mod common;

use common::*;
use serde_json::Value;

/// Generates a day with every kind of bad record, runs it on `workers`, and
/// checks report, dead letters and alerts against the reference.
fn generated_day_matches_reference(workers: usize, conflict_share: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("events.jsonl");
    let status = gmv()
        .args([
            "generate",
            "--events",
            "300000",
            "--seed",
            "7",
            "--merchants",
            "2000",
        ])
        .args([
            "--duplicate-share",
            "0.01",
            "--conflict-share",
            conflict_share,
            "--malformed-share",
            "0.01",
        ])
        .args([
            "--outside-window-share",
            "0.005",
            "--foreign-share",
            "0.05",
            "-o",
        ])
        .arg(&input)
        .status()
        .expect("gmv generate runs");
    assert!(status.success());
    let report_path = dir.path().join("report.json");
    let dead_path = dir.path().join("dead.jsonl");
    let alerts_path = dir.path().join("alerts.jsonl");
    // Thresholds low enough that many merchants cross each.
    let config = dir.path().join("gmv.toml");
    std::fs::write(
        &config,
        format!("[money]\nthresholds_cny = [\"10000000.00\", \"50000000.00\", \"100000000.00\"]\n[engine]\ntop_n = 10\nworkers = {workers}\n"),
    )
    .expect("config written");
    let output = gmv()
        .arg("--config")
        .arg(&config)
        .args(["run", "--input"])
        .arg(&input)
        .arg("--report")
        .arg(&report_path)
        .arg("--dead-letter")
        .arg(&dead_path)
        .arg("--alerts")
        .arg(&alerts_path)
        .output()
        .expect("gmv run runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bytes = std::fs::read(&input).expect("input readable");
    let want = Reference::compute(&bytes);
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).expect("report"))
        .expect("report is JSON");
    check_report(
        &report,
        &want,
        &[dec("10000000.00"), dec("50000000.00"), dec("100000000.00")],
    );
    check_dead_letters(&dead_path, &want, &bytes);
    check_alerts(&alerts_path, &report, &want);
}

#[test]
fn report_on_one_worker_equals_an_independent_answer_in_every_field() {
    generated_day_matches_reference(1, "0.002");
}

/// Records are routed to workers by txn_id, so a conflicting reuse is judged
/// against the version first in the input whatever the number of workers.
#[test]
fn report_on_four_workers_with_conflicts_equals_an_independent_answer_in_every_field() {
    generated_day_matches_reference(4, "0.002");
}
