//! `/metrics` against what operators build on it: the Grafana dashboard and
//! the alert rules in `deploy/` only use series the server serves, both
//! exposition formats are well formed, and the latency histogram is a
//! proper Prometheus histogram.

mod common;

use common::TestServer;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A server with figures in every family: counted events, a source status
/// with lag, rebalances and a checkpoint, and a latency histogram.
async fn busy_server() -> TestServer {
    let mut server = TestServer::start().await;
    server.process(5_000, 3);
    for (micros, events) in [
        (4_000, 3),
        (5_000, 2),
        (7_000, 1),
        (256_000, 4),
        (40_960_000, 1),
    ] {
        server.state.latency().record(micros, events);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    server.state.set_status(|s| {
        s.ready = true;
        s.partitions = 2;
        s.lag = vec![
            ("settled-transactions".into(), 1, 7),
            ("settled-transactions".into(), 0, 42),
        ];
        s.rebalances = 3;
        s.last_checkpoint_ms = Some(now_ms - 2_500);
    });
    server.publish();
    server
}

/// `/metrics` asked for with `accept`: (content type, body).
async fn scrape(server: &TestServer, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(server.url("/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["vary"], "accept");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// The sample names of an exposition (whatever the format).
fn served_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            line[..end].to_owned()
        })
        .collect()
}

/// Metric names in a PromQL text: identifiers that start with `gmv_` or
/// `process_` (so no label name, function or Grafana variable).
fn metric_names(promql: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut previous = ' ';
    for (at, c) in promql.char_indices() {
        let rest = &promql[at..];
        if !is_ident(previous) && (rest.starts_with("gmv_") || rest.starts_with("process_")) {
            let end = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
            names.insert(rest[..end].to_owned());
        }
        previous = c;
    }
    names
}

/// Every PromQL expression of the dashboard: targets' `expr` and template
/// variables' `query` (a string, or an object holding one).
fn dashboard_expressions() -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "query" | "definition", serde_json::Value::String(text)) => {
                            out.push(text.clone());
                        }
                        _ => walk(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy("grafana/gmv-stream.json"))).expect("dashboard JSON");
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out
}

/// One alerting rule of the rules file, read line by line: the file is
/// plain block YAML (`- alert:` items with `expr`, `for`, `labels` and
/// `annotations`), so this small reader is enough and needs no YAML crate.
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    keys: BTreeMap<String, String>,
}

fn alert_rules() -> Vec<Rule> {
    let text = read(&deploy("prometheus/gmv-stream.rules.yml"));
    let lines: Vec<&str> = text.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut rules: Vec<Rule> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        i += 1;
        if let Some(name) = trimmed.strip_prefix("- alert:") {
            rules.push(Rule {
                alert: name.trim().to_owned(),
                ..Rule::default()
            });
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        // A block scalar (`|`, `>-`, ...) is every following line indented
        // deeper than its key.
        let value = if value.starts_with(['|', '>']) {
            let mut block = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line))
            {
                block.push(lines[i].trim());
                i += 1;
            }
            block.join(" ")
        } else {
            value.trim_matches('"').to_owned()
        };
        if key == "expr" {
            rule.expr = value;
        } else {
            rule.keys.insert(key.to_owned(), value);
        }
    }
    rules
}

#[tokio::test]
async fn every_series_the_dashboard_and_the_alerts_use_is_served() {
    let server = busy_server().await;
    let (_, text) = scrape(&server, None).await;
    let served = served_names(&text);

    let expressions = dashboard_expressions();
    assert!(expressions.len() >= 20, "{expressions:?}");
    let rules = alert_rules();
    assert!(rules.len() >= 7, "{rules:?}");

    let mut used: BTreeMap<String, &str> = BTreeMap::new();
    for expr in &expressions {
        for name in metric_names(expr) {
            used.insert(name, "the dashboard");
        }
    }
    for rule in &rules {
        assert!(!rule.expr.is_empty(), "{} has no expr", rule.alert);
        for name in metric_names(&rule.expr) {
            used.insert(name, "the alert rules");
        }
    }
    for must in [
        "gmv_sales_cny",
        "gmv_publish_latency_seconds_bucket",
        "gmv_consumer_lag_records",
        "gmv_checkpoint_age_seconds",
        "gmv_rebalances_total",
        "gmv_partitions_assigned",
        "gmv_snapshot_age_seconds",
        "gmv_events_rejected_total",
        "gmv_live_clients",
        "gmv_dedup_bytes",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains_key(must), "nothing uses {must}");
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| !served.contains(*name))
        .map(|(name, by)| format!("{name} (used by {by})"))
        .collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{text}");
    server.stop().await;
}

