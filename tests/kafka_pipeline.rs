//! The Kafka path end to end, through the real librdkafka client: `gmv
//! generate --kafka` produces a stream with every kind of bad record, `gmv
//! run --kafka` consumes it in a group, and the report, the alerts topic, the
//! dead-letter topic and the global view (`gmv serve --from-kafka --once`)
//! are compared with the independent answer of `common`.
//!
//! Two tiers (as rust-rdkafka's own tests): librdkafka's mock cluster,
//! started inside this test process (always runs), and a real broker named
//! by `KAFKA_BROKERS` (tansu in CI via `scripts/kafka-broker.sh`; skipped
//! with a message when absent, unless `GMV_REQUIRE_BROKER=1`). Every test
//! uses its own topics and group.
//!
//! The fault tests SIGKILL the processor at random moments and restart it:
//! the final report must equal the independent answer to the fen, and each
//! alert must be in the alerts topic exactly once.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;

/// The generator's arguments for every test's stream of `events`: a mix
/// of duplicates, conflicts, malformed and late records among the good ones.
fn stream_args(events: u64) -> Vec<String> {
    [
        "--events",
        &events.to_string(),
        "--seed",
        "7",
        "--merchants",
        "2000",
        "--duplicate-share",
        "0.01",
        "--conflict-share",
        "0.002",
        "--malformed-share",
        "0.01",
        "--outside-window-share",
        "0.005",
        "--foreign-share",
        "0.05",
    ]
    .map(String::from)
    .to_vec()
}

/// Where the test's Kafka is.
enum Cluster {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Real(String),
}

impl Cluster {
    fn mock() -> Self {
        Cluster::Mock(MockCluster::new(1).expect("mock cluster starts"))
    }

    /// The broker of `KAFKA_BROKERS`, or `None` (test skipped) when unset.
    fn real() -> Option<Self> {
        match std::env::var("KAFKA_BROKERS") {
            Ok(brokers) if !brokers.is_empty() => Some(Cluster::Real(brokers)),
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

    fn bootstrap(&self) -> String {
        match self {
            Cluster::Mock(m) => m.bootstrap_servers(),
            Cluster::Real(b) => b.clone(),
        }
    }

    fn is_mock(&self) -> bool {
        matches!(self, Cluster::Mock(_))
    }
}

/// Where a test's processes keep their checkpoints.
#[derive(Clone, Copy, PartialEq)]
enum Store {
    /// `kafka.checkpoint.dir`, shared by every process of the test.
    Dir,
    /// A changelog topic of the test's own: no process shares a directory.
    Changelog,
}

/// One test's topics, group, directory and config file.
struct Setup {
    dir: tempfile::TempDir,
    brokers: String,
    tag: String,
    config: PathBuf,
    thresholds: Vec<Decimal>,
    store: Store,
}

impl Setup {
    fn new(cluster: &Cluster, name: &str) -> Self {
        Self::with_store(cluster, name, Store::Dir)
    }

    fn with_store(cluster: &Cluster, name: &str, store: Store) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let tag = format!("{name}-{}-{nanos}", std::process::id());
        let setup = Self {
            brokers: cluster.bootstrap(),
            config: dir.path().join("gmv.toml"),
            dir,
            tag,
            thresholds: vec![dec("10000000.00"), dec("50000000.00"), dec("100000000.00")],
            store,
        };
        let checkpoints = setup.dir.path().join("state");
        let store_key = match store {
            Store::Dir => "dir",
            Store::Changelog => "topic",
        };
        std::fs::write(
            &setup.config,
            format!(
                r#"[money]
thresholds_cny = ["10000000.00", "50000000.00", "100000000.00"]
[engine]
top_n = 10
workers = 2
[publish]
interval = "200ms"
[kafka]
brokers = "{brokers}"
group_id = "g-{tag}"
input_topic = "in-{tag}"
snapshots_topic = "snap-{tag}"
alerts_topic = "alerts-{tag}"
dead_letter_topic = "dead-{tag}"
partitions = {PARTITIONS}
connect_timeout = "20s"
[kafka.checkpoint]
store = "{store_key}"
dir = "{checkpoints}"
topic = "changelog-{tag}"
interval = "200ms"
deltas_per_base = 5
[kafka.consumer]
"session.timeout.ms" = "6000"
"#,
                brokers = setup.brokers,
                tag = setup.tag,
                checkpoints = checkpoints.display(),
            ),
        )
        .expect("config written");
        if let Cluster::Mock(mock) = cluster {
            // The mock cluster has no CreateTopics API.
            for (topic, partitions) in [
                (setup.topic("in"), PARTITIONS),
                (setup.topic("dead"), PARTITIONS),
                (setup.topic("snap"), 1),
                (setup.topic("alerts"), 1),
                (setup.topic("changelog"), PARTITIONS),
            ] {
                mock.create_topic(&topic, partitions, 1)
                    .expect("topic created");
            }
        }
        setup
    }

    fn topic(&self, kind: &str) -> String {
        format!("{kind}-{}", self.tag)
    }

    fn checkpoints(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn gmv(&self) -> Command {
        let mut cmd = gmv();
        cmd.arg("--config").arg(&self.config);
        cmd.env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
        cmd
    }

    /// Writes the stream to a file (for the reference) and produces the same
    /// records into the input topic.
    fn produce(&self, events: u64) -> Vec<u8> {
        let input = self.produce_file(events);
        let out = self
            .gmv()
            .arg("generate")
            .args(stream_args(events))
            .args(["--kafka", &self.brokers])
            .output()
            .expect("gmv generate --kafka runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        input
    }

    /// Writes the test's stream of `events` to a file and returns it.
    fn produce_file(&self, events: u64) -> Vec<u8> {
        let file = self.dir.path().join("events.jsonl");
        let status = self
            .gmv()
            .arg("generate")
            .args(stream_args(events))
            .arg("-o")
            .arg(&file)
            .status()
            .expect("gmv generate runs");
        assert!(status.success());
        std::fs::read(&file).expect("events readable")
    }

    /// `gmv run --kafka` until idle; returns (report, stderr).
    fn run_to_end(&self, extra: &[&str]) -> (Value, String) {
        let report = self.dir.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let out = self
            .gmv()
            .args(["run", "--kafka", &self.brokers, "--exit-when-idle", "3s"])
            .args(["--progress", "never", "--report"])
            .arg(&report)
            .args(extra)
            .output()
            .expect("gmv run runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // GMV_TEST_LOGS=DIR keeps the log, for a later failure's post-mortem.
        if let Some(dir) = std::env::var_os("GMV_TEST_LOGS") {
            let path =
                Path::new(&dir).join(format!("{}-to-end-{}.log", self.tag, std::process::id()));
            let _ = std::fs::write(path, &stderr);
        }
        assert!(out.status.success(), "{stderr}");
        let report = serde_json::from_slice(&std::fs::read(&report).expect("report written"))
            .expect("report is JSON");
        (report, stderr)
    }

    /// Starts `gmv run --kafka` with stderr watched; returns the child and a
    /// receiver that gets a message once partitions are assigned.
    fn spawn_run(&self, extra: &[&str]) -> (Child, mpsc::Receiver<()>) {
        let (child, lines) = self.spawn_watched(extra, false);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for (_, line) in lines {
                if line.contains("assigned") && !line.contains("partitions=[]") {
                    let _ = tx.send(());
                }
            }
        });
        (child, rx)
    }

    /// Starts `gmv run --kafka` and forwards every line of its log, as it
    /// comes, with when it came. GMV_TEST_LOGS=DIR keeps each run's log
    /// there, for a failure's post-mortem.
    /// With `own_group`, in a process group of its own, as a shell starts
    /// a job.
    fn spawn_watched(
        &self,
        extra: &[&str],
        own_group: bool,
    ) -> (Child, mpsc::Receiver<(Instant, String)>) {
        let mut command = self.gmv();
        command
            .args(["run", "--kafka", &self.brokers, "--progress", "never"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if own_group {
            command.process_group(0);
        }
        let mut child = command.spawn().expect("gmv run starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut keep = std::env::var_os("GMV_TEST_LOGS").and_then(|dir| {
            let path = Path::new(&dir).join(format!("{}-{}.log", self.tag, child.id()));
            std::fs::File::create(path).ok()
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = keep.as_mut() {
                    let _ = writeln!(file, "{line}");
                }
                let _ = tx.send((Instant::now(), line));
            }
        });
        (child, rx)
    }

    /// Produces the same stream as [`Self::produce`] writes to a file, at
    /// `rate` records/s, in the background.
    fn produce_paced(&self, events: u64, rate: u64) -> (Vec<u8>, Child) {
        let input = self.produce_file(events);
        let child = self
            .gmv()
            .arg("generate")
            .args(stream_args(events))
            .args(["--kafka", &self.brokers, "--rate", &rate.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gmv generate --kafka starts");
        (input, child)
    }

    fn consumer(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("check-{}", self.tag))
            .set("enable.auto.commit", "false")
            // No transactions here; and tansu on PostgreSQL 15 cannot answer
            // the committed end of a partition.
            .set("isolation.level", "read_uncommitted")
            .create()
            .expect("consumer")
    }

    /// Every record of a topic: (key, payload, headers).
    fn read_topic(&self, topic: &str) -> Vec<(String, Vec<u8>, HashMap<String, String>)> {
        let consumer = self.consumer();
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0i64;
        for p in metadata.topics()[0].partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            remaining += high - low;
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))
                .expect("assign");
        }
        consumer.assign(&tpl).expect("assign");
        // Up to the high watermarks and then quiet for a while: tansu 0.6
        // under-reports high watermarks.
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last_record = Instant::now();
        while (records.len() as i64) < remaining || last_record.elapsed() < Duration::from_secs(2) {
            assert!(Instant::now() < deadline, "reading {topic} took too long");
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                last_record = Instant::now();
                let mut headers = HashMap::new();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        let value = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.insert(header.key.to_string(), value.unwrap_or_default());
                    }
                }
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                records.push((
                    key.unwrap_or_default(),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
        }
        records
    }

