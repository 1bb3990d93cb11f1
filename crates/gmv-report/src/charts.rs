//! The report's charts, drawn with `plotters` into inline SVG strings: the
//! cumulative GMV curve, transactions per second over the day with the peak
//! marked, the mobile share over time, and the threshold ladder (merchants
//! past each threshold over the day).
//!
//! The time axis is hours since the window's start, labelled with the
//! window's own clock (UTC+08:00 for 11.11). No font is embedded: the SVG
//! carries `<text>` elements and the browser lays them out.

use crate::error::{ContentError, OutputError, Role};
use crate::model::{parse_fen, window_of, PostEventReport};
use crate::numbers::{amount_short, cny_words, group_u64, percent};
use chrono::{DateTime, FixedOffset};
use gmv_core::money::fen_to_decimal;
use gmv_core::output::Report;
use gmv_core::time::{parse_rfc3339_millis, Window};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rust_decimal::Decimal;

/// Width and height of every chart, in SVG user units (it scales with the page).
pub const CHART_SIZE: (u32, u32) = (1100, 380);

/// Minutes in one point of the mobile share line: short enough to show the
/// day's shape, long enough that a small run is not all noise.
const MOBILE_BUCKET_MINUTES: usize = 15;

const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(230, 120, 20);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(200, 30, 40);
const GREY: RGBColor = RGBColor(110, 110, 110);
const LADDER_COLOURS: [RGBColor; 6] = [
    BLUE,
    ORANGE,
    RED,
    GREEN,
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The report's charts, each a complete `<svg>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charts {
    /// Cumulative GMV over the window.
    pub cumulative_gmv: String,
    /// Transactions per second (highest second of each minute), peak marked.
    pub tps: String,
    /// Mobile share of GMV over the window.
    pub mobile_share: String,
    /// Merchants past each threshold over the window.
    pub threshold_ladder: String,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws every chart of `report` from the run's time series.
pub fn draw_charts(run: &Report, report: &PostEventReport) -> Result<Charts, OutputError> {
    let window = window_of(&run.figures.window, Role::Run, "window")?;
    let axis = TimeAxis::new(&window);
    Ok(Charts {
        cumulative_gmv: cumulative_gmv(run, report, &axis)?,
        tps: tps(run, &axis)?,
        mobile_share: mobile_share(run, report, &axis)?,
        threshold_ladder: threshold_ladder(report, &axis)?,
    })
}

/// Hours since the window's start, printed as the window's clock time.
struct TimeAxis {
    start: DateTime<FixedOffset>,
    start_millis: i64,
    hours: f64,
}

impl TimeAxis {
    fn new(window: &Window) -> Self {
        let start = DateTime::parse_from_rfc3339(&window.start_rfc3339())
            .unwrap_or_else(|_| DateTime::UNIX_EPOCH.fixed_offset());
        Self {
            start,
            start_millis: window.start_millis(),
            hours: window.seconds() as f64 / 3600.0,
        }
    }

    fn hours_at(&self, millis: i64) -> f64 {
        (millis - self.start_millis) as f64 / 3_600_000.0
    }

    fn clock(&self, hours: f64) -> String {
        let at = self.start + chrono::Duration::seconds((hours * 3600.0).round() as i64);
        let text = if self.hours > 48.0 {
            at.format("%m-%d %H:%M").to_string()
        } else {
            at.format("%H:%M").to_string()
        };
        // The end of a day is 24:00 of that day, not 00:00 of the next.
        if hours > 0.0 && text == "00:00" {
            "24:00".into()
        } else {
            text
        }
    }

    fn clock_seconds(&self, hours: f64) -> String {
        let at = self.start + chrono::Duration::seconds((hours * 3600.0).round() as i64);
        at.format("%H:%M:%S").to_string()
    }

    fn description(&self) -> String {
        format!("time of day (UTC{})", self.start.offset())
    }
}

/// Draws one chart into an SVG string.
fn svg(
    what: &'static str,
    draw: impl for<'b> FnOnce(&DrawingArea<SVGBackend<'b>, Shift>) -> DrawResult,
) -> Result<String, OutputError> {
    let internal = |e: &dyn std::fmt::Display| OutputError::Internal {
        what,
        message: e.to_string(),
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| internal(&e))?;
        draw(&root).map_err(|e| internal(&e))?;
        root.present().map_err(|e| internal(&e))?;
    }
    Ok(out)
}

/// A money unit that keeps axis numbers short.
fn money_unit(max_fen: u64) -> (f64, &'static str) {
    match max_fen {
        m if m >= 100_000_000_000 => (1e11, "CNY billion"),
        m if m >= 100_000_000 => (1e8, "CNY million"),
        _ => (100.0, "CNY"),
    }
}

