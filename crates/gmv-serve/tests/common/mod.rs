//! Shared test harness: an engine fed with synthetic events, a publisher
//! step that does what the binary's publisher thread does, the server on
//! 127.0.0.1:0, and a small SSE reader.
#![allow(dead_code)]

use gmv_core::sink::LiveSink;
use gmv_core::{Engine, Settings};
use gmv_serve::{LiveFeed, ServeConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server over a local engine.
pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub feed: Arc<LiveFeed>,
    pub shutdown: CancellationToken,
    pub server: JoinHandle<Result<(), gmv_serve::ServeError>>,
    pub seq: u64,
    pub alerts_sent: usize,
    pub interval_ms: u64,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServeConfig::default()).await
    }

    pub async fn start_with(config: ServeConfig) -> Self {
        let engine = Arc::new(Engine::new(Settings::defaults()));
        let feed = Arc::new(LiveFeed::new(&config));
        let shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(gmv_serve::serve(
            listener,
            feed.clone(),
            engine.clone(),
            shutdown.clone(),
        ));
        Self {
            addr,
            engine,
            feed,
            shutdown,
            server,
            seq: 0,
            alerts_sent: 0,
            interval_ms: 500,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Processes `events` synthetic records from `seed`'s stream.
    pub fn process(&self, events: u64, seed: u64) {
        let generator = gmv_synth::Generator::new(gmv_synth::SynthConfig {
            events,
            seed,
            ..Default::default()
        });
        let mut worker = self.engine.worker();
        for record in generator {
            let _ = worker.process(&record.payload);
        }
        worker.flush();
    }

    /// Processes one hand-written event.
    pub fn process_one(&self, txn: &str, merchant: &str, amount: &str) {
        let record = format!(
            r#"{{"txn_id":"{txn}","merchant_id":"{merchant}","amount":"{amount}","channel":"mobile","settled_at":"2017-11-11T00:00:07+08:00"}}"#
        );
        let mut worker = self.engine.worker();
        worker.process(record.as_bytes()).unwrap();
        worker.flush();
    }

    /// One publisher tick: new alerts, then a snapshot. Returns the alerts published.
    pub fn publish(&mut self) -> usize {
        let alerts = self.engine.alert_records(self.alerts_sent);
        self.alerts_sent += alerts.len();
        for alert in &alerts {
            self.feed.alert(alert);
        }
        self.seq += 1;
        self.feed
            .snapshot(&Arc::new(self.engine.snapshot(self.seq, self.interval_ms)));
        alerts.len()
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
