//! `gmv run` then `gmv report`: the post-event report is made from the run's
//! persisted output after the process has ended, and bad input names the file.

use serde_json::Value;
use std::process::Command;

fn gmv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gmv"))
}

#[test]
fn report_is_made_from_a_finished_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.jsonl");
    let run = dir.path().join("run.json");
    let out = dir.path().join("out");
    assert!(gmv()
        .args(["generate", "--events", "50000", "-o"])
        .arg(&events)
        .status()
        .expect("generate")
        .success());
    let status = gmv()
        .args(["run", "--progress", "never", "--input"])
        .arg(&events)
        .arg("--report")
        .arg(&run)
        .arg("--dead-letter")
        .arg(dir.path().join("dead.jsonl"))
        .status()
        .expect("run");
    assert!(status.success());
    let output = gmv()
        .args(["report", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("report");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_report: Value =
        serde_json::from_slice(&std::fs::read(&run).expect("run report")).expect("JSON");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
            .expect("JSON");
    for field in [
        "gmv_cny",
        "gmv_usd",
        "transactions",
        "mobile_share",
        "peak_tps",
        "thresholds",
        "accounting",
    ] {
        assert_eq!(report[field], run_report[field], "{field}");
    }
    let csv = std::fs::read_to_string(out.join("merchants.csv")).expect("merchants.csv");
    assert_eq!(
        csv.lines().count() as u64,
        run_report["merchants"].as_u64().expect("merchants") + 1
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("<svg"));
    let headline = String::from_utf8_lossy(&output.stdout);
    assert!(
        headline.contains(&format!(
            "the peak was {} transactions per second",
            run_report["peak_tps"]
        )),
        "{headline}"
    );
}

#[test]
fn a_truncated_run_report_is_named_with_its_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run.json");
    std::fs::write(&run, "{\"schema_version\": 1, \"gmv_cny\": ").expect("written");
    let output = gmv()
        .args(["report", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("report");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("run.json"), "{stderr}");
}
