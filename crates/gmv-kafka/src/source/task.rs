//! One owned partition of a member: its [`Partition`], its hand-off to the
//! publisher, and where its checkpoints and fetches stand.

use crate::outputs::Outputs;
use gmv_core::partition::Partition;
use gmv_core::view::alert_record;
use gmv_pipeline::Handoff;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::Offset;
use std::time::Duration;

/// Re-fetches from further back before a gap is taken for the log's own.
const MAX_REFETCHES: u32 = 4;

/// A member's bookkeeping for one owned partition.
pub(crate) struct Task {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// The partition's state, written by this member's thread alone.
    pub(crate) engine: Partition,
    /// Its way to the publisher.
    pub(crate) handoff: Handoff,
    /// Next offset in the last durable checkpoint (-1: none): what is
    /// committed.
    pub(crate) checkpointed_next: i64,
    /// Next offset at the last capture handed to the writer (-1: none).
    pub(crate) captured_next: i64,
    /// A capture is with the writer and not yet answered.
    pub(crate) in_flight: bool,
    /// Crossings already offered to the alerts topic.
    pub(crate) alerts_done: usize,
    /// Re-fetches in a row for the same gap (see [`Task::contiguous`]).
    pub(crate) refetches: u32,
    /// A re-fetch was asked for during this batch: the rest of the batch's
    /// records of this partition come from the old fetch position.
    pub(crate) refetch_in_batch: bool,
}

impl Task {
    /// A task over `engine`, fresh or `restored` from a checkpoint.
    pub(crate) fn new(
        topic: &str,
        partition: i32,
        engine: Partition,
        handoff: Handoff,
        restored: bool,
    ) -> Self {
        let next = engine.next_position();
        let durable = if restored { next } else { -1 };
        Self {
            topic: topic.to_owned(),
            partition,
            handoff,
            checkpointed_next: durable,
            captured_next: durable,
            in_flight: false,
            // Restored crossings are offered again: the announced set (read
            // from the alerts topic) drops those already out.
            alerts_done: 0,
            refetches: 0,
            refetch_in_batch: false,
            engine,
        }
    }

