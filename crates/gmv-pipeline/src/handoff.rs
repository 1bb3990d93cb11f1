//! The hand-over from a partition's owner to the publisher, which never
//! blocks the owner.
//!
//! Each partition has a channel of capacity one. Between batches its owner
//! calls [`Handoff::offer`]: when a delta is due and the slot is empty (the
//! publisher took the last one), it takes the partition's [`Delta`] and puts
//! it in; otherwise it does nothing and the partition keeps collecting
//! changes, which the next delta carries. A slow publisher therefore costs
//! the owner nothing, and deltas can never pile up. Only at the end (or when
//! a partition moves away) does the owner wait, to hand over the last delta.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};
use gmv_core::latency::StartRuns;
use gmv_core::partition::{Delta, Partition};
use gmv_core::view::PartitionKey;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What an owner hands over.
#[derive(Debug)]
pub enum Message {
    /// A delta of the partition (boxed: a delta is large).
    Update(Box<Handed>),
    /// The partition's last message, with its last delta: it ended (`keep`:
    /// its figures stay in the view, as at the end of a file) or moved to
    /// another process.
    Closed {
        /// The last delta, if any.
        last: Option<Box<Handed>>,
        /// Whether the view keeps the partition.
        keep: bool,
    },
}

/// A delta with what the owner knows besides it.
#[derive(Debug)]
pub struct Handed {
    /// The partition's changes.
    pub delta: Delta,
    /// Every record before this position of the log is in the delta (a
    /// source may vouch for more than the last record it counted).
    pub progress: i64,
    /// When the records the delta covers started (for latency).
    pub starts: StartRuns,
}

/// A partition joining the publisher.
pub(crate) struct Registration {
    pub(crate) key: PartitionKey,
    pub(crate) member: Arc<str>,
    /// Registrations in the order they were made: a partition registered
    /// again (it moved to another member) has a later one.
    pub(crate) generation: u64,
    /// Set by the publisher when it needs the partition's whole state again.
    pub(crate) resend: Arc<AtomicBool>,
    pub(crate) messages: Receiver<Message>,
}

/// Where owners register their partitions (cheap to clone).
#[derive(Clone)]
pub struct Board {
    registrations: Sender<Registration>,
    cadence: Duration,
    doorbell: Sender<()>,
    generations: Arc<AtomicU64>,
}

impl Board {
    /// A board and the publisher's end of it; owners offer a delta at most
    /// every `cadence`.
    pub(crate) fn new(cadence: Duration) -> (Self, Receiver<Registration>, Receiver<()>) {
        let (registrations, incoming) = unbounded();
        // One ring is as good as many: the publisher drains everything.
        let (doorbell, rings) = bounded(1);
        (
            Self {
                registrations,
                cadence,
                doorbell,
                generations: Arc::new(AtomicU64::new(1)),
            },
            incoming,
            rings,
        )
    }

    /// Registers partition `key`, owned by `member`; the returned hand-off is
    /// the owner's end.
    pub fn register(&self, key: PartitionKey, member: &str) -> Handoff {
        let (outbox, messages) = bounded(1);
        let resend = Arc::new(AtomicBool::new(false));
        // The publisher lives as long as the run: a send can only fail once
        // it has ended, and then there is nobody to hand anything to.
        let _ = self.registrations.send(Registration {
            key: key.clone(),
            member: member.into(),
            generation: self.generations.fetch_add(1, Ordering::SeqCst),
            resend: resend.clone(),
            messages,
        });
        Handoff {
            key,
            outbox,
            doorbell: self.doorbell.clone(),
            cadence: self.cadence,
            last: Instant::now() - self.cadence,
            starts: StartRuns::default(),
            progress: -1,
            offered_progress: -1,
            resend,
        }
    }
}

/// An owner's end of a partition's hand-off.
pub struct Handoff {
    key: PartitionKey,
    outbox: Sender<Message>,
    /// Asks the publisher to take what is waiting now rather than at its
    /// next tick (a partition closing should not wait for one).
    doorbell: Sender<()>,
    cadence: Duration,
    last: Instant,
    starts: StartRuns,
    progress: i64,
    offered_progress: i64,
    /// The publisher asks for the partition's whole state again.
    resend: Arc<AtomicBool>,
}

