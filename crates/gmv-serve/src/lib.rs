//! gmv-serve: the serving end of gmv-stream's publish stage. It puts the
//! live snapshots and threshold alerts on HTTP: a Server-Sent-Events feed,
//! the gala scoreboard page, a JSON API, Prometheus `/metrics` and health
//! checks, on tokio and axum.
//!
//! # Layout
//! - [`feed`]: [`LiveFeed`], the [`gmv_core::sink::LiveSink`] the publisher
//!   thread writes to: latest snapshot, bounded alert ring, change signal.
//! - [`source`]: [`FeedSource`], what the API reads beyond snapshots
//!   (merchants, metrics); a publisher's [`gmv_core::view::LiveState`] is one.
//! - `sse`: one `/api/live` stream per client, skipping forward when slow.
//! - `routes`: the routes and their errors ([`router`]).
//! - `server`: the accept loop and HTTP/1 connections under [`serve`], with
//!   their header-read and idle deadlines.
//! - [`prometheus`]: the `/metrics` text.
//! - [`assets`]: the scoreboard page, embedded at compile time.
//! - [`config`]: [`ServeConfig`], the `[http]` section.
//!
//! # Wiring
//! The pipeline's publisher writes each tick to a [`LiveFeed`] (snapshots,
//! alerts) and to a [`gmv_core::view::LiveState`] (the merchant index and
//! the latest snapshot), which is the server's [`FeedSource`]:
//! ```no_run
//! use gmv_core::sink::LiveSink;
//! use gmv_core::view::{LiveState, LiveView};
//! use std::sync::Arc;
//! use tokio_util::sync::CancellationToken;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let view = LiveView::new(Arc::new(gmv_core::Settings::defaults()));
//! let state = Arc::new(LiveState::new(view.index()));
//! let config = gmv_serve::ServeConfig::default();
//! let feed = Arc::new(gmv_serve::LiveFeed::new(&config));
//! let shutdown = CancellationToken::new();
//!
//! // Each tick, a publisher does this with the view it keeps current.
//! let snapshot = Arc::new(view.snapshot(1, 500, Default::default()));
//! state.publish(snapshot.clone(), view.memory());
//! feed.snapshot(&snapshot);
//!
//! // The server, on a tokio runtime of its own.
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let listener = gmv_serve::bind(&config).await?;
//!     gmv_serve::serve(listener, feed, state, shutdown).await
//! })?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod assets;
pub mod config;
pub mod feed;
pub mod prometheus;
mod routes;
mod server;
pub mod source;
mod sse;

pub use config::ServeConfig;
pub use feed::LiveFeed;
pub use routes::router;
pub use source::{FeedSource, Metrics, PartitionLag};

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why serving stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken, not local, or not permitted: the operator's
    /// configuration (`http.bind`) needs changing.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The server failed while running (the OS refused the listener). Not
    /// the client's doing; restarting may help.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds `config.bind`.
pub async fn bind(config: &ServeConfig) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })
}

/// Serves the routes of [`router`] over HTTP/1 on `listener` until
/// `shutdown` is cancelled, then closes live streams and lets requests in
/// flight finish, for at most `shutdown_grace`.
///
/// A connection is closed when a request's headers take longer than
/// `header_read_timeout` to arrive, or when it has had no request in flight
/// for `idle_timeout`; an `/api/live` stream is a request in flight for as
/// long as it lasts.
pub async fn serve(
    listener: TcpListener,
    feed: Arc<LiveFeed>,
    source: Arc<dyn FeedSource>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the live scoreboard at http://{addr}/");
    }
    let config = feed.config();
    let timeouts = server::Timeouts {
        header_read: config.header_read_timeout,
        idle: config.idle_timeout,
    };
    let grace = config.shutdown_grace;
    let app = router(feed, source, shutdown.clone());
    server::run(listener, app, timeouts, grace, shutdown).await;
    Ok(())
}
