//! The post-event report as data (`report.json`), and [`build`], which makes
//! it from a run report and an optional previous year's figures.
//!
//! `report.json` is the contract of `../shared/EVENTS.md` (the run's figures,
//! unchanged) plus what the day's story needs: the headline paragraph,
//! year-over-year growth, the change in mobile share, GMV by hour, and for
//! each threshold the merchants that passed it with the time each crossed.
//! It keeps `schema_version`, so this year's report.json can be next year's
//! `--compare` input.

use crate::error::{ContentError, Role};
use crate::numbers::round4;
use chrono::{DateTime, Datelike};
use gmv_core::money::{self, format_fen, Fen};
use gmv_core::output::{share, Figures, LatencyMs, Report, WindowRange, REPORT_SCHEMA_VERSION};
use gmv_core::time::{parse_rfc3339_millis, EpochMillis, Window};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const HOUR_MS: i64 = 3_600_000;

/// The post-event report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostEventReport {
    /// Layout version (the run report's), so this file can serve as a later `--compare`.
    pub schema_version: u32,
    /// The festival as people name it: `11.11 2017` (month.day year of the window's start).
    pub title: String,
    /// The paragraph that tells the day in figures (see [`crate::headline()`]).
    pub headline: String,
    /// The run's contract figures, unchanged.
    #[serde(flatten)]
    pub figures: Figures,
    /// The run's latency percentiles.
    #[serde(default)]
    pub latency_ms: LatencyMs,
    /// Year over year, when a previous report was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// GMV by hour of the window, every hour present (zeros included).
    pub hourly: Vec<HourRecord>,
    /// For each threshold, the merchants that passed it, in order of crossing.
    pub threshold_ladder: Vec<ThresholdStep>,
}

/// This year against the previous report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The previous festival's name, e.g. `11.11 2016`.
    pub previous_title: String,
    /// The previous festival window.
    pub previous_window: WindowRange,
    /// Previous GMV, CNY.
    pub previous_gmv_cny: String,
    /// GMV growth as a fraction (`0.39` is +39%); null when the previous GMV was zero.
    pub gmv_growth: Option<f64>,
    /// Previous counted transactions.
    pub previous_transactions: u64,
    /// Growth in transactions as a fraction; null when there were none before.
    pub transactions_growth: Option<f64>,
    /// Previous mobile share of GMV.
    pub previous_mobile_share: f64,
    /// This year's mobile share minus the previous (`0.08` is +8 percentage points).
    pub mobile_share_change: f64,
    /// Previous peak transactions per second.
    pub previous_peak_tps: u64,
    /// Growth of the peak as a fraction; null when the previous peak was zero.
    pub peak_tps_growth: Option<f64>,
    /// Merchants over each of this year's thresholds, then and now.
    pub thresholds: Vec<ThresholdComparison>,
}

/// One threshold, this year and the previous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdComparison {
    /// The threshold, CNY.
    pub cny: String,
    /// Merchants at or over it this year.
    pub merchants: u64,
    /// Merchants at or over it the previous year; null if that report had no such threshold.
    pub previous_merchants: Option<u64>,
}

/// One hour of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourRecord {
    /// Start of the hour.
    pub hour: String,
    /// GMV settled in it, CNY.
    pub gmv_cny: String,
    /// Mobile GMV settled in it, CNY.
    pub mobile_gmv_cny: String,
    /// Transactions settled in it.
    pub transactions: u64,
    /// Mobile GMV / GMV in that hour (4 places).
    pub mobile_share: f64,
}

/// One rung of the threshold ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdStep {
    /// The threshold, CNY.
    pub cny: String,
    /// Merchants at or over it at the end of the window (the contract figure).
    pub merchants: u64,
    /// Each crossing announced, earliest first (ties by merchant id).
    pub crossings: Vec<CrossingRecord>,
}

/// When one merchant passed one threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrossingRecord {
    /// The merchant.
    pub merchant_id: String,
    /// Event time of the transaction that crossed it.
    pub settled_at: String,
    /// The merchant's GMV right after that transaction, CNY.
    pub gmv_cny: String,
}