    /// The alerts topic: each (merchant, threshold) once, as the reference says.
    fn check_alerts_topic(&self, report: &Value, want: &Reference) {
        let alerts: Vec<Value> = self
            .read_topic(&self.topic("alerts"))
            .into_iter()
            .map(|(key, payload, _)| {
                let alert: Value = serde_json::from_slice(&payload).expect("alert is JSON");
                assert_eq!(
                    key,
                    format!(
                        "{}:{}",
                        alert["merchant_id"].as_str().expect("id"),
                        alert["threshold_cny"].as_str().expect("t")
                    )
                );
                alert
            })
            .collect();
        check_alert_list(&alerts, report, want);
    }

    /// The dead-letter topic: every rejected record kept with its reason
    /// (at least once: a replay after a crash may send one again).
    fn check_dead_letter_topic(&self, want: &Reference, at_least_once: bool) {
        let letters = self.read_topic(&self.topic("dead"));
        let mut origins = BTreeSet::new();
        for (key, payload, headers) in &letters {
            let reason = headers.get("reason").expect("reason header");
            assert!(headers.contains_key("detail"));
            assert_eq!(headers.get("origin"), Some(key));
            judge_reason(payload, &serde_json::json!({ "reason": reason }));
            origins.insert(key.clone());
        }
        let rejected: u64 = want.rejected.values().sum();
        assert_eq!(
            origins.len() as u64,
            rejected,
            "every rejected record, once per origin"
        );
        if !at_least_once {
            assert_eq!(letters.len() as u64, rejected);
        }
    }

    /// The global view covers every partition, its figures are `want`'s and
    /// the alerts topic holds each crossing once.
    fn check_global_view(&self, want: &Reference) {
        let view = self.global_view();
        let partitions = view["accounting"]["partitions"]
            .as_array()
            .expect("partitions");
        assert_eq!(partitions.len(), PARTITIONS as usize, "{partitions:?}");
        check_figures(&view, want, &self.thresholds);
        self.check_alerts_topic(&view, want);
    }

