//! report.html: it parses, it is self-contained, it shows every headline
//! figure with the values of report.json, and its SVG charts are drawn and
//! labelled.

mod common;

use gmv_report::numbers::{group_decimal_text, group_u64};
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;
use std::sync::OnceLock;

struct Fixture {
    html: String,
    json: Value,
    _dir: tempfile::TempDir,
}

/// One report for the whole file: the fixture runs are the slow part.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (opts, _) = common::make_report(dir.path());
        Fixture {
            html: std::fs::read_to_string(opts.out_dir.join("report.html"))
                .expect("report.html was written"),
            json: common::report_json(&opts),
            _dir: dir,
        }
    })
}

fn select(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("selector {css}: {e}"))
}

fn text(e: ElementRef<'_>) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn one<'a>(doc: &'a Html, css: &str) -> ElementRef<'a> {
    let selector = select(css);
    let mut found = doc.select(&selector);
    let first = found.next().unwrap_or_else(|| panic!("no {css}"));
    assert!(found.next().is_none(), "more than one {css}");
    first
}

#[test]
fn page_parses_without_errors_and_fetches_nothing() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    assert_eq!(text(one(&doc, "title")), "11.11 2017: the day in figures");
    for css in ["script", "link", "img", "iframe", "[src]", "[href]"] {
        assert_eq!(
            doc.select(&select(css)).count(),
            0,
            "the page must be self-contained, found {css}"
        );
    }
}

#[test]
fn headline_paragraph_is_report_json_headline() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    let headline = f.json["headline"].as_str().expect("headline");
    assert_eq!(text(one(&doc, "#headline")), headline);
}

#[test]
fn key_figures_carry_the_exact_json_values() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    let figure = |field: &str| one(&doc, &format!("[data-figure=\"{field}\"]"));
    let exact = |field: &str| {
        figure(field)
            .value()
            .attr("data-value")
            .unwrap_or_default()
            .to_string()
    };
    let j = &f.json;
    assert_eq!(exact("gmv_cny"), j["gmv_cny"].as_str().expect("gmv_cny"));
    assert_eq!(exact("gmv_usd"), j["gmv_usd"].as_str().expect("gmv_usd"));
    for field in ["transactions", "peak_tps", "merchants"] {
        assert_eq!(exact(field), j[field].to_string(), "{field}");
        let shown = group_u64(j[field].as_u64().expect("a count"));
        assert_eq!(text(figure(field)), shown, "{field}");
    }
    assert_eq!(
        exact("mobile_share").parse::<f64>().ok(),
        j["mobile_share"].as_f64()
    );
    assert_eq!(
        exact("comparison.gmv_growth").parse::<f64>().ok(),
        j["comparison"]["gmv_growth"].as_f64()
    );
    for (i, t) in j["thresholds"]
        .as_array()
        .expect("thresholds")
        .iter()
        .enumerate()
    {
        assert_eq!(
            exact(&format!("thresholds[{i}].merchants")),
            t["merchants"].to_string()
        );
    }
    // The exact money is printed too, grouped.
    let figures = text(one(&doc, "#figures"));
    let gmv = group_decimal_text(j["gmv_cny"].as_str().expect("gmv_cny"));
    assert!(figures.contains(&format!("CNY {gmv}")), "{figures}");
}

#[test]
fn every_number_of_the_headline_is_among_the_key_figures() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    let figures = text(one(&doc, "#figures"));
    let title = text(one(&doc, "h1"));
    let headline = f.json["headline"].as_str().expect("headline");
    let numbers: Vec<&str> = headline
        .split([' ', ';', ',', '(', ')'])
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| w.chars().any(|c| c.is_ascii_digit()))
        .collect();
    assert!(numbers.len() >= 10, "{numbers:?}");
    for n in numbers {
        if title.contains(n) {
            continue; // the date: "11.11 2017"
        }
        // Grouped numbers ("256,000") were split at their commas; check whole words instead.
        assert!(
            figures.contains(n),
            "headline figure `{n}` is not among the key figures: {figures}"
        );
    }
}