/// Tick label with as few decimals as the axis range needs.
fn tick(value: f64, max: f64) -> String {
    if max >= 10.0 || value.fract() == 0.0 {
        group_u64(value.round().max(0.0) as u64)
    } else {
        format!("{value:.1}")
    }
}

fn legend_line(colour: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
}

fn cumulative_gmv(
    run: &Report,
    report: &PostEventReport,
    axis: &TimeAxis,
) -> Result<String, OutputError> {
    let mut points = vec![(0.0, 0u64)];
    let mut total = 0u64;
    for (i, m) in run.series.per_minute.iter().enumerate() {
        let field = |name: &str| format!("series.per_minute[{i}].{name}");
        let at = minute_millis(&m.minute, field("minute"))?;
        total += parse_fen(&m.gmv_cny, Role::Run, field("gmv_cny"))?;
        points.push((axis.hours_at(at + 60_000).min(axis.hours), total));
    }
    let previous = match &report.comparison {
        Some(c) => Some((
            c.previous_title.clone(),
            parse_fen(&c.previous_gmv_cny, Role::Comparison, "gmv_cny")?,
        )),
        None => None,
    };
    let max_fen = total.max(previous.as_ref().map_or(0, |p| p.1)).max(1);
    let (divisor, unit) = money_unit(max_fen);
    let y_max = max_fen as f64 / divisor * 1.12;
    let title = report.title.clone();
    svg("the cumulative GMV chart", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..axis.hours, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_labels(13)
            .y_labels(8)
            .x_label_formatter(&|h| axis.clock(*h))
            .y_label_formatter(&|v| tick(*v, y_max))
            .x_desc(axis.description())
            .y_desc(format!("GMV so far, {unit}"))
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(244, 244, 244))
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()?;
        chart
            .draw_series(
                AreaSeries::new(
                    points.iter().map(|&(h, fen)| (h, fen as f64 / divisor)),
                    0.0,
                    BLUE.mix(0.15),
                )
                .border_style(BLUE.stroke_width(3)),
            )?
            .label(format!("{title}: {}", cny_words(fen_to_decimal(total))))
            .legend(legend_line(BLUE));
        if let Some((previous_title, fen)) = &previous {
            let y = *fen as f64 / divisor;
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, y), (axis.hours, y)],
                    8,
                    6,
                    GREY.stroke_width(2),
                ))?
                .label(format!(
                    "{previous_title} total: {}",
                    cny_words(fen_to_decimal(*fen))
                ))
                .legend(legend_line(GREY));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .margin(12)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(190, 190, 190))
            .draw()?;
        Ok(())
    })
}

fn minute_millis(text: &str, field: String) -> Result<i64, ContentError> {
    parse_rfc3339_millis(text).ok_or_else(|| {
        ContentError::new(
            Role::Run,
            field,
            format!("`{text}` is not an RFC 3339 time with offset"),
        )
    })
}

fn tps(run: &Report, axis: &TimeAxis) -> Result<String, OutputError> {
    let per_second = &run.series.per_second;
    let start = parse_rfc3339_millis(&per_second.start).ok_or_else(|| {
        ContentError::new(
            Role::Run,
            "series.per_second.start",
            format!("`{}` is not an RFC 3339 time with offset", per_second.start),
        )
    })?;
    let offset_hours = axis.hours_at(start);
    // The highest second of each minute: 1,440 points a day, and the peak survives.
    let per_minute: Vec<(f64, u32)> = per_second
        .counts
        .chunks(60)
        .enumerate()
        .map(|(m, chunk)| {
            let max = chunk.iter().copied().max().unwrap_or(0);
            (offset_hours + m as f64 / 60.0, max)
        })
        .collect();
    let peak_tps = run.figures.peak_tps;
    let peak = match &run.figures.peak_second {
        Some(text) if peak_tps > 0 => {
            Some(axis.hours_at(minute_millis(text, "peak_second".into())?))
        }
        _ => None,
    };
    let y_max = (peak_tps.max(per_minute.iter().map(|p| u64::from(p.1)).max().unwrap_or(0)) as f64
        * 1.25)
        .max(5.0);
    svg("the transactions-per-second chart", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..axis.hours, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_labels(13)
            .y_labels(8)
            .x_label_formatter(&|h| axis.clock(*h))
            .y_label_formatter(&|v| tick(*v, y_max))
            .x_desc(axis.description())
            .y_desc("transactions per second")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(244, 244, 244))
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                per_minute.iter().map(|&(h, c)| (h, f64::from(c))),
                BLUE.stroke_width(2),
            ))?
            .label("busiest second of each minute")
            .legend(legend_line(BLUE));
        if let Some(at) = peak {
            let label = format!(
                "peak: {} per second at {}",
                group_u64(peak_tps),
                axis.clock_seconds(at)
            );
            // Keep the label inside the plot: to the right of the marker, or to its left near the end.
            let (dx, anchor) = if at < axis.hours * 0.6 {
                (12, HPos::Left)
            } else {
                (-12, HPos::Right)
            };
            let style = TextStyle::from((FONT, 18).into_font())
                .color(&RED)
                .pos(Pos::new(anchor, VPos::Center));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((at, peak_tps as f64))
                        + Circle::new((0, 0), 6, RED.filled())
                        + Text::new(label, (dx, 0), style),
                ))?
                .label("peak second")
                .legend(|(x, y)| Circle::new((x + 12, y), 5, RED.filled()));
        }
        chart
            .configure_series_labels()
            .position(if peak.is_some_and(|at| at > axis.hours * 0.5) {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::UpperRight
            })
            .margin(12)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(190, 190, 190))
            .draw()?;
        Ok(())
    })
}

