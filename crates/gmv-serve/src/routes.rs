//! The HTTP routes: the JSON API, the live stream, `/metrics`, health, and
//! the page. Handlers are thin: they read the [`LiveFeed`] (already-encoded
//! bytes) or ask the [`FeedSource`] on the blocking pool, and say clearly
//! what was wrong with a request.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | the scoreboard page (and `/assets/scoreboard.{css,js}`) |
//! | `GET /ops` | the same page as the operator view (also `/?ops`) |
//! | `GET /api/snapshot` | the latest snapshot (`503` before the first) |
//! | `GET /api/day` | the whole window minute by minute, a `DaySeries` (`503` before the first snapshot) |
//! | `GET /api/screen` | what the page celebrates: `{"milestone_every_cny", "baseline": {"label", "gmv_cny", "mobile_share"} \| null}` |
//! | `GET /api/ops` | the operator's figures (see [`Ops`]) |
//! | `GET /api/live` | SSE: `snapshot` and `alert` events (`503` past `max_clients`) |
//! | `GET /api/merchants/top?n=20` | `{"n": .., "merchants": [..]}`; `400` unless `n` is a whole number ≥ 1; capped at `max_top` |
//! | `GET /api/merchants/{id}` | one merchant; `404` if it has no counted GMV |
//! | `GET /metrics` | Prometheus text |
//! | `GET /healthz` | `200` while the process serves |
//! | `GET /readyz` | `200` while snapshots are fresh, else `503` and why |
//!
//! Anything else is `404` (JSON), a wrong method `405`.

use crate::feed::LiveFeed;
use crate::source::FeedSource;
use crate::{assets, prometheus, sse};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gmv_core::output::DaySeries;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `n` when `/api/merchants/top` is asked without one.
const DEFAULT_TOP: usize = 20;
/// Merchant ids are 1..=64 bytes by contract; anything else cannot exist.
const MAX_ID_BYTES: usize = 64;

#[derive(Clone)]
struct AppState {
    feed: Arc<LiveFeed>,
    source: Arc<dyn FeedSource>,
    shutdown: CancellationToken,
    day: Arc<DayCache>,
}

/// The latest day series and its JSON: the publisher replaces the series
/// once per tick, so a thousand screens reloading at once (after a network
/// blip) cost one encoding per tick, not one each.
#[derive(Default)]
struct DayCache(Mutex<Option<(Arc<DaySeries>, Bytes)>>);

impl DayCache {
    /// `day` as JSON, encoded unless it is the series encoded last.
    fn encode(&self, day: Arc<DaySeries>) -> serde_json::Result<Bytes> {
        if let Some((cached, json)) = &*self.0.lock() {
            if Arc::ptr_eq(cached, &day) {
                return Ok(json.clone());
            }
        }
        let json = Bytes::from(serde_json::to_vec(&*day)?);
        *self.0.lock() = Some((day, json.clone()));
        Ok(json)
    }
}

/// The application's routes over a feed and a source. Streams end when
/// `shutdown` is cancelled, so a graceful shutdown does not wait on them.
pub fn router(
    feed: Arc<LiveFeed>,
    source: Arc<dyn FeedSource>,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/ops", get(assets::index))
        .route("/assets/scoreboard.css", get(assets::css))
        .route("/assets/scoreboard.js", get(assets::js))
        .route("/api/snapshot", get(snapshot))
        .route("/api/day", get(day))
        .route("/api/screen", get(screen))
        .route("/api/ops", get(ops))
        .route("/api/live", get(live))
        .route("/api/merchants/top", get(top_merchants))
        .route("/api/merchants/{id}", get(merchant))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(AppState {
            feed,
            source,
            shutdown,
            day: Arc::default(),
        })
}

/// A JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    let mut response = (
        status,
        Json(Body {
            error: message.into(),
        }),
    )
        .into_response();
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn json<T: Serialize>(value: &T) -> Response {
    let mut response = Json(value).into_response();
    no_store(&mut response);
    response
}

/// A blocking source call on the blocking pool.
async fn ask<T: Send + 'static>(
    source: &Arc<dyn FeedSource>,
    call: impl FnOnce(&dyn FeedSource) -> T + Send + 'static,
) -> Result<T, Response> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || call(source.as_ref()))
        .await
        .map_err(|join| {
            tracing::error!(error = %join, "a feed source call failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while reading the live state",
            )
        })
}

async fn snapshot(State(app): State<AppState>) -> Response {
    match app.feed.latest_published() {
        Some(latest) => {
            let mut response = latest.json.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            no_store(&mut response);
            response
        }
        None => not_yet(),
    }
}

