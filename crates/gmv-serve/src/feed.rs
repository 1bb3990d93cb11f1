//! The live feed: the publish end of the pipeline, as seen by HTTP readers.
//!
//! The binary's publisher thread (plain std, once per tick) hands each
//! snapshot and alert to [`LiveFeed`] through [`LiveSink`]. The feed encodes
//! each one once, as JSON and as a ready Server-Sent-Events frame, so a
//! thousand screens cost a thousand reference-count bumps per tick, not a
//! thousand serialisations.
//!
//! Readers never get a queue of their own. The feed keeps the latest snapshot
//! and a bounded ring of recent alerts, and a `tokio::sync::watch` tells every
//! reader "something changed". A reader that wakes looks at where it is (its
//! [`Cursor`]) and takes what it has not seen: every alert still in the ring,
//! then the newest snapshot only. A slow reader therefore skips straight to the
//! latest snapshot, and its memory is bounded by the ring whatever happens.
//! (A `tokio::sync::broadcast` would give the same fan-out, but its per-reader
//! lag errors would need this ring anyway to recover; one mechanism is simpler.)
//!
//! # Event ids
//! Every SSE event has an id that names a position in the feed, so
//! `Last-Event-ID` resumes exactly:
//! - a snapshot's id is its `seq` (`"42"`);
//! - an alert's id is `a` and its 1-based number since the server started
//!   (`"a7"`).
//!
//! Resuming after snapshot `S` replays the alerts published after it; after
//! `aN`, alerts `N+1` on. Each stream writes alerts and snapshots in the order
//! they were published, so both rules lose nothing and repeat nothing. An id
//! from before a restart (or garbage) is treated as a fresh connection.

use crate::config::ServeConfig;
use axum::body::Bytes;
use gmv_core::output::{AlertRecord, Snapshot};
use gmv_core::sink::LiveSink;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Semaphore};

/// Rate samples older than this are dropped (when newer ones cover it).
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// The serving side's shared state: the latest snapshot, recent alerts and
/// the reader bookkeeping. Create one per process, hand it to the publisher
/// as a [`LiveSink`] and to [`crate::serve`].
pub struct LiveFeed {
    config: ServeConfig,
    shared: Mutex<Shared>,
    /// Bumped after every change; readers wait on it.
    changed: watch::Sender<u64>,
    /// `/api/live` streams in flight are the permits taken from it.
    pub(crate) client_slots: Arc<Semaphore>,
    rate: Mutex<RateWindow>,
    pub(crate) stats: FeedStats,
}

/// Counters of the feed itself, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct FeedStats {
    /// Streams refused because `max_clients` were connected.
    pub clients_refused: AtomicU64,
    /// Alerts a reader never got because they left the ring before it woke.
    pub alerts_skipped: AtomicU64,
}

#[derive(Default)]
struct Shared {
    latest: Option<Published>,
    /// Snapshots published so far; the latest has this version.
    snapshots_total: u64,
    alerts: VecDeque<AlertEntry>,
    /// Alerts published so far; the next gets this index.
    alerts_total: u64,
}

/// A published snapshot, encoded once.
#[derive(Clone)]
pub(crate) struct Published {
    /// The snapshot itself.
    pub snapshot: Arc<Snapshot>,
    /// Its JSON (the `/api/snapshot` body).
    pub json: Bytes,
    /// Its SSE frame.
    pub frame: Bytes,
    /// When the feed received it.
    pub received: Instant,
    /// 1-based publication count: orders snapshots against alerts.
    version: u64,
}

#[derive(Clone)]
struct AlertEntry {
    /// 0-based publication count.
    index: u64,
    /// Snapshots published before this alert.
    after_version: u64,
    /// `seq` of the latest snapshot published before it.
    after_seq: Option<u64>,
    frame: Bytes,
}

/// Where one reader is: what it has been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Index of the next alert to send.
    next_alert: u64,
    /// Version of the last snapshot sent (0: none).
    snapshot_version: u64,
}

/// A `Last-Event-ID` as understood by the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// The client last saw snapshot `seq`.
    AfterSnapshot(u64),
    /// The client last saw alert number `n` (1-based).
    AfterAlert(u64),
}

impl Resume {
    /// Parses an event id; `None` for anything the feed never wrote.
    pub(crate) fn parse(id: &str) -> Option<Self> {
        let id = id.trim();
        match id.strip_prefix('a') {
            Some(n) => n.parse().ok().filter(|&n| n > 0).map(Resume::AfterAlert),
            None => id.parse().ok().map(Resume::AfterSnapshot),
        }
    }
}

