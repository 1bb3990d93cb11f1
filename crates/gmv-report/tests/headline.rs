//! The headline's numbers are the report's: each figure read back out of the
//! paragraph equals the figure in report.json (rounded as the paragraph
//! rounds), computed here independently of the crate's formatting code.

mod common;

use serde_json::Value;

/// The text between `before` and the next `after`.
fn between<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
    let start = text
        .find(before)
        .map(|i| i + before.len())
        .unwrap_or_else(|| panic!("no `{before}` in {text}"));
    let rest = &text[start..];
    let end = rest
        .find(after)
        .unwrap_or_else(|| panic!("no `{after}` after `{before}` in {text}"));
    &rest[..end]
}

fn number(text: &str) -> f64 {
    text.replace(',', "")
        .trim_start_matches('+')
        .parse()
        .unwrap_or_else(|e| panic!("`{text}` is not a number: {e}"))
}

fn money(json: &Value, field: &str) -> f64 {
    json[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} is not money"))
}

fn check(json: &Value) {
    let h = json["headline"].as_str().expect("headline");
    // Date.
    assert!(h.starts_with(&format!(
        "On {} the festival settled",
        json["title"].as_str().expect("title")
    )));
    // GMV in CNY billions, one decimal.
    let cny = number(between(h, "settled CNY ", " billion"));
    assert!(
        (cny - money(json, "gmv_cny") / 1e9).abs() <= 0.05 + 1e-9,
        "CNY {cny} billion vs {}",
        json["gmv_cny"]
    );
    // GMV in USD billions.
    let usd = number(between(h, "(US$", "B"));
    assert!(
        (usd - money(json, "gmv_usd") / 1e9).abs() <= 0.05 + 1e-9,
        "US${usd}B vs {}",
        json["gmv_usd"]
    );
    // Mobile share, whole percent.
    let mobile = number(between(h, "about ", "% of it on mobile"));
    assert_eq!(
        mobile,
        (json["mobile_share"].as_f64().expect("share") * 100.0).round()
    );
    // Growth and last year's share, only with a comparison.
    let c = &json["comparison"];
    if c.is_object() {
        let growth = number(between(h, ", ", "% on the previous year"));
        let expected = money(json, "gmv_cny")
            / c["previous_gmv_cny"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .expect("previous")
            - 1.0;
        assert_eq!(growth, (expected * 100.0).round(), "growth");
        assert_eq!(
            c["gmv_growth"].as_f64().map(|g| (g * 100.0).round()),
            Some(growth)
        );
        let before = number(between(h, "on mobile (", "% the year before)"));
        assert_eq!(
            before,
            (c["previous_mobile_share"].as_f64().expect("share") * 100.0).round()
        );
    } else {
        assert!(
            !h.contains("previous year") && !h.contains("year before"),
            "{h}"
        );
    }
    // Merchants past each threshold.
    let ladder = between(h, "on mobile", "; the peak");
    let ladder = &ladder[ladder.find("; ").expect("threshold clause") + 2..];
    let parts: Vec<&str> = ladder.split([',', ' ']).filter(|w| !w.is_empty()).collect();
    let counts: Vec<u64> = parts
        .iter()
        .zip(parts.iter().skip(1))
        .filter(|(_, next)| **next == "merchants" || **next == "merchant" || **next == "passed")
        .filter_map(|(n, _)| n.parse().ok())
        .collect();
    let amounts: Vec<&str> = parts
        .iter()
        .zip(parts.iter().skip(1))
        .filter(|(w, _)| **w == "CNY")
        .map(|(_, a)| *a)
        .collect();
    let thresholds = json["thresholds"].as_array().expect("thresholds");
    assert_eq!(
        counts,
        thresholds
            .iter()
            .map(|t| t["merchants"].as_u64().expect("count"))
            .collect::<Vec<_>>()
    );
    let short = |cny: f64| match cny {
        c if c >= 1e9 => format!("{}B", c / 1e9),
        c => format!("{}M", c / 1e6),
    };
    let expected: Vec<String> = thresholds
        .iter()
        .map(|t| {
            short(
                t["cny"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("threshold"),
            )
        })
        .collect();
    assert_eq!(amounts, expected);
    // Peak.
    let peak = number(between(h, "the peak was ", " transaction"));
    assert_eq!(Some(peak as u64), json["peak_tps"].as_u64());
}

#[test]
fn headline_numbers_equal_the_report_json_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (opts, summary) = common::make_report(dir.path());
    let json = common::report_json(&opts);
    assert_eq!(json["headline"].as_str(), Some(summary.headline.as_str()));
    check(&json);
}

#[test]
fn without_compare_the_headline_has_no_comparison() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = gmv_report::ReportOptions {
        run: common::write_json(dir.path(), "run.json", &common::run_2017()),
        compare: None,
        out_dir: dir.path().join("out"),
    };
    gmv_report::write_report(&opts).expect("report is made");
    let json = common::report_json(&opts);
    assert!(json.get("comparison").is_none());
    check(&json);
}
