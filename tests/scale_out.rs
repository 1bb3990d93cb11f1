//! Scale-out on one real broker, as `scripts/scale-out.sh` does it, at a
//! size for CI: a topic of 16 partitions drained by three `gmv run --kafka`
//! processes of one consumer group (each `--allow-partial`: it holds a
//! share), then the global view assembled from the snapshots topic alone
//! (`gmv serve --from-kafka --once`) compared figure by figure with `gmv run
//! --input` over a file of the same records.
//!
//! The broker is named by `KAFKA_BROKERS` (tansu via
//! `scripts/kafka-broker.sh start 19092`); without it the test is skipped
//! with a message, unless `GMV_REQUIRE_BROKER=1`. Every run uses topics and a
//! group of its own, so reruns against the same broker do not meet.

mod common;

use common::gmv;
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PARTITIONS: usize = 16;
const PROCESSES: usize = 3;
const EVENTS: u64 = 300_000;
/// How long the processes may take to drain the topic before they are
/// killed and the test fails.
const DRAIN_BOUND: Duration = Duration::from_secs(120);
/// Lines of a process's log shown when the test fails.
const LOG_TAIL: usize = 30;
/// The figures the global view and the file's report must share exactly.
const FIGURES: [&str; 9] = [
    "gmv_cny",
    "gmv_usd",
    "transactions",
    "mobile_gmv_cny",
    "peak_tps",
    "peak_second",
    "merchants",
    "thresholds",
    "rejected",
];

/// The broker of `KAFKA_BROKERS`, or `None` (test skipped) when unset.
fn broker() -> Option<String> {
    match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ => {
            assert!(
                std::env::var("GMV_REQUIRE_BROKER").as_deref() != Ok("1"),
                "GMV_REQUIRE_BROKER=1 but KAFKA_BROKERS is not set"
            );
            eprintln!("skipped: no KAFKA_BROKERS (scripts/kafka-broker.sh start)");
            None
        }
    }
}

/// One run's directory, config file (its own topics and group) and broker.
struct Setup {
    dir: tempfile::TempDir,
    brokers: String,
    tag: String,
    config: PathBuf,
}

impl Drop for Setup {
    /// `GMV_TEST_LOGS=DIR` keeps every process's log there, as
    /// `TAG-NAME.log`, for a post-mortem (also of a failed run).
    fn drop(&mut self) {
        let Some(keep) = std::env::var_os("GMV_TEST_LOGS") else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_some_and(|e| e == "log") {
                if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    let _ =
                        std::fs::copy(&path, Path::new(&keep).join(format!("{}-{name}", self.tag)));
                }
            }
        }
    }
}