impl LiveFeed {
    /// An empty feed; readers get nothing until the first snapshot.
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            config: config.clone(),
            shared: Mutex::new(Shared::default()),
            changed: watch::Sender::new(0),
            client_slots: Arc::new(Semaphore::new(config.max_clients.max(1))),
            rate: Mutex::new(RateWindow::default()),
            stats: FeedStats::default(),
        }
    }

    /// The configuration the feed and the server were made with.
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// The latest snapshot, if one was published.
    pub fn latest(&self) -> Option<Arc<Snapshot>> {
        self.shared
            .lock()
            .latest
            .as_ref()
            .map(|p| p.snapshot.clone())
    }

    /// Time since the latest snapshot arrived.
    pub fn snapshot_age(&self) -> Option<Duration> {
        self.shared
            .lock()
            .latest
            .as_ref()
            .map(|p| p.received.elapsed())
    }

    /// Records consumed per second over the last few seconds of snapshots
    /// (from their `accounting.consumed`); 0 until two snapshots arrived.
    pub fn events_per_second(&self) -> f64 {
        self.rate.lock().per_second()
    }

    /// `/api/live` streams open now.
    pub fn clients(&self) -> usize {
        self.config.max_clients.max(1) - self.client_slots.available_permits()
    }

    /// Snapshots and alerts published so far.
    pub fn published(&self) -> (u64, u64) {
        let shared = self.shared.lock();
        (shared.snapshots_total, shared.alerts_total)
    }

    /// Whether the feed is fresh enough to call the server ready, and why not.
    pub fn readiness(&self) -> Result<(), String> {
        let shared = self.shared.lock();
        let Some(latest) = &shared.latest else {
            return Err("no snapshot published yet".into());
        };
        let limit = self.config.stale_after.max(Duration::from_millis(
            latest.snapshot.publish_interval_ms.saturating_mul(3),
        ));
        let age = latest.received.elapsed();
        if age > limit {
            return Err(format!(
                "latest snapshot is {:.1}s old (limit {:.1}s)",
                age.as_secs_f64(),
                limit.as_secs_f64()
            ));
        }
        Ok(())
    }

    pub(crate) fn latest_published(&self) -> Option<Published> {
        self.shared.lock().latest.clone()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts a reader: the frames to send at once and its cursor.
    ///
    /// A fresh reader gets the current snapshot, then the latest
    /// `recent_alerts` alerts. A resuming reader gets the alerts it missed
    /// and the current snapshot, in publication order.
    pub(crate) fn start(&self, resume: Option<Resume>, out: &mut VecDeque<Bytes>) -> Cursor {
        let shared = self.shared.lock();
        let from = resume.and_then(|r| shared.resume_index(r));
        match from {
            Some(next_alert) => {
                let mut cursor = Cursor {
                    next_alert,
                    snapshot_version: 0,
                };
                let skipped = shared.catch_up(&mut cursor, out);
                drop(shared);
                self.count_skipped(skipped);
                cursor
            }
            None => {
                if let Some(latest) = &shared.latest {
                    out.push_back(latest.frame.clone());
                }
                let recent = shared.alerts.len().min(self.config.recent_alerts);
                out.extend(
                    shared
                        .alerts
                        .iter()
                        .skip(shared.alerts.len() - recent)
                        .map(|a| a.frame.clone()),
                );
                Cursor {
                    next_alert: shared.alerts_total,
                    snapshot_version: shared.snapshots_total,
                }
            }
        }
    }

    /// Appends what the reader at `cursor` has not seen yet.
    pub(crate) fn catch_up(&self, cursor: &mut Cursor, out: &mut VecDeque<Bytes>) {
        let skipped = self.shared.lock().catch_up(cursor, out);
        self.count_skipped(skipped);
    }

    fn count_skipped(&self, skipped: u64) {
        if skipped > 0 {
            self.stats.alerts_skipped.fetch_add(skipped, Relaxed);
            tracing::debug!(skipped, "a live reader fell behind the alert ring");
        }
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl Shared {
    /// The index of the first alert a resuming client has not seen, or
    /// `None` when the id is not from this feed's life (restart, garbage).
    fn resume_index(&self, resume: Resume) -> Option<u64> {
        let oldest = self.alerts.front().map_or(self.alerts_total, |a| a.index);
        match resume {
            Resume::AfterAlert(n) if n <= self.alerts_total => Some(n.max(oldest)),
            Resume::AfterAlert(_) => None,
            Resume::AfterSnapshot(seq) => {
                let latest_seq = self.latest.as_ref().map(|p| p.snapshot.seq)?;
                if seq > latest_seq {
                    return None;
                }
                // after_seq never decreases along the ring.
                let pos = self
                    .alerts
                    .partition_point(|a| !matches!(a.after_seq, Some(s) if s >= seq));
                Some(self.alerts.get(pos).map_or(self.alerts_total, |a| a.index))
            }
        }
    }

    /// Appends the alerts from the cursor on and the latest snapshot if it is
    /// newer than the cursor's, in publication order. Returns how many alerts
    /// had already left the ring.
    fn catch_up(&self, cursor: &mut Cursor, out: &mut VecDeque<Bytes>) -> u64 {
        let oldest = self.alerts.front().map_or(self.alerts_total, |a| a.index);
        let skipped = oldest.saturating_sub(cursor.next_alert);
        let start = usize::try_from(cursor.next_alert.max(oldest) - oldest).unwrap_or(usize::MAX);
        let pending = self.alerts.range(start.min(self.alerts.len())..);
        let snapshot = self
            .latest
            .as_ref()
            .filter(|p| p.version != cursor.snapshot_version);
        match snapshot {
            Some(latest) => {
                let mut sent_snapshot = false;
                for alert in pending {
                    if !sent_snapshot && alert.after_version >= latest.version {
                        out.push_back(latest.frame.clone());
                        sent_snapshot = true;
                    }
                    out.push_back(alert.frame.clone());
                }
                if !sent_snapshot {
                    out.push_back(latest.frame.clone());
                }
                cursor.snapshot_version = latest.version;
            }
            None => out.extend(pending.map(|a| a.frame.clone())),
        }
        cursor.next_alert = self.alerts_total;
        skipped
    }
}

impl LiveSink for LiveFeed {
    fn snapshot(&self, snapshot: &Arc<Snapshot>) {
        let json = match serde_json::to_vec(&**snapshot) {
            Ok(json) => Bytes::from(json),
            Err(error) => {
                tracing::error!(%error, seq = snapshot.seq, "could not encode a snapshot; keeping the previous one");
                return;
            }
        };
        let frame = sse_frame(&snapshot.seq.to_string(), "snapshot", &json);
        let received = Instant::now();
        {
            let mut shared = self.shared.lock();
            shared.snapshots_total += 1;
            shared.latest = Some(Published {
                snapshot: snapshot.clone(),
                json,
                frame,
                received,
                version: shared.snapshots_total,
            });
        }
        self.rate
            .lock()
            .push(received, snapshot.figures.accounting.consumed);
        self.notify();
    }

    fn alert(&self, alert: &AlertRecord) {
        let json = match serde_json::to_vec(alert) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, merchant_id = %alert.merchant_id, "could not encode an alert");
                return;
            }
        };
        {
            let mut shared = self.shared.lock();
            let index = shared.alerts_total;
            let entry = AlertEntry {
                index,
                after_version: shared.snapshots_total,
                after_seq: shared.latest.as_ref().map(|p| p.snapshot.seq),
                frame: sse_frame(&format!("a{}", index + 1), "alert", &json),
            };
            shared.alerts.push_back(entry);
            shared.alerts_total += 1;
            while shared.alerts.len() > self.config.alert_replay.max(1) {
                shared.alerts.pop_front();
            }
        }
        self.notify();
    }
}

