//! `gmv demo --http`: the binary serves the live feed while it processes a
//! paced stream, the snapshot climbs, and SIGTERM stops it cleanly.

mod common;

use common::{free_port, get};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_serves_a_climbing_snapshot_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gmv"))
        .current_dir(dir.path())
        .args([
            "demo",
            "--events",
            "400000",
            "--rate",
            "100000",
            "--publish-interval",
            "100ms",
        ])
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gmv demo starts");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: Vec<(u64, f64)> = Vec::new();
    while Instant::now() < deadline && seen.len() < 3 {
        if let Some((200, body)) = get(port, "/api/snapshot") {
            let snapshot: Value = serde_json::from_str(&body).expect("snapshot is JSON");
            let seq = snapshot["seq"].as_u64().expect("seq");
            let gmv: f64 = snapshot["gmv_cny"]
                .as_str()
                .expect("gmv")
                .parse()
                .expect("money");
            if seen.last().is_none_or(|(s, _)| *s < seq) && gmv > 0.0 {
                seen.push((seq, gmv));
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(seen.len() >= 3, "snapshots seen: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[1].1 >= w[0].1),
        "GMV never goes down: {seen:?}"
    );
    let (status, page) = get(port, "/").expect("page");
    assert_eq!(status, 200);
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "{}",
        &page[..page.len().min(200)]
    );
    let (status, metrics) = get(port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("gmv_"), "{metrics}");

    // kill(1) sends SIGTERM; the demo drains, stops serving and exits.
    let killed = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // Well inside the 20 s shutdown grace: a stop that waits for the
    // producer's queue to empty (the publisher keeps it busy) shows here.
    let deadline = Instant::now() + Duration::from_secs(8);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "gmv did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    // A signal ends the command with 128 + its number, whether it cut the
    // stream short or ended the serving that follows it.
    assert_eq!(status.code(), Some(143), "{status:?}");
}