/// Builds the post-event report from a run report and, optionally, the
/// previous year's figures. Pure: the same inputs give the same report.
pub fn build(run: &Report, previous: Option<&Figures>) -> Result<PostEventReport, ContentError> {
    let figures = &run.figures;
    let window = window_of(&figures.window, Role::Run, "window")?;
    let comparison = previous.map(|p| compare(figures, p)).transpose()?;
    let mut report = PostEventReport {
        schema_version: REPORT_SCHEMA_VERSION,
        title: title_of(&window),
        headline: String::new(),
        figures: figures.clone(),
        latency_ms: run.latency_ms.clone(),
        comparison,
        hourly: hourly(run, &window)?,
        threshold_ladder: ladder(run)?,
    };
    report.headline = crate::headline::headline(&report);
    Ok(report)
}

/// The festival window of a report, checked.
pub fn window_of(range: &WindowRange, role: Role, field: &str) -> Result<Window, ContentError> {
    let time = |key: &str, text: &str| {
        DateTime::parse_from_rfc3339(text).map_err(|e| {
            ContentError::new(
                role,
                format!("{field}.{key}"),
                format!("`{text}` is not an RFC 3339 time: {e}"),
            )
        })
    };
    let (start, end) = (time("start", &range.start)?, time("end", &range.end)?);
    Window::new(start, end).ok_or_else(|| {
        ContentError::new(
            role,
            field,
            "end must be after start, both on whole seconds, at most 31 days apart",
        )
    })
}

/// `11.11 2017`: month.day year of the window's start, in its own offset.
pub fn title_of(window: &Window) -> String {
    match DateTime::parse_from_rfc3339(&window.start_rfc3339()) {
        Ok(start) => format!("{}.{} {}", start.month(), start.day(), start.year()),
        Err(_) => window.start_rfc3339(),
    }
}

/// An amount (`"123.45"`, `"0.00"`) as fen; zero is allowed here, unlike in events.
pub fn parse_fen(text: &str, role: Role, field: impl Into<String>) -> Result<Fen, ContentError> {
    if Decimal::from_str_exact(text).is_ok_and(|d| d.is_zero()) {
        return Ok(0);
    }
    money::parse_minor_units(text)
        .map_err(|e| ContentError::new(role, field, format!("`{text}` is not a CNY amount: {e}")))
}

fn parse_time(
    text: &str,
    role: Role,
    field: impl Into<String>,
) -> Result<EpochMillis, ContentError> {
    parse_rfc3339_millis(text).ok_or_else(|| {
        ContentError::new(
            role,
            field,
            format!("`{text}` is not an RFC 3339 time with offset"),
        )
    })
}

fn growth(now: u64, before: u64) -> Option<f64> {
    (before > 0).then(|| round4(now as f64 / before as f64 - 1.0))
}

fn compare(now: &Figures, before: &Figures) -> Result<Comparison, ContentError> {
    let previous_window = window_of(&before.window, Role::Comparison, "window")?;
    let gmv = parse_fen(&now.gmv_cny, Role::Run, "gmv_cny")?;
    let previous_gmv = parse_fen(&before.gmv_cny, Role::Comparison, "gmv_cny")?;
    let mut previous_by_threshold = BTreeMap::new();
    for (i, t) in before.thresholds.iter().enumerate() {
        let fen = parse_fen(&t.cny, Role::Comparison, format!("thresholds[{i}].cny"))?;
        previous_by_threshold.insert(fen, t.merchants);
    }
    let thresholds = now
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let fen = parse_fen(&t.cny, Role::Run, format!("thresholds[{i}].cny"))?;
            Ok(ThresholdComparison {
                cny: t.cny.clone(),
                merchants: t.merchants,
                previous_merchants: previous_by_threshold.get(&fen).copied(),
            })
        })
        .collect::<Result<_, ContentError>>()?;
    Ok(Comparison {
        previous_title: title_of(&previous_window),
        previous_window: before.window.clone(),
        previous_gmv_cny: before.gmv_cny.clone(),
        gmv_growth: growth(gmv, previous_gmv),
        previous_transactions: before.transactions,
        transactions_growth: growth(now.transactions, before.transactions),
        previous_mobile_share: before.mobile_share,
        mobile_share_change: round4(now.mobile_share - before.mobile_share),
        previous_peak_tps: before.peak_tps,
        peak_tps_growth: growth(now.peak_tps, before.peak_tps),
        thresholds,
    })
}

