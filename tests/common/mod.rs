//! The independent answer shared by the end-to-end tests: plain
//! single-threaded code (serde_json values, rust_decimal, chrono and a
//! HashMap) that computes the contract's figures for an input, sharing
//! nothing with the engine but the contract in EVENTS.md, and the checks that
//! compare a report, dead letters and alerts with it.
#![allow(dead_code)] // each test binary uses its own subset

use chrono::{DateTime, FixedOffset, Timelike};
use rust_decimal::prelude::*;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// GET over plain HTTP/1.0 from a test server on 127.0.0.1; returns
/// (status, body), or `None` if it does not answer.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The pids of a process's children: a `gmv run --kafka` process's worker.
pub fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether a process is still alive (a zombie is not: it has exited).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A port on 127.0.0.1 free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub fn gmv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gmv"))
}

#[derive(Default)]
pub struct Merchant {
    pub gmv: Decimal,
    pub mobile: Decimal,
    pub transactions: u64,
    /// Every counted event of the merchant in input order: (CNY, settled_at).
    pub events: Vec<(Decimal, DateTime<FixedOffset>)>,
}

impl Merchant {
    /// The event that takes the merchant from below `threshold` to it or
    /// more, in input order: (GMV right after it, its settled_at).
    pub fn crossing(&self, threshold: Decimal) -> Option<(Decimal, DateTime<FixedOffset>)> {
        let mut gmv = Decimal::ZERO;
        for &(cny, at) in &self.events {
            let before = gmv;
            gmv += cny;
            if before < threshold && gmv >= threshold {
                return Some((gmv, at));
            }
        }
        None
    }
}

/// The report per the contract, computed the slow and obvious way. A
/// `txn_id` belongs to its merchant: redeliveries are judged among the same
/// merchant's events, in input order (EVENTS.md).
pub struct Reference {
    pub gmv: Decimal,
    pub mobile: Decimal,
    pub transactions: u64,
    pub consumed: u64,
    pub rejected: HashMap<&'static str, u64>,
    pub merchants: HashMap<String, Merchant>,
    pub per_second: HashMap<i64, u64>,
}

pub fn rate(currency: &str) -> Option<Decimal> {
    Some(match currency {
        "CNY" => Decimal::ONE,
        "USD" => dec("6.6490"),
        "HKD" => dec("0.8512"),
        "EUR" => dec("7.7350"),
        "JPY" => dec("0.0587"),
        _ => return None,
    })
}

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test literal")
}

pub fn text_of(v: &Value, field: &str) -> Result<Option<String>, &'static str> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // A field of the wrong JSON type fails the schema: malformed.
        Some(_) => Err("malformed"),
    }
}

/// What makes two versions of a transaction the same (a redelivery) or
/// different (a conflict): the contract's fields but the id, as values
/// (`1299.0` is `1299.00`, a time is its instant, a missing currency is
/// CNY); unknown extra fields are ignored, as the contract says.
pub type Content = (String, Decimal, String, String, DateTime<FixedOffset>);

/// A valid record: (txn, merchant, CNY exact to the fen, mobile, time, its content).
pub type Valid = (
    String,
    String,
    Decimal,
    bool,
    DateTime<FixedOffset>,
    Content,
);

/// Why a record is rejected, or what it is.
pub fn judge(line: &[u8]) -> Result<Valid, &'static str> {
    let v: Value = serde_json::from_slice(line).map_err(|_| "malformed")?;
    if !v.is_object() {
        return Err("malformed");
    }
    let txn = text_of(&v, "txn_id")?.ok_or("missing_field")?;
    let merchant = text_of(&v, "merchant_id")?.ok_or("missing_field")?;
    let amount_text = match v.get("amount") {
        None | Some(Value::Null) => return Err("missing_field"),
        Some(Value::String(_) | Value::Number(_)) => amount_as_written(line)?,
        Some(_) => return Err("malformed"),
    };
    let channel = text_of(&v, "channel")?.ok_or("missing_field")?;
    let settled = text_of(&v, "settled_at")?.ok_or("missing_field")?;
    if txn.is_empty() || txn.len() > 64 || merchant.is_empty() || merchant.len() > 64 {
        return Err("invalid_field");
    }
    let amount = plain_decimal(&amount_text).ok_or("invalid_amount")?;
    if amount <= Decimal::ZERO || amount.normalize().scale() > 2 {
        return Err("invalid_amount");
    }
    let currency = text_of(&v, "currency")?.unwrap_or_else(|| "CNY".into());
    let cny = (amount * rate(&currency).ok_or("unknown_currency")?)
        .round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven);
    if cny <= Decimal::ZERO || cny > dec("100000000.00") {
        return Err("invalid_amount");
    }
    let at = rfc3339(&settled).ok_or("invalid_timestamp")?;
    let content = (
        merchant.clone(),
        amount.normalize(),
        currency,
        channel.clone(),
        at,
    );
    Ok((txn, merchant, cny, channel == "mobile", at, content))
}