/// One SSE event. `data` is compact JSON, which never holds a raw newline,
/// so it fits on one `data:` line.
fn sse_frame(id: &str, event: &str, data: &[u8]) -> Bytes {
    let mut head = String::with_capacity(32);
    let _ = write!(head, "id: {id}\nevent: {event}\ndata: ");
    let mut frame = Vec::with_capacity(head.len() + data.len() + 2);
    frame.extend_from_slice(head.as_bytes());
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// `(when, consumed)` samples spanning about [`RATE_WINDOW`].
#[derive(Default)]
struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    fn push(&mut self, at: Instant, consumed: u64) {
        if self
            .samples
            .back()
            .is_some_and(|&(_, last)| consumed < last)
        {
            // The source restarted its count: start over.
            self.samples.clear();
        }
        self.samples.push_back((at, consumed));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _)| at.duration_since(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn per_second(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
                (c1 - c0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(seq: u64) -> Arc<Snapshot> {
        let view = gmv_core::view::LiveView::new(Arc::new(gmv_core::Settings::defaults()));
        Arc::new(view.snapshot(seq, 500, Default::default()))
    }

    fn alert(n: u64) -> AlertRecord {
        AlertRecord {
            merchant_id: format!("m-{n}"),
            threshold_cny: "100000000.00".into(),
            gmv_cny: "100000001.00".into(),
            settled_at: "2017-11-11T00:00:01+08:00".into(),
        }
    }

    fn ids(frames: &VecDeque<Bytes>) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                text.lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("id: ")
                    .to_owned()
            })
            .collect()
    }

    fn feed(alert_replay: usize) -> LiveFeed {
        LiveFeed::new(&ServeConfig {
            alert_replay,
            recent_alerts: 2.min(alert_replay),
            ..ServeConfig::default()
        })
    }

    #[test]
    fn event_ids_parse_and_garbage_does_not() {
        assert_eq!(Resume::parse("42"), Some(Resume::AfterSnapshot(42)));
        assert_eq!(Resume::parse(" a7 "), Some(Resume::AfterAlert(7)));
        assert_eq!(Resume::parse("a0"), None);
        assert_eq!(Resume::parse("x"), None);
        assert_eq!(Resume::parse(""), None);
    }

    #[test]
    fn fresh_reader_gets_the_snapshot_then_recent_alerts() {
        let feed = feed(8);
        let mut out = VecDeque::new();
        feed.start(None, &mut out);
        assert!(out.is_empty(), "nothing before the first snapshot");
        for n in 1..=3 {
            feed.alert(&alert(n));
        }
        feed.snapshot(&snapshot(1));
        feed.start(None, &mut out);
        assert_eq!(ids(&out), ["1", "a2", "a3"]);
    }

    #[test]
    fn live_reader_sees_publication_order_and_skips_to_latest_snapshot() {
        let feed = feed(8);
        feed.snapshot(&snapshot(1));
        let mut out = VecDeque::new();
        let mut cursor = feed.start(None, &mut out);
        out.clear();
        feed.alert(&alert(1));
        feed.snapshot(&snapshot(2));
        feed.alert(&alert(2));
        feed.snapshot(&snapshot(3));
        feed.alert(&alert(3));
        feed.catch_up(&mut cursor, &mut out);
        // Snapshot 2 is skipped (the reader was slow); alert 3 came after snapshot 3.
        assert_eq!(ids(&out), ["a1", "a2", "3", "a3"]);
        out.clear();
        feed.catch_up(&mut cursor, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn resume_after_snapshot_or_alert_replays_exactly_the_missed_alerts() {
        let feed = feed(8);
        feed.snapshot(&snapshot(1));
        feed.alert(&alert(1));
        feed.snapshot(&snapshot(2));
        feed.alert(&alert(2));
        feed.alert(&alert(3));
        feed.snapshot(&snapshot(3));
        let resumed = |r| {
            let mut out = VecDeque::new();
            feed.start(Some(r), &mut out);
            ids(&out)
        };
        assert_eq!(resumed(Resume::AfterSnapshot(1)), ["a1", "a2", "a3", "3"]);
        assert_eq!(resumed(Resume::AfterSnapshot(2)), ["a2", "a3", "3"]);
        assert_eq!(resumed(Resume::AfterSnapshot(3)), ["3"]);
        assert_eq!(resumed(Resume::AfterAlert(2)), ["a3", "3"]);
        // From another life of the server: treated as fresh.
        assert_eq!(resumed(Resume::AfterSnapshot(99)), ["3", "a2", "a3"]);
        assert_eq!(resumed(Resume::AfterAlert(99)), ["3", "a2", "a3"]);
    }

    #[test]
    fn alert_ring_is_bounded_and_lost_alerts_are_counted() {
        let feed = feed(4);
        feed.snapshot(&snapshot(1));
        let mut out = VecDeque::new();
        let mut cursor = feed.start(None, &mut out);
        out.clear();
        for n in 1..=10 {
            feed.alert(&alert(n));
        }
        assert_eq!(feed.shared.lock().alerts.len(), 4);
        feed.catch_up(&mut cursor, &mut out);
        assert_eq!(ids(&out), ["a7", "a8", "a9", "a10"]);
        assert_eq!(feed.stats.alerts_skipped.load(Relaxed), 6);
        let mut out = VecDeque::new();
        feed.start(Some(Resume::AfterSnapshot(1)), &mut out);
        assert_eq!(ids(&out), ["1", "a7", "a8", "a9", "a10"]);
    }

    #[test]
    fn events_per_second_follows_consumed() {
        let mut rate = RateWindow::default();
        let t0 = Instant::now();
        rate.push(t0, 0);
        assert_eq!(rate.per_second(), 0.0);
        rate.push(t0 + Duration::from_secs(1), 1000);
        rate.push(t0 + Duration::from_secs(2), 3000);
        assert!((rate.per_second() - 1500.0).abs() < 1e-9);
        rate.push(t0 + Duration::from_secs(10), 3000);
        assert!(rate.samples.len() <= 3);
    }
}
