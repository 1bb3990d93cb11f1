//! Renders the fixture's report.html to `target/report.png` in headless
//! Chromium, so a person can look at it. Ignored by default (it needs
//! Chromium and takes a few seconds):
//! `cargo test -p gmv-report --test render_png -- --ignored`.
//! Set `CHROMIUM` to use another browser binary, and `PREVIEW_EVENTS` (e.g.
//! `1000000`) to render a bigger synthetic day than the test fixture.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

#[test]
#[ignore = "needs headless Chromium; run with --ignored"]
fn report_html_renders_to_png_in_headless_chromium() {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        eprintln!("skipped: no Chromium at {}", chromium.display());
        return;
    }
    let target = target_dir();
    let work = target.join("gmv-report-preview");
    std::fs::create_dir_all(&work).expect("target dir is writable");
    let (opts, summary) = match std::env::var("PREVIEW_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(events) => preview(&work, events),
        None => common::make_report(&work),
    };
    let html =
        std::fs::canonicalize(opts.out_dir.join("report.html")).expect("report.html was written");
    let png = std::fs::canonicalize(&target)
        .expect("target exists")
        .join("report.png");
    let _ = std::fs::remove_file(&png);
    let profile = tempfile::tempdir().expect("temp profile dir");
    let mut child = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("waiting for Chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("Chromium did not finish within 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let bytes = std::fs::read(&png).expect("Chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 50_000,
        "suspiciously small screenshot: {} bytes",
        bytes.len()
    );
    eprintln!("{}\n{}", summary.headline, png.display());
}

/// A report over a synthetic day of `events` records (and a previous year of 70% of them).
fn preview(dir: &Path, events: u64) -> (gmv_report::ReportOptions, gmv_report::ReportSummary) {
    let this_year = common::synthetic_run(
        2017,
        gmv_synth::SynthConfig {
            events,
            ..Default::default()
        },
    );
    let last_year = common::synthetic_run(
        2016,
        gmv_synth::SynthConfig {
            events: events * 7 / 10,
            seed: 10,
            target_gmv_cny: 120_700_000_000,
            mobile_share: 0.82,
            ..Default::default()
        },
    );
    let opts = gmv_report::ReportOptions {
        run: common::write_json(dir, "run-2017.json", &this_year),
        compare: Some(common::write_json(dir, "run-2016.json", &last_year)),
        out_dir: dir.join("out"),
    };
    let summary = gmv_report::write_report(&opts).expect("the preview report is made");
    (opts, summary)
}