impl Setup {
    fn new(brokers: String) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis();
        let tag = format!("scale-{}-{millis}", std::process::id());
        let config = dir.path().join("gmv.toml");
        std::fs::write(
            &config,
            format!(
                r#"[kafka]
brokers = "{brokers}"
group_id = "g-{tag}"
input_topic = "in-{tag}"
snapshots_topic = "snap-{tag}"
alerts_topic = "alerts-{tag}"
dead_letter_topic = "dead-{tag}"
partitions = {PARTITIONS}
[kafka.checkpoint]
dir = "{state}"
"#,
                state = dir.path().join("state").display(),
            ),
        )
        .expect("config written");
        Self {
            dir,
            brokers,
            tag,
            config,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn gmv(&self) -> Command {
        let mut cmd = gmv();
        cmd.arg("--config").arg(&self.config);
        cmd.env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
        cmd
    }

    /// Runs `cmd` to its end with stderr kept in the file `log`; fails the
    /// test with that log if it does not succeed.
    fn run_logged(&self, mut cmd: Command, log: &str) {
        let status = cmd
            .stderr(File::create(self.path(log)).expect("log file created"))
            .status()
            .expect("gmv starts");
        assert!(
            status.success(),
            "{log}: {status}\n{}",
            tail(&self.path(log))
        );
    }

    /// The same records into a file and into the input topic.
    fn generate(&self) {
        let events = EVENTS.to_string();
        let mut to_file = self.gmv();
        to_file
            .args(["generate", "--events", &events, "--seed", "11", "-o"])
            .arg(self.path("events.jsonl"));
        self.run_logged(to_file, "generate-file.log");
        let mut to_topic = self.gmv();
        to_topic.args(["generate", "--events", &events, "--seed", "11"]);
        to_topic.args(["--kafka", &self.brokers, "--rate", "0"]);
        self.run_logged(to_topic, "generate-kafka.log");
    }

    /// The reference: `gmv run --input` over the file.
    fn file_report(&self) -> Value {
        let mut cmd = self.gmv();
        cmd.args(["run", "--progress", "never", "--input"])
            .arg(self.path("events.jsonl"))
            .arg("--report")
            .arg(self.path("file-report.json"))
            .arg("--dead-letter")
            .arg(self.path("file-dead.jsonl"));
        self.run_logged(cmd, "file.log");
        read_json(&self.path("file-report.json"))
    }

    /// Process `i` of the group, its stderr in `run-i.log`.
    fn spawn_member(&self, i: usize) -> Child {
        let log = File::create(self.path(&format!("run-{i}.log"))).expect("log file created");
        self.gmv()
            .args(["run", "--kafka", &self.brokers, "--workers", "1"])
            .args(["--exit-when-idle", "3s", "--allow-partial"])
            .args(["--progress", "never", "--report"])
            .arg(self.path(&format!("report-{i}.json")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("gmv run --kafka starts")
    }

    /// The logs of every member, their last lines each.
    fn member_logs(&self) -> String {
        (1..=PROCESSES)
            .map(|i| {
                format!(
                    "--- run-{i}.log ---\n{}",
                    tail(&self.path(&format!("run-{i}.log")))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `gmv serve --from-kafka --once`: the global view from the snapshots topic.
    fn global_view(&self) -> Value {
        let out = self
            .gmv()
            .args(["serve", "--from-kafka", &self.brokers, "--once"])
            .output()
            .expect("gmv serve starts");
        assert!(
            out.status.success(),
            "gmv serve --from-kafka --once: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the global view is JSON")
    }
}

/// Kills the members still running when dropped (a failed test leaves no
/// process behind).
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Members {
    /// Each member's exit status, once all have exited; `None` if some
    /// were still running at `deadline`.
    fn wait_all(&mut self, deadline: Instant) -> Option<Vec<ExitStatus>> {
        let mut statuses = vec![None; self.0.len()];
        loop {
            for (child, status) in self.0.iter_mut().zip(&mut statuses) {
                if status.is_none() {
                    *status = child.try_wait().expect("wait on a member");
                }
            }
            if statuses.iter().all(Option::is_some) {
                return statuses.into_iter().collect();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).expect("report written");
    serde_json::from_slice(&bytes).expect("report is JSON")
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
}

/// The top list's first ten as (merchant, GMV).
fn top_ten(report: &Value) -> Vec<(Value, Value)> {
    report["top_merchants"]
        .as_array()
        .map(|list| {
            list.iter()
                .take(10)
                .map(|m| (m["merchant_id"].clone(), m["gmv_cny"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every way the global view differs from the file's report, one line each.
fn differences(view: &Value, want: &Value) -> Vec<String> {
    let mut wrong = Vec::new();
    for key in FIGURES {
        if view[key] != want[key] {
            wrong.push(format!(
                "{key}: global {} but file {}",
                view[key], want[key]
            ));
        }
    }
    let (got_top, want_top) = (top_ten(view), top_ten(want));
    if got_top != want_top {
        wrong.push(format!(
            "top_merchants (first 10): global {got_top:?} but file {want_top:?}"
        ));
    }
    let consumed = &view["accounting"]["consumed"];
    if *consumed != want["accounting"]["consumed"] {
        wrong.push(format!(
            "accounting.consumed: global {consumed} but file {}",
            want["accounting"]["consumed"]
        ));
    }
    let partitions = view["accounting"]["partitions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if partitions.len() != PARTITIONS {
        wrong.push(format!(
            "accounting.partitions: {} of {PARTITIONS}",
            partitions.len()
        ));
    }
    let mut summed = 0;
    for p in partitions {
        let offsets = p["next_offset"]
            .as_i64()
            .zip(p["first_offset"].as_i64())
            .map(|(next, first)| next - first);
        if p["consumed"].as_i64().is_none() || p["consumed"].as_i64() != offsets {
            wrong.push(format!(
                "partition {}: consumed {} but offsets {}..{}",
                p["partition"], p["consumed"], p["first_offset"], p["next_offset"]
            ));
        }
        summed += p["consumed"].as_u64().unwrap_or(0);
    }
    if Some(summed) != consumed.as_u64() {
        wrong.push(format!(
            "accounting.partitions: consumed sum to {summed} but accounting.consumed is {consumed}"
        ));
    }
    wrong
}

#[test]
fn three_processes_sharing_sixteen_partitions_give_the_same_global_view_as_one_run_over_the_file() {
    let Some(brokers) = broker() else {
        return;
    };
    let setup = Setup::new(brokers);
    setup.generate();
    let want = setup.file_report();
    assert_eq!(
        want["accounting"]["consumed"], EVENTS,
        "the reference read every record"
    );
    for key in FIGURES {
        assert!(!want[key].is_null(), "the file's report has no {key}");
    }
    assert_eq!(
        top_ten(&want).len(),
        10,
        "the file's report lists ten merchants"
    );

    let started = Instant::now();
    let mut members = Members((1..=PROCESSES).map(|i| setup.spawn_member(i)).collect());
    let Some(statuses) = members.wait_all(started + DRAIN_BOUND) else {
        drop(members);
        panic!(
            "the group did not drain the topic in {DRAIN_BOUND:?}; killed\n{}",
            setup.member_logs()
        );
    };
    eprintln!(
        "{PROCESSES} processes drained {EVENTS} records over {PARTITIONS} partitions in {:.1?}",
        started.elapsed()
    );
    let failed: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, status)| !status.success())
        .map(|(i, status)| format!("run-{}: {status}", i + 1))
        .collect();
    assert!(
        failed.is_empty(),
        "every process exits 0, but {failed:?}\n{}",
        setup.member_logs()
    );

    let view = setup.global_view();
    let wrong = differences(&view, &want);
    assert!(
        wrong.is_empty(),
        "the global view differs from `gmv run --input` in:\n  {}\n{}",
        wrong.join("\n  "),
        setup.member_logs()
    );
}