/// The amount as written: a string's body (escapes left in) or a number's
/// literal. `Value` keeps neither: it unescapes strings and turns numbers
/// into `f64` (`1e3` would print as `1000.0`).
fn amount_as_written(line: &[u8]) -> Result<String, &'static str> {
    #[derive(serde::Deserialize)]
    struct Amount<'a> {
        #[serde(borrow)]
        amount: &'a serde_json::value::RawValue,
    }
    let raw = serde_json::from_slice::<Amount>(line)
        .map_err(|_| "malformed")?
        .amount
        .get();
    let body = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"'));
    Ok(body.unwrap_or(raw).to_string())
}

/// The contract's amount: `[0-9]+(\.[0-9]+)?` and nothing else (no sign,
/// exponent, underscore, whitespace or escape; `Decimal::from_str_exact`
/// alone would take `1_000`), read exactly.
fn plain_decimal(text: &str) -> Option<Decimal> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|frac| !digits(frac)) {
        return None;
    }
    // Leading and trailing zeros carry no value, and would count against
    // rust_decimal's 28 digits; one each is put back so neither side of
    // the point is empty.
    let int = int.trim_start_matches('0');
    let frac = frac.unwrap_or("").trim_end_matches('0');
    Decimal::from_str_exact(&format!("0{int}.{frac}0")).ok()
}

/// The contract's RFC 3339: chrono's parser, less what it takes beyond the
/// RFC's grammar and the contract: a leap second (`:60`, which chrono keeps
/// as a nanosecond count past one second), a separator other than `T`/`t`
/// (chrono also takes a space), and a non-ASCII character such as a U+2212
/// minus sign in the offset.
fn rfc3339(text: &str) -> Option<DateTime<FixedOffset>> {
    let at = DateTime::parse_from_rfc3339(text).ok()?;
    let separator = matches!(text.as_bytes().get(10), Some(b'T' | b't'));
    let leap_second = at.nanosecond() >= 1_000_000_000;
    (text.is_ascii() && separator && !leap_second).then_some(at)
}

impl Reference {
    pub fn compute(input: &[u8]) -> Self {
        let start = DateTime::parse_from_rfc3339("2017-11-11T00:00:00+08:00").expect("literal");
        let end = DateTime::parse_from_rfc3339("2017-11-12T00:00:00+08:00").expect("literal");
        let mut seen: HashMap<(String, String), Content> = HashMap::new();
        let mut r = Reference {
            gmv: Decimal::ZERO,
            mobile: Decimal::ZERO,
            transactions: 0,
            consumed: 0,
            rejected: HashMap::new(),
            merchants: HashMap::new(),
            per_second: HashMap::new(),
        };
        for line in input.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            r.consumed += 1;
            let verdict = judge(line).and_then(|(txn, merchant, cny, mobile, at, v)| {
                if at < start || at >= end {
                    return Err("outside_window");
                }
                let key = (merchant.clone(), txn);
                match seen.get(&key) {
                    Some(first) if *first == v => Err("duplicate"),
                    Some(_) => Err("conflict"),
                    None => {
                        seen.insert(key, v);
                        Ok((merchant, cny, mobile, at))
                    }
                }
            });
            match verdict {
                Err(reason) => *r.rejected.entry(reason).or_default() += 1,
                Ok((merchant, cny, mobile, at)) => {
                    r.gmv += cny;
                    r.transactions += 1;
                    let m = r.merchants.entry(merchant).or_default();
                    m.gmv += cny;
                    m.transactions += 1;
                    m.events.push((cny, at));
                    if mobile {
                        r.mobile += cny;
                        m.mobile += cny;
                    }
                    *r.per_second.entry(at.timestamp()).or_default() += 1;
                }
            }
        }
        r
    }
}

pub fn money(v: &Value) -> Decimal {
    dec(v.as_str().expect("money is a string"))
}