/// The day's series as of the latest tick, for a chart that survives a
/// reload. Encoded on the blocking pool (a whole day is 1,440 minutes),
/// once per series ([`DayCache`]).
async fn day(State(app): State<AppState>) -> Response {
    if app.feed.latest_published().is_none() {
        return not_yet();
    }
    let cache = app.day.clone();
    let encoded = ask(&app.source, move |s| cache.encode(s.day_series())).await;
    match encoded {
        Ok(Ok(json)) => {
            let mut response = json.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            no_store(&mut response);
            response
        }
        Ok(Err(encode)) => {
            tracing::error!(error = %encode, "could not encode the day series");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while encoding the day series",
            )
        }
        Err(response) => response,
    }
}

async fn screen(State(app): State<AppState>) -> Response {
    json(&app.feed.config().screen())
}

/// `GET /api/ops`: what an operator watches during the show, in one JSON
/// object. Figures come from the latest snapshot, the source's
/// [`FeedSource::metrics`] and the feed's own counters; a field is `null`
/// (or 0) until there is something to say.
#[derive(Debug, Serialize)]
pub(crate) struct Ops {
    /// The latest snapshot's `seq`.
    seq: Option<u64>,
    /// Its wall clock at publish.
    as_of: Option<String>,
    /// Its event-time watermark.
    watermark: Option<String>,
    /// The publish cadence it declares.
    publish_interval_ms: Option<u64>,
    /// Milliseconds since the feed received it.
    snapshot_age_ms: Option<u64>,
    /// What `/readyz` says: the source has its input and snapshots are fresh.
    ready: bool,
    /// Why not ready, when not.
    not_ready: Option<String>,
    /// Records read per second over the last few snapshots.
    events_per_second: f64,
    /// Records read (counted + rejected).
    consumed: u64,
    /// Records counted in GMV.
    counted: u64,
    /// Records rejected.
    rejected: u64,
    /// Rejections by reason (every reason present).
    rejected_by_reason: gmv_core::reject::RejectCounts,
    /// Processing latency percentiles, ms (`count` 0: not measured).
    latency_ms: gmv_core::output::LatencyMs,
    /// Partitions the source holds.
    partitions: u64,
    /// Rebalances the source has seen.
    rebalances: u64,
    /// Milliseconds since the newest durable checkpoint (`null`: none).
    checkpoint_age_ms: Option<u64>,
    /// Records behind the partitions' ends, summed.
    lag_total: u64,
    /// Per partition.
    lag: Vec<OpsLag>,
    /// Redelivery ids held.
    dedup_ids: u64,
    /// Bytes the dedup sets have allocated.
    dedup_bytes: u64,
    /// `/api/live` streams open.
    live_clients: usize,
    /// The cap on them (`http.max_clients`).
    max_clients: usize,
    /// Streams refused at the cap since start.
    clients_refused: u64,
    /// Alerts a slow reader never got (they left the replay ring).
    alerts_skipped: u64,
    /// Snapshots published since start.
    snapshots_published: u64,
    /// Alerts published since start.
    alerts_published: u64,
}

/// One partition's lag in [`Ops`].
#[derive(Debug, Serialize)]
pub(crate) struct OpsLag {
    topic: String,
    partition: i32,
    lag: u64,
}

async fn ops(State(app): State<AppState>) -> Response {
    let (metrics, source_ready) = match ask(&app.source, |s| (s.metrics(), s.readiness())).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    let feed = &app.feed;
    let latest = feed.latest_published();
    let snapshot = latest.as_ref().map(|p| &p.snapshot);
    let failed = not_ready(source_ready, feed.readiness());
    let readiness = if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    };
    let (snapshots_published, alerts_published) = feed.published();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = Ops {
        seq: snapshot.map(|s| s.seq),
        as_of: snapshot.map(|s| s.as_of.clone()),
        watermark: snapshot.and_then(|s| s.watermark.clone()),
        publish_interval_ms: snapshot.map(|s| s.publish_interval_ms),
        snapshot_age_ms: latest
            .as_ref()
            .map(|p| u64::try_from(p.received.elapsed().as_millis()).unwrap_or(u64::MAX)),
        ready: readiness.is_ok(),
        not_ready: readiness.err(),
        events_per_second: feed.events_per_second(),
        consumed: metrics.consumed,
        counted: metrics.counted,
        rejected: metrics.rejected.total(),
        rejected_by_reason: metrics.rejected,
        latency_ms: metrics.latency_ms,
        partitions: metrics.partitions_assigned,
        rebalances: metrics.rebalances,
        checkpoint_age_ms: metrics
            .last_checkpoint_ms
            .map(|at| u64::try_from(now_ms - at).unwrap_or(0)),
        lag_total: metrics.consumer_lag.iter().map(|l| l.lag).sum(),
        lag: metrics
            .consumer_lag
            .into_iter()
            .map(|l| OpsLag {
                topic: l.topic,
                partition: l.partition,
                lag: l.lag,
            })
            .collect(),
        dedup_ids: metrics.dedup_ids,
        dedup_bytes: metrics.dedup_bytes,
        live_clients: feed.clients(),
        max_clients: feed.config().max_clients,
        clients_refused: feed.stats.clients_refused.load(Relaxed),
        alerts_skipped: feed.stats.alerts_skipped.load(Relaxed),
        snapshots_published,
        alerts_published,
    };
    json(&body)
}

