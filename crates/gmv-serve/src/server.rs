//! The HTTP/1 server under [`crate::serve`]: an accept loop, one task per
//! connection running hyper over the [`crate::router`], and the two
//! connection deadlines of `[http]`, `header_read_timeout` and
//! `idle_timeout`, which `axum::serve` has no place for.
//!
//! # Why not hyper's `header_read_timeout`
//! hyper's HTTP/1 header timer runs whenever the connection waits for a
//! request head: from the connection's start, and again as soon as each
//! response is done. On a keep-alive connection it is therefore also the
//! idle timeout, and the two keys could not differ (a 10 s header timeout
//! would close idle keep-alive connections after 10 s, not 60 s). Both
//! deadlines are kept here instead, by one small [`Clock`] per connection,
//! and hyper's timer is off.
//!
//! # The clock
//! A connection is always in one of three phases ([`Phase`]):
//! - **head**: a request head is arriving and must be complete by a
//!   deadline: `header_read_timeout` after the connection's start for its
//!   first request, after the first byte for a later one. A client that
//!   connects and sends nothing, or trickles a header a byte at a time, is
//!   cut off there.
//! - **serving**: the head is in and the response body has not ended. No
//!   deadline: an `/api/live` stream is one response for as long as it
//!   lasts (it sends keep-alive comments of its own), and the time a
//!   handler takes is not the client's doing.
//! - **idle**: the last response has ended (hyper has taken all of its
//!   body); unless a byte of the next request arrives within
//!   `idle_timeout`, the connection is closed, also when its client has not
//!   read that response by then.
//!
//! Two observers move the clock: the socket wrapper ([`Watched`]) sees bytes
//! arrive, and the service counts a request from the moment the router is
//! called until hyper drops the response body ([`InFlight`]). The
//! connection's task races hyper's connection future against the current
//! deadline and drops the connection, closing the socket, once it passes.
//! The clock is touched per read and per request, never per write, so a
//! stream that runs for hours costs it nothing.
//!
//! This was chosen over resetting a deadline on every read and write: that
//! would let a client keep a half-sent head alive forever by trickling
//! bytes, which is the attack the header deadline exists for.
//!
//! Bytes that arrive while a request is served (its body, or a pipelined
//! next request) do not start a head deadline; if the next head is still
//! incomplete when the response ends, it gets `idle_timeout` and then
//! `header_read_timeout` from its next byte: lenient, still bounded.
//!
//! # Shutdown
//! On `shutdown` the loop stops accepting and each connection is asked to
//! finish gracefully: hyper closes idle connections at once and the others
//! after their response, and live streams end on the same token. A
//! connection still receiving its first request head is dropped at once
//! rather than served. Whatever remains after `shutdown_grace` (a client
//! that stopped reading) is dropped, and then the server returns.

use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::convert::Infallible;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The connection deadlines, from `http.header_read_timeout` and
/// `http.idle_timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// A request head must be complete this long after it began.
    pub header_read: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle: Duration,
}

