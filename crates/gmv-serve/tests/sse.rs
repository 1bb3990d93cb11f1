//! `/api/live`: snapshot and alert events, late joiners, reconnection with
//! `Last-Event-ID`, slow readers, the client cap and shutdown.

mod common;

use common::{SseReader, TestServer};
use std::io::{Read, Write};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn late_client_gets_the_current_snapshot_at_once() {
    let mut server = TestServer::start().await;
    server.process(5_000, 3);
    for _ in 0..3 {
        server.publish();
    }
    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    let first = reader
        .next_within(Duration::from_secs(2))
        .await
        .expect("immediately");
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.id.as_deref(), Some("3"));
    assert_eq!(first.json()["gmv_cny"], server.figures().gmv_cny);
    server.stop().await;
}

#[tokio::test]
async fn every_tick_brings_a_snapshot_and_every_crossing_an_alert() {
    let mut server = TestServer::start().await;
    server.publish();
    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    assert_eq!(reader.next().await.id.as_deref(), Some("1"));

    // 150M in two steps: the 100M line is crossed once, by the second event.
    server.process_one("t-1", "m-star", "60000000.00");
    server.publish();
    let tick = reader.next().await;
    assert_eq!(
        (tick.event.as_str(), tick.id.as_deref()),
        ("snapshot", Some("2"))
    );
    assert_eq!(tick.json()["gmv_cny"], "60000000.00");

    server.process_one("t-2", "m-star", "90000000.00");
    server.publish();
    let alert = reader.next().await;
    assert_eq!(
        (alert.event.as_str(), alert.id.as_deref()),
        ("alert", Some("a1"))
    );
    let record: gmv_core::output::AlertRecord = serde_json::from_str(&alert.data).unwrap();
    assert_eq!(record.merchant_id, "m-star");
    assert_eq!(record.threshold_cny, "100000000.00");
    assert_eq!(record.gmv_cny, "150000000.00");
    assert_eq!(record.settled_at, "2017-11-11T00:00:07+08:00");
    let tick = reader.next().await;
    assert_eq!(
        (tick.event.as_str(), tick.id.as_deref()),
        ("snapshot", Some("3"))
    );
    assert_eq!(tick.json()["thresholds"][0]["merchants"], 1);

    server.publish();
    assert_eq!(
        reader.next().await.id.as_deref(),
        Some("4"),
        "no alert twice"
    );
    assert!(
        reader.next_within(SHORT).await.is_none(),
        "nothing between ticks"
    );
    server.stop().await;
}

#[tokio::test]
async fn synthetic_stream_alerts_arrive_in_order_with_their_snapshots() {
    let mut server = TestServer::start().await;
    server.publish();
    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    reader.next().await;
    let mut published = 0;
    for seed in 0..4 {
        server.process(5_000, 100 + seed);
        published += server.publish();
    }
    assert!(
        published > 3,
        "the synthetic stream crosses thresholds ({published})"
    );
    let mut alerts = Vec::new();
    let mut last_seq = 1;
    while last_seq < 5 {
        let event = reader.next().await;
        match event.event.as_str() {
            "alert" => alerts.push(event.id.unwrap()),
            "snapshot" => last_seq = event.id.unwrap().parse().unwrap(),
            other => panic!("unexpected event {other}"),
        }
    }
    let expected: Vec<String> = (1..=published).map(|n| format!("a{n}")).collect();
    assert_eq!(alerts, expected);
    server.stop().await;
}

#[tokio::test]
async fn reconnect_with_last_event_id_replays_only_missed_alerts() {
    let mut server = TestServer::start().await;
    server.publish();
    server.process_one("t-1", "m-a", "100000000.00");
    server.publish(); // a1, snapshot 2

    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = reader.next().await;
        seen.push(e.id.unwrap());
    }
    assert_eq!(
        seen,
        ["2", "a1"],
        "a fresh client gets the snapshot, then recent alerts"
    );
    drop(reader);

    // While away: two more crossings and two ticks.
    server.process_one("t-2", "m-b", "100000000.00");
    server.publish(); // a2, snapshot 3
    server.process_one("t-3", "m-c", "100000000.00");
    server.publish(); // a3, snapshot 4

    let ids = |events: Vec<common::SseEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.id.unwrap()).collect()
    };
    let drain = |url: String, last: &'static str| async move {
        let mut reader = SseReader::connect(&url, Some(last)).await;
        let mut events = Vec::new();
        while let Some(e) = reader.next_within(SHORT).await {
            events.push(e);
        }
        events
    };
    let url = server.url("/api/live");
    assert_eq!(ids(drain(url.clone(), "a1").await), ["a2", "a3", "4"]);
    assert_eq!(ids(drain(url.clone(), "2").await), ["a2", "a3", "4"]);
    assert_eq!(ids(drain(url.clone(), "3").await), ["a3", "4"]);
    assert_eq!(ids(drain(url.clone(), "4").await), ["4"]);
    // An id from another life of the server: a fresh start.
    assert_eq!(
        ids(drain(url.clone(), "999").await),
        ["4", "a1", "a2", "a3"]
    );
    // The page reopens streams itself and passes the id in the query.
    let mut reader = SseReader::connect(&format!("{url}?last_event_id=a2"), None).await;
    assert_eq!(reader.next().await.id.as_deref(), Some("a3"));
    assert_eq!(reader.next().await.id.as_deref(), Some("4"));
    server.stop().await;
}

