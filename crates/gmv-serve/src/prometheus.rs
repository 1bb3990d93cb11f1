//! `/metrics`: the processor's and the feed's figures in the Prometheus text
//! exposition format (version 0.0.4).
//!
//! Labels stay few and bounded: a rejection reason, a latency quantile, a
//! Kafka partition. Never a merchant: 140,000 series per scrape would hurt
//! Prometheus more than it helps anyone (per-merchant figures are at
//! `/api/merchants/{id}`).

use crate::feed::LiveFeed;
use crate::source::Metrics;
use gmv_core::Reason;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders one scrape.
pub fn render(metrics: &Metrics, feed: &LiveFeed) -> String {
    let mut out = Exposition::default();
    out.single(
        "gmv_events_consumed_total",
        "counter",
        "Records read (counted plus rejected).",
        metrics.consumed as f64,
    );
    out.single(
        "gmv_events_counted_total",
        "counter",
        "Records counted in GMV.",
        metrics.counted as f64,
    );
    out.header(
        "gmv_events_rejected_total",
        "counter",
        "Records rejected, by reason.",
    );
    for reason in Reason::ALL {
        out.sample(
            "gmv_events_rejected_total",
            &[("reason", reason.as_str())],
            metrics.rejected.get(reason) as f64,
        );
    }
    out.single(
        "gmv_events_per_second",
        "gauge",
        "Records read per second, over the last few seconds of snapshots.",
        feed.events_per_second(),
    );
    out.single(
        "gmv_gmv_cny",
        "gauge",
        "Window GMV, CNY.",
        money(&metrics.gmv_cny),
    );
    out.single(
        "gmv_mobile_gmv_cny",
        "gauge",
        "Window GMV on the mobile channel, CNY.",
        money(&metrics.mobile_gmv_cny),
    );
    out.single(
        "gmv_merchants",
        "gauge",
        "Merchants with counted GMV.",
        metrics.merchants as f64,
    );
    out.single(
        "gmv_peak_tps",
        "gauge",
        "Most transactions settled in one second of event time.",
        metrics.peak_tps as f64,
    );
    let latest = feed.latest_published();
    out.single(
        "gmv_current_tps",
        "gauge",
        "Transactions in the last whole second before the watermark (latest snapshot).",
        latest
            .as_ref()
            .map_or(0.0, |p| p.snapshot.current_tps as f64),
    );
    out.single(
        "gmv_dedup_ids",
        "gauge",
        "Transaction ids held by the redelivery set.",
        metrics.dedup_ids as f64,
    );
    out.single(
        "gmv_dedup_bytes",
        "gauge",
        "Bytes allocated by the redelivery set.",
        metrics.dedup_bytes as f64,
    );
    out.header(
        "gmv_latency_seconds",
        "gauge",
        "Processing latency percentiles over the run.",
    );
    let lat = &metrics.latency_ms;
    for (quantile, ms) in [
        ("0.5", lat.p50),
        ("0.99", lat.p99),
        ("0.999", lat.p999),
        ("1", lat.max),
    ] {
        out.sample(
            "gmv_latency_seconds",
            &[("quantile", quantile)],
            ms / 1000.0,
        );
    }
    out.single(
        "gmv_latency_samples_total",
        "counter",
        "Events recorded in the latency histogram.",
        lat.count as f64,
    );
    if !metrics.consumer_lag.is_empty() {
        out.header(
            "gmv_consumer_lag",
            "gauge",
            "Messages between the consumer's position and the partition's end.",
        );
        for p in &metrics.consumer_lag {
            let partition = p.partition.to_string();
            out.sample(
                "gmv_consumer_lag",
                &[("topic", &p.topic), ("partition", &partition)],
                p.lag as f64,
            );
        }
        out.single(
            "gmv_consumer_lag_total",
            "gauge",
            "Messages behind, over all partitions.",
            metrics.consumer_lag.iter().map(|p| p.lag).sum::<u64>() as f64,
        );
    }
    out.single(
        "gmv_snapshot_age_seconds",
        "gauge",
        "Time since the latest snapshot was published (-1 before the first).",
        latest
            .as_ref()
            .map_or(-1.0, |p| p.received.elapsed().as_secs_f64()),
    );
    out.single(
        "gmv_snapshot_seq",
        "gauge",
        "Sequence number of the latest snapshot.",
        latest.as_ref().map_or(0.0, |p| p.snapshot.seq as f64),
    );
    let (snapshots, alerts) = feed.published();
    out.single(
        "gmv_snapshots_published_total",
        "counter",
        "Snapshots handed to the live feed.",
        snapshots as f64,
    );
    out.single(
        "gmv_alerts_published_total",
        "counter",
        "Threshold alerts handed to the live feed.",
        alerts as f64,
    );
    out.single(
        "gmv_live_clients",
        "gauge",
        "Open /api/live streams.",
        feed.clients() as f64,
    );
    out.single(
        "gmv_live_clients_refused_total",
        "counter",
        "/api/live streams refused because max_clients were open.",
        feed.stats.clients_refused.load(Relaxed) as f64,
    );
    out.single(
        "gmv_live_alerts_skipped_total",
        "counter",
        "Alerts a slow reader missed because they left the replay ring.",
        feed.stats.alerts_skipped.load(Relaxed) as f64,
    );
    out.text
}

/// A decimal CNY string as a float (0 if unparsable: a metric is no audit).
fn money(text: &str) -> f64 {
    text.parse().unwrap_or(0.0)
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"");
                escape_label(&mut self.text, val);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.header(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Go-style float text: `NaN`, `+Inf`, `-Inf`, or Rust's shortest exact form.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape_label(&mut out, "a\"b\\c\nd");
        assert_eq!(out, r#"a\"b\\c\nd"#);
    }

    #[test]
    fn numbers_render_as_prometheus_expects() {
        assert_eq!(number(168200000000.5), "168200000000.5");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(3.0), "3");
    }
}