    /// `gmv serve --from-kafka --once`: the global view from the snapshots topic.
    fn global_view(&self) -> Value {
        let out = self
            .gmv()
            .args(["serve", "--from-kafka", &self.brokers, "--once"])
            .output()
            .expect("gmv serve runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("snapshot JSON")
    }

    /// The next offset in the newest checkpoint of each partition, read
    /// from the store directly (not through gmv's loader).
    fn checkpoint_offsets(&self) -> HashMap<i32, i64> {
        let newest = match self.store {
            Store::Dir => self.newest_files(),
            Store::Changelog => self.newest_changelog_links(),
        };
        newest
            .into_iter()
            .map(|(partition, bytes)| {
                let checkpoint =
                    gmv_core::state::Checkpoint::decode(&bytes).expect("valid checkpoint");
                (partition, checkpoint.next_offset)
            })
            .collect()
    }

    /// The newest checkpoint file of each partition.
    fn newest_files(&self) -> HashMap<i32, Vec<u8>> {
        let mut out = HashMap::new();
        let topic_dir = self.checkpoints().join(self.topic("in"));
        for entry in std::fs::read_dir(&topic_dir).expect("checkpoint dir") {
            let dir = entry.expect("entry").path();
            let partition: i32 = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .expect("partition dir");
            let mut links: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("partition dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "base" || e == "delta"))
                .collect();
            links.sort();
            let newest = links.last().expect("a checkpoint");
            out.insert(partition, std::fs::read(newest).expect("read"));
        }
        out
    }

    /// The newest link of each partition in the changelog topic, assembled
    /// from its chunk records (key `TOPIC/PARTITION/SEQ/CHUNK`, header
    /// `chunks`; an empty payload is a tombstone).
    fn newest_changelog_links(&self) -> HashMap<i32, Vec<u8>> {
        type Chunks = BTreeMap<u32, (Vec<u8>, u32)>;
        let mut links: BTreeMap<(i32, u64), Chunks> = BTreeMap::new();
        for (key, payload, headers) in self.read_topic(&self.topic("changelog")) {
            let parts: Vec<&str> = key.rsplitn(4, '/').collect();
            assert_eq!(parts.len(), 4, "changelog key {key}");
            assert_eq!(parts[3], self.topic("in"));
            let index: u32 = parts[0].parse().expect("chunk index");
            let seq: u64 = parts[1].parse().expect("seq");
            let partition: i32 = parts[2].parse().expect("partition");
            let chunks = links.entry((partition, seq)).or_default();
            if payload.is_empty() {
                chunks.remove(&index);
            } else {
                let count = headers["chunks"].parse().expect("chunk count");
                chunks.insert(index, (payload, count));
            }
        }
        let mut out = HashMap::new();
        for ((partition, _), chunks) in links {
            let Some(&(_, count)) = chunks.values().next() else {
                continue;
            };
            if chunks.len() as u32 == count {
                // Later (higher) sequence numbers overwrite earlier ones.
                out.insert(
                    partition,
                    chunks.into_values().flat_map(|(bytes, _)| bytes).collect(),
                );
            }
        }
        out
    }
}

fn kill(mut child: Child) {
    let workers = children_of(child.id());
    // SIGKILL: no drain, no final checkpoint; the worker dies with it.
    let _ = child.kill();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    while workers.iter().any(|&w| is_running(w)) {
        assert!(
            Instant::now() < deadline,
            "the worker outlived its SIGKILLed parent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The worker process of a `gmv run --kafka` child, once it has started.
fn worker_of(child: &Child) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let [worker] = children_of(child.id())[..] {
            return worker;
        }
        assert!(Instant::now() < deadline, "no worker process");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_crash_of_the_kafka_worker_is_a_clear_error_and_a_rerun_is_exact() {
    let cluster = Cluster::mock();
    let setup = Setup::new(&cluster, "crash");
    let input = setup.produce(40_000);
    let want = Reference::compute(&input);
    let (mut child, lines) = setup.spawn_watched(&["--report", "/dev/null"], false);
    wait_for_line(&lines, "state restored", Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(300));
    // What librdkafka #5280 does to the process, done from outside. Rust's
    // stack-overflow handler takes the first SIGSEGV sent this way, finds
    // no fault and restores the default; a real fault repeats at once.
    let worker = worker_of(&child);
    for _ in 0..5 {
        signal(worker, "-SEGV");
        std::thread::sleep(Duration::from_millis(200));
        if !is_running(worker) {
            break;
        }
    }
    let (status, _) = exits_within(&mut child, Duration::from_secs(10));
    let stderr = log_of(&lines);
    assert_eq!(
        status.code(),
        Some(1),
        "a plain exit 1: {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains("worker process crashed (SIGSEGV)") && stderr.contains("#5280"),
        "{stderr}"
    );
    let (report, _) = setup.run_to_end(&[]);
    check_report(&report, &want, &setup.thresholds);
    setup.check_alerts_topic(&report, &want);
}

#[test]
fn ctrl_c_reaches_the_run_and_its_worker_and_stops_it_once_cleanly() {
    let cluster = Cluster::mock();
    let setup = Setup::new(&cluster, "ctrl-c");
    let input = setup.produce(40_000);
    let want = Reference::compute(&input);
    let report = setup.dir.path().join("stopped.json");
    let report_arg = report.to_str().expect("utf-8 path");
    let (mut child, lines) = setup.spawn_watched(&["--report", report_arg], true);
    wait_for_line(&lines, "state restored", Duration::from_secs(40));
    std::thread::sleep(Duration::from_millis(500));
    // A terminal's Ctrl-C signals the whole job: the worker gets SIGINT
    // directly and again from its parent, and stops once, in order. Both
    // usually arrive as one; a forward that comes later is sent by hand.
    let group = format!("-{}", child.id());
    let status = Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .expect("kill runs");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(100));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let (status, _) = exits_within(&mut child, Duration::from_secs(20));
    let stderr = log_of(&lines);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("second signal"), "{stderr}");
    let stopped: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report written")).expect("JSON");
    assert!(
        stopped["accounting"]["consumed"].as_u64().is_some(),
        "{stopped}"
    );
    // What the stopped run checkpointed, the next one goes on from.
    let (report, stderr) = setup.run_to_end(&[]);
    assert!(stderr.contains("restored from checkpoint"), "{stderr}");
    check_report(&report, &want, &setup.thresholds);
}

/// Waits until the watched run logs a line containing `text`.
fn wait_for_line(lines: &mpsc::Receiver<(Instant, String)>, text: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok((_, line)) if line.contains(text) => return,
            Ok(_) => {}
            Err(_) => panic!("no line with {text:?} within {limit:?}"),
        }
    }
}

fn report_matches(setup: &Setup, cluster_name: &str, events: u64) {
    let input = setup.produce(events);
    let want = Reference::compute(&input);
    let alerts_file = setup.dir.path().join("alerts.jsonl");
    let (report, _) = setup.run_to_end(&["--alerts", alerts_file.to_str().expect("utf-8 path")]);
    check_report(&report, &want, &setup.thresholds);
    let partitions = report["accounting"]["partitions"]
        .as_array()
        .expect("per partition");
    assert_eq!(partitions.len(), PARTITIONS as usize, "{cluster_name}");
    let consumed: u64 = partitions
        .iter()
        .map(|p| p["consumed"].as_u64().expect("n"))
        .sum();
    assert_eq!(consumed, want.consumed);
    for p in partitions {
        assert_eq!(
            p["consumed"].as_i64(),
            Some(p["next_offset"].as_i64().expect("o") - p["first_offset"].as_i64().expect("o"))
        );
    }
    check_alerts(&alerts_file, &report, &want);
    setup.check_alerts_topic(&report, &want);
    setup.check_dead_letter_topic(&want, false);
    check_figures(&setup.global_view(), &want, &setup.thresholds);
    same_as_the_file(setup, &report, &alerts_file);
}

/// The same events read from the file give the same report but for the
/// per-partition accounting (offsets), and the same alerts line for line
/// (a file's come in input order, Kafka's as partitions report them).
fn same_as_the_file(setup: &Setup, kafka_report: &Value, kafka_alerts: &Path) {
    let dir = setup.dir.path();
    let (report, alerts) = (dir.join("file-report.json"), dir.join("file-alerts.jsonl"));
    let status = setup
        .gmv()
        .args(["run", "--progress", "never", "--input"])
        .arg(dir.join("events.jsonl"))
        .arg("--report")
        .arg(&report)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--dead-letter")
        .arg(dir.join("file-dead.jsonl"))
        .status()
        .expect("gmv run --input runs");
    assert!(status.success());
    let without_offsets = |mut report: Value| {
        report["accounting"]
            .as_object_mut()
            .expect("accounting")
            .remove("partitions");
        serde_json::to_string_pretty(&report).expect("JSON")
    };
    let file_report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    assert!(
        without_offsets(file_report) == without_offsets(kafka_report.clone()),
        "the file's report differs from the topic's"
    );
    let sorted_lines = |path: &Path| {
        let text = std::fs::read_to_string(path).expect("alerts");
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted_lines(&alerts), sorted_lines(kafka_alerts));
}

#[test]
fn mock_cluster_report_topics_and_global_view_equal_an_independent_answer() {
    let cluster = Cluster::mock();
    report_matches(&Setup::new(&cluster, "match"), "mock", 40_000);
}

#[test]
fn broker_report_topics_and_global_view_equal_an_independent_answer() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    report_matches(&Setup::new(&cluster, "match"), "broker", 300_000);
}

