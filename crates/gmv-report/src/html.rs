//! `report.html`: one self-contained page (inline CSS and SVG, nothing
//! fetched) that tells the day: the headline paragraph, the key figures, the
//! four charts, the threshold ladder, the top merchants, GMV by hour and the
//! audit line. Every value from the input is HTML-escaped.

use crate::charts::{draw_charts, Charts};
use crate::error::OutputError;
use crate::model::{PostEventReport, ThresholdStep};
use crate::numbers::{
    amount_short, cny_words, fixed, group_decimal_text, group_u64, percent, percent_1dp,
    signed_percent, signed_points, usd_short,
};
use chrono::DateTime;
use gmv_core::output::Report;
use gmv_core::Reason;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::fmt::Write;

/// The page for `report`, with charts drawn from the run's time series.
pub fn render_html(run: &Report, report: &PostEventReport) -> Result<String, OutputError> {
    let charts = draw_charts(run, report)?;
    Ok(page(report, &charts))
}

/// The page from a report and its already drawn charts.
pub fn page(report: &PostEventReport, charts: &Charts) -> String {
    let f = &report.figures;
    let title = esc(&report.title);
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: the day in figures</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
<h1>{title}: the day in figures</h1>
<p class="window">Festival window {start} to {end}</p>
</header>
<p id="headline" class="headline">{headline}</p>
"#,
        start = esc(&f.window.start),
        end = esc(&f.window.end),
        headline = esc(&report.headline),
    );
    key_figures(&mut h, report);
    chart_section(
        &mut h,
        "chart-cumulative-gmv",
        "Cumulative GMV",
        "GMV settled since the window opened, minute by minute.",
        &charts.cumulative_gmv,
    );
    chart_section(
        &mut h,
        "chart-tps",
        "Transactions per second",
        "The busiest second of each minute; the red dot marks the busiest second of the day.",
        &charts.tps,
    );
    chart_section(
        &mut h,
        "chart-mobile-share",
        "Mobile share of GMV",
        "Share of GMV paid on mobile, per quarter hour, against the whole day.",
        &charts.mobile_share,
    );
    chart_section(
        &mut h,
        "chart-threshold-ladder",
        "Threshold ladder",
        "How many merchants had passed each GMV threshold, over the day.",
        &charts.threshold_ladder,
    );
    ladder_table(&mut h, report);
    top_merchants(&mut h, report);
    hourly(&mut h, report);
    audit(&mut h, report);
    h.push_str("<footer>Made by gmv-report from the run's report.json. Money in CNY unless marked; times in the festival's own offset.</footer>\n</main>\n</body>\n</html>\n");
    h
}

const CSS: &str = "
:root { --ink: #1d232b; --muted: #5b6470; --line: #dde1e6; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f6f8; color: var(--ink);
  font: 16px/1.5 system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'DejaVu Sans', sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 30px; margin: 8px 0 0; }
h2 { font-size: 22px; margin: 36px 0 6px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.window { color: var(--muted); margin: 2px 0 16px; }
.headline { font-size: 19px; line-height: 1.6; background: #eef5fb; border-left: 4px solid var(--accent);
  padding: 14px 18px; margin: 0 0 12px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; margin: 16px 0 0; }
.figure { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; margin: 0; }
.figure dt { color: var(--muted); font-size: 14px; }
.figure dd { margin: 0; }
.figure .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.figure .note { color: var(--muted); font-size: 14px; }
figure.chart { margin: 8px 0 0; }
figure.chart svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 14px; margin: 0 0 4px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; margin-top: 8px; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-size: 14px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.id, td.share { white-space: nowrap; }
.passed { white-space: nowrap; margin-right: 12px; }
table.compact { width: auto; min-width: 360px; }
.bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px; vertical-align: middle; }
.hours { columns: 2; column-gap: 32px; }
.hours table { break-inside: avoid; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
";

/// HTML text escaping.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn decimal(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text).ok()
}

