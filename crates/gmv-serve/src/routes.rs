//! The HTTP routes: the JSON API, the live stream, `/metrics`, health, and
//! the page. Handlers are thin: they read the [`LiveFeed`] (already-encoded
//! bytes) or ask the [`FeedSource`] on the blocking pool, and say clearly
//! what was wrong with a request.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /` | the scoreboard page (and `/assets/scoreboard.{css,js}`) |
//! | `GET /api/snapshot` | the latest snapshot (`503` before the first) |
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
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
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
        .route("/assets/scoreboard.css", get(assets::css))
        .route("/assets/scoreboard.js", get(assets::js))
        .route("/api/snapshot", get(snapshot))
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
    let failed: Vec<String> = [
        source.err().map(|why| format!("source: {why}")),
        app.feed
            .readiness()
            .err()
            .map(|why| format!("snapshots: {why}")),
    ]
    .into_iter()
    .flatten()
    .collect();
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

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such resource")
}

#[cfg(test)]
mod tests {
    use super::*;

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