/// Kills the processor with SIGKILL `kills` times, each at a random moment
/// after it has partitions, then lets a last run finish.
fn survives_sigkill(cluster: &Cluster, store: Store, events: u64, kills: usize) {
    let setup = Setup::with_store(cluster, "kill", store);
    let input = setup.produce(events);
    let want = Reference::compute(&input);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20171111);
    let started = Instant::now();
    for round in 0..kills {
        let (child, assigned) = setup.spawn_run(&["--report", "/dev/null"]);
        // A restart waits for the killed member's session to expire.
        let got = assigned.recv_timeout(Duration::from_secs(40));
        assert!(got.is_ok(), "round {round}: never assigned");
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..2500)));
        kill(child);
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "fault test over its time bound"
        );
    }
    assert!(
        !setup.checkpoint_offsets().is_empty(),
        "the killed runs must have checkpointed something"
    );
    let (report, stderr) = setup.run_to_end(&[]);
    assert!(stderr.contains("restored from checkpoint"), "{stderr}");
    check_report(&report, &want, &setup.thresholds);
    setup.check_alerts_topic(&report, &want);
    setup.check_dead_letter_topic(&want, true);
}

#[test]
fn mock_cluster_totals_are_exact_across_sigkill_restarts() {
    survives_sigkill(&Cluster::mock(), Store::Dir, 40_000, 4);
}

#[test]
fn mock_cluster_totals_are_exact_across_sigkill_restarts_with_a_changelog_topic() {
    survives_sigkill(&Cluster::mock(), Store::Changelog, 40_000, 4);
}

#[test]
fn broker_totals_are_exact_across_ten_sigkill_restarts_of_two_million_events() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    survives_sigkill(&cluster, Store::Changelog, 2_000_000, 10);
}

#[test]
fn clean_restart_resumes_from_committed_checkpoints_without_reprocessing() {
    resumes_without_reprocessing(Store::Dir);
}

#[test]
fn clean_restart_from_a_changelog_topic_resumes_without_reprocessing() {
    resumes_without_reprocessing(Store::Changelog);
}

fn resumes_without_reprocessing(store: Store) {
    let cluster = Cluster::mock();
    let setup = Setup::with_store(&cluster, "restart", store);
    let input = setup.produce(20_000);
    let want = Reference::compute(&input);
    let (first, _) = setup.run_to_end(&[]);
    check_report(&first, &want, &setup.thresholds);

    let checkpointed = setup.checkpoint_offsets();
    assert_eq!(checkpointed.len(), PARTITIONS as usize);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.brokers)
        .set("group.id", format!("g-{}", setup.tag))
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&setup.topic("in"), p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(checkpointed[&e.partition()]),
            "partition {}: committed offset == checkpoint offset",
            e.partition()
        );
        if store == Store::Changelog {
            // Where the next owner starts reading the partition's chain.
            assert!(
                e.metadata().starts_with("gmv-changelog-from="),
                "{:?}",
                e.metadata()
            );
        }
    }

    let (second, stderr) = setup.run_to_end(&[]);
    // Every partition resumed from its checkpoint (some twice, if the
    // group rebalanced while the second member joined).
    let restored: BTreeSet<&str> = stderr
        .lines()
        .filter(|l| l.contains("restored from checkpoint"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("partition=")))
        .collect();
    let all: BTreeSet<String> = (0..PARTITIONS).map(|p| format!("partition={p}")).collect();
    assert_eq!(
        restored,
        all.iter().map(String::as_str).collect(),
        "{stderr}"
    );
    // Nothing read twice: the same records, the same figures.
    check_report(&second, &want, &setup.thresholds);
    assert_eq!(second["accounting"], first["accounting"]);
}

#[test]
fn corrupt_checkpoint_is_set_aside_and_totals_stay_exact() {
    let cluster = Cluster::mock();
    let setup = Setup::new(&cluster, "corrupt");
    let input = setup.produce(20_000);
    let want = Reference::compute(&input);
    setup.run_to_end(&[]);
    let dir = setup.checkpoints().join(setup.topic("in")).join("0");
    let mut links: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("partition 0 checkpoints")
        .map(|e| e.expect("entry").path())
        .collect();
    links.sort();
    let newest = links.last().expect("a checkpoint").clone();
    let mut bytes = std::fs::read(&newest).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&newest, bytes).expect("corrupted");

    let (report, stderr) = setup.run_to_end(&[]);
    let name = newest.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains(name),
        "{stderr}"
    );
    check_report(&report, &want, &setup.thresholds);
    assert!(Path::new(&format!("{}.corrupt", newest.display())).exists());
}

/// Overwrites chunk 0 of partition 0's newest changelog link (or of every
/// live link) with a damaged copy; returns the keys overwritten.
fn damage_changelog(setup: &Setup, every_link: bool) -> Vec<String> {
    let prefix = format!("{}/0/", setup.topic("in"));
    // The latest record per key, as compaction would keep.
    let mut latest: BTreeMap<String, (Vec<u8>, HashMap<String, String>)> = BTreeMap::new();
    for (key, payload, headers) in setup.read_topic(&setup.topic("changelog")) {
        if key.starts_with(&prefix) && key.ends_with("/0") {
            latest.insert(key, (payload, headers));
        }
    }
    latest.retain(|_, (payload, _)| !payload.is_empty());
    assert!(!latest.is_empty(), "a checkpoint of partition 0");
    let victims: Vec<_> = if every_link {
        latest.into_iter().collect()
    } else {
        latest.into_iter().next_back().into_iter().collect()
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &setup.brokers)
        .create()
        .expect("producer");
    let mut keys = Vec::new();
    for (key, (mut payload, headers)) in victims {
        let middle = payload.len() / 2;
        payload[middle] ^= 0x5a;
        let mut record_headers = OwnedHeaders::new();
        for (name, value) in &headers {
            record_headers = record_headers.insert(Header {
                key: name,
                value: Some(value.as_str()),
            });
        }
        producer
            .send(
                BaseRecord::to(&setup.topic("changelog"))
                    .partition(0)
                    .key(&key)
                    .payload(&payload)
                    .headers(record_headers),
            )
            .expect("queued");
        keys.push(key);
    }
    producer.flush(Duration::from_secs(10)).expect("delivered");
    keys
}

