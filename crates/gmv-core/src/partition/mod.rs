//! A partition: the unit of state and ownership for every source.
//!
//! A Kafka topic's partitions, and a file or stdin split by `merchant_id`
//! ([`partition_of`]), each feed one [`Partition`]: the merchants, series,
//! threshold crossings, rejection counters and redelivery set of exactly the
//! events in that partition's log. Exactly one thread owns a partition and
//! writes it with plain integer adds (no locks, no atomics), in log order,
//! so a threshold is crossed by the event that takes its merchant over the
//! line in that order, the same on every run whatever the number of threads.
//!
//! Readers never touch a partition. Its owner hands them plain data between
//! batches: a [`Delta`] (what changed since the last one) for the live view,
//! and a [`Checkpoint`] for durable state.
//!
//! - [`merchants`]: the per-merchant table.
//! - [`series`]: per-second counts and per-minute sales, an hour at a time.
//! - [`delta`]: the hand-over types.

mod delta;
mod merchants;
mod series;

pub use delta::{Crossing, Delta, MerchantFigures, Totals};
pub use series::{Hour, MinuteCell, MINUTES_PER_HOUR, SECONDS_PER_HOUR};

use crate::config::Settings;
use crate::dedup::{DedupSet, Verdict};
use crate::event::Event;
use crate::money::Fen;
use crate::prefetch::ReadAhead;
use crate::reject::{Reason, RejectCounts, Rejection};
use crate::state::{self, Checkpoint, CheckpointKind, DedupPart, StateError};
use crate::time::EpochMillis;
use merchants::{MerchantTable, CHECKPOINT, PUBLISH};
use series::Series;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// The hash a merchant id is aggregated, deduplicated and partitioned under
/// (XXH3-64 of its bytes: stable across versions and machines, so a file
/// split today splits the same way tomorrow).
#[inline]
pub fn merchant_hash(merchant_id: &str) -> u64 {
    xxh3_64(merchant_id.as_bytes())
}

/// The partition (of `partitions`) a merchant belongs to when a source
/// splits its records itself (files, stdin, the synthetic stream): the
/// merchant hash scaled to `0..partitions`.
#[inline]
pub fn partition_of(merchant_hash: u64, partitions: u32) -> u32 {
    ((u128::from(merchant_hash) * u128::from(partitions)) >> 64) as u32
}

/// The share of `dedup.max_ids` one partition of `partitions` may hold: the
/// process's bound split evenly, so a process holds at most `max_ids` ids
/// whichever partitions it owns, and a partition's bound does not change
/// when it moves between processes.
pub fn dedup_share(max_ids: usize, partitions: usize) -> usize {
    (max_ids / partitions.max(1)).max(1)
}

/// A valid, in-window transaction as a partition counts it: the fields the
/// figures need and the hashes it is found under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txn<'a> {
    /// The merchant.
    pub merchant_id: &'a str,
    /// [`merchant_hash`] of it.
    pub merchant_hash: u64,
    /// The redelivery key ([`DedupSet::key`] of merchant and `txn_id`).
    pub key: u128,
    /// A hash of the content, telling a redelivery from a conflicting reuse.
    pub fingerprint: u64,
    /// Amount in CNY fen.
    pub fen: Fen,
    /// On the mobile channel.
    pub mobile: bool,
    /// Event time.
    pub settled_at: EpochMillis,
}

/// A record decoded and found valid and inside the window.
#[derive(Debug, Clone)]
pub struct Decoded<'a> {
    /// The event.
    pub event: Event<'a>,
    /// [`merchant_hash`] of its merchant.
    pub merchant_hash: u64,
    /// Its redelivery key.
    pub key: u128,
}

impl Decoded<'_> {
    /// The transaction to count.
    #[inline]
    pub fn txn(&self) -> Txn<'_> {
        Txn {
            merchant_id: &self.event.merchant_id,
            merchant_hash: self.merchant_hash,
            key: self.key,
            fingerprint: self.event.fingerprint,
            fen: self.event.amount_fen,
            mobile: self.event.mobile,
            settled_at: self.event.settled_at,
        }
    }
}

/// Everything about a record that needs no state: its size, its fields, its
/// window. Pure, so any thread may do it (a file's reader threads do; a
/// Kafka member does it for its own partitions).
#[inline]
pub fn decode<'a>(settings: &Settings, payload: &'a [u8]) -> Result<Decoded<'a>, Rejection> {
    if payload.len() > settings.max_event_bytes {
        return Err(Rejection::new(
            Reason::Oversize,
            "record exceeds engine.max_event_bytes",
        ));
    }
    let event = settings.decoder.decode(payload)?;
    if !settings.window.contains(event.settled_at) {
        return Err(Rejection::new(
            Reason::OutsideWindow,
            "settled_at is outside the festival window",
        ));
    }
    let merchant_hash = merchant_hash(&event.merchant_id);
    let key = DedupSet::key(merchant_hash, &event.txn_id);
    Ok(Decoded {
        event,
        merchant_hash,
        key,
    })
}

