//! `GET /api/live`: the Server-Sent-Events stream, one per screen.
//!
//! Each stream is a small state machine over the shared [`LiveFeed`]: it
//! waits for the feed's change signal, asks the feed what its [`Cursor`] has
//! not seen, and writes those ready-made frames. Nothing is produced while
//! the socket is not writable (hyper only polls the body when it can send),
//! so a stalled screen costs its cursor and socket buffers, nothing more;
//! when it drains, it gets the latest snapshot, not a backlog.
//!
//! A stream ends when the client goes away or the server shuts down; the
//! permit it holds bounds open streams at `max_clients`.

use crate::feed::{Cursor, LiveFeed, Resume};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue};
use futures::Stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

/// Sent first: browsers reconnect one second after a drop, not three.
const RETRY: &[u8] = b"retry: 1000\n\n";
/// A comment line: keeps an idle stream open through proxies.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Where a reconnecting client resumes: the `Last-Event-ID` header, or the
/// `last_event_id` query parameter (for clients that reopen the stream
/// themselves and so cannot set the header, like the scoreboard page).
pub(crate) fn resume_point(headers: &HeaderMap, query: Option<&str>) -> Option<Resume> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let param = query.and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == "last_event_id")
            .map(|(_, value)| value)
    });
    header.or(param).and_then(Resume::parse)
}

/// The response body of one live stream.
pub(crate) fn live_body(
    feed: Arc<LiveFeed>,
    resume: Option<Resume>,
    slot: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) -> Body {
    // Subscribe before reading the state, so no change falls in between.
    let changes = feed.watch();
    let mut pending = VecDeque::from([Bytes::from_static(RETRY)]);
    let cursor = feed.start(resume, &mut pending);
    tracing::debug!(clients = feed.clients(), ?resume, "live reader connected");
    let reader = Reader {
        keep_alive: feed.config().keep_alive,
        feed,
        changes,
        cursor,
        pending,
        shutdown,
        _slot: slot,
    };
    Body::from_stream(frames(reader))
}

/// The headers of an SSE response.
pub(crate) fn headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-store"),
        ),
        // Tells nginx-style proxies not to buffer the stream.
        (
            header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ),
    ]
}

struct Reader {
    feed: Arc<LiveFeed>,
    changes: watch::Receiver<u64>,
    cursor: Cursor,
    /// Frames decided but not yet written; bounded by the alert ring plus one
    /// snapshot, because it is refilled only when empty.
    pending: VecDeque<Bytes>,
    shutdown: CancellationToken,
    keep_alive: Duration,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Reader {
    fn drop(&mut self) {
        // The permit is still held here, hence the minus one.
        tracing::debug!(
            clients = self.feed.clients().saturating_sub(1),
            "live reader gone"
        );
    }
}

fn frames(reader: Reader) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::unfold(reader, |mut reader| async move {
        loop {
            if let Some(frame) = reader.pending.pop_front() {
                return Some((Ok(frame), reader));
            }
            tokio::select! {
                biased;
                () = reader.shutdown.cancelled() => return None,
                changed = reader.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    reader.changes.borrow_and_update();
                    reader.feed.catch_up(&mut reader.cursor, &mut reader.pending);
                }
                () = tokio::time::sleep(reader.keep_alive) => {
                    return Some((Ok(Bytes::from_static(KEEP_ALIVE)), reader));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_over_query_and_bad_ids_are_ignored() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            resume_point(&headers, Some("x=1&last_event_id=a3")),
            Some(Resume::AfterAlert(3))
        );
        headers.insert("last-event-id", HeaderValue::from_static("17"));
        assert_eq!(
            resume_point(&headers, Some("last_event_id=a3")),
            Some(Resume::AfterSnapshot(17))
        );
        headers.insert("last-event-id", HeaderValue::from_static("nonsense"));
        assert_eq!(resume_point(&headers, None), None);
    }
}
