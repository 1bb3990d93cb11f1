//! The HTTP live feed of a local run: `gmv-serve` on a small tokio runtime of
//! its own, beside the synchronous pipeline threads. The publisher thread
//! writes to its [`LiveFeed`]; the API reads a [`FeedSource`] (the engine, or
//! a view assembled from Kafka partitions).

use anyhow::{Context, Result};
use gmv_core::sink::LiveSink;
use gmv_serve::{FeedSource, LiveFeed, ServeConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running server.
pub struct Server {
    runtime: Runtime,
    feed: Arc<LiveFeed>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), gmv_serve::ServeError>>,
    addr: SocketAddr,
}

impl Server {
    /// Binds `config.bind` (failing at once if it cannot) and starts serving.
    pub fn start(config: &ServeConfig, source: Arc<dyn FeedSource>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gmv-http")
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let listener = runtime.block_on(gmv_serve::bind(config))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let feed = Arc::new(LiveFeed::new(config));
        let shutdown = CancellationToken::new();
        let task = runtime.spawn(gmv_serve::serve(
            listener,
            feed.clone(),
            source,
            shutdown.clone(),
        ));
        eprintln!("gmv: live scoreboard at http://{addr}/");
        Ok(Self {
            runtime,
            feed,
            shutdown,
            task,
            addr,
        })
    }

    /// The sink the publisher writes to.
    pub fn feed(&self) -> Arc<dyn LiveSink> {
        self.feed.clone()
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Closes live streams, finishes requests in flight and stops.
    pub fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        let served = self
            .runtime
            .block_on(self.task)
            .context("the HTTP task panicked")?;
        served.context("serving HTTP")
    }
}