#[test]
fn each_chart_is_a_non_empty_labelled_svg() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    for id in [
        "chart-cumulative-gmv",
        "chart-tps",
        "chart-mobile-share",
        "chart-threshold-ladder",
    ] {
        let svg = one(&doc, &format!("#{id} svg"));
        let shapes = svg
            .select(&select("polyline, path, polygon, rect, circle, line"))
            .count();
        assert!(shapes > 10, "{id}: only {shapes} shapes");
        let labels: Vec<String> = svg.select(&select("text")).map(text).collect();
        assert!(labels.len() > 10, "{id}: only {} text labels", labels.len());
        assert!(
            labels.iter().any(|l| l == "time of day (UTC+08:00)"),
            "{id}: no time axis title"
        );
        for hour in ["00:00", "12:00", "24:00"] {
            assert!(labels.iter().any(|l| l == hour), "{id}: no {hour} tick");
        }
        assert!(
            text(one(&doc, &format!("#{id} h2"))).len() > 5,
            "{id}: no title"
        );
    }
}

#[test]
fn tps_chart_marks_the_peak_with_its_value_and_time() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    let svg = one(&doc, "#chart-tps svg");
    let peak = group_u64(f.json["peak_tps"].as_u64().expect("peak_tps"));
    let second = f.json["peak_second"].as_str().expect("peak_second");
    let clock = &second[11..19];
    let label = format!("peak: {peak} per second at {clock}");
    assert!(
        svg.select(&select("text")).any(|t| text(t) == label),
        "no `{label}` in the TPS chart"
    );
    assert!(svg.select(&select("circle")).count() >= 1, "no peak marker");
}

#[test]
fn ladder_and_cumulative_legends_name_the_figures() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    let ladder: Vec<String> = one(&doc, "#chart-threshold-ladder svg")
        .select(&select("text"))
        .map(text)
        .collect();
    let shorts = ["100M", "500M", "1B"];
    for (t, short) in f.json["thresholds"]
        .as_array()
        .expect("thresholds")
        .iter()
        .zip(shorts)
    {
        let label = format!("passed CNY {short}: {} merchants", t["merchants"]);
        assert!(ladder.contains(&label), "no `{label}` in {ladder:?}");
    }
    let cumulative: Vec<String> = one(&doc, "#chart-cumulative-gmv svg")
        .select(&select("text"))
        .map(text)
        .collect();
    assert!(
        cumulative.iter().any(|l| l.starts_with("11.11 2017: CNY ")),
        "{cumulative:?}"
    );
    assert!(
        cumulative
            .iter()
            .any(|l| l.starts_with("11.11 2016 total: CNY ")),
        "{cumulative:?}"
    );
}

#[test]
fn top_merchants_table_lists_the_json_top_merchants_in_order() {
    let f = fixture();
    let doc = Html::parse_document(&f.html);
    let rows: Vec<ElementRef<'_>> = doc.select(&select("#top-merchants tbody tr")).collect();
    let top = f.json["top_merchants"].as_array().expect("top_merchants");
    assert!(!top.is_empty());
    assert_eq!(rows.len(), top.len());
    let cell = select("td");
    for (row, m) in rows.iter().zip(top) {
        let cells: Vec<String> = row.select(&cell).map(text).collect();
        assert_eq!(cells[1], m["merchant_id"].as_str().expect("id"));
        assert_eq!(
            cells[2],
            group_decimal_text(m["gmv_cny"].as_str().expect("gmv"))
        );
        assert_eq!(
            cells[4],
            group_u64(m["transactions"].as_u64().expect("transactions"))
        );
    }
    // The biggest merchant passed every threshold, so its row gives the three times.
    let first: Vec<String> = rows[0].select(&select(".passed")).map(text).collect();
    assert_eq!(first.len(), 3, "{first:?}");
}

#[test]
fn merchant_ids_are_escaped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let records: Vec<String> = ["t1", "t2"]
        .map(|txn| {
            format!(
                r#"{{"txn_id":"{txn}","merchant_id":"<b>m&1</b>","amount":"60000000.00","channel":"mobile","settled_at":"2017-11-11T00:00:01+08:00"}}"#
            )
        })
        .to_vec();
    let report = common::report_of(&records);
    let opts = gmv_report::ReportOptions {
        run: common::write_json(dir.path(), "run.json", &report),
        compare: None,
        out_dir: dir.path().join("out"),
    };
    gmv_report::write_report(&opts).expect("report is made");
    let html = std::fs::read_to_string(opts.out_dir.join("report.html")).expect("report.html");
    assert!(!html.contains("<b>m&1</b>"));
    let doc = Html::parse_document(&html);
    assert_eq!(doc.select(&select("main b")).count(), 0);
    assert!(text(one(&doc, "#top-merchants tbody")).contains("<b>m&1</b>"));
}
