//! `/metrics`: the processor's, the feed's and the process's figures in the
//! Prometheus text exposition format 0.0.4, or in OpenMetrics 1.0.0 text when
//! the scraper asks for it (`Accept: application/openmetrics-text`, as
//! Prometheus itself does).
//!
//! # Names
//! As the Prometheus naming guide has them: one application prefix, `gmv_`;
//! the unit as a suffix, in base units (`_seconds`, `_bytes`; money in
//! `_cny`, lag in `_records`); `_total` on counters and only on counters;
//! HELP and TYPE for every family. The window's GMV is `gmv_sales_cny`: the
//! prefix already says GMV, so the name says what is measured (sales) and in
//! what (CNY). It is a gauge, not a counter: it falls when a rebalance moves
//! a partition to another process. Sum it over processes for the total.
//!
//! | family | type | labels |
//! | --- | --- | --- |
//! | `gmv_build_info` | gauge (OpenMetrics: info) | `version`, `revision` when built with `GMV_REVISION` set |
//! | `gmv_events_consumed_total` | counter | |
//! | `gmv_events_counted_total` | counter | |
//! | `gmv_events_rejected_total` | counter | `reason` |
//! | `gmv_events_per_second` | gauge | |
//! | `gmv_sales_cny`, `gmv_mobile_sales_cny` | gauge | |
//! | `gmv_merchants` | gauge | |
//! | `gmv_peak_transactions_per_second`, `gmv_current_transactions_per_second` | gauge | |
//! | `gmv_publish_latency_seconds` | histogram | `le` |
//! | `gmv_partitions_assigned` | gauge | |
//! | `gmv_rebalances_total` | counter | |
//! | `gmv_consumer_lag_records` | gauge | `topic`, `partition` |
//! | `gmv_checkpoint_age_seconds` | gauge (absent before the first checkpoint) | |
//! | `gmv_dedup_ids`, `gmv_dedup_bytes`, `gmv_state_bytes` | gauge | |
//! | `gmv_snapshot_seq`, `gmv_snapshot_age_seconds` | gauge (absent before the first snapshot) | |
//! | `gmv_snapshots_published_total`, `gmv_alerts_published_total` | counter | |
//! | `gmv_live_clients` | gauge | |
//! | `gmv_live_clients_refused_total`, `gmv_live_alerts_skipped_total` | counter | |
//! | `process_cpu_seconds_total` | counter | |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds` | gauge | |
//!
//! The `process_*` families are the ones every Prometheus client library
//! exports, read from `/proc/self` at scrape time; where there is no such
//! file (not Linux) they are left out.
//!
//! Labels stay few and bounded: a rejection reason, a Kafka partition, a
//! bucket bound. Never a merchant: 140,000 series per scrape would hurt
//! Prometheus more than it helps anyone (per-merchant figures are at
//! `/api/merchants/{id}`).
//!
//! # Numbers
//! Values are rendered from the integers or decimal text they are kept in
//! (counts, microseconds, milliseconds, clock ticks, money as decimal
//! strings), never through float arithmetic, so 289,023 µs reads
//! `0.289023`, not `0.28902300000000003`. The latency histogram keeps 3
//! significant digits, so its sum is exact to that precision (see
//! [`crate::source::LatencyBuckets::from_latency`]). Bucket bounds (`le`) are in
//! OpenMetrics' canonical form (`0.005`, `1.0`, `30.0`) in both formats: the
//! form Prometheus 3 normalises them to, so a series keeps its labels
//! whichever format a scrape negotiated.

