//! gmv-core: the engine of gmv-stream, with no I/O and no async runtime.
//!
//! # Layout
//! The pipeline is source → decode → aggregate → publish; this crate is the
//! middle of it, shared by every source (file, stdin, Kafka) and publisher.
//!
//! - [`event`]: decoding a JSON record into a validated [`event::Event`] (borrowed, no allocation).
//! - [`money`]: exact money: integer fen inside, `rust_decimal` at the edges.
//! - [`time`]: RFC 3339 event times and the festival [`time::Window`].
//! - [`dedup`]: the bounded exact set of recent `txn_id`s (redeliveries, conflicts).
//! - [`aggregate`]: lock-free per-merchant aggregators, time series, threshold crossings.
//! - [`engine`]: decode → window → dedup → aggregate per record, and the readers
//!   that produce snapshots, reports and alerts.
//! - [`output`]: the published JSON shapes (report, snapshot, alert).
//! - [`reject`]: rejection reasons and their counters.
//! - [`config`]: the engine's configuration sections and their validation.
//! - [`state`]: engine state as plain data: checkpoint encoding with checksums, merging.
//! - [`sink`]: the dead-letter and live-output interfaces the I/O crates implement.
#![deny(missing_docs)]

pub mod aggregate;
pub mod config;
pub mod dedup;
pub mod engine;
pub mod event;
pub mod money;
pub mod output;
mod prefetch;
pub mod reject;
mod scan;
pub mod sink;
mod spin;
pub mod state;
mod swar;
pub mod time;

pub use config::Settings;
pub use engine::{Engine, Worker};
pub use reject::{Reason, Rejection};