impl Handoff {
    /// Which partition.
    pub fn key(&self) -> &PartitionKey {
        &self.key
    }

    /// Notes that `n` records counted since the last delta started at `at`
    /// (ms since the epoch).
    #[inline]
    pub fn started(&mut self, at: i64, n: u32) {
        self.starts.push_n(at, n);
    }

    /// Vouches that every record before `position` has been counted.
    pub fn advance(&mut self, position: i64) {
        self.progress = self.progress.max(position);
    }

    /// Hands over a delta if one is due and the slot is free; never waits.
    /// Returns whether it did.
    pub fn offer(&mut self, partition: &mut Partition) -> bool {
        if self.resend.swap(false, Ordering::SeqCst) {
            partition.republish_all();
        }
        let news = partition.has_unpublished() || self.progress != self.offered_progress;
        if !news || self.last.elapsed() < self.cadence || !self.outbox.is_empty() {
            return false;
        }
        self.last = Instant::now();
        // This owner is the only sender, so an empty slot stays empty until
        // the send below; it fails only if the publisher is gone.
        let handed = Box::new(self.handed(partition));
        self.outbox.try_send(Message::Update(handed)).is_ok()
    }

    /// Hands over a delta made elsewhere (a reader of partitions published
    /// by other processes), unless the slot is full: then it comes back, for
    /// the caller to merge with the next.
    pub fn hand(&mut self, delta: Delta) -> Option<Delta> {
        if !self.outbox.is_empty() {
            return Some(delta);
        }
        self.progress = self.progress.max(delta.next_position);
        let handed = Box::new(Handed {
            delta,
            progress: self.progress,
            starts: std::mem::take(&mut self.starts),
        });
        match self.outbox.try_send(Message::Update(handed)) {
            Ok(()) => None,
            Err(e) => match e.into_inner() {
                Message::Update(handed) => Some(handed.delta),
                Message::Closed { last, .. } => last.map(|h| h.delta),
            },
        }
    }

    /// Closes the partition without a last delta (its figures stay).
    pub fn finish(self) {
        self.ring();
        let _ = self.outbox.send(Message::Closed {
            last: None,
            keep: true,
        });
        self.ring();
    }

    fn ring(&self) {
        let _ = self.doorbell.try_send(());
    }

    fn handed(&mut self, partition: &mut Partition) -> Handed {
        let delta = partition.take_delta();
        self.progress = self.progress.max(delta.next_position);
        self.offered_progress = self.progress;
        Handed {
            delta,
            progress: self.progress,
            starts: std::mem::take(&mut self.starts),
        }
    }

    /// Hands over the last delta and closes the partition, waiting for the
    /// publisher to take them; `keep` says whether its figures stay in the
    /// view.
    pub fn close(mut self, partition: &mut Partition, keep: bool) {
        let last = Box::new(self.handed(partition));
        // The slot may still hold the last offer: have it taken now.
        self.ring();
        let _ = self.outbox.send(Message::Closed {
            last: Some(last),
            keep,
        });
        self.ring();
    }
}

/// The publisher's end of one partition.
pub(crate) struct Inbox {
    pub(crate) key: PartitionKey,
    pub(crate) member: Arc<str>,
    pub(crate) generation: u64,
    pub(crate) resend: Arc<AtomicBool>,
    messages: Receiver<Message>,
    pub(crate) closed: bool,
}

impl Inbox {
    pub(crate) fn new(registration: Registration) -> Self {
        Self {
            key: registration.key,
            member: registration.member,
            generation: registration.generation,
            resend: registration.resend,
            messages: registration.messages,
            closed: false,
        }
    }

    /// The next message, if one is waiting. A partition whose owner is gone
    /// without closing it (a thread that failed) counts as closed, kept.
    pub(crate) fn next(&mut self) -> Option<Message> {
        if self.closed {
            return None;
        }
        match self.messages.try_recv() {
            Ok(message) => Some(message),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.closed = true;
                Some(Message::Closed {
                    last: None,
                    keep: true,
                })
            }
        }
    }
}