    /// Keeps the partition's log contiguous: returns the part of `run` that
    /// may be counted (empty while re-fetching).
    ///
    /// Records below the next offset are already counted (processing skips
    /// them). The first record at or after it must be exactly it: some
    /// brokers (tansu 0.6) answer a fetch from inside a record batch with
    /// the *next* batch, after a rebalance or a seek alike, which would
    /// silently skip records. A gap inside one answer is the log's own
    /// (compaction, transaction markers). A gap at the start of an answer is
    /// fetched again from further back; one that stays after a few tries,
    /// or that starts below the log's low watermark, is the log's own too
    /// (retention) and is accepted with a warning.
    pub(crate) fn contiguous<'r, 'm, C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        run: &'r [BorrowedMessage<'m>],
    ) -> &'r [BorrowedMessage<'m>] {
        if self.refetch_in_batch {
            return &[];
        }
        let expected = self.engine.next_position();
        if expected < 0 {
            return run; // nothing counted or restored: any start is the start
        }
        let Some(at) = run.iter().position(|m| m.offset() >= expected) else {
            return run;
        };
        let first = run[at].offset();
        if first == expected {
            self.refetches = 0;
            return run;
        }
        if at > 0 {
            // The broker sent the records on both sides of the gap in one
            // answer: the log itself has no records in between.
            self.refetches = 0;
            tracing::debug!(topic = %self.topic, partition = self.partition, expected, first, "offsets skip inside one fetch (transaction markers or compaction)");
            return run;
        }
        let low = consumer
            .fetch_watermarks(&self.topic, self.partition, Duration::from_secs(5))
            .map_or(0, |(low, _)| low);
        if low >= expected || self.refetches >= MAX_REFETCHES {
            tracing::warn!(
                topic = %self.topic,
                partition = self.partition,
                expected,
                first,
                "records between the next offset and the first one fetched are not in the log (retention, compaction or transaction markers); going on from the first one fetched"
            );
            self.refetches = 0;
            return run;
        }
        let back = 1024_i64 << (2 * self.refetches);
        let from = expected.saturating_sub(back).max(low);
        self.refetches += 1;
        tracing::debug!(topic = %self.topic, partition = self.partition, expected, first, from, "a fetch skipped records; fetching again from further back");
        if let Err(error) = consumer.seek(
            &self.topic,
            self.partition,
            Offset::Offset(from),
            Duration::from_secs(5),
        ) {
            tracing::warn!(%error, "fetching again from before the next offset");
        }
        // librdkafka drops what the old position fetched once seek returns;
        // what this batch still holds of it is skipped here.
        self.refetch_in_batch = true;
        &run[..at]
    }

    /// Counts a run of this partition's records in offset order: refused
    /// ones to the dead-letter topic, new crossings to the alerts topic,
    /// then a delta to the publisher if one is due.
    pub(crate) fn process(&mut self, run: &[BorrowedMessage<'_>], outputs: &Outputs) {
        let handoff = &mut self.handoff;
        let records = uncounted(self.engine.next_position(), run, |m| m.offset()).map(|message| {
            if let Some(ts) = message.timestamp().to_millis() {
                handoff.started(ts, 1);
            }
            let offset = message.offset();
            (offset, offset, message.payload().unwrap_or_default())
        });
        let (topic, partition) = (&self.topic, self.partition);
        self.engine
            .process_each(records, |offset, payload, rejection| {
                outputs.dead_letter(&rejection, payload, topic, partition, offset);
            });
        self.announce(outputs);
        self.handoff.offer(&mut self.engine);
    }

    /// Offers the crossings not yet offered to the alerts topic.
    pub(crate) fn announce(&mut self, outputs: &Outputs) {
        let crossings = self.engine.crossings();
        if crossings.len() > self.alerts_done && !outputs.alerts_held() {
            let settings = self.engine.settings().clone();
            for crossing in &crossings[self.alerts_done..] {
                outputs.alert(&alert_record(&settings, crossing));
            }
            self.alerts_done = crossings.len();
        }
    }
}

/// The records of `run` not yet counted: those at or after `next`, each
/// offset once and in increasing order. An answer can repeat records it
/// already gave (fetched again after a rebalance or a seek, or what a fetch
/// from the old position still held), even after newer ones: each must be
/// skipped against the last record taken, not only against where the run
/// started, or it is counted twice.
fn uncounted<M>(
    mut next: i64,
    run: impl IntoIterator<Item = M>,
    offset: impl Fn(&M) -> i64,
) -> impl Iterator<Item = M> {
    run.into_iter().filter(move |message| {
        let at = offset(message);
        let new = at >= next;
        if new {
            next = at + 1;
        }
        new
    })
}

#[cfg(test)]
mod tests {
    use super::uncounted;

    fn kept(next: i64, offsets: &[i64]) -> Vec<i64> {
        uncounted(next, offsets.iter().copied(), |&o| o).collect()
    }

    #[test]
    fn records_before_the_next_offset_are_skipped() {
        assert_eq!(kept(5, &[3, 4, 5, 6]), [5, 6]);
        assert_eq!(kept(-1, &[0, 1]), [0, 1]);
    }

    #[test]
    fn a_run_that_repeats_records_it_already_gave_counts_each_once() {
        // What a fetch from before the next offset returned, then a stale
        // answer from the old position repeating part of it.
        assert_eq!(kept(10, &[8, 9, 10, 11, 12, 11, 12, 13]), [10, 11, 12, 13]);
        assert_eq!(kept(0, &[0, 1, 2, 0, 1, 2]), [0, 1, 2]);
    }

    #[test]
    fn gaps_are_kept_for_the_contiguity_check_to_judge() {
        assert_eq!(kept(0, &[0, 5, 6]), [0, 5, 6]);
    }
}
