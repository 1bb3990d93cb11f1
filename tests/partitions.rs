//! A file split into partitions by `merchant_id`: whatever the number of
//! workers, `gmv run` gives the same report, alerts and dead letters, byte
//! for byte, and they equal the independent input-order answer (every
//! alert names the event that crossed its threshold in its merchant's input
//! order). Records whose `txn_id` key is escaped, or whose other fields
//! contain the text `"txn_id"`, are judged by what they decode to.

mod common;

use common::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Writes `gmv.toml` with low thresholds (many crossings) into `dir`.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("gmv.toml");
    std::fs::write(
        &path,
        "[money]\nthresholds_cny = [\"10000000.00\", \"50000000.00\", \"100000000.00\"]\n[engine]\ntop_n = 10\n",
    )
    .expect("config written");
    path
}

fn thresholds() -> Vec<Decimal> {
    vec![dec("10000000.00"), dec("50000000.00"), dec("100000000.00")]
}

/// What one run wrote: (report, alerts, dead letters), as bytes.
fn run(dir: &Path, input: &Path, workers: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let out = |name: &str| dir.join(format!("{name}-{workers}"));
    let status = gmv()
        .arg("--config")
        .arg(config(dir))
        .args([
            "run",
            "--progress",
            "never",
            "--workers",
            &workers.to_string(),
        ])
        .arg("--input")
        .arg(input)
        .arg("--report")
        .arg(out("report.json"))
        .arg("--alerts")
        .arg(out("alerts.jsonl"))
        .arg("--dead-letter")
        .arg(out("dead.jsonl"))
        .env("RUST_LOG", "warn")
        .status()
        .expect("gmv run runs");
    assert!(status.success(), "{status:?}");
    let read = |name: &str| std::fs::read(out(name)).expect("output written");
    (
        read("report.json"),
        read("alerts.jsonl"),
        read("dead.jsonl"),
    )
}

/// A generated day with every kind of trouble, plus records that route
/// differently by raw bytes than by their decoded fields: each repeats an
/// earlier transaction (same merchant) with its key escaped or with the
/// text `"txn_id"` inside another field, some verbatim (duplicates), some
/// with another amount (conflicts).
fn tricky_input(dir: &Path, events: u64) -> PathBuf {
    let path = dir.join("events.jsonl");
    let status = gmv()
        .args(["generate", "--events", &events.to_string(), "--seed", "17"])
        .args(["--merchants", "3000", "--duplicate-share", "0.01"])
        .args(["--conflict-share", "0.002", "--malformed-share", "0.01"])
        .arg("-o")
        .arg(&path)
        .status()
        .expect("gmv generate runs");
    assert!(status.success());
    let mut bytes = std::fs::read(&path).expect("generated");
    // Valid records in the window, each then counted or refused as a
    // redelivery: a repeat of one is always refused.
    let originals: Vec<Value> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| judge(l).is_ok_and(|v| v.4.date_naive().to_string() == "2017-11-11"))
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(|v| v["amount"].is_string() && v["currency"].as_str() == Some("CNY"))
        .step_by(997)
        .take(20)
        .collect();
    assert_eq!(originals.len(), 20);
    for (i, original) in originals.iter().enumerate() {
        let field = |k: &str| original[k].as_str().expect("field").to_owned();
        let amount = if i % 4 == 3 {
            "1.23".to_owned() // a conflicting reuse
        } else {
            field("amount")
        };
        let record = if i % 2 == 0 {
            format!(
                r#"{{"\u0074xn_id":"{}","merchant_id":"{}","amount":"{amount}","currency":"CNY","channel":"{}","settled_at":"{}"}}"#,
                field("txn_id"),
                field("merchant_id"),
                field("channel"),
                field("settled_at"),
            )
        } else {
            format!(
                r#"{{"note":"\"txn_id\":\"decoy-{i}\"","txn_id":"{}","merchant_id":"{}","amount":"{amount}","currency":"CNY","channel":"{}","settled_at":"{}"}}"#,
                field("txn_id"),
                field("merchant_id"),
                field("channel"),
                field("settled_at"),
            )
        };
        bytes.extend_from_slice(record.as_bytes());
        bytes.push(b'\n');
    }
    std::fs::write(&path, bytes).expect("input written");
    path
}

#[test]
fn the_same_input_gives_byte_identical_outputs_on_one_two_four_and_eight_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = tricky_input(dir.path(), 200_000);
    let bytes = std::fs::read(&input).expect("input");
    let want = Reference::compute(&bytes);
    let (report, alerts, dead) = run(dir.path(), &input, 1);
    for workers in [2, 4, 8] {
        let (r, a, d) = run(dir.path(), &input, workers);
        assert!(
            r == report,
            "report on {workers} workers differs from 1 worker"
        );
        assert!(
            a == alerts,
            "alerts on {workers} workers differ from 1 worker"
        );
        assert!(
            d == dead,
            "dead letters on {workers} workers differ from 1 worker"
        );
    }
    let report: Value = serde_json::from_slice(&report).expect("report is JSON");
    check_report(&report, &want, &thresholds());
    check_alerts(&dir.path().join("alerts.jsonl-1"), &report, &want);
    check_dead_letters(&dir.path().join("dead.jsonl-1"), &want, &bytes);
}

#[test]
fn escaped_keys_and_decoy_txn_text_give_the_exact_gmv_on_four_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = tricky_input(dir.path(), 60_000);
    let bytes = std::fs::read(&input).expect("input");
    let want = Reference::compute(&bytes);
    let (report, _, dead) = run(dir.path(), &input, 4);
    let report: Value = serde_json::from_slice(&report).expect("report is JSON");
    assert_eq!(money(&report["gmv_cny"]), want.gmv, "GMV to the fen");
    check_report(&report, &want, &thresholds());
    // The 20 repeats are refused, the 5 with another amount as conflicts.
    let dead: Vec<Value> = String::from_utf8(dead)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let tricky: Vec<&Value> = dead
        .iter()
        .filter(|d| {
            let p = d["payload"].as_str().unwrap_or_default();
            p.contains("\\u0074xn_id") || p.contains("decoy-")
        })
        .collect();
    assert_eq!(tricky.len(), 20, "every repeat is refused");
    assert!(tricky
        .iter()
        .all(|d| d["reason"] == "duplicate" || d["reason"] == "conflict"));
    assert!(tricky.iter().filter(|d| d["reason"] == "conflict").count() >= 5);
}
