//! The headline paragraph, written from the figures in the style of the
//! press: "On 11.11 2017 the festival settled CNY 168.2 billion (US$25.3B,
//! +39% on the previous year) in one day; about 90% of it on mobile (82% the
//! year before); 167 merchants passed CNY 100M, 17 passed CNY 500M and 6
//! passed CNY 1B; the peak was 256,000 transactions per second."
//!
//! The comparison parts appear only when a previous report was given. Every
//! number comes from [`PostEventReport`], so the paragraph always agrees with
//! report.json.

use crate::model::PostEventReport;
use crate::numbers::{amount_short, cny_words, group_u64, percent, signed_percent, usd_short};
use chrono::{DateTime, Datelike};
use rust_decimal::Decimal;

/// The headline paragraph of a report.
pub fn headline(report: &PostEventReport) -> String {
    let f = &report.figures;
    let earlier = report.comparison.as_ref().map(|c| {
        let consecutive = matches!(
            (start_of(&f.window.start), start_of(&c.previous_window.start)),
            (Some(now), Some(then)) if now.0 == then.0 + 1 && (now.1, now.2) == (then.1, then.2)
        );
        let (on, before) = if consecutive {
            (
                "on the previous year".to_string(),
                "the year before".to_string(),
            )
        } else {
            (
                format!("on {}", c.previous_title),
                format!("on {}", c.previous_title),
            )
        };
        (c, on, before)
    });

    let mut out = format!(
        "On {} the festival settled {}",
        report.title,
        money_words(&f.gmv_cny, cny_words)
    );
    out.push_str(" (");
    out.push_str(&money_words(&f.gmv_usd, usd_short));
    if let Some((c, on, _)) = &earlier {
        if let Some(g) = c.gmv_growth {
            out.push_str(&format!(", {} {on}", signed_percent(g)));
        }
    }
    out.push_str(") ");
    out.push_str(&duration_words(&f.window.start, &f.window.end));
    out.push_str(&format!(
        "; about {} of it on mobile",
        percent(f.mobile_share)
    ));
    if let Some((c, _, before)) = &earlier {
        out.push_str(&format!(" ({} {before})", percent(c.previous_mobile_share)));
    }
    let ladder: Vec<String> = f
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let amount = money_words(&t.cny, amount_short);
            match (i, t.merchants) {
                (0, 1) => format!("1 merchant passed CNY {amount}"),
                (0, n) => format!("{} merchants passed CNY {amount}", group_u64(n)),
                (_, n) => format!("{} passed CNY {amount}", group_u64(n)),
            }
        })
        .collect();
    if !ladder.is_empty() {
        out.push_str("; ");
        out.push_str(&join_and(&ladder));
    }
    let unit = if f.peak_tps == 1 {
        "transaction"
    } else {
        "transactions"
    };
    out.push_str(&format!(
        "; the peak was {} {unit} per second.",
        group_u64(f.peak_tps)
    ));
    out
}

/// A money text through a formatter; text that is not a number is shown as given.
fn money_words(text: &str, words: fn(Decimal) -> String) -> String {
    match Decimal::from_str_exact(text) {
        Ok(d) => words(d),
        Err(_) => text.to_string(),
    }
}

/// (year, month, day) of an RFC 3339 time, in its own offset.
fn start_of(text: &str) -> Option<(i32, u32, u32)> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| (t.year(), t.month(), t.day()))
}

