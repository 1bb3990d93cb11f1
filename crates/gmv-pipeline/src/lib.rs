//! gmv-pipeline: the run loop of gmv-stream, the same for every source.
//!
//! A run is source → partitions → publisher. A [`Source`] starts threads
//! that each own some partitions ([`gmv_core::Partition`]) and feed them
//! their records in log order; each partition hands [`Delta`]s to the one
//! [`publish::Publisher`] through a [`handoff::Handoff`] that never blocks
//! its owner; the publisher folds them into a [`LiveView`] and hands each
//! tick to its sinks. When the source ends, the view makes the report.
//!
//! # Layout
//! - [`lifecycle`]: cancellation, task counting, the first failure, signals.
//! - [`handoff`]: partition → publisher, one slot per partition.
//! - [`publish`]: the publisher and its sinks.
//! - [`chunks`]: inputs cut into chunks of lines (files, stdin, synthetic).
//! - [`split`]: the source for inputs the process splits itself: workers
//!   that read, decode, route by `merchant_id` and own partitions.
//! - [`sinks`]: dead-letter and alert files, and the safe writing of outputs.
//!
//! Kafka is another [`Source`], in `gmv-kafka`: its partitions come from the
//! consumer group.
//!
//! [`Delta`]: gmv_core::partition::Delta
#![deny(missing_docs)]

pub mod chunks;
pub mod handoff;
pub mod lifecycle;
pub mod publish;
pub mod sinks;
pub mod split;

pub use handoff::{Board, Handoff};
pub use lifecycle::{Lifecycle, StopCause, TaskError};
pub use publish::{AlertOrder, LiveSinks, Tick, TickSink};

use gmv_core::output::{PartitionId, Report};
use gmv_core::view::{LiveState, LiveView};
use publish::{Publisher, PublisherOptions};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where records come from: something that starts threads owning
/// partitions, registering each on the [`Board`].
pub trait Source: Send {
    /// How this source's alerts are ordered.
    fn alert_order(&self) -> AlertOrder;
    /// Starts the source's threads (counted by `lifecycle`); they end when
    /// the input ends or the run is cancelled, having closed their
    /// partitions' hand-offs. The source keeps `state`'s
    /// [status](gmv_core::view::SourceStatus) current.
    fn start(
        self: Box<Self>,
        lifecycle: &Lifecycle,
        board: Board,
        state: &Arc<LiveState>,
    ) -> Result<Vec<JoinHandle<()>>, TaskError>;
    /// Every partition the input has, when the source shares its input
    /// with others (a consumer group): a report that covers fewer names
    /// the rest. `None`: the run covers its whole input by construction.
    fn input_partitions(&self) -> Option<Vec<PartitionId>> {
        None
    }
}

/// How a run publishes.
pub struct RunOptions {
    /// Snapshot cadence.
    pub interval: Duration,
    /// Who receives each tick.
    pub sinks: Vec<Box<dyn TickSink>>,
    /// What HTTP readers see (made over the view's merchant index); its
    /// latency histogram gets record start → snapshot published.
    pub state: Arc<LiveState>,
}

/// How a run ended.
pub struct Outcome {
    /// The day's figures over every partition the process held at the end.
    pub report: Report,
    /// The view the report was made from.
    pub view: LiveView,
    /// Why it stopped.
    pub cause: StopCause,
    /// Time from the start until the source ended.
    pub busy: Duration,
}

/// Runs `source` to its end (or until `lifecycle` is cancelled), publishing
/// every `options.interval`; returns the report, or the first failure.
pub fn run(
    lifecycle: &Lifecycle,
    source: Box<dyn Source>,
    view: LiveView,
    options: RunOptions,
) -> Result<Outcome, TaskError> {
    let started = Instant::now();
    let state = options.state.clone();
    let expected = source.input_partitions();
    let publisher = Publisher::start(
        lifecycle,
        view,
        PublisherOptions {
            interval: options.interval,
            alert_order: source.alert_order(),
            sinks: options.sinks,
            state: options.state,
        },
    )?;
    match source.start(lifecycle, publisher.board(), &state) {
        Ok(handles) => {
            for handle in handles {
                let _ = handle.join();
            }
        }
        Err(error) => lifecycle.fail(error),
    }
    let busy = started.elapsed();
    let view = publisher.finish()?;
    if let Some(failure) = lifecycle.take_failure() {
        return Err(failure);
    }
    let mut report = view.report();
    if let Some(expected) = expected {
        let covered: std::collections::BTreeSet<(&str, i32)> = report
            .figures
            .accounting
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect();
        let missing = expected
            .into_iter()
            .filter(|p| !covered.contains(&(p.topic.as_str(), p.partition)))
            .collect();
        report.figures.accounting.missing_partitions = missing;
    }
    Ok(Outcome {
        report,
        view,
        cause: lifecycle.cause(),
        busy,
    })
}

#[cfg(test)]
mod tests;