use crate::feed::LiveFeed;
use crate::source::{Metrics, LATENCY_BOUNDS_MICROS};
use gmv_core::Reason;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{SystemTime, UNIX_EPOCH};

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics text format's content type.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4: what anyone gets who does
    /// not ask for OpenMetrics.
    Prometheus,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it lists
    /// `application/openmetrics-text` (version 1.0.0 or unversioned) with a
    /// quality at least that of the Prometheus text format (`text/plain`,
    /// `text/*`, `*/*`); otherwise the Prometheus text format, which is also
    /// the answer to no header at all.
    pub fn negotiate(accept: &str) -> Self {
        let mut openmetrics = 0.0_f32;
        let mut text = 0.0_f32;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let mut quality = 1.0_f32;
            let mut version = None;
            for parameter in parts {
                let Some((key, value)) = parameter.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    // An unreadable quality makes the range unusable rather
                    // than preferred.
                    "q" => {
                        quality = value
                            .parse::<f32>()
                            .ok()
                            .filter(|q| (0.0..=1.0).contains(q))
                            .unwrap_or(0.0)
                    }
                    "version" => version = Some(value),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text" if matches!(version, None | Some("1.0.0")) => {
                    openmetrics = openmetrics.max(quality);
                }
                "text/plain" | "text/*" | "*/*" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Renders one scrape: `metrics` from the source, the feed's own figures
/// and this process's, read now. Reads files under `/proc`: call it off the
/// async reactor.
pub fn render(metrics: &Metrics, feed: &LiveFeed, format: Format) -> String {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    render_at(metrics, feed, &process::Stats::read(), now_ms, format)
}

fn render_at(
    metrics: &Metrics,
    feed: &LiveFeed,
    process: &process::Stats,
    now_ms: i64,
    format: Format,
) -> String {
    let mut out = Exposition::new(format);
    build_info(&mut out);
    events(&mut out, metrics, feed);
    sales(&mut out, metrics, feed);
    latency(&mut out, metrics);
    source(&mut out, metrics, now_ms);
    memory(&mut out, metrics);
    live_feed(&mut out, feed);
    process_stats(&mut out, process);
    out.finish()
}

fn build_info(out: &mut Exposition) {
    let mut labels = vec![("version", env!("CARGO_PKG_VERSION"))];
    // Set at build time (`GMV_REVISION=$(git rev-parse --short HEAD)`);
    // cargo rebuilds when it changes.
    if let Some(revision) = option_env!("GMV_REVISION").filter(|r| !r.is_empty()) {
        labels.push(("revision", revision));
    }
    out.family(
        "gmv_build_info",
        Kind::Info,
        "The running gmv build: always 1, its version in the labels.",
    );
    out.sample("gmv_build_info", &labels, "1");
}

fn events(out: &mut Exposition, metrics: &Metrics, feed: &LiveFeed) {
    out.single(
        "gmv_events_consumed_total",
        Kind::Counter,
        "Records read (counted plus rejected).",
        &int(metrics.consumed),
    );
    out.single(
        "gmv_events_counted_total",
        Kind::Counter,
        "Records counted in GMV.",
        &int(metrics.counted),
    );
    out.family(
        "gmv_events_rejected_total",
        Kind::Counter,
        "Records rejected, by reason.",
    );
    for reason in Reason::ALL {
        out.sample(
            "gmv_events_rejected_total",
            &[("reason", reason.as_str())],
            &int(metrics.rejected.get(reason)),
        );
    }
    out.single(
        "gmv_events_per_second",
        Kind::Gauge,
        "Records read per second over the last few seconds of snapshots (rate() of gmv_events_consumed_total says the same over any range).",
        &rate(feed.events_per_second()),
    );
}

fn sales(out: &mut Exposition, metrics: &Metrics, feed: &LiveFeed) {
    out.single(
        "gmv_sales_cny",
        Kind::Gauge,
        "GMV counted in the festival window by this process's partitions, CNY.",
        &decimal(&metrics.gmv_cny),
    );
    out.single(
        "gmv_mobile_sales_cny",
        Kind::Gauge,
        "GMV counted in the festival window on the mobile channel, CNY.",
        &decimal(&metrics.mobile_gmv_cny),
    );
    out.single(
        "gmv_merchants",
        Kind::Gauge,
        "Merchants with counted GMV.",
        &int(metrics.merchants),
    );
    out.single(
        "gmv_peak_transactions_per_second",
        Kind::Gauge,
        "Most transactions settled in one second of event time.",
        &int(metrics.peak_tps),
    );
    let current = feed.latest().map_or(0, |s| s.current_tps);
    out.single(
        "gmv_current_transactions_per_second",
        Kind::Gauge,
        "Transactions settled in the last whole second before the watermark (latest snapshot).",
        &int(current),
    );
}

fn latency(out: &mut Exposition, metrics: &Metrics) {
    let Some(latency) = &metrics.latency else {
        return;
    };
    const NAME: &str = "gmv_publish_latency_seconds";
    out.family(
        NAME,
        Kind::Histogram,
        "Time from a record's start (producer timestamp, or when its chunk was read) to the snapshot that includes it being published.",
    );
    for (&bound, &events) in LATENCY_BOUNDS_MICROS.iter().zip(&latency.cumulative) {
        out.sample(
            "gmv_publish_latency_seconds_bucket",
            &[("le", &le(bound))],
            &int(events),
        );
    }
    out.sample(
        "gmv_publish_latency_seconds_bucket",
        &[("le", "+Inf")],
        &int(latency.count),
    );
    out.sample(
        "gmv_publish_latency_seconds_sum",
        &[],
        &fixed(latency.sum_micros.into(), 6),
    );
    out.sample(
        "gmv_publish_latency_seconds_count",
        &[],
        &int(latency.count),
    );
}

fn source(out: &mut Exposition, metrics: &Metrics, now_ms: i64) {
    out.single(
        "gmv_partitions_assigned",
        Kind::Gauge,
        "Input partitions this process holds.",
        &int(metrics.partitions_assigned),
    );
    out.single(
        "gmv_rebalances_total",
        Kind::Counter,
        "Consumer group rebalances (assignments and revocations) seen.",
        &int(metrics.rebalances),
    );
    if !metrics.consumer_lag.is_empty() {
        out.family(
            "gmv_consumer_lag_records",
            Kind::Gauge,
            "Records between the next offset to read and the partition's end.",
        );
        let mut lags: Vec<_> = metrics.consumer_lag.iter().collect();
        lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        for p in lags {
            let partition = p.partition.to_string();
            out.sample(
                "gmv_consumer_lag_records",
                &[("topic", &p.topic), ("partition", &partition)],
                &int(p.lag),
            );
        }
    }
    if let Some(at) = metrics.last_checkpoint_ms {
        // A clock stepped back reads as a checkpoint just made, not a
        // negative age.
        let age_ms = now_ms.saturating_sub(at).max(0);
        out.single(
            "gmv_checkpoint_age_seconds",
            Kind::Gauge,
            "Time since the newest checkpoint became durable.",
            &fixed(age_ms.unsigned_abs().into(), 3),
        );
    }
}

fn memory(out: &mut Exposition, metrics: &Metrics) {
    out.single(
        "gmv_dedup_ids",
        Kind::Gauge,
        "Transaction ids held by the redelivery (dedup) sets.",
        &int(metrics.dedup_ids),
    );
    out.single(
        "gmv_dedup_bytes",
        Kind::Gauge,
        "Bytes allocated by the redelivery (dedup) sets.",
        &int(metrics.dedup_bytes),
    );
    out.single(
        "gmv_state_bytes",
        Kind::Gauge,
        "Bytes of the partitions' other state (merchant tables, time series).",
        &int(metrics.state_bytes),
    );
}

fn live_feed(out: &mut Exposition, feed: &LiveFeed) {
    if let Some(latest) = feed.latest_published() {
        out.single(
            "gmv_snapshot_seq",
            Kind::Gauge,
            "Sequence number of the latest snapshot.",
            &int(latest.snapshot.seq),
        );
        let age_ms = u64::try_from(latest.received.elapsed().as_millis()).unwrap_or(u64::MAX);
        out.single(
            "gmv_snapshot_age_seconds",
            Kind::Gauge,
            "Time since the latest snapshot reached the live feed.",
            &fixed(age_ms.into(), 3),
        );
    }
    let (snapshots, alerts) = feed.published();
    out.single(
        "gmv_snapshots_published_total",
        Kind::Counter,
        "Snapshots handed to the live feed.",
        &int(snapshots),
    );
    out.single(
        "gmv_alerts_published_total",
        Kind::Counter,
        "Merchant threshold alerts handed to the live feed.",
        &int(alerts),
    );
    out.single(
        "gmv_live_clients",
        Kind::Gauge,
        "Open /api/live streams.",
        &int(feed.clients() as u64),
    );
    out.single(
        "gmv_live_clients_refused_total",
        Kind::Counter,
        "/api/live streams refused because max_clients were open.",
        &int(feed.stats.clients_refused.load(Relaxed)),
    );
    out.single(
        "gmv_live_alerts_skipped_total",
        Kind::Counter,
        "Threshold alerts a slow reader missed because they left the replay ring.",
        &int(feed.stats.alerts_skipped.load(Relaxed)),
    );
}

fn process_stats(out: &mut Exposition, process: &process::Stats) {
    if let Some(ticks) = process.cpu_ticks {
        out.single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            &fixed(ticks.into(), process::TICK_DIGITS),
        );
    }
    if let Some(bytes) = process.resident_bytes {
        out.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            &int(bytes),
        );
    }
    if let Some(bytes) = process.virtual_bytes {
        out.single(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            &int(bytes),
        );
    }
    if let Some(fds) = process.open_fds {
        out.single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            &int(fds),
        );
    }
    if let Some(fds) = process.max_fds {
        out.single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            &int(fds),
        );
    }
    if let Some(ticks) = process.start_ticks {
        out.single(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            &fixed(ticks.into(), process::TICK_DIGITS),
        );
    }
}