#[test]
fn corrupt_changelog_record_is_set_aside_and_totals_stay_exact() {
    let cluster = Cluster::mock();
    let setup = Setup::with_store(&cluster, "corrupt-log", Store::Changelog);
    let input = setup.produce(20_000);
    let want = Reference::compute(&input);
    setup.run_to_end(&[]);
    let damaged = damage_changelog(&setup, false);

    let (report, stderr) = setup.run_to_end(&[]);
    let link = damaged[0].trim_end_matches("/0");
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains(link),
        "{stderr}"
    );
    check_report(&report, &want, &setup.thresholds);
}

#[test]
fn a_changelog_with_no_usable_checkpoint_is_read_whole_then_the_log_replayed() {
    let cluster = Cluster::mock();
    let setup = Setup::with_store(&cluster, "ruined-log", Store::Changelog);
    let input = setup.produce(20_000);
    let want = Reference::compute(&input);
    setup.run_to_end(&[]);
    let damaged = damage_changelog(&setup, true);

    let (report, stderr) = setup.run_to_end(&[]);
    // The commit named where partition 0's chain starts; nothing after it
    // was usable, so the whole changelog was read, and then the log.
    assert!(
        stderr.contains("reading the changelog from its beginning"),
        "{stderr}"
    );
    for key in &damaged {
        assert!(
            stderr.contains(key.trim_end_matches("/0")),
            "{key}: {stderr}"
        );
    }
    check_report(&report, &want, &setup.thresholds);
}

#[test]
fn broker_outage_mid_run_neither_loses_nor_doubles_an_event() {
    let cluster = Cluster::mock();
    let setup = Setup::new(&cluster, "outage");
    let input = setup.produce(40_000);
    let want = Reference::compute(&input);
    let report = setup.dir.path().join("outage-report.json");
    let (mut child, assigned) = setup.spawn_run(&[
        "--exit-when-idle",
        "3s",
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    assigned
        .recv_timeout(Duration::from_secs(40))
        .expect("assigned");
    let Cluster::Mock(mock) = &cluster else {
        unreachable!()
    };
    mock.broker_down(1).expect("broker down");
    std::thread::sleep(Duration::from_secs(3));
    mock.broker_up(1).expect("broker up");
    let (status, _) = exits_within(&mut child, Duration::from_secs(120));
    assert!(status.success());
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    check_report(&report, &want, &setup.thresholds);
    setup.check_alerts_topic(&report, &want);
}

#[test]
fn rebalance_after_one_of_three_processes_dies_keeps_the_global_view_exact() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    // A changelog topic: the survivors share no directory with the victim.
    let setup = Setup::with_store(&cluster, "rebalance", Store::Changelog);
    let input = setup.produce(600_000);
    let want = Reference::compute(&input);
    // One member each; idle long enough to outlast the dead member's session
    // (10 s), the broker noticing it (a heartbeat, 3 s) and the rejoin.
    let args = [
        "--workers",
        "1",
        "--exit-when-idle",
        "20s",
        "--report",
        "/dev/null",
        "--allow-partial",
    ];
    let mut processes: Vec<(Child, mpsc::Receiver<()>)> =
        (0..3).map(|_| setup.spawn_run(&args)).collect();
    let (victim, assigned) = processes.remove(0);
    assigned
        .recv_timeout(Duration::from_secs(40))
        .expect("assigned");
    std::thread::sleep(Duration::from_millis(300));
    kill(victim);
    let mut survivors: Vec<Child> = processes.into_iter().map(|(child, _)| child).collect();
    all_succeed(&mut survivors, Duration::from_secs(180));
    setup.check_global_view(&want);
}

/// Waits for every one of `children` to exit, each successfully, within
/// `limit` in all.
fn all_succeed(children: &mut [Child], limit: Duration) {
    let deadline = Instant::now() + limit;
    for child in children {
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "{status}");
                break;
            }
            assert!(Instant::now() < deadline, "the processes did not finish");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The partitions a log line names: `partitions=[0, 1]`, or
/// `partitions=[("topic", 0), ("topic", 1)]`.
fn partitions_in(line: &str) -> Vec<i32> {
    let Some(rest) = line.split("partitions=[").nth(1) else {
        return Vec::new();
    };
    let list = rest.split(']').next().unwrap_or_default();
    let mut found: Vec<i32> = list
        .split(", ")
        .filter_map(|item| item.trim_end_matches(')').parse().ok())
        .collect();
    found.sort_unstable();
    found
}

/// Records consumed per partition, from a live `/api/snapshot`.
fn consumed_by_partition(port: u16) -> Option<HashMap<i64, u64>> {
    let (status, body) = get(port, "/api/snapshot")?;
    if status != 200 {
        return None;
    }
    let snapshot: Value = serde_json::from_str(&body).ok()?;
    let partitions = snapshot.pointer("/accounting/partitions")?.as_array()?;
    Some(
        partitions
            .iter()
            .filter_map(|p| Some((p["partition"].as_i64()?, p["consumed"].as_u64()?)))
            .collect(),
    )
}

#[test]
fn a_second_member_joining_takes_only_half_the_partitions_while_the_first_keeps_counting() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    let setup = Setup::new(&cluster, "join");
    let first_port = free_port();
    let first_http = format!("127.0.0.1:{first_port}");
    let args = [
        "--workers",
        "1",
        "--exit-when-idle",
        "6s",
        "--report",
        "/dev/null",
        "--allow-partial",
    ];
    let (mut first, first_log) =
        setup.spawn_watched(&[&args[..], &["--http", &first_http]].concat(), false);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, line) = first_log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the first process is assigned every partition");
        if line.contains("assigned") && partitions_in(&line).len() == PARTITIONS as usize {
            break;
        }
    }
    // Records keep coming while the second process joins.
    let (input, mut producer) = setup.produce_paced(300_000, 30_000);
    let want = Reference::compute(&input);
    std::thread::sleep(Duration::from_secs(2));
    let before = consumed_by_partition(first_port).expect("the first process serves its snapshot");
    let (mut second, second_log) = setup.spawn_watched(&args, false);
    let deadline = Instant::now() + Duration::from_secs(40);
    let taken = loop {
        let (_, line) = second_log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the second process is assigned partitions");
        if line.contains("assigned") && !partitions_in(&line).is_empty() {
            break partitions_in(&line);
        }
    };
    let after = consumed_by_partition(first_port).expect("the first process serves its snapshot");
    assert_eq!(
        taken.len(),
        PARTITIONS as usize / 2,
        "the newcomer takes half: {taken:?}"
    );
    // The first process gave up exactly those, in one revocation, and kept
    // counting the others while the group rebalanced.
    let revocations: Vec<Vec<i32>> = first_log
        .try_iter()
        .filter(|(_, line)| line.contains("revoked"))
        .map(|(_, line)| partitions_in(&line))
        .collect();
    assert_eq!(
        revocations,
        vec![taken.clone()],
        "revocations of the first process"
    );
    let kept: Vec<i64> = (0..PARTITIONS as i64)
        .filter(|p| !taken.contains(&(*p as i32)))
        .collect();
    for p in &kept {
        assert!(
            after.get(p) > before.get(p),
            "partition {p} kept by the first process did not advance during the rebalance: {before:?} -> {after:?}"
        );
    }
    assert!(producer.wait().expect("producer").success());
    for child in [&mut first, &mut second] {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success());
                break;
            }
            assert!(Instant::now() < deadline, "a process did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let view = setup.global_view();
    check_figures(&view, &want, &setup.thresholds);
    setup.check_alerts_topic(&view, &want);
}