fn hourly(run: &Report, window: &Window) -> Result<Vec<HourRecord>, ContentError> {
    let hours = window.seconds().div_ceil(3600);
    let mut sums = vec![(0u64, 0u64, 0u64); hours];
    for (i, m) in run.series.per_minute.iter().enumerate() {
        let field = |name: &str| format!("series.per_minute[{i}].{name}");
        let at = parse_time(&m.minute, Role::Run, field("minute"))?;
        if !window.contains(at) {
            return Err(ContentError::new(
                Role::Run,
                field("minute"),
                format!("`{}` is outside the festival window", m.minute),
            ));
        }
        let hour = ((at - window.start_millis()) / HOUR_MS) as usize;
        let gmv = parse_fen(&m.gmv_cny, Role::Run, field("gmv_cny"))?;
        let mobile = parse_fen(&m.mobile_gmv_cny, Role::Run, field("mobile_gmv_cny"))?;
        let slot = &mut sums[hour];
        slot.0 += gmv;
        slot.1 += mobile;
        slot.2 += m.transactions;
    }
    Ok(sums
        .into_iter()
        .enumerate()
        .map(|(hour, (gmv, mobile, transactions))| HourRecord {
            hour: window.format(window.start_millis() + hour as i64 * HOUR_MS),
            gmv_cny: format_fen(gmv),
            mobile_gmv_cny: format_fen(mobile),
            transactions,
            mobile_share: round4(share(mobile, gmv)),
        })
        .collect())
}

