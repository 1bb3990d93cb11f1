//! `gmv demo` replays the night at real scale: the scoreboard's peak
//! transactions per second (counted by event time) reaches 2017's figures
//! within seconds, and the day's figures are printed when the stream ends,
//! not only at Ctrl-C.
//!
//! The tests run one at a time: the rush takes most of this machine.

mod common;

use common::{free_port, get, gmv};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Sends SIGTERM and waits (bounded) for the exit.
fn terminate(child: &mut Child) -> ExitStatus {
    let killed = Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gmv did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) for an exit.
fn wait_for_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("gmv did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_summary(stdout: &str) {
    for line in ["GMV ", "transactions/s at ", "accounting: consumed "] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
}

/// The summary's records consumed (its numbers may be grouped: 30,000).
fn consumed(stdout: &str) -> Option<u64> {
    let after = stdout.split("accounting: consumed ").nth(1)?;
    let figure = after.split(" =").next()?;
    figure.replace(',', "").parse().ok()
}

#[test]
fn the_default_demo_shows_the_midnight_peak_within_ninety_seconds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let started = Instant::now();
    let mut child = gmv()
        .current_dir(dir.path())
        .args(["demo", "--http", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gmv demo starts");

    let deadline = started + Duration::from_secs(90);
    let mut best: Option<(u64, u64, String)> = None;
    let mut reached = None;
    while Instant::now() < deadline && reached.is_none() {
        if let Some((200, body)) = get(port, "/api/snapshot") {
            let snapshot: Value = serde_json::from_str(&body).expect("snapshot is JSON");
            let peak = snapshot["peak_tps"].as_u64().expect("peak_tps");
            let current = snapshot["current_tps"].as_u64().expect("current_tps");
            let second = snapshot["peak_second"].as_str().unwrap_or("-").to_owned();
            if best.as_ref().is_none_or(|(p, _, _)| peak > *p) {
                best = Some((peak, current, second));
            }
            if peak >= 200_000 {
                reached = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = terminate(&mut child);
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let Some(reached) = reached else {
        panic!("peak TPS under 200,000 after 90 s; best seen (peak, current, second): {best:?}");
    };
    eprintln!("peak TPS >= 200,000 after {reached:?}; best seen (peak, current, second): {best:?}");
    // 2017's peak second, at 00:00:05, is the schedule's too.
    let (_, _, second) = best.expect("a snapshot");
    assert!(second.starts_with("2017-11-11T00:00:0"), "peak at {second}");
    assert_eq!(status.code(), Some(143), "{status:?}");
    // Stopped mid-stream, it still prints what was read.
    assert_summary(&stdout);
}

#[test]
fn the_days_figures_are_printed_when_the_stream_ends() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = gmv()
        .current_dir(dir.path())
        .args(["demo", "--events", "30000", "--no-http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gmv demo starts");
    let status = wait_for_exit(&mut child, Duration::from_secs(60));
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    assert_eq!(status.code(), Some(0), "{status:?}\n{stdout}");
    assert_summary(&stdout);
    assert_eq!(
        consumed(&stdout),
        Some(30_000),
        "every record read: {stdout}"
    );
    // Busy time is the stream's, not the group join's or the idle wait's:
    // 30,000 records are the rush's first second.
    let seconds: f64 = stdout
        .split("accounting: ")
        .nth(1)
        .and_then(|line| line.split(" (").nth(1))
        .and_then(|rest| rest.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no busy seconds in {stdout}"));
    assert!(seconds < 3.0, "busy {seconds}s: {stdout}");
}

#[test]
fn a_serving_demo_prints_the_days_figures_at_the_streams_end_then_serves_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut child = gmv()
        .current_dir(dir.path())
        .args(["demo", "--events", "30000"])
        .args(["--http", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("gmv demo starts");
    let (lines, seen) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.starts_with("accounting: "))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no summary within 60 s: {printed:?}");
            }
        }
    }
    assert_summary(&printed.join("\n"));
    // Still serving the final figures.
    assert!(child.try_wait().expect("wait").is_none(), "exited early");
    let (status, body) = get(port, "/api/snapshot").expect("still serving");
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_str(&body).expect("snapshot is JSON");
    assert_eq!(snapshot["accounting"]["consumed"].as_u64(), Some(30_000));
    assert_eq!(terminate(&mut child).code(), Some(143));
}

#[test]
fn the_demo_straight_to_the_workers_ends_with_its_figures() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let output = gmv()
        .current_dir(dir.path())
        .args([
            "demo",
            "--no-kafka",
            "--events",
            "30000",
            "--exit-when-done",
        ])
        .args(["--http", "127.0.0.1:0"])
        .output()
        .expect("gmv demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_summary(&stdout);
    assert_eq!(consumed(&stdout), Some(30_000), "{stdout}");
}

#[test]
fn a_time_lapse_that_is_no_factor_is_a_usage_error() {
    for bad in [
        "--time-lapse=-1",
        "--rush-time-lapse=NaN",
        "--time-lapse=inf",
    ] {
        let output = gmv()
            .args(["demo", "--no-http", bad])
            .output()
            .expect("gmv runs");
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("time-lapse"), "{bad}: {stderr}");
    }
}

#[test]
fn without_a_rush_the_day_goes_as_fast_as_it_goes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let output = gmv()
        .current_dir(dir.path())
        .args(["demo", "--no-kafka", "--no-http", "--rate", "0"])
        .args(["--events", "200000"])
        .output()
        .expect("gmv demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert_eq!(consumed(&stdout), Some(200_000), "{stdout}");
    // A time-lapse of the day would take a minute.
    assert!(started.elapsed() < Duration::from_secs(20), "{stdout}");
}