#[test]
fn metrics_show_each_partitions_lag_while_a_preloaded_topic_drains_and_zero_at_the_end() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    let setup = Setup::new(&cluster, "lag");
    setup.produce(600_000);
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    // One member: draining takes long enough to be watched.
    let (mut child, _log) = setup.spawn_watched(
        &[
            "--workers",
            "1",
            "--exit-when-idle",
            "8s",
            "--report",
            "/dev/null",
            "--http",
            &http,
        ],
        false,
    );
    let lags = |body: &str| -> HashMap<String, u64> {
        body.lines()
            .filter(|l| l.starts_with("gmv_consumer_lag_records{"))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once(' ')?;
                let partition = labels.split("partition=\"").nth(1)?.split('"').next()?;
                Some((partition.to_owned(), value.parse::<f64>().ok()? as u64))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_lagging: BTreeSet<String> = BTreeSet::new();
    let mut last = HashMap::new();
    // While draining: lag above zero on every partition at some point.
    // Then: every partition at zero, before the process stops.
    let mut at_zero = false;
    while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
        if let Some((200, body)) = get(port, "/metrics") {
            last = lags(&body);
            seen_lagging.extend(
                last.iter()
                    .filter(|(_, &lag)| lag > 0)
                    .map(|(p, _)| p.clone()),
            );
            if seen_lagging.len() == PARTITIONS as usize
                && last.len() == PARTITIONS as usize
                && last.values().all(|&lag| lag == 0)
            {
                at_zero = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        seen_lagging.len(),
        PARTITIONS as usize,
        "partitions seen lagging: {seen_lagging:?}"
    );
    assert!(
        at_zero,
        "lag never reached zero on every partition: {last:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_report_of_part_of_the_topic_names_the_rest_and_exits_1_unless_partial_is_allowed() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    let setup = Setup::new(&cluster, "partial");
    setup.produce(200_000);
    let report = |name: &str| setup.dir.path().join(name);
    let run = |name: &str, extra: &[&str]| {
        let mut cmd = setup.gmv();
        cmd.args(["run", "--kafka", &setup.brokers, "--progress", "never"])
            .args(["--workers", "1", "--report"])
            .arg(report(name))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gmv run starts")
    };
    // Two processes in one group. The lenient one stays longest (the strict
    // one leaves 2 s after its last record, and after a session timeout, 6 s,
    // since its last rebalance), so the strict one leaves with part of the
    // topic.
    let mut lenient = run(
        "lenient.json",
        &["--allow-partial", "--exit-when-idle", "15s"],
    );
    let stderr = lenient.stderr.take().expect("piped");
    let (tell, assigned) = mpsc::channel();
    let lenient_log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("assigned") && !line.contains("partitions=[]") {
                let _ = tell.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    assigned
        .recv_timeout(Duration::from_secs(40))
        .expect("the lenient process is assigned");
    let strict = run("strict.json", &["--exit-when-idle", "2s"])
        .wait_with_output()
        .expect("strict run");
    let lenient_status = lenient.wait().expect("lenient run");
    let lenient_log = lenient_log.join().expect("log reader");
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(report(name)).expect("report")).expect("JSON")
    };
    let partitions = |report: &Value, key: &str| -> BTreeSet<i64> {
        report["accounting"][key]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|p| p["partition"].as_i64())
                    .collect()
            })
            .unwrap_or_default()
    };
    let strict_report = read("strict.json");
    let (covered, missing) = (
        partitions(&strict_report, "partitions"),
        partitions(&strict_report, "missing_partitions"),
    );
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        !covered.is_empty() && !missing.is_empty(),
        "the strict process held part of the topic: covered {covered:?}, missing {missing:?}\n{stderr}"
    );
    assert_eq!(
        covered.union(&missing).count(),
        PARTITIONS as usize,
        "covered and missing make up the topic"
    );
    assert_eq!(strict.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--allow-partial"), "{stderr}");
    for p in &missing {
        assert!(
            stderr.contains(&format!("{}/{p}", setup.topic("in"))),
            "missing partition {p} named: {stderr}"
        );
    }
    assert!(lenient_status.success(), "{lenient_log}");
    let lenient_covered = partitions(&read("lenient.json"), "partitions");
    assert!(
        lenient_covered.is_superset(&missing),
        "the lenient process covered what the strict one left out: {lenient_covered:?}"
    );
}

#[test]
fn unreachable_broker_fails_at_start_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = gmv()
        .current_dir(dir.path())
        .env("GMV__KAFKA__CONNECT_TIMEOUT", "2s")
        .args(["run", "--kafka", "127.0.0.1:9", "--progress", "never"])
        .output()
        .expect("gmv runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach Kafka at `127.0.0.1:9`"),
        "{stderr}"
    );
    assert!(stderr.contains("kafka.brokers"), "{stderr}");
}

#[test]
fn missing_topic_without_permission_to_create_is_named() {
    let cluster = Cluster::mock();
    let out = gmv()
        .env("GMV__KAFKA__CREATE_TOPICS", "false")
        .env("GMV__KAFKA__INPUT_TOPIC", "no-such-topic")
        .args([
            "run",
            "--kafka",
            &cluster.bootstrap(),
            "--progress",
            "never",
        ])
        .output()
        .expect("gmv runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("topic `no-such-topic` does not exist"),
        "{stderr}"
    );
    assert!(cluster.is_mock());
}