fn mobile_share(
    run: &Report,
    report: &PostEventReport,
    axis: &TimeAxis,
) -> Result<String, OutputError> {
    let buckets = ((axis.hours * 60.0).ceil() as usize)
        .div_ceil(MOBILE_BUCKET_MINUTES)
        .max(1);
    let mut sums = vec![(0u64, 0u64); buckets];
    for (i, m) in run.series.per_minute.iter().enumerate() {
        let field = |name: &str| format!("series.per_minute[{i}].{name}");
        let at = minute_millis(&m.minute, field("minute"))?;
        let minute = ((at - axis.start_millis).max(0) / 60_000) as usize;
        let Some(slot) = sums.get_mut(minute / MOBILE_BUCKET_MINUTES) else {
            continue;
        };
        slot.0 += parse_fen(&m.gmv_cny, Role::Run, field("gmv_cny"))?;
        slot.1 += parse_fen(&m.mobile_gmv_cny, Role::Run, field("mobile_gmv_cny"))?;
    }
    let bucket_hours = MOBILE_BUCKET_MINUTES as f64 / 60.0;
    let points: Vec<(f64, f64)> = sums
        .iter()
        .enumerate()
        .filter(|(_, (gmv, _))| *gmv > 0)
        .map(|(b, &(gmv, mobile))| ((b as f64 + 0.5) * bucket_hours, mobile as f64 / gmv as f64))
        .collect();
    let overall = run.figures.mobile_share;
    let previous = report
        .comparison
        .as_ref()
        .map(|c| (c.previous_title.clone(), c.previous_mobile_share));
    let shares = || {
        points
            .iter()
            .map(|p| p.1)
            .chain([overall])
            .chain(previous.as_ref().map(|p| p.1))
    };
    let lowest = shares().fold(1.0, f64::min);
    let highest = shares().fold(0.0, f64::max);
    // A round tenth well below the data, leaving at least 40 points of range.
    let y_min = ((lowest - 0.12) * 10.0).floor().clamp(0.0, 6.0) / 10.0;
    // The legend takes about the lowest (or highest) quarter of the plot: put it where the lines are not.
    let room = 0.3 * (1.0 - y_min);
    let legend = if lowest >= y_min + room || highest > 1.0 - room {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    let title = report.title.clone();
    svg("the mobile share chart", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..axis.hours, y_min..1.0)?;
        chart
            .configure_mesh()
            .x_labels(13)
            .y_labels(8)
            .x_label_formatter(&|h| axis.clock(*h))
            .y_label_formatter(&|v| percent(*v))
            .x_desc(axis.description())
            .y_desc("mobile share of GMV")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(244, 244, 244))
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                GREEN.stroke_width(2),
            ))?
            .label(format!("each {MOBILE_BUCKET_MINUTES} minutes"))
            .legend(legend_line(GREEN));
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, overall), (axis.hours, overall)],
                8,
                6,
                BLUE.stroke_width(2),
            ))?
            .label(format!("{title}, whole day: {}", percent(overall)))
            .legend(legend_line(BLUE));
        if let Some((previous_title, share)) = &previous {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, *share), (axis.hours, *share)],
                    8,
                    6,
                    GREY.stroke_width(2),
                ))?
                .label(format!("{previous_title}, whole day: {}", percent(*share)))
                .legend(legend_line(GREY));
        }
        chart
            .configure_series_labels()
            .position(legend)
            .margin(12)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(190, 190, 190))
            .draw()?;
        Ok(())
    })
}