/// The top-10 list against the reference's ranking.
pub fn check_top_merchants(report: &Value, want: &Reference) {
    let mut ranked: Vec<(&String, &Merchant)> = want.merchants.iter().collect();
    ranked.sort_by(|a, b| b.1.gmv.cmp(&a.1.gmv).then_with(|| a.0.cmp(b.0)));
    let top = report["top_merchants"].as_array().expect("top merchants");
    assert_eq!(top.len(), 10);
    for (got, (id, m)) in top.iter().zip(&ranked) {
        assert_eq!(got["merchant_id"], id.as_str());
        assert_eq!(money(&got["gmv_cny"]), m.gmv);
        assert_eq!(got["transactions"], m.transactions);
    }
}

/// The figures a snapshot and a report share: totals, shares, peak,
/// thresholds, rejections, accounting and the top list.
pub fn check_figures(report: &Value, want: &Reference, thresholds: &[Decimal]) {
    assert_eq!(report["window"]["start"], "2017-11-11T00:00:00+08:00");
    assert_eq!(report["window"]["end"], "2017-11-12T00:00:00+08:00");
    assert_eq!(money(&report["gmv_cny"]), want.gmv);
    assert_eq!(
        money(&report["gmv_usd"]),
        (want.gmv * dec("0.1504")).round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
    );
    assert_eq!(report["transactions"], want.transactions);
    assert_eq!(money(&report["mobile_gmv_cny"]), want.mobile);
    let share = (want.mobile / want.gmv).to_f64().expect("share");
    assert!((report["mobile_share"].as_f64().expect("share") - share).abs() < 1e-12);
    assert!(
        (0.85..0.95).contains(&share),
        "about 90% mobile, got {share}"
    );

    let (peak_second, peak) = want
        .per_second
        .iter()
        .max_by_key(|(second, count)| (**count, std::cmp::Reverse(**second)))
        .expect("events");
    assert_eq!(report["peak_tps"], *peak);
    let peak_at =
        DateTime::parse_from_rfc3339(report["peak_second"].as_str().expect("peak second"))
            .expect("rfc3339");
    assert_eq!(peak_at.timestamp(), *peak_second);
    assert_eq!(peak_at.nanosecond(), 0);

    assert_eq!(report["merchants"], want.merchants.len());
    for (i, threshold) in thresholds.iter().enumerate() {
        let over = want
            .merchants
            .values()
            .filter(|m| m.gmv >= *threshold)
            .count();
        assert_eq!(money(&report["thresholds"][i]["cny"]), *threshold);
        assert_eq!(
            report["thresholds"][i]["merchants"], over,
            "threshold {threshold}"
        );
        assert!(over > 0, "test data must cross threshold {threshold}");
    }

    let rejected = report["rejected"].as_object().expect("rejected");
    for (reason, count) in rejected {
        assert_eq!(
            count.as_u64(),
            Some(want.rejected.get(reason.as_str()).copied().unwrap_or(0)),
            "{reason}"
        );
    }
    for reason in want.rejected.keys() {
        assert!(
            rejected.contains_key(*reason),
            "reason {reason} missing from the report"
        );
    }
    for reason in [
        "duplicate",
        "outside_window",
        "malformed",
        "invalid_amount",
        "invalid_timestamp",
        "missing_field",
    ] {
        assert!(
            want.rejected.get(reason).copied().unwrap_or(0) > 0,
            "test data must have {reason}"
        );
    }
    let total_rejected: u64 = want.rejected.values().sum();
    assert_eq!(report["accounting"]["consumed"], want.consumed);
    assert_eq!(report["accounting"]["counted"], want.transactions);
    assert_eq!(report["accounting"]["rejected"], total_rejected);
    assert_eq!(want.consumed, want.transactions + total_rejected);

    check_top_merchants(report, want);
}