/// What a family is, as each format names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// A constant 1 whose labels carry the information: a gauge in the
    /// Prometheus format, an `info` family in OpenMetrics.
    Info,
}

/// One scrape's text, written family by family.
struct Exposition {
    text: String,
    format: Format,
}

impl Exposition {
    fn new(format: Format) -> Self {
        Self {
            text: String::with_capacity(8 * 1024),
            format,
        }
    }

    /// Writes a family's metadata. `name` is as the Prometheus format names
    /// the family: with `_total` for a counter and `_info` for an info
    /// family. OpenMetrics names the family without those suffixes (its
    /// samples keep them), and gives the unit of names ending in one.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        match self.format {
            Format::Prometheus => {
                let kind = match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge | Kind::Info => "gauge",
                    Kind::Histogram => "histogram",
                };
                let _ = write!(self.text, "# HELP {name} ");
                escape(&mut self.text, help, false);
                let _ = writeln!(self.text, "\n# TYPE {name} {kind}");
            }
            Format::OpenMetrics => {
                let (family, kind) = match kind {
                    Kind::Counter => (name.strip_suffix("_total").unwrap_or(name), "counter"),
                    Kind::Gauge => (name, "gauge"),
                    Kind::Histogram => (name, "histogram"),
                    Kind::Info => (name.strip_suffix("_info").unwrap_or(name), "info"),
                };
                let _ = writeln!(self.text, "# TYPE {family} {kind}");
                if let Some(unit) = ["seconds", "bytes"]
                    .into_iter()
                    .find(|unit| family.strip_suffix(unit).is_some_and(|n| n.ends_with('_')))
                {
                    let _ = writeln!(self.text, "# UNIT {family} {unit}");
                }
                let _ = write!(self.text, "# HELP {family} ");
                escape(&mut self.text, help, true);
                self.text.push('\n');
            }
        }
    }

    /// Writes one sample; `value` is already in exposition syntax.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"");
                escape(&mut self.text, val, true);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: &str) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.text.push_str("# EOF\n");
        }
        self.text
    }
}