/// A money text in words, or as given when it is not a number.
fn words(text: &str, form: fn(Decimal) -> String) -> String {
    decimal(text).map_or_else(|| text.to_string(), form)
}

/// `10:00:00` from an RFC 3339 time; the text as given if it is not one.
fn clock(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map_or_else(|_| text.to_string(), |t| t.format("%H:%M:%S").to_string())
}

/// One key figure: `data-figure` names the report.json field it shows and
/// `data-value` holds that field's exact value; the text is for people.
fn figure(h: &mut String, field: &str, exact: &str, label: &str, value: &str, note: &str) {
    let _ = write!(
        h,
        "<div class=\"figure\"><dt>{}</dt><dd class=\"value\" data-figure=\"{}\" data-value=\"{}\">{}</dd>",
        esc(label),
        esc(field),
        esc(exact),
        esc(value)
    );
    if !note.is_empty() {
        let _ = write!(h, "<dd class=\"note\">{}</dd>", esc(note));
    }
    h.push_str("</div>\n");
}

fn key_figures(h: &mut String, report: &PostEventReport) {
    let f = &report.figures;
    let c = report.comparison.as_ref();
    h.push_str("<section id=\"figures\"><h2>Key figures</h2>\n<dl class=\"figures\">\n");
    figure(
        h,
        "gmv_cny",
        &f.gmv_cny,
        "GMV",
        &words(&f.gmv_cny, cny_words),
        &format!("CNY {}", group_decimal_text(&f.gmv_cny)),
    );
    figure(
        h,
        "gmv_usd",
        &f.gmv_usd,
        "GMV in US dollars",
        &words(&f.gmv_usd, usd_short),
        &format!("US${}", group_decimal_text(&f.gmv_usd)),
    );
    if let Some(c) = c {
        if let Some(g) = c.gmv_growth {
            let note = format!(
                "on {}: {}",
                c.previous_title,
                words(&c.previous_gmv_cny, cny_words)
            );
            figure(
                h,
                "comparison.gmv_growth",
                &g.to_string(),
                "GMV growth",
                &signed_percent(g),
                &note,
            );
        }
    }
    let tx_note = match c.and_then(|c| c.transactions_growth.map(|g| (c, g))) {
        Some((c, g)) => format!(
            "{} on {} ({})",
            signed_percent(g),
            c.previous_title,
            group_u64(c.previous_transactions)
        ),
        None => String::new(),
    };
    figure(
        h,
        "transactions",
        &f.transactions.to_string(),
        "Transactions",
        &group_u64(f.transactions),
        &tx_note,
    );
    let mut mobile_note = format!("about {}", percent(f.mobile_share));
    if let Some(c) = c {
        let _ = write!(
            mobile_note,
            "; {} on {} ({})",
            percent(c.previous_mobile_share),
            c.previous_title,
            signed_points(c.mobile_share_change)
        );
    }
    figure(
        h,
        "mobile_share",
        &f.mobile_share.to_string(),
        "Mobile share of GMV",
        &percent_1dp(f.mobile_share),
        &mobile_note,
    );
    let peak_note = match (&f.peak_second, c) {
        (Some(at), Some(c)) => format!(
            "at {}; {} on {}",
            clock(at),
            group_u64(c.previous_peak_tps),
            c.previous_title
        ),
        (Some(at), None) => format!("at {}", clock(at)),
        (None, _) => String::new(),
    };
    figure(
        h,
        "peak_tps",
        &f.peak_tps.to_string(),
        "Peak transactions per second",
        &group_u64(f.peak_tps),
        &peak_note,
    );
    figure(
        h,
        "merchants",
        &f.merchants.to_string(),
        "Merchants with sales",
        &group_u64(f.merchants),
        "",
    );
    for (i, t) in f.thresholds.iter().enumerate() {
        let previous = c
            .and_then(|c| c.thresholds.get(i))
            .and_then(|p| p.previous_merchants)
            .zip(c)
            .map(|(n, c)| format!("{} on {}", group_u64(n), c.previous_title))
            .unwrap_or_default();
        figure(
            h,
            &format!("thresholds[{i}].merchants"),
            &t.merchants.to_string(),
            &format!("Merchants past CNY {}", words(&t.cny, amount_short)),
            &group_u64(t.merchants),
            &previous,
        );
    }
    h.push_str("</dl>\n</section>\n");
}