#[test]
fn every_alert_says_what_to_check() {
    for rule in alert_rules() {
        for key in ["for", "severity", "summary", "description"] {
            assert!(
                rule.keys.get(key).is_some_and(|v| !v.is_empty()),
                "{} has no {key}: {rule:?}",
                rule.alert
            );
        }
        let description = &rule.keys["description"];
        assert!(
            description.contains("Check") || description.contains("check"),
            "{}: {description}",
            rule.alert
        );
    }
}

#[tokio::test]
async fn prometheus_text_is_well_formed_with_help_and_type_first() {
    let server = busy_server().await;
    let (content_type, text) = scrape(&server, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let families = check_exposition(&text, false);
    let kind = |name: &str| families.get(name).map(String::as_str);
    assert_eq!(kind("gmv_events_consumed_total"), Some("counter"));
    assert_eq!(kind("gmv_build_info"), Some("gauge"));
    assert_eq!(kind("gmv_publish_latency_seconds"), Some("histogram"));
    assert_eq!(kind("process_cpu_seconds_total"), Some("counter"));
    assert!(!text.contains("gmv_gmv_"), "no repeated prefix");
    assert!(!text.contains("quantile="), "latency is a histogram now");

    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"gmv_partitions_assigned 2"));
    assert!(lines.contains(&"gmv_rebalances_total 3"));
    assert!(lines
        .contains(&"gmv_consumer_lag_records{topic=\"settled-transactions\",partition=\"0\"} 42"));
    let age = sample(&text, "gmv_checkpoint_age_seconds");
    assert!((2.5..10.0).contains(&age), "{age}");
    assert_eq!(
        sample(&text, "gmv_dedup_ids"),
        server.state.memory().dedup_ids as f64
    );

    // The crate's Prometheus parser reads it too.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid exposition");
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "gmv_publish_latency_seconds"
            && matches!(s.value, prometheus_parse::Value::Histogram(_))));
    server.stop().await;
}

#[tokio::test]
async fn openmetrics_is_served_when_asked_and_ends_with_eof() {
    let server = busy_server().await;
    // What Prometheus 2 sends.
    let (content_type, text) = scrape(
        &server,
        Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert_eq!(content_type, OPENMETRICS);
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    let families = check_exposition(&text, true);
    let kind = |name: &str| families.get(name).map(String::as_str);
    assert_eq!(kind("gmv_events_consumed"), Some("counter"));
    assert_eq!(kind("process_cpu_seconds"), Some("counter"));
    assert_eq!(kind("gmv_build"), Some("info"));
    assert_eq!(kind("gmv_publish_latency_seconds"), Some("histogram"));
    assert_eq!(kind("gmv_events_consumed_total"), None);
    // The same series as in the Prometheus format.
    let (_, prometheus) = scrape(&server, Some("text/plain")).await;
    assert_eq!(served_names(&text), served_names(&prometheus));

    let (content_type, _) = scrape(&server, Some("*/*")).await;
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    server.stop().await;
}

#[tokio::test]
async fn latency_histogram_is_cumulative_and_ends_with_inf_equal_to_count() {
    let server = busy_server().await;
    for accept in [None, Some(OPENMETRICS)] {
        let (_, text) = scrape(&server, accept).await;
        let buckets: Vec<(String, u64)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("gmv_publish_latency_seconds_bucket{le=\""))
            .map(|rest| {
                let (le, value) = rest.split_once("\"} ").unwrap();
                (le.to_owned(), value.parse().unwrap())
            })
            .collect();
        let bounds: Vec<&str> = buckets.iter().map(|(le, _)| le.as_str()).collect();
        assert_eq!(
            bounds,
            [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5",
                "5.0", "10.0", "30.0", "+Inf"
            ]
        );
        let counts: Vec<u64> = buckets.iter().map(|&(_, n)| n).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
        assert_eq!(counts[0], 5, "5 ms is in le=0.005");
        assert_eq!(counts[counts.len() - 2], 10, "40.96 s is only in +Inf");
        let count = sample(&text, "gmv_publish_latency_seconds_count");
        assert_eq!(counts.last().copied(), Some(11));
        assert_eq!(count, 11.0);
        // The sum is exact decimal text, not float noise.
        assert!(
            text.lines()
                .any(|l| l == "gmv_publish_latency_seconds_sum 42.013"),
            "{text}"
        );
        let bucket_at = text.find("gmv_publish_latency_seconds_bucket").unwrap();
        let sum_at = text.find("gmv_publish_latency_seconds_sum").unwrap();
        assert!(bucket_at < sum_at);
    }
    server.stop().await;
}