/// A client that stops reading costs no more than its socket buffers: the
/// server writes nothing while the socket is full and, when the client
/// reads again, skips to the latest snapshot.
#[tokio::test]
async fn stalled_client_is_skipped_forward_not_queued() {
    let mut server = TestServer::start().await;
    server.process(20_000, 5);
    server.publish();
    let addr = server.addr;
    let mut stalled = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .write_all(b"GET /api/live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            .unwrap();
        socket
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let base = server.feeder.view.snapshot(0, 500, Default::default());
    let frame_bytes = serde_json::to_vec(&base).unwrap().len();
    let ticks = 8_000u64;
    let published = {
        use gmv_core::sink::LiveSink;
        let feed = server.feed.clone();
        tokio::task::spawn_blocking(move || {
            for seq in 2..=ticks {
                let mut snapshot = base.clone();
                snapshot.seq = seq;
                feed.snapshot(&std::sync::Arc::new(snapshot));
            }
        })
    };
    published.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let received = tokio::task::spawn_blocking(move || {
        stalled
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut all = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stalled.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        all
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&received);
    let snapshots = text.matches("event: snapshot").count() as u64;
    let last_id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap();
    println!(
        "stalled client: {ticks} snapshots of {frame_bytes} B published, {snapshots} received ({} KiB)",
        received.len() / 1024
    );
    assert_eq!(last_id, ticks.to_string(), "ends on the latest snapshot");
    assert!(
        snapshots < ticks / 2,
        "skipped forward: {snapshots} of {ticks}"
    );
    server.stop().await;
}

#[tokio::test]
async fn streams_beyond_max_clients_are_refused_with_retry_after() {
    let mut server = TestServer::start_with(gmv_serve::ServeConfig {
        max_clients: 2,
        ..Default::default()
    })
    .await;
    server.publish();
    let a = SseReader::connect(&server.url("/api/live"), None).await;
    let b = SseReader::connect(&server.url("/api/live"), None).await;
    let refused = reqwest::get(server.url("/api/live")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    assert_eq!(server.feed.clients(), 2);
    drop((a, b));
    // The slots come back once the server notices the hang-ups.
    let mut again = None;
    for _ in 0..50 {
        let response = reqwest::get(server.url("/api/live")).await.unwrap();
        if response.status() == 200 {
            again = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a slot was freed");
    server.stop().await;
}

#[tokio::test]
async fn idle_stream_gets_keep_alive_comments() {
    let mut server = TestServer::start_with(gmv_serve::ServeConfig {
        keep_alive: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    server.publish();
    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    reader.next().await;
    assert!(reader
        .next_within(Duration::from_millis(450))
        .await
        .is_none());
    assert!(reader.comments >= 2, "{} keep-alives", reader.comments);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_the_server() {
    let mut server = TestServer::start().await;
    server.publish();
    let mut reader = SseReader::connect(&server.url("/api/live"), None).await;
    reader.next().await;
    server.shutdown.cancel();
    assert!(
        reader.next_within(Duration::from_secs(5)).await.is_none(),
        "stream closed"
    );
    tokio::time::timeout(Duration::from_secs(5), server.server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_on_a_client_that_stopped_reading() {
    let mut server = TestServer::start_with(gmv_serve::ServeConfig {
        shutdown_grace: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    server.process(20_000, 5);
    server.publish();
    let addr = server.addr;
    let _stalled = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .write_all(b"GET /api/live HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        socket
    })
    .await
    .unwrap();
    // Fill its socket buffers so the server's writes block.
    let base = server.feeder.view.snapshot(0, 500, Default::default());
    {
        use gmv_core::sink::LiveSink;
        let feed = server.feed.clone();
        tokio::task::spawn_blocking(move || {
            for seq in 2..=3_000 {
                let mut snapshot = base.clone();
                snapshot.seq = seq;
                feed.snapshot(&std::sync::Arc::new(snapshot));
                if seq % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
        .await
        .unwrap();
    }
    let started = std::time::Instant::now();
    server.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.server)
        .await
        .expect("serve returns after the grace period")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "it did wait for the grace period"
    );
}
