//! Shared test harness: a partition fed with synthetic events, a publisher
//! step that does what the pipeline's publisher does (delta into the view,
//! alerts, snapshot into the live state and the feed), the server on
//! 127.0.0.1:0, and a small SSE reader.
#![allow(dead_code)]

use gmv_core::partition::{decode, Decoded, Partition};
use gmv_core::sink::LiveSink;
use gmv_core::view::{LiveState, LiveView, PartitionKey};
use gmv_core::Settings;
use gmv_serve::{LiveFeed, ServeConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One local partition and what the pipeline's publisher does for it:
/// deltas into the view, alerts to the feed, the snapshot and the day's
/// series into the live state, the snapshot to the feed.
pub struct Feeder {
    pub partition: Partition,
    pub view: LiveView,
    pub state: Arc<LiveState>,
    pub feed: Arc<LiveFeed>,
    pub position: i64,
    pub seq: u64,
    pub interval_ms: u64,
}

impl Feeder {
    pub fn new(state: Arc<LiveState>, view: LiveView, feed: Arc<LiveFeed>) -> Self {
        Self {
            partition: Partition::new(view.settings().clone(), 1 << 20),
            view,
            state,
            feed,
            position: 0,
            seq: 0,
            interval_ms: 500,
        }
    }

    /// Counts one record.
    pub fn count(&mut self, payload: &[u8]) -> bool {
        let decoded = decode(self.partition.settings(), payload);
        let txn = decoded.as_ref().map(Decoded::txn).map_err(Clone::clone);
        self.position += 1;
        self.partition.count(self.position, txn).is_ok()
    }

    /// Counts `events` records of a synthetic stream.
    pub fn count_from(
        &mut self,
        events: &mut impl Iterator<Item = gmv_synth::SynthRecord>,
        n: usize,
    ) {
        for record in events.take(n) {
            self.count(&record.payload);
        }
    }

    /// One publisher tick: new alerts, then a snapshot (and the day's
    /// series, as the pipeline's publisher does). Returns the alerts
    /// published.
    pub fn publish(&mut self) -> usize {
        let delta = self.partition.take_delta();
        let applied = self.view.apply(&PartitionKey::split(0), "test", &delta);
        for crossing in &applied.crossings {
            self.feed.alert(&self.view.alert_record(crossing));
        }
        self.seq += 1;
        let snapshot = Arc::new(
            self.view
                .snapshot(self.seq, self.interval_ms, Default::default()),
        );
        self.state.publish(snapshot.clone(), self.view.memory());
        self.state.publish_day(self.view.day_series());
        self.feed.snapshot(&snapshot);
        applied.crossings.len()
    }
}

/// A running server over one local partition.
pub struct TestServer {
    pub addr: SocketAddr,
    pub feeder: Feeder,
    pub state: Arc<LiveState>,
    pub feed: Arc<LiveFeed>,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<Result<(), gmv_serve::ServeError>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServeConfig::default()).await
    }

    pub async fn start_with(config: ServeConfig) -> Self {
        let view = LiveView::new(Arc::new(Settings::defaults()));
        let state = Arc::new(LiveState::new(view.index()));
        let feed = Arc::new(LiveFeed::new(&config));
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(gmv_serve::serve(
            listener,
            feed.clone(),
            state.clone(),
            shutdown.clone(),
        ));
        Self {
            addr,
            feeder: Feeder::new(state.clone(), view, feed.clone()),
            state,
            feed,
            shutdown,
            server,
        }
    }

    /// Marks the source ready with its one partition, as a source that
    /// splits its input itself is from the start.
    pub fn ready(&self) {
        self.state.set_status(|s| {
            s.ready = true;
            s.partitions = 1;
        });
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Processes `events` synthetic records from `seed`'s stream.
    pub fn process(&mut self, events: u64, seed: u64) {
        let mut generator = gmv_synth::Generator::new(gmv_synth::SynthConfig {
            events,
            seed,
            ..Default::default()
        });
        self.feeder.count_from(&mut generator, events as usize);
    }

    /// Processes one hand-written event.
    pub fn process_one(&mut self, txn: &str, merchant: &str, amount: &str) {
        let record = format!(
            r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"mobile","settled_at":"2017-11-11T00:00:07+08:00"}}"#
        );
        assert!(self.feeder.count(record.as_bytes()));
    }

    /// One publisher tick: new alerts, then a snapshot. Returns the alerts published.
    pub fn publish(&mut self) -> usize {
        self.feeder.publish()
    }

    /// The figures of the latest published snapshot.
    pub fn figures(&self) -> gmv_core::output::Figures {
        self.state.latest().expect("published").figures.clone()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops promptly after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads an SSE response event by event.
pub struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
    pub comments: usize,
}

impl SseReader {
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> Self {
        let client = reqwest::Client::new();
        let mut request = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: Vec::new(),
            comments: 0,
        }
    }

    /// The next event (skipping comments and field-only blocks), or `None`
    /// when the stream ends or nothing comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let bytes: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(bytes).unwrap();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(v);
                        has_data = true;
                    }
                }
                if has_data {
                    return Some(event);
                }
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    pub async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("an event within 10s")
    }
}