/// How many records [`Partition::process_each`] decodes ahead of the one it
/// counts. Counting waits on memory (the dedup table's probe, usually a cache
/// miss); decoding is pure computation. Staging a record this far ahead
/// prefetches its probe while the records between are decoded.
const LOOKAHEAD: usize = 8;

/// A record decoded, its dedup probe prefetched, waiting to be counted.
struct Staged<'p, T> {
    item: T,
    position: i64,
    payload: &'p [u8],
    decoded: Result<Decoded<'p>, Rejection>,
}

/// One partition's state (see the module docs).
pub struct Partition {
    settings: Arc<Settings>,
    dedup_max_ids: usize,
    dedup: DedupSet,
    merchants: MerchantTable,
    series: Series,
    crossings: Vec<Crossing>,
    threshold_merchants: Vec<u64>,
    totals: Totals,
    consumed: u64,
    rejected: RejectCounts,
    watermark: EpochMillis,
    first_position: i64,
    next_position: i64,
    /// Crossings handed to a delta / a checkpoint so far.
    crossings_published: usize,
    crossings_checkpointed: usize,
    /// `consumed` when the last delta was taken.
    consumed_at_delta: u64,
}

impl Partition {
    /// An empty partition whose dedup set holds at most `dedup_max_ids` ids
    /// (see [`dedup_share`]). Its checkpoints are all bases until
    /// [`Self::journaled`] is asked for.
    pub fn new(settings: Arc<Settings>, dedup_max_ids: usize) -> Self {
        let dedup = DedupSet::new(dedup_max_ids, settings.dedup_retention);
        Self {
            series: Series::new(settings.window.seconds()),
            threshold_merchants: vec![0; settings.thresholds.len()],
            dedup,
            dedup_max_ids,
            merchants: MerchantTable::default(),
            crossings: Vec::new(),
            totals: Totals::default(),
            consumed: 0,
            rejected: RejectCounts::default(),
            watermark: i64::MIN,
            first_position: -1,
            next_position: -1,
            crossings_published: 0,
            crossings_checkpointed: 0,
            consumed_at_delta: 0,
            settings,
        }
    }

    /// The same partition, recording each new redelivery id so that
    /// checkpoints can be deltas (a source that checkpoints wants this; the
    /// journal costs a 32-byte push per new id).
    pub fn journaled(mut self) -> Self {
        self.dedup.enable_journal();
        self
    }

    /// The settings it counts under.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Next position to read (-1 before the first record).
    pub fn next_position(&self) -> i64 {
        self.next_position
    }

    /// First position counted (-1 before the first record).
    pub fn first_position(&self) -> i64 {
        self.first_position
    }

    /// Records read.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Totals now.
    pub fn totals(&self) -> Totals {
        Totals {
            merchants: self.merchants.len() as u64,
            ..self.totals
        }
    }

    /// Every crossing so far, in log order.
    pub fn crossings(&self) -> &[Crossing] {
        &self.crossings
    }

    /// The dedup set's figures: (ids held, bytes allocated).
    pub fn dedup_figures(&self) -> (u64, u64) {
        (self.dedup.len() as u64, self.dedup.allocated_bytes() as u64)
    }

    /// Starts loading what counting `txn` will read first (its dedup probe
    /// and its merchant's slot): call it a few records ahead.
    #[inline]
    pub fn prefetch(&self, merchant_hash: u64, key: u128) {
        self.dedup.prefetch(key);
        self.merchants.prefetch(merchant_hash);
    }

    /// Counts the record at `position` of the partition's log: a valid
    /// transaction is checked against the redelivery set and added; anything
    /// refused (here, or already by [`decode`]) is counted under its reason
    /// and handed back for the dead-letter sink.
    #[inline]
    pub fn count(
        &mut self,
        position: i64,
        txn: Result<Txn<'_>, Rejection>,
    ) -> Result<(), Rejection> {
        self.consumed += 1;
        if self.first_position < 0 {
            self.first_position = position;
        }
        self.next_position = position + 1;
        let outcome = txn.and_then(|txn| self.dedup_and_add(position, &txn));
        if let Err(rejection) = &outcome {
            self.rejected.bump(rejection.reason);
        }
        outcome
    }