/// Escapes `\` and newlines, and `"` where the format escapes it (label
/// values in both formats, HELP text only in OpenMetrics).
fn escape(out: &mut String, value: &str, quotes: bool) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A count.
fn int(value: u64) -> String {
    value.to_string()
}

/// `units / 10^digits` as exact decimal text, without trailing zeros:
/// `fixed(289_023, 6)` is `0.289023`, `fixed(1_500, 3)` is `1.5`.
fn fixed(units: u128, digits: u32) -> String {
    let scale = 10_u128.pow(digits);
    let (whole, fraction) = (units / scale, units % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

/// A bucket bound in OpenMetrics' canonical form (Go's `%g` with `.0` added
/// to whole numbers), which for bounds from 0.0001 s to 999999 s is the
/// plain decimal: `0.005`, `1.0`, `30.0`.
fn le(micros: u64) -> String {
    let text = fixed(micros.into(), 6);
    if text.contains('.') {
        text
    } else {
        text + ".0"
    }
}

/// Money as the decimal string the snapshot carries (`12345.60`), which is
/// valid exposition text as it stands. Anything else is `NaN`: a broken
/// figure shows as broken rather than as a plausible 0.
fn decimal(text: &str) -> String {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if is_digits(whole) && is_digits(fraction) {
        text.to_owned()
    } else {
        "NaN".to_owned()
    }
}

/// A measured rate, to a thousandth: more digits would be noise of the
/// division, not information.
fn rate(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// This process's figures from `/proc/self`, as Prometheus client libraries
/// export them. Each is `None` where it cannot be read (not Linux, or a
/// format this code does not know), and is then left out of the scrape.
mod process {
    use std::fs;

    /// CPU and start times in `/proc` count clock ticks of 1/USER_HZ s.
    /// USER_HZ is part of the kernel's ABI and is 100 on the architectures
    /// gmv runs on; Prometheus' own procfs library takes it as 100 too
    /// rather than asking `sysconf`, which would need libc here.
    const TICKS_PER_SECOND: u64 = 100;
    /// Decimal places of a tick count in seconds (100 ticks a second).
    pub(super) const TICK_DIGITS: u32 = 2;

    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub(super) struct Stats {
        /// User plus system CPU time, ticks.
        pub cpu_ticks: Option<u64>,
        /// Start time, ticks since the Unix epoch.
        pub start_ticks: Option<u64>,
        pub resident_bytes: Option<u64>,
        pub virtual_bytes: Option<u64>,
        pub open_fds: Option<u64>,
        /// The soft limit on open files (`None` when unlimited).
        pub max_fds: Option<u64>,
    }

    impl Stats {
        pub(super) fn read() -> Self {
            let read = |path: &str| fs::read_to_string(path).ok();
            let stat = read("/proc/self/stat").as_deref().and_then(parse_stat);
            let boot = read("/proc/stat").as_deref().and_then(parse_boot_time);
            let status = read("/proc/self/status");
            let status = status.as_deref();
            Self {
                cpu_ticks: stat.map(|s| s.cpu_ticks),
                start_ticks: stat.zip(boot).and_then(|(s, boot)| {
                    boot.checked_mul(TICKS_PER_SECOND)?
                        .checked_add(s.start_ticks_since_boot)
                }),
                resident_bytes: status.and_then(|s| status_kib(s, "VmRSS:")),
                virtual_bytes: status.and_then(|s| status_kib(s, "VmSize:")),
                // The directory's own descriptor is among them, as it is for
                // every client library that counts this way.
                open_fds: fs::read_dir("/proc/self/fd")
                    .ok()
                    .map(|entries| entries.count() as u64),
                max_fds: read("/proc/self/limits")
                    .as_deref()
                    .and_then(parse_max_open_files),
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Stat {
        pub cpu_ticks: u64,
        pub start_ticks_since_boot: u64,
    }

    /// `/proc/self/stat`: utime and stime (fields 14 and 15) and starttime
    /// (22). The command name (field 2) is in parentheses and may hold
    /// spaces and parentheses itself, so fields are counted after the last
    /// `)`.
    pub(super) fn parse_stat(text: &str) -> Option<Stat> {
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            cpu_ticks: field(14)?.checked_add(field(15)?)?,
            start_ticks_since_boot: field(22)?,
        })
    }

    /// `btime` of `/proc/stat`: boot time, seconds since the Unix epoch.
    pub(super) fn parse_boot_time(text: &str) -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|value| value.trim().parse().ok())
    }

    /// A `key:   N kB` line of `/proc/self/status`, in bytes.
    pub(super) fn status_kib(text: &str, key: &str) -> Option<u64> {
        let line = text.lines().find_map(|line| line.strip_prefix(key))?;
        let mut words = line.split_whitespace();
        let kib: u64 = words.next()?.parse().ok()?;
        (words.next()? == "kB").then_some(kib.checked_mul(1024)?)
    }

    /// The soft limit of the `Max open files` line of `/proc/self/limits`.
    pub(super) fn parse_max_open_files(text: &str) -> Option<u64> {
        let line = text
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))?;
        line.split_whitespace().next()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{LatencyBuckets, PartitionLag};
    use crate::ServeConfig;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn label_values_and_help_are_escaped_as_each_format_says() {
        let mut out = String::new();
        escape(&mut out, "a\"b\\c\nd", true);
        assert_eq!(out, r#"a\"b\\c\nd"#);
        let mut out = String::new();
        escape(&mut out, "a\"b\\c\nd", false);
        assert_eq!(out, r#"a"b\\c\nd"#);
    }

    #[test]
    fn values_render_exactly_from_integers_and_decimal_text() {
        assert_eq!(fixed(289_023, 6), "0.289023");
        assert_eq!(fixed(1_500, 3), "1.5");
        assert_eq!(fixed(42_013_000, 6), "42.013");
        assert_eq!(fixed(7, 3), "0.007");
        assert_eq!(fixed(0, 6), "0");
        assert_eq!(fixed(170_000_000_012, 2), "1700000000.12");
        assert_eq!(decimal("168200000000.50"), "168200000000.50");
        assert_eq!(decimal("0"), "0");
        assert_eq!(decimal("-3.1"), "-3.1");
        for broken in ["", "1.", ".5", "1e3", "12,5", "NaN", "-"] {
            assert_eq!(decimal(broken), "NaN", "{broken}");
        }
        assert_eq!(rate(10_000.0 / 3.0), "3333.333");
        assert_eq!(rate(12.0), "12");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(-0.0001), "0");
        assert_eq!(rate(f64::NAN), "NaN");
        assert_eq!(rate(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn bucket_bounds_are_canonical_openmetrics_numbers() {
        let bounds: Vec<String> = LATENCY_BOUNDS_MICROS.iter().map(|&b| le(b)).collect();
        assert_eq!(
            bounds,
            [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5",
                "5.0", "10.0", "30.0"
            ]
        );
        assert!(LATENCY_BOUNDS_MICROS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn negotiation_serves_openmetrics_only_when_asked_for() {
        use Format::*;
        for (accept, format) in [
            ("", Prometheus),
            ("*/*", Prometheus),
            ("text/plain", Prometheus),
            ("application/openmetrics-text", OpenMetrics),
            // What Prometheus 2 sends.
            (
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics,
            ),
            // What Prometheus 3 sends.
            (
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
                OpenMetrics,
            ),
            ("Application/OpenMetrics-Text; Version=\"1.0.0\"", OpenMetrics),
            ("application/openmetrics-text;version=0.0.1", Prometheus),
            ("application/openmetrics-text;version=2.0.0", Prometheus),
            ("application/openmetrics-text;q=0", Prometheus),
            ("application/openmetrics-text;q=0.2, text/plain", Prometheus),
            ("application/openmetrics-text;q=bogus", Prometheus),
            ("application/json", Prometheus),
        ] {
            assert_eq!(Format::negotiate(accept), format, "{accept}");
        }
        assert_eq!(Format::OpenMetrics.content_type(), OPENMETRICS_CONTENT_TYPE);
    }

    fn sample_metrics() -> Metrics {
        Metrics {
            consumed: 10,
            counted: 8,
            gmv_cny: "123.45".into(),
            mobile_gmv_cny: "100.00".into(),
            latency: Some(LatencyBuckets {
                cumulative: (1..=LATENCY_BOUNDS_MICROS.len() as u64).collect(),
                sum_micros: 289_023,
                count: 14,
            }),
            consumer_lag: vec![
                PartitionLag {
                    topic: "t".into(),
                    partition: 1,
                    lag: 5,
                },
                PartitionLag {
                    topic: "t".into(),
                    partition: 0,
                    lag: 7,
                },
            ],
            last_checkpoint_ms: Some(9_000),
            ..Metrics::default()
        }
    }

    fn process_stats() -> process::Stats {
        process::Stats {
            cpu_ticks: Some(1234),
            start_ticks: Some(170_000_000_012),
            resident_bytes: Some(4096),
            virtual_bytes: Some(8192),
            open_fds: Some(9),
            max_fds: Some(1024),
        }
    }

    #[test]
    fn prometheus_text_has_help_and_type_for_every_family() {
        let feed = LiveFeed::new(&ServeConfig::default());
        let text = render_at(
            &sample_metrics(),
            &feed,
            &process_stats(),
            10_500,
            Format::Prometheus,
        );
        let lines = lines(&text);
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert_eq!(lines[i - 1].split(' ').nth(2), Some(name), "{line}");
                assert!(
                    !rest.ends_with("counter") || name.ends_with("_total"),
                    "{line}"
                );
            }
        }
        for expected in [
            "gmv_publish_latency_seconds_bucket{le=\"0.005\"} 1",
            "gmv_publish_latency_seconds_bucket{le=\"+Inf\"} 14",
            "gmv_publish_latency_seconds_sum 0.289023",
            "gmv_checkpoint_age_seconds 1.5",
            "gmv_sales_cny 123.45",
            "process_cpu_seconds_total 12.34",
            "process_start_time_seconds 1700000000.12",
            "gmv_consumer_lag_records{topic=\"t\",partition=\"0\"} 7",
        ] {
            assert!(lines.contains(&expected), "{expected} in:\n{text}");
        }
        let partition_0 = text.find("partition=\"0\"").unwrap();
        assert!(partition_0 < text.find("partition=\"1\"").unwrap());
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
        assert!(!text.contains("gmv_snapshot_seq"), "no snapshot yet");
    }

    #[test]
    fn openmetrics_names_families_without_sample_suffixes_and_ends_with_eof() {
        let feed = LiveFeed::new(&ServeConfig::default());
        let text = render_at(
            &sample_metrics(),
            &feed,
            &process_stats(),
            10_500,
            Format::OpenMetrics,
        );
        let lines = lines(&text);
        assert_eq!(lines.last(), Some(&"# EOF"));
        assert!(text.ends_with("# EOF\n"));
        for expected in [
            "# TYPE gmv_events_consumed counter",
            "gmv_events_consumed_total 10",
            "# TYPE gmv_build info",
            "# TYPE process_cpu_seconds counter",
            "# UNIT process_cpu_seconds seconds",
            "# TYPE gmv_publish_latency_seconds histogram",
            "# UNIT gmv_publish_latency_seconds seconds",
            "# UNIT gmv_dedup_bytes bytes",
        ] {
            assert!(lines.contains(&expected), "{expected} in:\n{text}");
        }
        assert!(!text.contains("# TYPE gmv_events_consumed_total"));
        assert!(!text.contains("# UNIT gmv_dedup_ids"));
        // Metadata comes as TYPE, UNIT, HELP.
        let type_at = text.find("# TYPE gmv_dedup_bytes").unwrap();
        let unit_at = text.find("# UNIT gmv_dedup_bytes").unwrap();
        let help_at = text.find("# HELP gmv_dedup_bytes").unwrap();
        assert!(type_at < unit_at && unit_at < help_at);
    }

    #[test]
    fn families_without_figures_are_left_out() {
        let feed = LiveFeed::new(&ServeConfig::default());
        let text = render_at(
            &Metrics::default(),
            &feed,
            &process::Stats::default(),
            0,
            Format::Prometheus,
        );
        for absent in [
            "gmv_publish_latency_seconds",
            "gmv_consumer_lag_records",
            "gmv_checkpoint_age_seconds",
            "process_",
        ] {
            assert!(!text.contains(absent), "{absent}");
        }
        assert!(
            text.contains("\ngmv_sales_cny NaN\n"),
            "an empty figure is not a 0"
        );
    }

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (gmv (the) one) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 37 0 0 20 0 9 0 8123 123456789 2048 18446744073709551615";
        assert_eq!(
            process::parse_stat(stat),
            Some(process::Stat {
                cpu_ticks: 287,
                start_ticks_since_boot: 8123
            })
        );
        assert_eq!(process::parse_stat("4242 (gmv) S 1"), None);
        assert_eq!(
            process::parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        let status = "Name:\tgmv\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(process::status_kib(status, "VmRSS:"), Some(2048 * 1024));
        assert_eq!(process::status_kib(status, "VmSize:"), Some(123_456 * 1024));
        assert_eq!(process::status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            65536                524288               files     \n";
        assert_eq!(process::parse_max_open_files(limits), Some(65_536));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(process::parse_max_open_files(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_its_own_figures() {
        let stats = process::Stats::read();
        assert!(stats.resident_bytes.is_some_and(|b| b > 0));
        assert!(stats.virtual_bytes >= stats.resident_bytes);
        assert!(stats.open_fds.is_some_and(|n| n >= 3));
        assert!(stats.cpu_ticks.is_some());
        let now_ticks = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            * 100;
        assert!(stats
            .start_ticks
            .is_some_and(|t| t <= now_ticks + 100 && t + 3_600 * 100 > now_ticks));
    }
}
