//! gmv-core: the engine of gmv-stream, with no I/O and no async runtime.
//!
//! # Layout
//! The pipeline is source → decode → aggregate → publish; this crate is the
//! middle of it, shared by every source (file, stdin, Kafka) and publisher.
//!
//! - [`event`]: decoding a JSON record into a validated [`event::Event`] (borrowed, no allocation).
//! - [`money`]: exact money: integer fen inside, `rust_decimal` at the edges.
//! - [`time`]: RFC 3339 event times and the festival [`time::Window`].
//! - [`partition`]: the unit of state: one partition's merchants, series,
//!   threshold crossings and redelivery set, written by its one owner thread
//!   with plain adds, handing readers [`partition::Delta`]s.
//! - [`dedup`]: a partition's bounded exact set of recent `txn_id`s.
//! - [`view`]: the readers' side: partitions merged from their deltas, the
//!   live merchant index, snapshots and the final report.
//! - [`output`]: the published JSON shapes (report, snapshot, alert).
//! - [`reject`]: rejection reasons and their counters.
//! - [`config`]: the engine's configuration sections and their validation.
//! - [`state`]: a partition's checkpoint format, with checksums.
//! - [`latency`]: latency histograms.
//! - [`sink`]: the dead-letter and live-output interfaces the I/O crates implement.
#![deny(missing_docs)]

pub mod config;
pub mod dedup;
pub mod event;
pub mod latency;
pub mod money;
pub mod output;
pub mod partition;
mod prefetch;
pub mod reject;
mod scan;
pub mod sink;
pub mod state;
mod swar;
pub mod time;
pub mod view;

pub use config::Settings;
pub use partition::Partition;
pub use reject::{Reason, Rejection};