    #[inline]
    fn dedup_and_add(&mut self, position: i64, txn: &Txn<'_>) -> Result<(), Rejection> {
        match self
            .dedup
            .check_insert(txn.key, txn.fingerprint, txn.settled_at)
        {
            Verdict::New => {
                self.add(position, txn);
                Ok(())
            }
            Verdict::Duplicate => Err(Rejection::new(
                Reason::Duplicate,
                "txn_id already counted for this merchant with the same content",
            )),
            Verdict::Conflict => Err(Rejection::new(
                Reason::Conflict,
                "txn_id already counted for this merchant with different content",
            )),
        }
    }

    #[inline]
    fn add(&mut self, position: i64, txn: &Txn<'_>) {
        let at = self.merchants.slot(txn.merchant_hash, txn.merchant_id);
        let merchant = self.merchants.at_mut(at);
        merchant.gmv += txn.fen;
        merchant.transactions += 1;
        if txn.mobile {
            merchant.mobile_gmv += txn.fen;
        }
        self.merchants.mark_changed(at);
        let merchant = self.merchants.at(at);
        let next = usize::from(merchant.next_threshold);
        if self
            .settings
            .thresholds
            .get(next)
            .is_some_and(|&t| merchant.gmv >= t)
        {
            self.cross(at, txn.settled_at, position);
        }
        self.totals.gmv += txn.fen;
        self.totals.transactions += 1;
        if txn.mobile {
            self.totals.mobile_gmv += txn.fen;
        }
        let second = (txn.settled_at - self.settings.window.start_millis()) / 1000;
        self.series.add(second as usize, txn.fen, txn.mobile);
        self.watermark = self.watermark.max(txn.settled_at);
    }

    /// Records every threshold the merchant at `at` has now reached: the
    /// event that took it over each is this one.
    #[cold]
    fn cross(&mut self, at: usize, settled_at: EpochMillis, position: i64) {
        let merchant = self.merchants.at_mut(at);
        while let Some(&threshold) = self
            .settings
            .thresholds
            .get(usize::from(merchant.next_threshold))
        {
            if merchant.gmv < threshold {
                break;
            }
            self.threshold_merchants[usize::from(merchant.next_threshold)] += 1;
            merchant.next_threshold += 1;
            self.crossings.push(Crossing {
                merchant_id: merchant.id().to_owned(),
                threshold,
                gmv_at_crossing: merchant.gmv,
                settled_at,
                position,
            });
        }
    }