#[tokio::test]
async fn promtool_accepts_the_exposition_and_the_rules() {
    let Some(promtool) = which("promtool") else {
        eprintln!("promtool not on PATH (Debian: apt-get install prometheus): skipped");
        return;
    };
    let server = busy_server().await;
    let (_, text) = scrape(&server, None).await;
    server.stop().await;

    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );

    let rules_dir = deploy("prometheus");
    for args in [
        ["check", "rules", "gmv-stream.rules.yml"],
        ["test", "rules", "gmv-stream.rules.test.yml"],
    ] {
        let output = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&rules_dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// The value of the first unlabelled sample `name`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
        .parse()
        .unwrap()
}

/// Checks an exposition's structure strictly (the crate's parser skips what
/// it does not understand) and returns each family's type:
/// - every family has one TYPE and one HELP line, before its samples;
/// - a family's samples are together, and named for it: the family name,
///   or with `_bucket`/`_sum`/`_count` for a histogram; in OpenMetrics,
///   `_total` for a counter and `_info` for an info family, neither of
///   which is part of the family name;
/// - in the Prometheus format, counters' names end in `_total`;
/// - names and label names are valid, values are numbers;
/// - OpenMetrics ends with `# EOF` and has nothing after it.
fn check_exposition(text: &str, openmetrics: bool) -> BTreeMap<String, String> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert!(openmetrics, "# EOF in the Prometheus format");
            assert_eq!(i, lines.len() - 1, "lines after # EOF");
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let (kind, family) = (words.next().unwrap(), words.next().unwrap_or(""));
            let rest = words.next().unwrap_or("");
            assert!(valid_name(family), "{line}");
            if current.as_deref() != Some(family) {
                if let Some(done) = current.take() {
                    finished.insert(done);
                }
                assert!(!finished.contains(family), "{family} interleaved");
                current = Some(family.to_owned());
            }
            match kind {
                "TYPE" => {
                    assert!(
                        types.insert(family.into(), rest.into()).is_none(),
                        "two TYPEs: {line}"
                    );
                    if !openmetrics && rest == "counter" {
                        assert!(family.ends_with("_total"), "{line}");
                    }
                    if openmetrics && rest == "counter" {
                        assert!(!family.ends_with("_total"), "{line}");
                    }
                }
                "HELP" => assert!(helps.insert(family.into()), "two HELPs: {line}"),
                "UNIT" => {
                    assert!(openmetrics, "{line}");
                    assert!(family.ends_with(&format!("_{rest}")), "{line}");
                }
                _ => panic!("unexpected comment: {line}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "blank line {i}");
        let end = line.find(['{', ' ']).unwrap();
        let name = &line[..end];
        let family = current
            .as_deref()
            .unwrap_or_else(|| panic!("no family: {line}"));
        let kind = types.get(family).map(String::as_str);
        let suffixes: &[&str] = match (kind, openmetrics) {
            (Some("histogram"), _) => &["_bucket", "_sum", "_count"],
            (Some("counter"), true) => &["_total"],
            (Some("info"), true) => &["_info"],
            _ => &[""],
        };
        assert!(
            suffixes.iter().any(|s| name == format!("{family}{s}")),
            "{name} is not of family {family}"
        );
        assert!(helps.contains(family), "{family} has no HELP before {line}");
        let (labels, value) = match line[end..].strip_prefix('{') {
            Some(rest) => rest.rsplit_once("} ").unwrap(),
            None => ("", &line[end + 1..]),
        };
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (label, quoted) = pair.split_once('=').unwrap();
            assert!(valid_name(label) && !label.contains(':'), "{line}");
            assert!(quoted.starts_with('"'), "{line}");
        }
        let number = value.trim();
        assert!(
            ["+Inf", "-Inf", "NaN"].contains(&number) || number.parse::<f64>().is_ok(),
            "{line}"
        );
    }
    if openmetrics {
        assert_eq!(lines.last(), Some(&"# EOF"));
    }
    assert_eq!(
        types.keys().collect::<Vec<_>>(),
        helps.iter().collect::<Vec<_>>(),
        "every family has TYPE and HELP"
    );
    types
}
