//! The JSON API, `/metrics`, health and the page, against a real server on
//! 127.0.0.1 with a random port, fed by one partition.

mod common;

use common::TestServer;
use gmv_core::Reason;
use serde_json::Value;
use std::collections::HashSet;

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

#[tokio::test]
async fn snapshot_is_unavailable_until_published_then_matches_the_view() {
    let mut server = TestServer::start().await;
    let response = get(&server.url("/api/snapshot")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    server.process(20_000, 7);
    server.publish();
    let response = get(&server.url("/api/snapshot")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let snapshot: gmv_core::output::Snapshot = response.json().await.unwrap();
    let figures = server.figures();
    assert_eq!(snapshot.seq, 1);
    assert_eq!(snapshot.figures.gmv_cny, figures.gmv_cny);
    assert_eq!(snapshot.figures.transactions, figures.transactions);
    assert_eq!(
        snapshot.figures.accounting.consumed,
        snapshot.figures.accounting.counted + snapshot.figures.accounting.rejected
    );
    assert!(!snapshot.recent_minutes.is_empty());

    server.process(1_000, 8);
    server.publish();
    let later: Value = get(&server.url("/api/snapshot"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later["seq"], 2);
    assert_eq!(later["gmv_cny"], server.figures().gmv_cny);
    server.stop().await;
}

#[tokio::test]
async fn day_series_is_unavailable_until_published_then_has_every_minute() {
    let mut server = TestServer::start().await;
    let response = get(&server.url("/api/day")).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    // Enough of the synthetic day to cover more minutes than a snapshot
    // carries, so the series is more than `recent_minutes`.
    server.process(200_000, 7);
    server.publish();
    let response = get(&server.url("/api/day")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let day: gmv_core::output::DaySeries = response.json().await.unwrap();
    let snapshot = server.state.latest().unwrap();
    assert_eq!(day.window.as_ref(), Some(&snapshot.figures.window));
    assert_eq!(day.watermark, snapshot.watermark);
    assert!(
        day.minutes.len() > snapshot.recent_minutes.len(),
        "{} minutes in the day, {} in the snapshot",
        day.minutes.len(),
        snapshot.recent_minutes.len()
    );
    assert!(day.minutes.windows(2).all(|w| w[0].minute < w[1].minute));
    assert!(day.minutes.ends_with(&snapshot.recent_minutes));
    let fen = |cny: &str| gmv_core::money::parse_cny(cny).unwrap_or(0);
    let total: u64 = day.minutes.iter().map(|m| fen(&m.gmv_cny)).sum();
    assert_eq!(
        total,
        fen(&snapshot.figures.gmv_cny),
        "the minutes add up to the GMV"
    );
    server.stop().await;
}

#[tokio::test]
async fn screen_settings_come_from_the_http_section() {
    let server = TestServer::start_with(gmv_serve::ServeConfig {
        milestone_every_cny: "5000000000.00".into(),
        baseline_label: Some("2016".into()),
        baseline_gmv_cny: Some("120700000000.00".into()),
        baseline_mobile_share: Some(gmv_serve::config::Fraction(0.82)),
        ..Default::default()
    })
    .await;
    let response = get(&server.url("/api/screen")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "milestone_every_cny": "5000000000.00",
            "baseline": {"label": "2016", "gmv_cny": "120700000000.00", "mobile_share": 0.82}
        })
    );
    server.stop().await;

    let server = TestServer::start().await;
    let body: Value = get(&server.url("/api/screen")).await.json().await.unwrap();
    assert_eq!(body["milestone_every_cny"], "10000000000.00");
    assert!(body["baseline"].is_null());
    server.stop().await;
}

#[tokio::test]
async fn ops_figures_follow_the_feed_and_count_live_streams() {
    let mut server = TestServer::start().await;
    let body: Value = get(&server.url("/api/ops")).await.json().await.unwrap();
    assert!(body["seq"].is_null());
    assert_eq!(body["ready"], false);
    assert!(body["not_ready"].as_str().unwrap().contains("no snapshot"));

    server.process(20_000, 7);
    server.ready();
    server.publish();
    let mut stream = common::SseReader::connect(&server.url("/api/live"), None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    let response = get(&server.url("/api/ops")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let figures = server.figures();
    assert_eq!(body["seq"], 1);
    assert_eq!(body["ready"], true);
    assert!(body["not_ready"].is_null());
    assert_eq!(body["consumed"], 20_000);
    assert_eq!(body["counted"], figures.accounting.counted);
    assert_eq!(body["rejected"], figures.accounting.rejected);
    assert_eq!(
        body["rejected_by_reason"],
        serde_json::to_value(figures.rejected).unwrap()
    );
    assert_eq!(body["live_clients"], 1);
    assert_eq!(body["snapshots_published"], 1);
    assert_eq!(body["dedup_ids"], server.state.memory().dedup_ids);
    assert!(body["snapshot_age_ms"].as_u64().unwrap() < 5_000);
    for key in ["p50", "p99", "p999", "count"] {
        assert!(body["latency_ms"][key].is_number(), "{key}: {body}");
    }
    assert_eq!(body["partitions"], 1, "the source's own count");
    assert_eq!(body["lag"], serde_json::json!([]));
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn top_merchants_honours_n_caps_it_and_refuses_bad_values() {
    let mut server = TestServer::start_with(gmv_serve::ServeConfig {
        max_top: 50,
        ..Default::default()
    })
    .await;
    server.process(20_000, 7);
    server.publish();

    let body: Value = get(&server.url("/api/merchants/top"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["n"], 20);
    let merchants = body["merchants"].as_array().unwrap();
    assert_eq!(merchants.len(), 20);
    let engine_top = server.figures().top_merchants;
    assert_eq!(
        merchants[0]["merchant_id"],
        engine_top[0].merchant_id.as_str()
    );
    let gmv: Vec<f64> = merchants
        .iter()
        .map(|m| m["gmv_cny"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(gmv.windows(2).all(|w| w[0] >= w[1]), "biggest first");

    let body: Value = get(&server.url("/api/merchants/top?n=3"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["merchants"].as_array().unwrap().len(), 3);
    let body: Value = get(&server.url("/api/merchants/top?n=100000"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["n"], 50);
    assert_eq!(body["merchants"].as_array().unwrap().len(), 50);

    for bad in [
        "n=0",
        "n=-3",
        "n=ten",
        "n=",
        "n=2.5",
        "n=99999999999999999999999",
    ] {
        let response = get(&server.url(&format!("/api/merchants/top?{bad}"))).await;
        assert_eq!(response.status(), 400, "{bad}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("`n`"),
            "{bad}: {error}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn merchant_lookup_finds_sellers_and_404s_the_rest() {
    let mut server = TestServer::start().await;
    server.process_one("t-1", "m-shop", "120.50");
    server.process_one("t-2", "m-shop", "79.50");
    server.publish();

    let response = get(&server.url("/api/merchants/m-shop")).await;
    assert_eq!(response.status(), 200);
    let record: gmv_core::output::MerchantRecord = response.json().await.unwrap();
    assert_eq!(record.gmv_cny, "200.00");
    assert_eq!(record.transactions, 2);

    let long = "x".repeat(65);
    for path in [
        "/api/merchants/m-nobody".to_owned(),
        format!("/api/merchants/{long}"),
        "/api/merchants/%E2%9C%93".to_owned(),
        "/api/nothing".to_owned(),
        "/assets/missing.js".to_owned(),
        "/api/merchants".to_owned(),
    ] {
        let response = get(&server.url(&path)).await;
        assert_eq!(response.status(), 404, "{path}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string(), "{path}");
    }
    let response = reqwest::Client::new()
        .post(server.url("/api/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_valid_prometheus_text_without_merchant_labels() {
    let mut server = TestServer::start().await;
    server.process(20_000, 7);
    server.publish();
    let response = get(&server.url("/metrics")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");

    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("{name} {label:?} missing:\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        }
    };
    let figures = server.figures();
    assert_eq!(value("gmv_events_consumed_total", None), 20_000.0);
    assert_eq!(
        value("gmv_events_counted_total", None),
        figures.accounting.counted as f64
    );
    for reason in Reason::ALL {
        assert_eq!(
            value(
                "gmv_events_rejected_total",
                Some(("reason", reason.as_str()))
            ),
            figures.rejected.get(reason) as f64
        );
    }
    let gmv: f64 = figures.gmv_cny.parse().unwrap();
    assert_eq!(value("gmv_sales_cny", None), gmv);
    assert_eq!(
        value("gmv_dedup_ids", None),
        server.state.memory().dedup_ids as f64
    );
    assert_eq!(value("gmv_snapshot_seq", None), 1.0);
    let age = value("gmv_snapshot_age_seconds", None);
    assert!((0.0..5.0).contains(&age), "{age}");
    for name in [
        "gmv_events_per_second",
        "gmv_live_clients",
        "gmv_peak_transactions_per_second",
        "gmv_build_info",
    ] {
        value(name, None);
    }
    let label_names: HashSet<&str> = scrape
        .samples
        .iter()
        .flat_map(|s| s.labels.keys().map(String::as_str))
        .collect();
    assert!(
        label_names.is_subset(&HashSet::from([
            "reason",
            "le",
            "topic",
            "partition",
            "version",
            "revision"
        ])),
        "{label_names:?}"
    );
    assert!(!text.contains("m-0"), "no merchant appears in /metrics");
    server.stop().await;
}

#[tokio::test]
async fn health_is_always_ok_and_readiness_needs_the_source_and_fresh_snapshots() {
    let mut server = TestServer::start_with(gmv_serve::ServeConfig {
        stale_after: std::time::Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    server.feeder.interval_ms = 50;
    assert_eq!(get(&server.url("/healthz")).await.status(), 200);
    let response = get(&server.url("/readyz")).await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(body.contains("no partitions assigned"), "{body}");
    assert!(body.contains("no snapshot"), "{body}");

    server.publish();
    let response = get(&server.url("/readyz")).await;
    assert_eq!(response.status(), 503, "snapshots alone are not enough");
    let body = response.text().await.unwrap();
    assert!(
        body.contains("source:") && !body.contains("snapshots:"),
        "{body}"
    );

    server.state.set_status(|s| s.partitions = 4);
    let body = get(&server.url("/readyz")).await.text().await.unwrap();
    assert!(body.contains("not restored"), "{body}");
    server.state.set_status(|s| s.ready = true);
    server.publish();
    let response = get(&server.url("/readyz")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ready\n");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let response = get(&server.url("/readyz")).await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(body.contains("old") && !body.contains("source:"), "{body}");
    assert_eq!(get(&server.url("/healthz")).await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn page_and_its_assets_are_served_from_the_binary() {
    let server = TestServer::start().await;
    let page = get(&server.url("/")).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("id=\"gmv-cny\""));
    let ops = get(&server.url("/ops")).await;
    assert_eq!(ops.status(), 200);
    assert_eq!(ops.headers()["content-security-policy"], csp.as_str());
    assert_eq!(ops.text().await.unwrap(), html, "one page, two views");
    for (path, kind) in [
        ("/assets/scoreboard.css", "text/css"),
        ("/assets/scoreboard.js", "text/javascript"),
    ] {
        let response = get(&server.url(path)).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert!(response.text().await.unwrap().len() > 1000);
    }
    server.stop().await;
}