#[test]
fn a_partition_committed_without_checkpoints_is_named_then_read_again_exactly() {
    let cluster = Cluster::mock();
    let setup = Setup::new(&cluster, "lost-state");
    let input = setup.produce(20_000);
    let want = Reference::compute(&input);
    let (first, _) = setup.run_to_end(&[]);
    check_report(&first, &want, &setup.thresholds);
    std::fs::remove_dir_all(setup.checkpoints()).expect("checkpoints deleted");
    let (again, stderr) = setup.run_to_end(&[]);
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("checkpoints are gone"))
        .count();
    assert_eq!(
        warnings, PARTITIONS as usize,
        "one warning per partition whose state was lost:\n{stderr}"
    );
    check_report(&again, &want, &setup.thresholds);
}

/// Sends a process a signal (`-STOP`, `-CONT`, `-TERM`).
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal}");
}

#[test]
fn a_member_frozen_past_its_session_announces_nothing_when_it_thaws() {
    let Some(cluster) = Cluster::real() else {
        return;
    };
    let setup = Setup::new(&cluster, "zombie");
    // About 20 s of traffic: the frozen member's prefetched records and the
    // crossings in them are its successor's by the time it thaws.
    let (input, mut producer) = setup.produce_paced(300_000, 15_000);
    let want = Reference::compute(&input);
    let args = [
        "--workers",
        "1",
        "--exit-when-idle",
        "10s",
        "--report",
        "/dev/null",
        "--allow-partial",
    ];
    let (zombie, zombie_assigned) = setup.spawn_run(&args);
    zombie_assigned
        .recv_timeout(Duration::from_secs(40))
        .expect("first member assigned");
    let (survivor, survivor_assigned) = setup.spawn_run(&args);
    survivor_assigned
        .recv_timeout(Duration::from_secs(40))
        .expect("second member assigned");
    std::thread::sleep(Duration::from_secs(1));
    // The config's session timeout is 6 s. tansu expires a silent member
    // only when someone joins, so a third member joins past it: the group
    // then gives the frozen member's partitions away, and their new owners
    // restore them from the last checkpoints and count on.
    // The worker process does the work (its parent only waits for it).
    let frozen = worker_of(&zombie);
    signal(frozen, "-STOP");
    std::thread::sleep(Duration::from_secs(7));
    let (newcomer, newcomer_assigned) = setup.spawn_run(&args);
    let taken_over = newcomer_assigned.recv_timeout(Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(2));
    signal(frozen, "-CONT");
    taken_over.expect("the newcomer was given partitions while the first member was frozen");
    assert!(producer.wait().expect("producer").success());
    all_succeed(&mut [zombie, survivor, newcomer], Duration::from_secs(120));
    // Every crossing once: none from the frozen member's stale records.
    setup.check_global_view(&want);
}

/// A tansu of the test's own (`scripts/kafka-broker.sh` on a free port,
/// memory store, its state in the test's directory): the broker-outage
/// tests freeze, crash and empty it without disturbing the shared one.
struct PrivateBroker {
    port: u16,
    state: tempfile::TempDir,
    /// `kafka-broker.sh`'s environment: the store and its needs.
    env: Vec<(&'static str, String)>,
}

impl PrivateBroker {
    /// Starts one on the memory store where the shared broker runs (tansu
    /// is installed), or `None` (test skipped) where it does not.
    fn start() -> Option<Self> {
        Cluster::real()?;
        Some(Self::start_with(vec![(
            "GMV_BROKER_STORAGE",
            "memory".into(),
        )]))
    }

    /// Starts one that keeps its log in a PostgreSQL cluster of its own. It
    /// needs a tansu built with postgres (`GMV_TANSU_PG_ROOT`, its install
    /// root) and tansu's schema (`GMV_TANSU_PG_SCHEMA`); see
    /// `scripts/kafka-broker.sh`.
    fn start_durable() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("set GMV_TANSU_PG_ROOT and GMV_TANSU_PG_SCHEMA (scripts/kafka-broker.sh)")
            })
        };
        Self::start_with(vec![
            ("GMV_BROKER_STORAGE", "postgres".into()),
            ("GMV_TANSU_ROOT", var("GMV_TANSU_PG_ROOT")),
            ("GMV_TANSU_PG_SCHEMA", var("GMV_TANSU_PG_SCHEMA")),
        ])
    }

    fn start_with(env: Vec<(&'static str, String)>) -> Self {
        let broker = Self {
            port: free_port(),
            state: tempfile::tempdir().expect("temp dir"),
            env,
        };
        broker.script("start");
        broker
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs `kafka-broker.sh COMMAND PORT` for this broker; it must succeed.
    fn script(&self, command: &str) {
        let out = self.run_script(command);
        assert!(
            out.status.success(),
            "kafka-broker.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run_script(&self, command: &str) -> std::process::Output {
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/kafka-broker.sh"
        ))
        .args([command, &self.port.to_string()])
        .env("TMPDIR", self.state.path())
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("kafka-broker.sh runs")
    }

    fn pid_file(&self) -> PathBuf {
        self.state
            .path()
            .join(format!("gmv-tansu-{}/tansu.pid", self.port))
    }

    fn pid(&self) -> String {
        let pid = std::fs::read_to_string(self.pid_file()).expect("pid file");
        pid.trim().to_string()
    }

    fn send(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} tansu");
    }

    /// Stops the broker where it stands, memory and connections kept: to
    /// its clients, an outage.
    fn freeze(&self) {
        self.send("-STOP");
    }

    fn thaw(&self) {
        self.send("-CONT");
    }

    /// Kills the broker and, `after` that, starts it again on the same
    /// port: on the memory store it comes back empty, as a broker that lost
    /// its disk; on PostgreSQL with its log.
    fn kill_and_restart(&self, after: Duration) {
        self.send("-KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "tansu still listening after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(after);
        self.script("start");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // A frozen broker would not see the stop's SIGTERM.
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
        }
        let _ = self.run_script("stop");
    }
}