/// How long accepting pauses after the OS refuses a connection for want of
/// resources (file descriptors, memory), so open connections can close
/// rather than the loop spinning on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown`, then waits up to `grace`
/// for open connections before dropping them.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(ended) = connections.join_next() => {
                report(ended);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                connections.spawn(connection(stream, app.clone(), timeouts, shutdown.clone()));
            }
            // The client gave up between connecting and being accepted.
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                tracing::error!(%error, "cannot accept HTTP connections; retrying in 1s");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);

    let drained = tokio::time::timeout(grace, async {
        while let Some(ended) = connections.join_next().await {
            report(ended);
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("HTTP server stopped"),
        Err(_) => {
            tracing::warn!(
                ?grace,
                open = connections.len(),
                "HTTP server stopped with connections still open (clients not reading)"
            );
            // Drops them, closing their sockets before the server returns.
            connections.shutdown().await;
        }
    }
}

fn report(ended: Result<(), JoinError>) {
    if let Err(error) = ended {
        tracing::error!(%error, "an HTTP connection task failed");
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection, from accept to close.
async fn connection(
    stream: TcpStream,
    app: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let clock = Arc::new(Clock::new(timeouts));
    let io = TokioIo::new(Watched {
        stream,
        clock: clock.clone(),
    });
    let service = {
        let clock = clock.clone();
        service_fn(move |request: Request<Incoming>| {
            let in_flight = InFlight::start(clock.clone());
            let response = app.clone().oneshot(request);
            async move {
                let response = response.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    // The clock keeps both deadlines (see the module docs).
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));

    let mut draining = false;
    loop {
        let deadline = clock.deadline(draining);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = clock.moved.notified() => {}
            () = sleep_until(deadline) => {
                if let Some(why) = clock.expired(draining) {
                    tracing::debug!("closing an HTTP connection: {why}");
                    return;
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where one connection is between requests, and until when.
struct Clock {
    timeouts: Timeouts,
    phase: Mutex<Phase>,
    /// Rung when the deadline may have come nearer (a head began, a response
    /// ended), so the connection's task stops waiting on the old one.
    moved: Notify,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is arriving; `first`: the connection's first.
    Head { until: Instant, first: bool },
    /// This many requests are being served (one, as hyper's HTTP/1 serves
    /// them in turn; counted, so nothing assumes it).
    Serving { requests: usize },
    /// Between requests.
    Idle { until: Instant },
}

impl Clock {
    fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            phase: Mutex::new(Phase::Head {
                until: Instant::now() + timeouts.header_read,
                first: true,
            }),
            moved: Notify::new(),
        }
    }

    /// Bytes arrived: on an idle connection, a request head has begun.
    fn received(&self) {
        let mut phase = self.phase.lock();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                until: Instant::now() + self.timeouts.header_read,
                first: false,
            };
            drop(phase);
            self.moved.notify_one();
        }
    }

    fn request_started(&self) {
        let mut phase = self.phase.lock();
        *phase = match *phase {
            Phase::Serving { requests } => Phase::Serving {
                requests: requests + 1,
            },
            Phase::Head { .. } | Phase::Idle { .. } => Phase::Serving { requests: 1 },
        };
    }

    fn request_ended(&self) {
        let mut phase = self.phase.lock();
        *phase = match *phase {
            Phase::Serving { requests } if requests > 1 => Phase::Serving {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                until: Instant::now() + self.timeouts.idle,
            },
        };
        drop(phase);
        self.moved.notify_one();
    }

    /// When the connection is to be closed, if nothing changes. While
    /// `draining` (shutting down), a connection still receiving its first
    /// request is closed at once: hyper would serve it, and it was never
    /// promised anything.
    fn deadline(&self, draining: bool) -> Option<Instant> {
        match *self.phase.lock() {
            Phase::Head { first: true, .. } if draining => Some(Instant::now()),
            Phase::Head { until, .. } | Phase::Idle { until } => Some(until),
            Phase::Serving { .. } => None,
        }
    }

    /// Why the connection is to be closed now, if it is.
    fn expired(&self, draining: bool) -> Option<&'static str> {
        let due = self
            .deadline(draining)
            .is_some_and(|deadline| deadline <= Instant::now());
        if !due {
            return None;
        }
        Some(match *self.phase.lock() {
            Phase::Head { .. } if draining => "shutting down before its first request arrived",
            Phase::Head { .. } => "request headers not received within http.header_read_timeout",
            _ => "idle for http.idle_timeout",
        })
    }
}

/// A request being served; the connection is idle again when the last one
/// is dropped (hyper drops the response body once it has taken all of it,
/// or when the connection goes).
struct InFlight(Arc<Clock>);

impl InFlight {
    fn start(clock: Arc<Clock>) -> Self {
        clock.request_started();
        Self(clock)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The router's response body, holding its request's [`InFlight`].
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection's socket, telling its [`Clock`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.received();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