fn chart_section(h: &mut String, id: &str, title: &str, caption: &str, svg: &str) {
    let _ = write!(
        h,
        "<section id=\"{id}\"><h2>{title}</h2>\n<figure class=\"chart\"><figcaption>{caption}</figcaption>\n{svg}</figure>\n</section>\n"
    );
}

fn ladder_table(h: &mut String, report: &PostEventReport) {
    let c = report.comparison.as_ref();
    h.push_str("<section id=\"thresholds\"><h2>Merchants past each threshold</h2>\n<table>\n<thead><tr><th>Threshold</th><th class=\"num\">Merchants</th>");
    if let Some(c) = c {
        let _ = write!(h, "<th class=\"num\">On {}</th>", esc(&c.previous_title));
    }
    h.push_str("<th>First to pass</th><th>Last to pass</th></tr></thead>\n<tbody>\n");
    for (i, step) in report.threshold_ladder.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>CNY {}</td><td class=\"num\">{}</td>",
            esc(&words(&step.cny, amount_short)),
            group_u64(step.merchants)
        );
        if let Some(c) = c {
            let previous = c
                .thresholds
                .get(i)
                .and_then(|t| t.previous_merchants)
                .map_or_else(|| "–".to_string(), group_u64);
            let _ = write!(h, "<td class=\"num\">{previous}</td>");
        }
        let who = |crossing: Option<&crate::model::CrossingRecord>| match crossing {
            Some(x) => format!("{} at {}", esc(&x.merchant_id), esc(&clock(&x.settled_at))),
            None => "–".into(),
        };
        let _ = writeln!(
            h,
            "<td>{}</td><td>{}</td></tr>",
            who(step.crossings.first()),
            who(step.crossings.last())
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

/// merchant → (threshold in words, crossing time) for every threshold it passed.
fn passed_by_merchant(ladder: &[ThresholdStep]) -> HashMap<&str, Vec<(String, String)>> {
    let mut out: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for step in ladder {
        for c in &step.crossings {
            out.entry(c.merchant_id.as_str())
                .or_default()
                .push((words(&step.cny, amount_short), clock(&c.settled_at)));
        }
    }
    out
}

fn top_merchants(h: &mut String, report: &PostEventReport) {
    let f = &report.figures;
    let total = decimal(&f.gmv_cny).unwrap_or_default();
    let top = f
        .top_merchants
        .first()
        .and_then(|m| decimal(&m.gmv_cny))
        .unwrap_or_default();
    let passed = passed_by_merchant(&report.threshold_ladder);
    let _ = write!(
        h,
        "<section id=\"top-merchants\"><h2>Top {} merchants</h2>\n<table>\n<thead><tr><th class=\"num\">#</th><th>Merchant</th><th class=\"num\">GMV (CNY)</th><th>Share of the day</th><th class=\"num\">Transactions</th><th class=\"num\">Mobile</th><th>Passed CNY threshold at</th></tr></thead>\n<tbody>\n",
        f.top_merchants.len()
    );
    for (i, m) in f.top_merchants.iter().enumerate() {
        let gmv = decimal(&m.gmv_cny).unwrap_or_default();
        let ratio = |part: Decimal, whole: Decimal| {
            if whole.is_zero() {
                0.0
            } else {
                rust_decimal::prelude::ToPrimitive::to_f64(&(part / whole)).unwrap_or(0.0)
            }
        };
        let width = (ratio(gmv, top) * 120.0).round() as u32;
        let thresholds = passed
            .get(m.merchant_id.as_str())
            .map(|list| {
                list.iter()
                    .map(|(amount, at)| {
                        format!("<span class=\"passed\">{} {}</span>", esc(amount), esc(at))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            h,
            "<tr><td class=\"num\">{}</td><td class=\"id\">{}</td><td class=\"num\">{}</td><td class=\"share\"><span class=\"bar\" style=\"width:{width}px\"></span> {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            i + 1,
            esc(&m.merchant_id),
            esc(&group_decimal_text(&m.gmv_cny)),
            percent_1dp(ratio(gmv, total)),
            group_u64(m.transactions),
            percent(m.mobile_share),
            thresholds
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
}

fn hourly(h: &mut String, report: &PostEventReport) {
    let million = Decimal::from(1_000_000);
    let largest = report
        .hourly
        .iter()
        .filter_map(|hour| decimal(&hour.gmv_cny))
        .max()
        .unwrap_or_default();
    let (unit, divisor, places) = if largest >= million {
        ("CNY million", million, 1)
    } else {
        ("CNY", Decimal::ONE, 2)
    };
    h.push_str("<section id=\"hourly\"><h2>GMV by hour</h2>\n<div class=\"hours\">\n");
    let half = report.hourly.len().div_ceil(2).max(1);
    for chunk in report.hourly.chunks(half) {
        let _ = write!(
            h,
            "<table>\n<thead><tr><th>Hour</th><th class=\"num\">GMV ({unit})</th><th class=\"num\">Transactions</th><th class=\"num\">Mobile</th></tr></thead>\n<tbody>\n"
        );
        for hour in chunk {
            let start = DateTime::parse_from_rfc3339(&hour.hour)
                .map_or_else(|_| hour.hour.clone(), |t| t.format("%H:00").to_string());
            let gmv = decimal(&hour.gmv_cny).map_or_else(
                || hour.gmv_cny.clone(),
                |d| group_decimal_text(&fixed(d / divisor, places)),
            );
            let mobile = if hour.transactions == 0 {
                "–".into()
            } else {
                percent_1dp(hour.mobile_share)
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{mobile}</td></tr>",
                esc(&start),
                esc(&gmv),
                group_u64(hour.transactions),
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</div>\n</section>\n");
}

fn audit(h: &mut String, report: &PostEventReport) {
    let f = &report.figures;
    let a = &f.accounting;
    let balanced = a.consumed == a.counted + a.rejected;
    let _ = write!(
        h,
        "<section id=\"audit\"><h2>Audit</h2>\n<p>{} records read: {} counted in GMV and {} rejected ({}).</p>\n<table class=\"compact\">\n<thead><tr><th>Rejected because</th><th class=\"num\">Records</th></tr></thead>\n<tbody>\n",
        group_u64(a.consumed),
        group_u64(a.counted),
        group_u64(a.rejected),
        if balanced { "balanced" } else { "NOT balanced: counted + rejected differs from read" }
    );
    for reason in Reason::ALL {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            reason.as_str().replace('_', " "),
            group_u64(f.rejected.get(reason))
        );
    }
    h.push_str("</tbody>\n</table>\n");
    let l = &report.latency_ms;
    if l.count == 0 {
        h.push_str("<p>No processing latency was recorded for this run.</p>\n");
    } else {
        let _ = writeln!(
            h,
            "<p>Processing latency over {} events: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms.</p>",
            group_u64(l.count),
            l.p50,
            l.p99,
            l.p999,
            l.max
        );
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc(r#"<m&"1'>"#), "&lt;m&amp;&quot;1&#39;&gt;");
    }

    #[test]
    fn clock_reads_the_local_time() {
        assert_eq!(clock("2017-11-11T10:00:00.250+08:00"), "10:00:00");
        assert_eq!(clock("noon"), "noon");
    }
}
