//! Bad input through the real binary: every kind of broken record is counted
//! under its reason, kept byte for byte in the dead letters, never crashes the
//! process and never changes a total.

use gmv_core::sink::DeadLetterRecord;
use serde_json::Value;
use std::process::Command;

const GOOD: [&str; 3] = [
    r#"{"txn_id":"g1","merchant_id":"m1","amount":"1299.00","currency":"CNY","channel":"mobile","settled_at":"2017-11-11T00:05:12.340+08:00"}"#,
    r#"{"txn_id":"g2","merchant_id":"m2","amount":10.5,"channel":"pc","settled_at":"2017-11-11T10:00:00Z","extra":{"ignored":[1,2]}}"#,
    r#"{"txn_id":"g3","merchant_id":"m1","amount":"100.00","currency":"USD","channel":"offline","settled_at":"2017-11-11T23:59:59.999+08:00"}"#,
];

fn bad_records() -> Vec<(&'static str, Vec<u8>)> {
    let event = |amount: &str, currency: &str| {
        let txn: String = format!("b{amount}{currency}")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!(r#"{{"txn_id":"{txn}","merchant_id":"m1","amount":{amount},"currency":"{currency}","channel":"mobile","settled_at":"2017-11-11T01:00:00+08:00"}}"#)
            .into_bytes()
    };
    let mut huge = br#"{"txn_id":"big","merchant_id":"m1","amount":"1.00","channel":"mobile","settled_at":"2017-11-11T01:00:00+08:00","pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 1 << 20));
    huge.extend(b"\"}");
    let mut non_utf8 = GOOD[0].replace("g1", "nu").into_bytes();
    non_utf8.insert(20, 0xff);
    vec![
        ("malformed", GOOD[0].as_bytes()[..40].to_vec()),
        ("malformed", b"not json at all".to_vec()),
        ("malformed", b"[1,2,3]".to_vec()),
        ("malformed", GOOD[0].replace("\"m1\"", "42").into_bytes()),
        ("malformed", non_utf8),
        ("invalid_amount", event("\"-12.00\"", "CNY")),
        ("invalid_amount", event("\"0.00\"", "CNY")),
        ("invalid_amount", event("0", "CNY")),
        ("invalid_amount", event("\"12.345\"", "CNY")),
        ("invalid_amount", event("1e400", "CNY")),
        (
            "invalid_amount",
            event("\"99999999999999999999999999999\"", "CNY"),
        ),
        ("invalid_amount", event("\"abc\"", "CNY")),
        ("unknown_currency", event("\"1.00\"", "XXX")),
        (
            "missing_field",
            GOOD[0].replace(r#""channel":"mobile","#, "").into_bytes(),
        ),
        (
            "missing_field",
            GOOD[0].replace(r#""txn_id":"g1","#, "").into_bytes(),
        ),
        (
            "invalid_timestamp",
            GOOD[0]
                .replace("2017-11-11T00:05:12.340+08:00", "yesterday")
                .replace("g1", "ts")
                .into_bytes(),
        ),
        (
            "outside_window",
            GOOD[0]
                .replace("2017-11-11T00", "2017-11-10T00")
                .replace("g1", "early")
                .into_bytes(),
        ),
        ("duplicate", GOOD[0].as_bytes().to_vec()),
        (
            "conflict",
            GOOD[0].replace("1299.00", "1300.00").into_bytes(),
        ),
        ("oversize", huge),
    ]
}

fn run(input: &[u8]) -> (Value, Vec<Value>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let input_path = dir.path().join("in.jsonl");
    std::fs::write(&input_path, input).expect("input written");
    let dead = dir.path().join("dead.jsonl");
    let output = Command::new(env!("CARGO_BIN_EXE_gmv"))
        .args(["run", "--workers", "3", "--input"])
        .arg(&input_path)
        .arg("--dead-letter")
        .arg(&dead)
        .output()
        .expect("gmv runs");
    assert!(
        output.status.success(),
        "gmv failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_slice(&output.stdout).expect("report on stdout");
    let letters = std::fs::read_to_string(&dead)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter is JSON"))
        .collect();
    (report, letters)
}

#[test]
fn every_broken_record_is_counted_kept_and_changes_no_total() {
    let good: Vec<u8> = GOOD.join("\n").into_bytes();
    let (clean, none) = run(&good);
    assert!(none.is_empty());
    // 1299.00 + 10.50 + 100 USD at 6.6490.
    assert_eq!(clean["gmv_cny"], "1974.40");
    assert_eq!(clean["mobile_gmv_cny"], "1299.00");
    let bad = bad_records();
    let mut mixed = good.clone();
    for (_, record) in &bad {
        mixed.push(b'\n');
        mixed.extend(record);
    }
    mixed.extend(b"\r\n\n   \n");
    let (report, letters) = run(&mixed);

    for field in [
        "gmv_cny",
        "gmv_usd",
        "transactions",
        "mobile_gmv_cny",
        "merchants",
        "thresholds",
        "top_merchants",
    ] {
        assert_eq!(report[field], clean[field], "{field} changed by bad input");
    }
    for reason in [
        "malformed",
        "invalid_amount",
        "unknown_currency",
        "missing_field",
        "invalid_timestamp",
        "outside_window",
        "duplicate",
        "conflict",
        "oversize",
    ] {
        let expected = bad.iter().filter(|(r, _)| *r == reason).count() as u64;
        assert_eq!(
            report["rejected"][reason].as_u64(),
            Some(expected),
            "{reason}"
        );
    }
    assert_eq!(report["accounting"]["consumed"], GOOD.len() + bad.len());
    assert_eq!(report["accounting"]["rejected"], bad.len());
    assert_eq!(letters.len(), bad.len());
    for letter in &letters {
        let line: usize = letter["origin"]
            .as_str()
            .and_then(|o| o.rsplit(':').next())
            .and_then(|n| n.parse().ok())
            .expect("origin FILE:LINE");
        let (reason, original) = &bad[line - GOOD.len() - 1];
        assert_eq!(
            letter["reason"], *reason,
            "line {line}: {}",
            letter["detail"]
        );
        assert!(!letter["detail"].as_str().unwrap_or("").is_empty());
        let record: DeadLetterRecord =
            serde_json::from_value(letter.clone()).expect("dead-letter record");
        let kept = record
            .payload_bytes()
            .unwrap_or_else(|| panic!("no payload kept: {letter}"));
        assert_eq!(&kept, original, "line {line} not kept byte for byte");
    }
}