fn threshold_ladder(report: &PostEventReport, axis: &TimeAxis) -> Result<String, OutputError> {
    let mut lines = Vec::new();
    for (t, step) in report.threshold_ladder.iter().enumerate() {
        let mut points = vec![(0.0, 0.0)];
        for (c, crossing) in step.crossings.iter().enumerate() {
            let at = parse_rfc3339_millis(&crossing.settled_at).ok_or_else(|| {
                ContentError::new(
                    Role::Run,
                    format!("alerts (threshold {}, crossing {c}).settled_at", step.cny),
                    format!(
                        "`{}` is not an RFC 3339 time with offset",
                        crossing.settled_at
                    ),
                )
            })?;
            let h = axis.hours_at(at);
            points.push((h, c as f64));
            points.push((h, c as f64 + 1.0));
        }
        points.push((axis.hours, step.crossings.len() as f64));
        let amount =
            Decimal::from_str_exact(&step.cny).map_or_else(|_| step.cny.clone(), amount_short);
        let merchants = match step.merchants {
            1 => "1 merchant".to_string(),
            n => format!("{} merchants", group_u64(n)),
        };
        let label = format!("passed CNY {amount}: {merchants}");
        lines.push((LADDER_COLOURS[t % LADDER_COLOURS.len()], label, points));
    }
    let y_max = report
        .threshold_ladder
        .iter()
        .map(|s| s.crossings.len().max(s.merchants as usize))
        .max()
        .unwrap_or(0) as f64;
    let y_max = (y_max * 1.15).max(5.0);
    svg("the threshold ladder chart", |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..axis.hours, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_labels(13)
            .y_labels(8)
            .x_label_formatter(&|h| axis.clock(*h))
            .y_label_formatter(&|v| tick(*v, y_max))
            .x_desc(axis.description())
            .y_desc("merchants past the threshold")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 17))
            .max_light_lines(1)
            .light_line_style(RGBColor(244, 244, 244))
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()?;
        for (colour, label, points) in &lines {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    colour.stroke_width(3),
                ))?
                .label(label.clone())
                .legend(legend_line(*colour));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .margin(12)
            .label_font((FONT, 17))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(190, 190, 190))
            .draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build;

    fn run_with(events: &[(&str, &str, &str, &str)]) -> Report {
        let mut records = Vec::new();
        for (i, (merchant, amount, channel, at)) in events.iter().enumerate() {
            let e = format!(
                r#"{{"txn_id":"t{i}","merchant_id":"{merchant}","amount":"{amount}","channel":"{channel}","settled_at":"{at}"}}"#
            );
            records.push(e);
        }
        crate::test_support::report_of(&records)
    }

    #[test]
    fn the_day_ends_at_24_00() {
        let axis = TimeAxis::new(&Window::singles_day_2017());
        assert_eq!(axis.clock(0.0), "00:00");
        assert_eq!(axis.clock(13.5), "13:30");
        assert_eq!(axis.clock(24.0), "24:00");
        assert_eq!(axis.clock_seconds(5.0 / 3600.0), "00:00:05");
        assert_eq!(axis.description(), "time of day (UTC+08:00)");
    }

    #[test]
    fn a_late_peak_is_labelled_to_its_left() {
        let run = run_with(&[
            ("m-1", "10.00", "mobile", "2017-11-11T01:00:00+08:00"),
            ("m-1", "10.00", "mobile", "2017-11-11T23:00:00+08:00"),
            ("m-2", "10.00", "pc", "2017-11-11T23:00:00.500+08:00"),
        ]);
        let report = build(&run, None).unwrap();
        let charts = draw_charts(&run, &report).unwrap();
        let label = charts
            .tps
            .lines()
            .position(|l| l.contains("peak: 2 per second at 23:00:00"))
            .expect("peak label");
        let text_tag = charts
            .tps
            .lines()
            .take(label)
            .filter(|l| l.contains("<text"))
            .last()
            .unwrap();
        assert!(text_tag.contains(r#"text-anchor="end""#), "{text_tag}");
    }

    #[test]
    fn an_empty_run_still_draws_every_chart() {
        let run = run_with(&[]);
        let report = build(&run, None).unwrap();
        let charts = draw_charts(&run, &report).unwrap();
        for svg in [
            &charts.cumulative_gmv,
            &charts.tps,
            &charts.mobile_share,
            &charts.threshold_ladder,
        ] {
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{svg}"
            );
            assert!(svg.contains("time of day (UTC+08:00)"));
        }
        assert!(!charts.tps.contains("peak:"));
    }
}