    /// Decodes and counts records in log order, exactly as [`decode`] and
    /// [`Self::count`] would one by one, handing each refused record's item,
    /// payload and rejection to `refused` in order. Faster: each record's
    /// bytes are prefetched a few records before it is decoded, and it is
    /// decoded [`LOOKAHEAD`] records before it is counted, with the memory
    /// its count will probe prefetched meanwhile.
    pub fn process_each<'p, T>(
        &mut self,
        records: impl IntoIterator<Item = (T, i64, &'p [u8])>,
        mut refused: impl FnMut(T, &'p [u8], Rejection),
    ) {
        let mut ring: [Option<Staged<'p, T>>; LOOKAHEAD] = std::array::from_fn(|_| None);
        let mut next = 0;
        let records = records
            .into_iter()
            .map(|(item, position, payload)| ((item, position), payload));
        for ((item, position), payload) in ReadAhead::new(records) {
            let slot = next % LOOKAHEAD;
            if let Some(staged) = ring[slot].take() {
                self.finish(staged, &mut refused);
            }
            let decoded = decode(&self.settings, payload);
            if let Ok(d) = &decoded {
                self.prefetch(d.merchant_hash, d.key);
            }
            ring[slot] = Some(Staged {
                item,
                position,
                payload,
                decoded,
            });
            next += 1;
        }
        for k in 0..LOOKAHEAD {
            if let Some(staged) = ring[(next + k) % LOOKAHEAD].take() {
                self.finish(staged, &mut refused);
            }
        }
    }

    #[inline(always)]
    fn finish<'p, T>(
        &mut self,
        staged: Staged<'p, T>,
        refused: &mut impl FnMut(T, &'p [u8], Rejection),
    ) {
        let txn = staged
            .decoded
            .as_ref()
            .map(Decoded::txn)
            .map_err(Clone::clone);
        if let Err(rejection) = self.count(staged.position, txn) {
            refused(staged.item, staged.payload, rejection);
        }
    }

    /// What changed since the last delta (everything, for the first one).
    pub fn take_delta(&mut self) -> Delta {
        let merchants = self
            .merchants
            .take_changed(PUBLISH)
            .into_iter()
            .map(figures)
            .collect();
        let crossings = self.crossings[self.crossings_published..].to_vec();
        self.crossings_published = self.crossings.len();
        self.consumed_at_delta = self.consumed;
        let (dedup_ids, dedup_bytes) = self.dedup_figures();
        Delta {
            totals: self.totals(),
            threshold_merchants: self.threshold_merchants.clone(),
            consumed: self.consumed,
            rejected: self.rejected,
            watermark: (self.watermark != i64::MIN).then_some(self.watermark),
            first_position: self.first_position,
            next_position: self.next_position,
            merchants,
            hours: self.series.take_changed(PUBLISH),
            crossings,
            dedup_ids,
            dedup_bytes,
            state_bytes: (self.merchants.allocated_bytes() + self.series.allocated_bytes()) as u64,
        }
    }

    /// Whether anything was counted or refused, or restored, since the last
    /// delta.
    pub fn has_unpublished(&self) -> bool {
        self.consumed != self.consumed_at_delta
    }

    /// A checkpoint numbered `seq`: a [base](CheckpointKind::Base) with the
    /// whole state if `parent` is `None`, else a delta with what changed
    /// since the previous checkpoint, whose checksum `parent` is (only for a
    /// [journaled](Self::journaled) partition). Taken between batches by the
    /// partition's owner.
    pub fn checkpoint(&mut self, seq: u64, parent: Option<u64>) -> Checkpoint {
        let kind = match parent {
            None => CheckpointKind::Base,
            Some(_) => CheckpointKind::Delta,
        };
        let mut checkpoint = self.capture(seq, kind);
        checkpoint.parent = parent;
        checkpoint
    }

    /// Like [`Self::checkpoint`], for a writer that chains links itself: the
    /// delta's `parent` is left `None` for it to fill in once the previous
    /// link is durable and its checksum known.
    pub fn capture(&mut self, seq: u64, kind: CheckpointKind) -> Checkpoint {
        let journal = self.dedup.take_journal();
        let checkpointed: Vec<MerchantFigures> = self
            .merchants
            .take_changed(CHECKPOINT)
            .into_iter()
            .map(figures)
            .collect();
        let changed_hours = self.series.take_changed(CHECKPOINT);
        let (merchants, hours, crossings, dedup) = match kind {
            CheckpointKind::Base => (
                self.merchants.iter().map(figures).collect(),
                self.series.all(),
                self.crossings.clone(),
                DedupPart::Base(self.dedup.state()),
            ),
            CheckpointKind::Delta => (
                checkpointed,
                changed_hours,
                self.crossings[self.crossings_checkpointed..].to_vec(),
                DedupPart::Delta(journal),
            ),
        };
        self.crossings_checkpointed = self.crossings.len();
        Checkpoint {
            seq,
            kind,
            settings_hash: state::settings_hash(&self.settings, self.dedup_max_ids),
            parent: None,
            first_offset: self.first_position,
            next_offset: self.next_position,
            consumed: self.consumed,
            rejected: self.rejected,
            watermark: (self.watermark != i64::MIN).then_some(self.watermark),
            merchants,
            hours,
            crossings,
            dedup,
        }
    }

    /// Rebuilds a partition from a chain of checkpoints: a base, then the
    /// deltas that follow it in order. Its first delta hands readers the
    /// whole restored state.
    pub fn restore(
        settings: Arc<Settings>,
        dedup_max_ids: usize,
        chain: &[Checkpoint],
    ) -> Result<Self, StateError> {
        let Some(first) = chain.first() else {
            return Err(StateError::Invalid("empty checkpoint chain"));
        };
        if first.kind != CheckpointKind::Base {
            return Err(StateError::Invalid("a chain starts with a base"));
        }
        let expected = state::settings_hash(&settings, dedup_max_ids);
        let mut partition = Self::new(settings, dedup_max_ids).journaled();
        for link in chain {
            if link.settings_hash != expected {
                return Err(StateError::SettingsChanged);
            }
            match (&link.dedup, link.kind) {
                (DedupPart::Base(state), CheckpointKind::Base) if link.seq == first.seq => {
                    partition.dedup.restore(state)?
                }
                (DedupPart::Delta(journal), CheckpointKind::Delta) if link.seq != first.seq => {
                    partition.dedup.replay(journal)
                }
                _ => return Err(StateError::Invalid("a chain is one base, then deltas")),
            }
            partition.absorb(link)?;
        }
        // Replayed ids are in the checkpoints already, not new.
        let _ = partition.dedup.take_journal();
        partition.settle_after_restore();
        Ok(partition)
    }

    /// Applies the next delta of a chain to a partition restored from (or
    /// built up by) the links before it. A checkpoint writer keeps such a
    /// shadow of each partition it writes, so that it can write a base
    /// without asking the partition's owner for its whole state.
    pub fn extend(&mut self, link: &Checkpoint) -> Result<(), StateError> {
        if link.settings_hash != state::settings_hash(&self.settings, self.dedup_max_ids) {
            return Err(StateError::SettingsChanged);
        }
        let DedupPart::Delta(journal) = &link.dedup else {
            return Err(StateError::Invalid("only a delta extends a chain"));
        };
        self.dedup.replay(journal);
        self.absorb(link)
    }

    /// Takes a link's figures: merchants and hours whole, crossings added,
    /// counters and positions as they were.
    fn absorb(&mut self, link: &Checkpoint) -> Result<(), StateError> {
        for m in &link.merchants {
            if m.mobile_gmv > m.gmv {
                return Err(StateError::Invalid(
                    "a merchant's mobile GMV exceeds its GMV",
                ));
            }
            let at = self
                .merchants
                .slot(merchant_hash(&m.merchant_id), &m.merchant_id);
            let merchant = self.merchants.at_mut(at);
            merchant.gmv = m.gmv;
            merchant.mobile_gmv = m.mobile_gmv;
            merchant.transactions = m.transactions;
        }
        for (hour, cells) in &link.hours {
            if !self.series.set(*hour, cells.clone()) {
                return Err(StateError::Invalid("an hour outside the window"));
            }
        }
        self.crossings.extend(link.crossings.iter().cloned());
        self.consumed = link.consumed;
        self.rejected = link.rejected;
        self.watermark = link.watermark.unwrap_or(i64::MIN);
        self.first_position = link.first_offset;
        self.next_position = link.next_offset;
        Ok(())
    }

    /// Derives what a chain does not carry (totals, threshold counts, each
    /// merchant's next threshold) and marks everything for the first delta.
    fn settle_after_restore(&mut self) {
        let thresholds = &self.settings.thresholds;
        self.totals = Totals::default();
        self.threshold_merchants = vec![0; thresholds.len()];
        for merchant in self.merchants.iter_mut() {
            let reached = thresholds
                .iter()
                .take_while(|&&t| merchant.gmv >= t)
                .count();
            merchant.next_threshold = reached as u8;
            self.totals.gmv += merchant.gmv;
            self.totals.mobile_gmv += merchant.mobile_gmv;
            self.totals.transactions += merchant.transactions;
            for count in &mut self.threshold_merchants[..reached] {
                *count += 1;
            }
        }
        self.merchants.mark_all_published();
        self.consumed_at_delta = u64::MAX;
        self.series.mark_all();
        // Only publishing needs the hours again; the checkpoints hold them.
        let _ = self.series.take_changed(CHECKPOINT);
        self.crossings_published = 0;
        self.crossings_checkpointed = self.crossings.len();
    }

    /// Makes the next delta carry every merchant and hour again, as the
    /// first after a restore does, for a reader that set aside what this
    /// partition sent (see `LiveView::apply_from`). Checkpoints are
    /// unaffected; crossings already handed on are not handed again.
    pub fn republish_all(&mut self) {
        self.merchants.mark_all_for_publish();
        self.series.mark_all_for_publish();
        self.consumed_at_delta = u64::MAX;
    }

    /// One merchant's figures.
    pub fn merchant(&self, merchant_id: &str) -> Option<MerchantFigures> {
        self.merchants
            .get(merchant_hash(merchant_id), merchant_id)
            .map(figures)
    }

    /// Every merchant's figures, in the order first seen.
    pub fn merchant_figures(&self) -> impl Iterator<Item = MerchantFigures> + '_ {
        self.merchants.iter().map(figures)
    }

    /// Bytes the merchant table holds (arena and index).
    pub fn merchant_table_bytes(&self) -> usize {
        self.merchants.allocated_bytes()
    }

    /// Bytes held: dedup tables, merchant table, series.
    pub fn allocated_bytes(&self) -> usize {
        self.dedup.allocated_bytes()
            + self.merchants.allocated_bytes()
            + self.series.allocated_bytes()
    }
}

fn figures(merchant: &merchants::Merchant) -> MerchantFigures {
    MerchantFigures {
        merchant_id: merchant.id().to_owned(),
        gmv: merchant.gmv,
        mobile_gmv: merchant.mobile_gmv,
        transactions: merchant.transactions,
    }
}

#[cfg(test)]
mod tests;