/// Waits until some partition of `setup`'s input has a checkpoint on disk.
fn wait_for_a_checkpoint(setup: &Setup, limit: Duration) {
    let dir = setup.checkpoints().join(setup.topic("in"));
    let deadline = Instant::now() + limit;
    loop {
        let found = walk_files(&dir)
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "base" || e == "delta"));
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "no checkpoint within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file under `dir` (none if it does not exist yet).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_files(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Waits for `child` to exit within `limit`; returns its status and when.
fn exits_within(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, Instant::now());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {limit:?} later");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a watched run wrote to stderr so far, as one string.
fn log_of(lines: &mpsc::Receiver<(Instant, String)>) -> String {
    lines
        .try_iter()
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_broker_frozen_for_ten_seconds_mid_stream_neither_loses_nor_doubles_an_event() {
    let Some(broker) = PrivateBroker::start() else {
        return;
    };
    let setup = Setup::new(&Cluster::Real(broker.address()), "frozen");
    // About 15 s of traffic.
    rides_out_an_outage(&setup, (300_000, 20_000), "5s", || {
        broker.freeze();
        std::thread::sleep(Duration::from_secs(10));
        broker.thaw();
    });
}

#[test]
#[ignore = "opt-in: needs a tansu built with postgres and its schema (GMV_TANSU_PG_ROOT, GMV_TANSU_PG_SCHEMA)"]
fn a_broker_killed_and_back_ten_seconds_later_on_durable_storage_loses_and_doubles_nothing() {
    let broker = PrivateBroker::start_durable();
    let setup = Setup::new(&Cluster::Real(broker.address()), "durable");
    // PostgreSQL 15 refuses tansu 0.6's query for the last committed
    // offset (a subquery without an alias); nothing here is transactional.
    let config = std::fs::read_to_string(&setup.config).expect("config");
    let config = config.replace(
        "[kafka.consumer]\n",
        "[kafka.client]\n\"isolation.level\" = \"read_uncommitted\"\n[kafka.consumer]\n",
    );
    std::fs::write(&setup.config, config).expect("config written");
    // About 20 s of traffic; a new group reads this store at about 10k/s.
    rides_out_an_outage(&setup, (100_000, 5_000), "10s", || {
        broker.kill_and_restart(Duration::from_secs(10));
    });
}

/// Streams `events` at `rate` through a producer and `gmv run --kafka`,
/// does `outage` to the broker once the run has checkpointed, mid-stream,
/// and checks that both ride it out: the report, the alerts topic (each
/// crossing once) and the dead-letter topic equal the independent answer.
fn rides_out_an_outage(
    setup: &Setup,
    (events, rate): (u64, u64),
    idle: &str,
    outage: impl FnOnce(),
) {
    let (input, mut producer) = setup.produce_paced(events, rate);
    let want = Reference::compute(&input);
    let report = setup.dir.path().join("outage-report.json");
    let (mut child, assigned) = setup.spawn_run(&[
        "--exit-when-idle",
        idle,
        "--report",
        report.to_str().expect("utf-8"),
    ]);
    assigned
        .recv_timeout(Duration::from_secs(60))
        .expect("assigned");
    wait_for_a_checkpoint(setup, Duration::from_secs(60));
    assert!(
        producer.try_wait().expect("wait").is_none(),
        "the outage must come mid-stream"
    );
    outage();
    let (produced, _) = exits_within(&mut producer, Duration::from_secs(180));
    assert!(produced.success(), "the producer rides out the outage");
    let (status, _) = exits_within(&mut child, Duration::from_secs(300));
    assert!(status.success(), "{status:?}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    check_report(&report, &want, &setup.thresholds);
    setup.check_alerts_topic(&report, &want);
    setup.check_dead_letter_topic(&want, true);
}

/// The broker dies under a run and comes back empty `gap` later;
/// `recreate` makes the input topic again with new records, as a producer
/// would. The run must stop with exit 1 and a clear error, and so must the
/// next one: the log its checkpoints count is gone.
fn a_broker_back_empty_stops_the_run(name: &str, gap: Duration, recreate: bool) {
    let Some(broker) = PrivateBroker::start() else {
        return;
    };
    let cluster = Cluster::Real(broker.address());
    let setup = Setup::new(&cluster, name);
    setup.produce(100_000);
    let (mut child, lines) = setup.spawn_watched(&[], false);
    wait_for_a_checkpoint(&setup, Duration::from_secs(40));
    broker.kill_and_restart(gap);
    if recreate {
        let out = setup
            .gmv()
            .args(["generate", "--events", "1000", "--seed", "3"])
            .args(["--kafka", &broker.address()])
            .output()
            .expect("gmv generate runs");
        assert!(out.status.success());
    }
    let (status, _) = exits_within(&mut child, Duration::from_secs(90));
    let log = log_of(&lines);
    assert_eq!(status.code(), Some(1), "exits 1, no signal death: {log}");
    let said = "the cluster no longer has records this run has read";
    // Back within about a second, librdkafka 2.12 itself may crash
    // (README: known limits); the parent says so instead.
    let crashed = "the worker process crashed";
    assert!(
        log.contains(said) || gap < Duration::from_secs(1) && log.contains(crashed),
        "{log}"
    );
    let again = setup
        .gmv()
        .args(["run", "--kafka", &broker.address(), "--progress", "never"])
        .args(["--exit-when-idle", "3s", "--report", "/dev/null"])
        .output()
        .expect("gmv run runs");
    let log = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        again.status.code(),
        Some(1),
        "the next run refuses too: {log}"
    );
    assert!(log.contains(said), "{log}");
}

#[test]
fn a_broker_back_empty_stops_the_run_with_a_clear_error() {
    a_broker_back_empty_stops_the_run("empty", Duration::from_secs(3), false);
}

#[test]
fn a_broker_back_empty_at_once_ends_the_run_with_exit_1_not_a_signal_death() {
    a_broker_back_empty_stops_the_run("at-once", Duration::from_millis(300), false);
}

#[test]
fn a_broker_back_empty_with_the_topic_made_again_stops_the_run_with_a_clear_error() {
    a_broker_back_empty_stops_the_run("remade", Duration::from_secs(3), true);
}

#[test]
fn sigterm_while_the_broker_is_frozen_stops_within_the_grace_then_a_rerun_is_exact() {
    let Some(broker) = PrivateBroker::start() else {
        return;
    };
    let cluster = Cluster::Real(broker.address());
    let setup = Setup::new(&cluster, "grace");
    let input = setup.produce(100_000);
    let want = Reference::compute(&input);
    let grace = Duration::from_secs(4);
    let config = std::fs::read_to_string(&setup.config).expect("config");
    let config = config.replace("[engine]\n", "[engine]\nshutdown_grace = \"4s\"\n");
    std::fs::write(&setup.config, config).expect("config written");
    let (mut child, lines) = setup.spawn_watched(&[], false);
    wait_for_a_checkpoint(&setup, Duration::from_secs(40));
    broker.freeze();
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    signal(child.id(), "-TERM");
    let (status, ended) = exits_within(&mut child, Duration::from_secs(60));
    let log = log_of(&lines);
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(
        ended - asked < grace + Duration::from_secs(3),
        "stopped {:?} after SIGTERM, grace {grace:?}: {log}",
        ended - asked
    );
    broker.thaw();
    let (report, _) = setup.run_to_end(&[]);
    check_report(&report, &want, &setup.thresholds);
    setup.check_alerts_topic(&report, &want);
}