fn not_yet() -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "no snapshot published yet");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn live(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(slot) = app.feed.client_slots.clone().try_acquire_owned() else {
        app.feed.stats.clients_refused.fetch_add(1, Relaxed);
        tracing::warn!(
            max_clients = app.feed.config().max_clients,
            "refusing a live stream: too many open"
        );
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams open; retry shortly",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let resume = sse::resume_point(&headers, query.as_deref());
    let body = sse::live_body(app.feed.clone(), resume, slot, app.shutdown.clone());
    (sse::headers(), body).into_response()
}

/// `n` from the query string: absent is the default, and it must be a whole
/// number from 1; larger than `max` is capped.
fn top_n(query: Option<&str>, max: usize) -> Result<usize, String> {
    let raw = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .rfind(|(key, _)| *key == "n")
        .map(|(_, value)| value);
    let n = match raw {
        None => DEFAULT_TOP,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => {
                let shown: String = text.chars().take(32).collect();
                return Err(format!(
                    "`n` must be a whole number from 1 to {max}, got `{shown}`"
                ));
            }
        },
    };
    Ok(n.min(max))
}

async fn top_merchants(State(app): State<AppState>, RawQuery(query): RawQuery) -> Response {
    #[derive(Serialize)]
    struct Top {
        n: usize,
        merchants: Vec<gmv_core::output::TopMerchant>,
    }
    let n = match top_n(query.as_deref(), app.feed.config().max_top) {
        Ok(n) => n,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match ask(&app.source, move |s| s.top_merchants(n)).await {
        Ok(merchants) => json(&Top { n, merchants }),
        Err(response) => response,
    }
}

async fn merchant(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let unknown = || {
        error(
            StatusCode::NOT_FOUND,
            "no merchant with that id has counted GMV",
        )
    };
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return unknown();
    }
    match ask(&app.source, move |s| s.merchant(&id)).await {
        Ok(Some(record)) => json(&record),
        Ok(None) => unknown(),
        Err(response) => response,
    }
}

/// `/metrics`: OpenMetrics 1.0.0 when `Accept` asks for it, else the
/// Prometheus text format 0.0.4 (see [`prometheus::Format::negotiate`]).
/// The source is read and `/proc` too, so the whole scrape is rendered on
/// the blocking pool.
async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let format = prometheus::Format::negotiate(&accept.join(","));
    let feed = app.feed.clone();
    let text = match ask(&app.source, move |s| {
        prometheus::render(&s.metrics(), &feed, format)
    })
    .await
    {
        Ok(text) => text,
        Err(response) => return response,
    };
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // Caches must not hand one format to a client that asked for the other.
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    no_store(&mut response);
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`: `200` once the source has its input (partitions assigned and
/// restored) and while snapshots are fresh; otherwise `503` with every
/// condition that failed, so a rollout stuck on readiness says why.
async fn readyz(State(app): State<AppState>) -> Response {
    let source = match ask(&app.source, |s| s.readiness()).await {
        Ok(source) => source,
        Err(response) => return response,
    };
    let failed = not_ready(source, app.feed.readiness());
    let mut response = if failed.is_empty() {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failed.join("; ")),
        )
            .into_response()
    };
    no_store(&mut response);
    response
}

/// Every readiness condition that failed, named.
fn not_ready(source: Result<(), String>, snapshots: Result<(), String>) -> Vec<String> {
    [
        source.err().map(|why| format!("source: {why}")),
        snapshots.err().map(|why| format!("snapshots: {why}")),
    ]
    .into_iter()
    .flatten()
    .collect()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such resource")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_series_is_encoded_once() {
        let cache = DayCache::default();
        let day = Arc::new(DaySeries::default());
        let first = cache.encode(day.clone()).unwrap();
        let again = cache.encode(day).unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes");
        let next = cache.encode(Arc::new(DaySeries::default())).unwrap();
        assert_ne!(first.as_ptr(), next.as_ptr(), "a new series is encoded");
        assert_eq!(next, first);
    }

    #[test]
    fn top_n_defaults_caps_and_refuses_nonsense() {
        assert_eq!(top_n(None, 100), Ok(20));
        assert_eq!(top_n(Some("x=1"), 100), Ok(20));
        assert_eq!(top_n(Some("n=5"), 100), Ok(5));
        assert_eq!(top_n(Some("n=5000"), 100), Ok(100));
        assert_eq!(top_n(Some("n=99999999999999999999999"), 100).ok(), None);
        for bad in ["n=0", "n=-1", "n=abc", "n=", "n", "n=1.5", "n=%31"] {
            assert!(top_n(Some(bad), 100).is_err(), "{bad}");
        }
    }
}