/// Every field of a report: the figures, the merchant list and the series.
pub fn check_report(report: &Value, want: &Reference, thresholds: &[Decimal]) {
    check_figures(report, want, thresholds);
    let list = report["merchant_list"].as_array().expect("merchant list");
    assert_eq!(list.len(), want.merchants.len());
    for got in list {
        let m = &want.merchants[got["merchant_id"].as_str().expect("id")];
        assert_eq!(money(&got["gmv_cny"]), m.gmv);
        assert_eq!(money(&got["mobile_gmv_cny"]), m.mobile);
        assert_eq!(got["transactions"], m.transactions);
    }
    let counts = report["series"]["per_second"]["counts"]
        .as_array()
        .expect("per-second series");
    let start = DateTime::parse_from_rfc3339("2017-11-11T00:00:00+08:00")
        .expect("literal")
        .timestamp();
    for (second, count) in counts.iter().enumerate() {
        let want_count = want
            .per_second
            .get(&(start + second as i64))
            .copied()
            .unwrap_or(0);
        assert_eq!(count.as_u64(), Some(want_count), "second {second}");
    }
    let minute_gmv: Decimal = report["series"]["per_minute"]
        .as_array()
        .expect("per-minute series")
        .iter()
        .map(|m| money(&m["gmv_cny"]))
        .sum();
    assert_eq!(minute_gmv, want.gmv);
}

pub fn check_dead_letters(path: &Path, want: &Reference, input: &[u8]) {
    let text = std::fs::read_to_string(path).expect("dead letters");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter is JSON"))
        .collect();
    assert_eq!(lines.len() as u64, want.rejected.values().sum::<u64>());
    let input_lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    for letter in &lines {
        let origin = letter["origin"].as_str().expect("origin");
        let line_no: usize = origin
            .rsplit(':')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("origin FILE:LINE");
        let original = input_lines[line_no - 1];
        match (&letter["payload"], &letter["payload_hex"]) {
            (Value::String(p), _) => assert_eq!(p.as_bytes(), original, "{origin}"),
            (_, Value::String(hex)) => assert_eq!(hex.len(), original.len() * 2, "{origin}"),
            _ => panic!("dead letter without payload: {letter}"),
        }
        assert_eq!(
            judge_reason(original, letter),
            letter["reason"].as_str().expect("reason")
        );
    }
}

/// The reference's reason for a line, given that it was rejected (duplicates
/// and window are decided by context, so they are taken from the letter when
/// the record itself is valid).
pub fn judge_reason<'a>(line: &[u8], letter: &'a Value) -> &'a str {
    let said = letter["reason"].as_str().expect("reason");
    match judge(line) {
        Err(reason) => {
            assert_eq!(
                reason, said,
                "line judged {reason}, dead letter says {said}"
            );
            said
        }
        Ok(_) => {
            assert!(
                ["duplicate", "conflict", "outside_window"].contains(&said),
                "valid record rejected as {said}"
            );
            said
        }
    }
}

pub fn check_alerts(path: &Path, report: &Value, want: &Reference) {
    let text = std::fs::read_to_string(path).expect("alerts");
    let alerts: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert is JSON"))
        .collect();
    check_alert_list(&alerts, report, want);
    assert_eq!(
        report["alerts"].as_array().expect("report alerts").len(),
        alerts.len()
    );
}

/// Each (merchant, threshold) the reference says was crossed, announced
/// exactly once, and nothing else.
pub fn check_alert_list(alerts: &[Value], report: &Value, want: &Reference) {
    let announced: BTreeSet<(String, Decimal)> = alerts
        .iter()
        .map(|a| {
            (
                a["merchant_id"].as_str().expect("id").to_owned(),
                money(&a["threshold_cny"]),
            )
        })
        .collect();
    assert_eq!(
        announced.len(),
        alerts.len(),
        "an alert was announced twice"
    );
    let mut expected = BTreeSet::new();
    for t in report["thresholds"].as_array().expect("thresholds") {
        let threshold = money(&t["cny"]);
        for (id, m) in &want.merchants {
            if m.gmv >= threshold {
                expected.insert((id.clone(), threshold));
            }
        }
    }
    let missing: Vec<_> = expected.difference(&announced).take(5).collect();
    let extra: Vec<_> = announced.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} alerts, {} expected; missing (first 5) {missing:?}; not expected {extra:?}",
        announced.len(),
        expected.len()
    );
    // Each names the event that crossed it in its merchant's input order.
    for a in alerts {
        let id = a["merchant_id"].as_str().expect("id");
        let threshold = money(&a["threshold_cny"]);
        let (gmv, at) = want.merchants[id]
            .crossing(threshold)
            .expect("a crossing the reference knows");
        let said = DateTime::parse_from_rfc3339(a["settled_at"].as_str().expect("settled_at"))
            .expect("rfc3339");
        assert_eq!(
            (money(&a["gmv_cny"]), said),
            (gmv, at),
            "{id} over {threshold}: the alert names another event than the input-order one"
        );
    }
}