fn ladder(run: &Report) -> Result<Vec<ThresholdStep>, ContentError> {
    let mut crossings: BTreeMap<Fen, Vec<(EpochMillis, CrossingRecord)>> = BTreeMap::new();
    for (i, a) in run.alerts.iter().enumerate() {
        let threshold = parse_fen(
            &a.threshold_cny,
            Role::Run,
            format!("alerts[{i}].threshold_cny"),
        )?;
        let at = parse_time(&a.settled_at, Role::Run, format!("alerts[{i}].settled_at"))?;
        crossings.entry(threshold).or_default().push((
            at,
            CrossingRecord {
                merchant_id: a.merchant_id.clone(),
                settled_at: a.settled_at.clone(),
                gmv_cny: a.gmv_cny.clone(),
            },
        ));
    }
    run.figures
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let fen = parse_fen(&t.cny, Role::Run, format!("thresholds[{i}].cny"))?;
            let mut list = crossings.remove(&fen).unwrap_or_default();
            list.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.merchant_id.cmp(&b.1.merchant_id))
            });
            Ok(ThresholdStep {
                cny: t.cny.clone(),
                merchants: t.merchants,
                crossings: list.into_iter().map(|(_, c)| c).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(txn: &str, merchant: &str, amount: &str, channel: &str, at: &str) -> String {
        format!(
            r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"{channel}","settled_at":"{at}"}}"#
        )
    }

    /// Two merchants; m-b crosses CNY 100M at 10:00, m-a at 01:30.
    fn small_run() -> Report {
        let events = [
            (
                "t1",
                "m-b",
                "60000000.00",
                "mobile",
                "2017-11-11T00:10:00+08:00",
            ),
            (
                "t2",
                "m-a",
                "70000000.00",
                "pc",
                "2017-11-11T00:20:00+08:00",
            ),
            (
                "t3",
                "m-a",
                "40000000.00",
                "mobile",
                "2017-11-11T01:30:00+08:00",
            ),
            (
                "t4",
                "m-b",
                "50000000.00",
                "mobile",
                "2017-11-11T10:00:00.250+08:00",
            ),
        ];
        let records: Vec<String> = events
            .into_iter()
            .map(|(txn, m, amount, channel, at)| event(txn, m, amount, channel, at))
            .collect();
        crate::test_support::report_of(&records)
    }

    #[test]
    fn hours_sum_the_minutes_and_every_hour_is_listed() {
        let report = build(&small_run(), None).unwrap();
        assert_eq!(report.hourly.len(), 24);
        assert_eq!(report.hourly[0].hour, "2017-11-11T00:00:00+08:00");
        assert_eq!(report.hourly[0].gmv_cny, "130000000.00");
        assert_eq!(report.hourly[0].mobile_share, round4(60.0 / 130.0));
        assert_eq!(report.hourly[1].gmv_cny, "40000000.00");
        assert_eq!(report.hourly[2].gmv_cny, "0.00");
        assert_eq!(report.hourly[10].transactions, 1);
        assert_eq!(report.title, "11.11 2017");
        assert!(report.comparison.is_none());
    }

    #[test]
    fn ladder_lists_crossings_in_time_order() {
        let report = build(&small_run(), None).unwrap();
        let first = &report.threshold_ladder[0];
        assert_eq!(first.cny, "100000000.00");
        assert_eq!(first.merchants, 2);
        let ids: Vec<_> = first
            .crossings
            .iter()
            .map(|c| c.merchant_id.as_str())
            .collect();
        assert_eq!(ids, ["m-a", "m-b"]);
        assert_eq!(
            first.crossings[1].settled_at,
            "2017-11-11T10:00:00.250+08:00"
        );
        assert!(report.threshold_ladder[1].crossings.is_empty());
    }

    #[test]
    fn comparison_gives_growth_and_share_change() {
        let run = small_run();
        let mut before = run.figures.clone();
        before.window = WindowRange {
            start: "2016-11-11T00:00:00+08:00".into(),
            end: "2016-11-12T00:00:00+08:00".into(),
        };
        before.gmv_cny = "160000000.00".into();
        before.mobile_share = 0.5;
        before.peak_tps = 0;
        before.thresholds.truncate(1);
        before.thresholds[0].merchants = 1;
        let report = build(&run, Some(&before)).unwrap();
        let c = report.comparison.unwrap();
        assert_eq!(c.previous_title, "11.11 2016");
        assert_eq!(c.gmv_growth, Some(round4(220.0 / 160.0 - 1.0)));
        assert_eq!(c.peak_tps_growth, None);
        assert_eq!(
            c.mobile_share_change,
            round4(run.figures.mobile_share - 0.5)
        );
        assert_eq!(c.thresholds[0].previous_merchants, Some(1));
        assert_eq!(c.thresholds[2].previous_merchants, None);
    }

    #[test]
    fn bad_values_are_named_by_field() {
        let mut run = small_run();
        run.series.per_minute[1].minute = "yesterday".into();
        let e = build(&run, None).unwrap_err();
        assert_eq!(e.field, "series.per_minute[1].minute");
        let mut run = small_run();
        run.series.per_minute[0].minute = "2017-11-12T00:00:00+08:00".into();
        assert!(build(&run, None)
            .unwrap_err()
            .problem
            .contains("outside the festival window"));
        let mut run = small_run();
        run.alerts[0].threshold_cny = "lots".into();
        assert_eq!(
            build(&run, None).unwrap_err().field,
            "alerts[0].threshold_cny"
        );
        let mut run = small_run();
        run.figures.window.end = run.figures.window.start.clone();
        assert_eq!(build(&run, None).unwrap_err().field, "window");
    }

    #[test]
    fn zero_amounts_parse() {
        assert_eq!(parse_fen("0.00", Role::Run, "x"), Ok(0));
        assert_eq!(parse_fen("0", Role::Run, "x"), Ok(0));
        assert_eq!(parse_fen("12.30", Role::Run, "x"), Ok(1230));
        assert!(parse_fen("-1.00", Role::Run, "x").is_err());
    }
}