/// "in one day", "in 2 days", "in 12 hours", or "in the window".
fn duration_words(start: &str, end: &str) -> String {
    let seconds = match (
        DateTime::parse_from_rfc3339(start),
        DateTime::parse_from_rfc3339(end),
    ) {
        (Ok(s), Ok(e)) => (e - s).num_seconds(),
        _ => 0,
    };
    match seconds {
        86_400 => "in one day".into(),
        s if s > 0 && s % 86_400 == 0 => format!("in {} days", s / 86_400),
        3_600 => "in one hour".into(),
        s if s > 0 && s % 3_600 == 0 => format!("in {} hours", s / 3_600),
        _ => "in the window".into(),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Comparison, PostEventReport, ThresholdComparison};
    use gmv_core::output::{Accounting, Figures, LatencyMs, ThresholdCount, WindowRange};

    fn window(year: i32) -> WindowRange {
        WindowRange {
            start: format!("{year}-11-11T00:00:00+08:00"),
            end: format!("{year}-11-12T00:00:00+08:00"),
        }
    }

    /// The seed article's figures.
    fn seed() -> PostEventReport {
        let threshold = |cny: &str, merchants| ThresholdCount {
            cny: cny.into(),
            merchants,
        };
        PostEventReport {
            schema_version: 1,
            title: "11.11 2017".into(),
            headline: String::new(),
            figures: Figures {
                window: window(2017),
                gmv_cny: "168200000000.00".into(),
                gmv_usd: "25300000000.00".into(),
                transactions: 1_480_000_000,
                mobile_gmv_cny: "151380000000.00".into(),
                mobile_share: 0.9,
                peak_tps: 256_000,
                peak_second: Some("2017-11-11T00:00:05+08:00".into()),
                merchants: 140_000,
                thresholds: vec![
                    threshold("100000000.00", 167),
                    threshold("500000000.00", 17),
                    threshold("1000000000.00", 6),
                ],
                rejected: Default::default(),
                accounting: Accounting::default(),
                top_merchants: vec![],
            },
            latency_ms: LatencyMs::default(),
            comparison: None,
            hourly: vec![],
            threshold_ladder: vec![],
        }
    }

    fn with_previous(mut r: PostEventReport, year: i32) -> PostEventReport {
        r.comparison = Some(Comparison {
            previous_title: format!("11.11 {year}"),
            previous_window: window(year),
            previous_gmv_cny: "120700000000.00".into(),
            gmv_growth: Some(0.3935),
            previous_transactions: 1,
            transactions_growth: None,
            previous_mobile_share: 0.82,
            mobile_share_change: 0.08,
            previous_peak_tps: 175_000,
            peak_tps_growth: Some(0.4629),
            thresholds: vec![ThresholdComparison {
                cny: "100000000.00".into(),
                merchants: 167,
                previous_merchants: None,
            }],
        });
        r
    }

    #[test]
    fn seed_article_headline_is_reproduced() {
        assert_eq!(
            headline(&with_previous(seed(), 2016)),
            "On 11.11 2017 the festival settled CNY 168.2 billion (US$25.3B, +39% on the previous year) \
             in one day; about 90% of it on mobile (82% the year before); 167 merchants passed CNY 100M, \
             17 passed CNY 500M and 6 passed CNY 1B; the peak was 256,000 transactions per second."
        );
    }

    #[test]
    fn without_comparison_there_is_no_growth() {
        assert_eq!(
            headline(&seed()),
            "On 11.11 2017 the festival settled CNY 168.2 billion (US$25.3B) in one day; about 90% of it \
             on mobile; 167 merchants passed CNY 100M, 17 passed CNY 500M and 6 passed CNY 1B; the peak \
             was 256,000 transactions per second."
        );
    }

    #[test]
    fn an_older_comparison_is_named_and_singulars_read_right() {
        let mut r = with_previous(seed(), 2015);
        r.figures.thresholds.truncate(2);
        r.figures.thresholds[0].merchants = 1;
        r.figures.thresholds[1].merchants = 0;
        r.figures.peak_tps = 1;
        r.figures.window.end = "2017-11-11T12:00:00+08:00".into();
        let h = headline(&r);
        assert!(
            h.contains("(US$25.3B, +39% on 11.11 2015) in 12 hours;"),
            "{h}"
        );
        assert!(h.contains("(82% on 11.11 2015)"), "{h}");
        assert!(
            h.contains("; 1 merchant passed CNY 100M and 0 passed CNY 500M;"),
            "{h}"
        );
        assert!(h.ends_with("the peak was 1 transaction per second."), "{h}");
    }
}
